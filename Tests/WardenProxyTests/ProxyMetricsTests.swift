import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOPosix
import Testing
import WardenCore

@testable import WardenConfig
@testable import WardenProxy

#if canImport(Glibc)
import Glibc
#endif

@Suite("Proxy metrics: counting per event loop")
struct ProxyMetricsCountingTests {
    @Test func eachLoopCountsAloneAndACollectionAddsThemUp() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let metrics = ProxyMetrics(listenerNames: ["127.0.0.1:80", "127.0.0.1:443"])
        let pool = UpstreamPool()
        let key = ProxySeriesKey(site: "shop", route: "/", service: "app")
        let loops = [group.next(), group.next()]
        #expect(loops[0] !== loops[1])
        for (index, loop) in loops.enumerated() {
            try loop.submit {
                let local = metrics.local(on: loop)
                let slot = local.slot(key)
                #expect(local.slot(key) == slot, "a series keeps its slot")
                for _ in 0...index {
                    local.requestEnded(
                        slot: slot, method: .GET, status: 200, nanoseconds: 2_000_000, requestBytes: 5, responseBytes: 100, reused: index == 1)
                }
                local.requestEnded(
                    slot: slot, method: .init(rawValue: "PROPFIND"), status: 502, nanoseconds: 20_000_000, requestBytes: 0, responseBytes: 0,
                    reused: false)
                local.upstreamFailed(slot: slot, .refused)
                local.held(slot: slot, nanoseconds: 1_500_000_000)
                local.maintenanceAnswered(slot: slot)
                local.tunnelOpened(slot: slot)
                if index == 0 { local.tunnelClosed(slot: slot) }
                local.connectionOpened(listener: 1)
                local.handshake(listener: 1, succeeded: index == 0)
            }.wait()
        }
        let snapshot = try metrics.collect(pool: pool, on: loops[0]).wait()
        let series = try #require(snapshot.series[key])
        #expect(series.requests[ProxySeriesCounters.requestIndex(status: 200, method: 0)] == 3)
        #expect(series.requests[ProxySeriesCounters.requestIndex(status: 502, method: 9)] == 2, "an unknown method is other")
        #expect(series.duration.count == 5 && series.duration.sumNanoseconds == 3 * 2_000_000 + 2 * 20_000_000)
        #expect(series.requestBytes == 15 && series.responseBytes == 300)
        #expect(series.reusedConnections == 2)
        #expect(series.upstreamErrors == [2, 0, 0, 0])
        #expect(series.held.count == 2 && series.maintenanceAnswers == 2)
        #expect(series.tunnelsOpened == 2 && series.tunnelsOpen == 1)
        #expect(snapshot.listeners["127.0.0.1:443"] == {
            var listener = ProxyListenerCounters()
            listener.connectionsAccepted = 2
            listener.connectionsOpen = 2
            listener.tlsHandshakes = 1
            listener.tlsHandshakeFailures = 1
            return listener
        }())
        #expect(snapshot.listeners["127.0.0.1:80"] == ProxyListenerCounters(), "every listener, even one without traffic")
    }

    @Test func methodsAreCountedByName() {
        let methods: [HTTPMethod] = [.GET, .HEAD, .POST, .PUT, .DELETE, .PATCH, .OPTIONS, .CONNECT, .TRACE, .init(rawValue: "BREW")]
        #expect(methods.map(ProxyMetrics.Local.methodIndex) == Array(0..<10))
        #expect(ProxySeriesCounters.methods == ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other"])
    }

    @Test func connectFailuresAreTimeoutsOrRefusals() {
        #expect(ProxyMetrics.kind(of: ChannelError.connectTimeout(.seconds(5))) == .timeout)
        #expect(ProxyMetrics.kind(of: IOError(errnoCode: ECONNREFUSED, reason: "connect")) == .refused)
    }

    /// Requests through a `ProxyHandler`: a static file, a miss, the maintenance page, each in its
    /// route's series; a request for no site in none.
    @Test func theHandlerCountsEachRequestInItsRoutesSeries() throws {
        let directory = "/tmp/warden-proxy-metrics-\(getpid())"
        mkdir(directory, 0o755)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "hello\n".write(toFile: directory + "/hello.txt", atomically: false, encoding: .utf8)
        let here = FileLocation(file: "test", line: 1, column: 1)
        var site = Site(name: "shop", hosts: ["shop.example"], location: here)
        site.routes = [
            .init(prefix: "/static", target: .directory(directory)),
            .init(prefix: "/", target: .upstream(HTTPURL(scheme: "http", host: "127.0.0.1", port: 9, path: "/"), service: "app")),
        ]
        let availability = ServiceAvailability()
        availability.setMaintenance(["shop"])
        let shared = ProxyContext(
            settings: ProxySettings(), sites: SiteTable(sites: [site], availability: availability), pool: UpstreamPool(), availability: availability,
            scheme: "http", sendsFileRegions: false)
        let channel = EmbeddedChannel()
        let handler = ProxyHandler(shared: shared)
        try channel.pipeline.syncOperations.addHandler(RequestDecoder(deliveringTo: handler))
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 80)).wait()
        for request in [
            "GET /static/hello.txt HTTP/1.1\r\nHost: shop.example\r\n\r\n", "GET /static/missing HTTP/1.1\r\nHost: shop.example\r\n\r\n",
            "POST /cart HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 3\r\n\r\nabc",
        ] {
            try channel.writeInbound(ByteBuffer(string: request))
        }
        let snapshot = shared.metrics.local(on: channel.eventLoop).snapshot(listenerNames: [])
        _ = try channel.finish(acceptAlreadyClosed: true)
        let files = try #require(snapshot.series[ProxySeriesKey(site: "shop", route: "/static")])
        #expect(files.requests[ProxySeriesCounters.requestIndex(status: 200, method: 0)] == 1)
        #expect(files.requests[ProxySeriesCounters.requestIndex(status: 404, method: 0)] == 1)
        #expect(files.duration.count == 2)
        let app = try #require(snapshot.series[ProxySeriesKey(site: "shop", route: "/", service: "app")])
        #expect(app.requests[ProxySeriesCounters.requestIndex(status: 503, method: 2)] == 1)
        #expect(app.maintenanceAnswers == 1)
        #expect(app.responseBytes == ProxyPages.defaultMaintenance.count)
        #expect(snapshot.series.count == 2, "\(snapshot.series.keys)")
    }
}
