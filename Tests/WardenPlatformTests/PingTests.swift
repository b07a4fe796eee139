import Foundation
import Synchronization
import Testing
import WardenPlatform
import WardenTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A network namespace of the test's own, joined to this one by a veth pair: 198.51.100.(4n+1) here,
/// 198.51.100.(4n+2) there, a /30 of TEST-NET-2 per namespace (nothing outside the machine is
/// addressed; the sandbox itself may use TEST-NET-1), so suites running at once do not collide.
/// Removed with its links on deinit.
final class TestNamespace {
    let name: String
    let hostLink: String
    let peerLink: String
    let hostAddress: String
    let peerAddress: String
    private static let made = Mutex(0)

    init() throws {
        let index = Self.made.withLock { count in
            defer { count += 1 }
            return count % 64
        }
        let tag = "\(getpid() % 10_000)x\(index)"
        name = "warden-test-\(tag)"
        hostLink = "wdh\(tag)"
        peerLink = "wdp\(tag)"
        hostAddress = "198.51.100.\(4 * index + 1)"
        peerAddress = "198.51.100.\(4 * index + 2)"
        try ip("netns", "add", name)
        try ip("link", "add", hostLink, "type", "veth", "peer", "name", peerLink)
        try ip("link", "set", peerLink, "netns", name)
        try ip("addr", "add", "\(hostAddress)/30", "dev", hostLink)
        try ip("link", "set", hostLink, "up")
        try inside("ip", "addr", "add", "\(peerAddress)/30", "dev", peerLink)
        try inside("ip", "link", "set", peerLink, "up")
    }

    struct CommandFailed: Error, CustomStringConvertible {
        var description: String
    }

    func ip(_ arguments: String...) throws {
        let result = try TestSupport.run("/usr/sbin/ip", arguments)
        guard result.status == 0 else { throw CommandFailed(description: "ip \(arguments.joined(separator: " ")): \(result.stderr)") }
    }

    /// A command run inside the namespace.
    func inside(_ arguments: String...) throws {
        let result = try TestSupport.run("/usr/sbin/ip", ["netns", "exec", name] + arguments)
        guard result.status == 0 else { throw CommandFailed(description: "\(arguments.joined(separator: " ")): \(result.stderr)") }
    }

    deinit {
        _ = try? TestSupport.run("/usr/sbin/ip", ["link", "del", hostLink])
        _ = try? TestSupport.run("/usr/sbin/ip", ["netns", "del", name])
    }
}

@Suite("ICMP ping", .serialized)
struct PingTests {
    @Test func loopbackAnswers() async {
        let result = await ConnectionProbe().ping(PingRequest(host: "127.0.0.1", count: 1, timeout: .seconds(2)))
        #expect(result.succeeded, "\(result.message)")
        #expect(result.message.hasPrefix("ping test succeeded [response time"), "\(result.message)")
    }

    /// The namespace's address answers; once it ignores echo requests, every one of `count` goes unanswered.
    @Test func silentAddressFailsAfterCountTimeouts() async throws {
        guard TestSupport.server("/usr/sbin/ip") != nil else { return }
        let namespace = try TestNamespace()
        let probe = ConnectionProbe()
        let answered = await probe.ping(PingRequest(host: namespace.peerAddress, count: 3, timeout: .seconds(2)))
        #expect(answered.succeeded, "\(answered.message)")
        try namespace.inside("sysctl", "-q", "-w", "net.ipv4.icmp_echo_ignore_all=1")
        let started = ContinuousClock.now
        let silent = await probe.ping(PingRequest(host: namespace.peerAddress, count: 2, timeout: .seconds(1)))
        let waited = ContinuousClock.now - started
        #expect(!silent.succeeded)
        #expect(silent.message == "ping test failed -- no response from \(namespace.peerAddress) to 2 echo requests within 1 s each", "\(silent.message)")
        // Two requests, each waited for its full second: neither more nor much less.
        #expect(waited >= .milliseconds(1900) && waited < .seconds(4), "\(waited)")
    }
}
