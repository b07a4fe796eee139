import Foundation
import Testing
import WardenTestSupport

/// The short versions of the chaos and fuzzing suites under scripts/ (RELIABILITY.md has the long
/// runs), run against this build's binaries, plus regression tests for what they found.
@Suite("Chaos and fuzzing, short runs", .serialized)
struct ChaosTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    func script(_ path: String, _ arguments: [String], timeout: Double) throws -> TestSupport.ProcessResult {
        var environment = ProcessInfo.processInfo.environment
        environment["WARDEN_BUILD"] = TestSupport.productsDirectory
        let result = try TestSupport.run(Self.root + "/" + path, arguments, environment: environment, timeout: timeout)
        print(result.stdout)
        return result
    }

    @Test func chaosScenarios() throws {
        #expect(SMTPSink.available, "python3-aiosmtpd is needed for the alert scenario (.ci/run installs it)")
        let result = try script("scripts/chaos/scenarios.py", ["--quick"], timeout: 900)
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("reload storm"), "every scenario ran")
    }

    @Test func killLoop() throws {
        let result = try script("scripts/chaos/kill-loop.py", ["10", "both"], timeout: 300)
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("child"))
    }

    @Test func httpFuzzing() throws {
        let result = try script("scripts/fuzz/http-fuzz.py", ["2000", String(Int.random(in: 1...1_000_000))], timeout: 300)
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("dashboard"))
    }

    /// Found by the reload storm: a SIGHUP that arrived before the signal service listened ended
    /// warden (SIGHUP's default action).
    @Test func reloadSignalRightAfterStartDoesNotEndWarden() throws {
        let directory = try TemporaryDirectory()
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            check host loopback with address 127.0.0.1
            """)
        for _ in 0..<3 {
            let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
            warden.signal(SIGHUP)
            warden.signal(SIGUSR1)
            usleep(300_000)
            warden.signal(SIGHUP)
            #expect(warden.waitForLog("started", timeout: 10))
            usleep(500_000)
            #expect(TestSupport.isAlive(warden.pid), "\(warden.log)")
            warden.stop()
        }
    }
}
