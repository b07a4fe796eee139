import Foundation
import Testing
import WardenTestSupport
@testable import WardenConfig

/// Random mutations of valid control files never crash or hang the parser.
/// A longer run is `scripts/fuzz/config.sh`; this one is bounded in count and time.
@Suite("Parser robustness")
struct FuzzTests {
    static let fragments: [String] = [
        "check", "process", "with", "pidfile", "/run/x.pid", "if", "failed", "url", "http://localhost:8080/ping",
        "content", "==", "\"pong\"", "then", "restart", "5", "restarts", "within", "cycles", "timeout", "(", ")",
        "{", "}", ",", "\"", "'", "#", "\n", "set", "alert", "a@b.c", "mail-format", "message:", "subject:",
        "include", "*", "depends", "on", "cpu", ">", "80%", "MB", "every", "\"0 3 * * *\"", "else", "succeeded",
        "httpd", "port", "2812", "allow", "admin:monit", "99999999999999999999999", "-1", "\u{0}", "é", "<x>",
    ]

    static func seeds() throws -> [String] {
        let directory = RealInputTests.corpus + "/differential"
        return try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".rc") }.sorted()
            .map { try String(contentsOfFile: directory + "/" + $0, encoding: .utf8) }
    }

    static func mutate(_ text: String, _ rng: inout SplitMix) -> String {
        var bytes = Array(text.utf8)
        for _ in 0..<Int.random(in: 1...6, using: &rng) {
            let position = bytes.isEmpty ? 0 : Int.random(in: 0...bytes.count, using: &rng)
            switch Int.random(in: 0..<5, using: &rng) {
            case 0 where !bytes.isEmpty && position < bytes.count:
                bytes.remove(at: position)
            case 1:
                bytes.insert(contentsOf: Array(fragments.randomElement(using: &rng)!.utf8), at: position)
            case 2 where !bytes.isEmpty && position < bytes.count:
                bytes[position] = UInt8.random(in: 0...255, using: &rng)
            case 3 where bytes.count > 2:
                let end = min(bytes.count, position + Int.random(in: 1...40, using: &rng))
                if position < end { bytes.removeSubrange(position..<end) }
            default:
                let copy = Array(fragments.randomElement(using: &rng)!.utf8)
                bytes.insert(contentsOf: copy + [UInt8(ascii: " ")], at: position)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Always run, so every CI run parses the same mutated files and their results are comparable.
    static let fixedSeed: UInt64 = 0x5EED

    /// `WARDEN_FUZZ_SEED` when set (to replay a failure), else a new random seed each run.
    static let randomSeed: UInt64 =
        UInt64(ProcessInfo.processInfo.environment["WARDEN_FUZZ_SEED"] ?? "") ?? UInt64.random(in: 0...UInt64.max)

    @Test(arguments: ["fixed", "random"])
    func mutatedFilesNeverCrashOrHang(_ kind: String) throws {
        let seeds = try Self.seeds()
        try #require(!seeds.isEmpty, "no seed files in the differential corpus")
        let seed = kind == "fixed" ? Self.fixedSeed : Self.randomSeed
        // Printed first, so a crash (which ends the run) still leaves the seed to replay it with.
        print("parser fuzz (\(kind) seed): WARDEN_FUZZ_SEED=\(seed)")
        var rng = SplitMix(state: seed)
        let clock = ContinuousClock()
        var slowest = Duration.zero
        var rejected = 0
        // scripts/fuzz/config.sh raises this for long runs.
        let iterations = Int(ProcessInfo.processInfo.environment["WARDEN_FUZZ_ITERATIONS"] ?? "") ?? 3_000
        for iteration in 0..<iterations {
            let input = Self.mutate(seeds[iteration % seeds.count], &rng)
            let started = clock.now
            let result = ControlFile.parse(input)
            slowest = max(slowest, clock.now - started)
            if result.diagnostics.hasErrors {
                rejected += 1
                // Every error has a location or is the one file-level error.
                #expect(result.diagnostics.errors.allSatisfy { $0.location != nil || $0.id == .tooManyErrors })
                #expect(result.configuration == nil)
            }
        }
        print("parser fuzz (\(kind) seed \(seed)): \(iterations) mutated files, \(rejected) rejected with located errors, 0 crashes, slowest parse \(slowest)")
        #expect(rejected > 100, "the mutations should break many files (seed \(seed))")
        #expect(slowest < .seconds(2), "no input may make the parser hang (seed \(seed))")
    }

    @Test func largeFileParsesQuickly() {
        var text = "set daemon 10\n"
        for index in 0..<1_000 {
            text += """
                check process app\(index) with pidfile /run/app\(index).pid
                  start program = "/bin/true"
                  stop program = "/bin/true"
                  if failed url http://127.0.0.1:\(8000 + index % 1000)/ping and content == "pong" timeout 5 seconds then restart
                  if 5 restarts within 5 cycles then timeout
                  group apps

                """
        }
        let started = ContinuousClock.now
        let result = ControlFile.parse(text)
        #expect(!result.diagnostics.hasErrors)
        #expect(result.configuration?.services.count == 1_000)
        #expect(ContinuousClock.now - started < .seconds(10), "liveness bound only; speed is measured by scripts/bench")
    }
}
