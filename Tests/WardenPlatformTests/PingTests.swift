import Foundation
import Testing
import WardenTestSupport

@testable import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

@Suite("ICMP ping", .serialized)
struct PingTests {
    @Test func loopbackAnswers() async {
        let result = await ConnectionProbe().ping(PingRequest(host: "127.0.0.1", count: 1, timeout: .seconds(2)))
        #expect(result.succeeded, "\(result.message)")
        #expect(result.responseTime < .seconds(1), "the answered request's round trip: \(result.responseTime)")
    }

    /// `ping6`: ICMPv6 echo to ::1; `ping` takes the host's IPv4 address when it has one, else its IPv6 one.
    @Test func ipv6LoopbackAnswers() async throws {
        let result = await ConnectionProbe().ping(PingRequest(host: "::1", count: 1, timeout: .seconds(2), family: 6))
        #expect(result.succeeded, "\(result.message)")
        let sized = await ConnectionProbe().ping(PingRequest(host: "::1", count: 1, timeout: .seconds(2), size: 1200, sourceAddress: "::1", family: 6))
        #expect(sized.succeeded, "\(sized.message)")
        let either = await ConnectionProbe().ping(PingRequest(host: "::1", count: 1, timeout: .seconds(2)))
        #expect(either.succeeded, "\(either.message)")
        #expect(ResolvedAddress("127.0.0.1", family: nil)?.numeric == "127.0.0.1")
        #expect(ResolvedAddress("::1", family: nil)?.numeric == "::1")
        let wrongFamily = await ConnectionProbe().ping(PingRequest(host: "127.0.0.1", count: 1, timeout: .seconds(1), family: 6))
        #expect(wrongFamily.message == "ping test failed -- cannot resolve 127.0.0.1 as an IPv6 address", "\(wrongFamily.message)")
    }

    /// `size` makes the requests that long (a reply comes back as long), `address` the source they leave from.
    @Test func sizeAndSourceAddress() async {
        let large = await ConnectionProbe().ping(PingRequest(host: "127.0.0.1", count: 1, timeout: .seconds(2), size: 1400, sourceAddress: "127.0.0.1"))
        #expect(large.succeeded, "\(large.message)")
        #expect(ICMPPing.echoRequest(identifier: 1, sequence: 1, size: 1400).count == 1400)
        #expect(ICMPPing.echoRequest(identifier: 1, sequence: 1, size: 8).count == 8)
        let foreign = await ConnectionProbe().ping(PingRequest(host: "127.0.0.1", count: 1, timeout: .seconds(1), sourceAddress: "192.0.2.1"))
        #expect(!foreign.succeeded)
        #expect(foreign.message == "ping test failed -- cannot send from 192.0.2.1: Cannot assign requested address", "\(foreign.message)")
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
