import Foundation
import Testing
import WardenConfig
import WardenPlatform
import WardenTestSupport

#if canImport(Glibc)
import Glibc
#endif

enum Probe {
    static func check(
        _ name: String, port: Int, udp: Bool = false, tls: Bool = false, dialogue: [DialogueStep] = [],
        certificateMinimumDays: Int? = nil, timeout: Duration = .seconds(3), options: [String: String] = [:]
    ) async -> ProbeResult {
        await ConnectionProbe().check(
            ProtocolCheckRequest(
                protocolName: name, target: udp ? .udp(host: "127.0.0.1", port: port) : .tcp(host: "127.0.0.1", port: port),
                tls: tls, timeout: timeout, dialogue: dialogue, certificateMinimumDays: certificateMinimumDays, options: options))
    }

    /// Probes until the server (still starting) passes, for up to `seconds`; the last result.
    static func untilPassing(
        _ name: String, port: Int, udp: Bool = false, tls: Bool = false, dialogue: [DialogueStep] = [],
        options: [String: String] = [:], seconds: Double = 30
    ) async -> ProbeResult {
        let deadline = Date().addingTimeInterval(seconds)
        var result = await check(name, port: port, udp: udp, tls: tls, dialogue: dialogue, options: options)
        while !result.succeeded, Date() < deadline {
            try? await Task.sleep(for: .milliseconds(200))
            result = await check(name, port: port, udp: udp, tls: tls, dialogue: dialogue, options: options)
        }
        return result
    }
}

extension TestSupport {
    /// The server binary, or nil; under CI a missing one is the test's failure, never a skip.
    static func server(_ path: String) -> String? {
        if FileManager.default.isExecutableFile(atPath: path) { return path }
        if isCI { Issue.record("\(path) is missing: .ci/run installs it") } else { print("skipped: \(path) is not installed") }
        return nil
    }
}
