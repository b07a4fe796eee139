import Foundation
import Testing
import WardenPlatform
import WardenTestSupport

/// `check network`: the link and counters of a veth interface the test creates (its peer in a namespace
/// of the test's own), and monit's rates, totals and saturation computed from given samples.
@Suite("Network interfaces", .serialized)
struct NetworkTests {
    func sample(sent: UInt64, received: UInt64, up: Bool = true, speed: Int? = 100) -> NetworkSample {
        NetworkSample(
            interface: "eth9", isUp: up, speedMbps: speed, fullDuplex: true, receivedBytes: received, sentBytes: sent,
            receivedPackets: received / 1000, sentPackets: sent / 1000)
    }

    @Test func ratesTotalsAndSaturationFromSamples() {
        var statistics = LinkStatistics()
        statistics.record(sample(sent: 0, received: 0), at: 0)
        // Monit's rates and changes need a second cycle.
        #expect(statistics.rate(.upload, .bytes) == nil)
        #expect(statistics.linkChanged == nil)
        #expect(statistics.saturation(.upload) == nil)
        // 2.5 MB up and 10 MB down each 10 s cycle for two hours.
        for cycle in 1...720 {
            statistics.record(sample(sent: UInt64(cycle) * 2_500_000, received: UInt64(cycle) * 10_000_000), at: Double(cycle) * 10)
        }
        #expect(statistics.rate(.upload, .bytes) == 250_000)
        #expect(statistics.rate(.download, .bytes) == 1_000_000)
        #expect(statistics.rate(.download, .packets) == 1000)
        #expect(statistics.total(.upload, .bytes, inLast: 3600) == 900_000_000)
        #expect(statistics.total(.download, .bytes, inLast: 24 * 3600) == 7_200_000_000)
        // 0.25 MB/s and 1 MB/s, × 8 bits, of 100 Mb/s.
        #expect(statistics.saturation(.upload) == 2)
        #expect(statistics.saturation(.download) == 8)
        #expect(statistics.linkChanged == false)
        statistics.record(sample(sent: 1_800_000_000, received: 7_200_000_000, up: false), at: 7210)
        #expect(statistics.linkChanged == true)
        // A recreated interface starts its counters again: no rate from another interface's history.
        statistics.record(sample(sent: 10, received: 10), at: 7220)
        #expect(statistics.rate(.upload, .bytes) == nil)
    }

    @Test func vethLinkAndCounters() async throws {
        guard TestSupport.server("/usr/sbin/ip") != nil else { return }
        let namespace = try TestNamespace()
        #expect(NetworkInterface.name(forAddress: namespace.hostAddress) == namespace.hostLink)
        #expect(NetworkInterface.sample("no-such-if0") == nil)
        let before = try #require(NetworkInterface.sample(namespace.hostLink))
        #expect(before.isUp)
        #expect(before.speedMbps == 10_000)  // what veth reports
        var statistics = LinkStatistics()
        statistics.record(before, at: 0)
        // 200 datagrams of 1000 bytes to the namespace's address.
        let sent = try TestSupport.run(
            "/usr/bin/python3",
            ["-c", "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor _ in range(200): s.sendto(bytes(1000), ('\(namespace.peerAddress)', 9))"])
        #expect(sent.status == 0, "\(sent.stderr)")
        let after = try #require(NetworkInterface.sample(namespace.hostLink))
        statistics.record(after, at: 1)
        #expect(after.sentBytes - before.sentBytes >= 200 * 1000, "\(before) → \(after)")
        #expect(after.sentPackets - before.sentPackets >= 200)
        #expect(try #require(statistics.rate(.upload, .bytes)) >= 200_000)
        #expect(try #require(statistics.saturation(.upload)) > 0)
        try namespace.ip("link", "set", namespace.hostLink, "down")
        let down = try #require(NetworkInterface.sample(namespace.hostLink))
        #expect(!down.isUp)
        statistics.record(down, at: 2)
        #expect(statistics.linkChanged == true)
    }
}
