import Testing
import WardenCore
@testable import WardenHTTP

@Suite("Proxy metrics: exposition and site traffic")
struct ProxyExpositionTests {
    static let millisecond: Int64 = 1_000_000

    func counters(_ statuses: [Int], milliseconds: Int64 = 3) -> ProxySeriesCounters {
        var counters = ProxySeriesCounters()
        for status in statuses {
            counters.requests[ProxySeriesCounters.requestIndex(status: status, method: 0)] += 1
            counters.duration.record(nanoseconds: milliseconds * Self.millisecond)
        }
        return counters
    }

    @Test func rendersEveryFamilyWithHelpTypeAndOnlyLabelsThatHaveValues() {
        var snapshot = ProxyMetricsSnapshot()
        var api = counters([200, 200, 503])
        api.requests[ProxySeriesCounters.requestIndex(status: 201, method: 9)] += 1
        api.upstreamErrors[ProxySeriesCounters.UpstreamError.refused.rawValue] = 2
        api.held.record(nanoseconds: 2_100 * Self.millisecond)
        api.maintenanceAnswers = 1
        api.requestBytes = 10
        api.responseBytes = 2000
        api.reusedConnections = 2
        api.tunnelsOpened = 3
        api.tunnelsOpen = 1
        snapshot.series[ProxySeriesKey(site: "shop", route: "/api", service: "app", instance: "app@8081")] = api
        snapshot.series[ProxySeriesKey(site: "shop \"eu\"", route: "/static")] = counters([304])
        snapshot.listeners["127.0.0.1:443"] = ProxyListenerCounters()
        snapshot.listeners["127.0.0.1:443"]!.connectionsAccepted = 5
        snapshot.listeners["127.0.0.1:443"]!.connectionsOpen = 2
        snapshot.listeners["127.0.0.1:443"]!.tlsHandshakes = 4
        snapshot.listeners["127.0.0.1:443"]!.tlsHandshakeFailures = 1
        snapshot.listeners["127.0.0.1:80"] = ProxyListenerCounters()
        snapshot.idleUpstreamConnections["127.0.0.1:8081"] = 3
        let text = ProxyExposition.render(snapshot)
        let lines = Set(text.split(separator: "\n").map(String.init))
        let api_ = #"site="shop",route="/api",service="app",service_instance="app@8081""#
        for line in [
            #"warden_proxy_requests_total{\#(api_),code_class="2xx",method="GET"} 2"#,
            #"warden_proxy_requests_total{\#(api_),code_class="2xx",method="other"} 1"#,
            #"warden_proxy_requests_total{\#(api_),code_class="5xx",method="GET"} 1"#,
            #"warden_proxy_requests_total{site="shop \"eu\"",route="/static",code_class="3xx",method="GET"} 1"#,
            #"warden_proxy_request_duration_seconds_bucket{\#(api_),le="0.0025"} 0"#,
            #"warden_proxy_request_duration_seconds_bucket{\#(api_),le="0.005"} 3"#,
            #"warden_proxy_request_duration_seconds_bucket{\#(api_),le="+Inf"} 3"#,
            #"warden_proxy_request_duration_seconds_sum{\#(api_)} 0.009"#,
            #"warden_proxy_request_duration_seconds_count{\#(api_)} 3"#,
            #"warden_proxy_upstream_errors_total{\#(api_),kind="refused"} 2"#,
            #"warden_proxy_hold_duration_seconds_bucket{\#(api_),le="2.5"} 1"#,
            #"warden_proxy_hold_duration_seconds_bucket{\#(api_),le="1"} 0"#,
            #"warden_proxy_hold_duration_seconds_sum{\#(api_)} 2.1"#,
            #"warden_proxy_hold_duration_seconds_count{\#(api_)} 1"#,
            #"warden_proxy_maintenance_responses_total{\#(api_)} 1"#,
            #"warden_proxy_request_bytes_total{\#(api_)} 10"#,
            #"warden_proxy_response_bytes_total{\#(api_)} 2000"#,
            #"warden_proxy_upstream_reused_connections_total{\#(api_)} 2"#,
            #"warden_proxy_websocket_tunnels_total{\#(api_)} 3"#,
            #"warden_proxy_websocket_tunnels_open{\#(api_)} 1"#,
            #"warden_proxy_connections_open{listener="127.0.0.1:443"} 2"#,
            #"warden_proxy_connections_total{listener="127.0.0.1:443"} 5"#,
            #"warden_proxy_connections_total{listener="127.0.0.1:80"} 0"#,
            #"warden_proxy_tls_handshakes_total{listener="127.0.0.1:443"} 4"#,
            #"warden_proxy_tls_handshake_failures_total{listener="127.0.0.1:443"} 1"#,
            #"warden_proxy_upstream_idle_connections{upstream="127.0.0.1:8081"} 3"#,
            "# TYPE warden_proxy_request_duration_seconds histogram",
            "# TYPE warden_proxy_requests_total counter",
            "# TYPE warden_proxy_connections_open gauge",
        ] {
            #expect(lines.contains(line), "\(line)\n\(text)")
        }
        #expect(!text.contains(#"warden_proxy_tls_handshakes_total{listener="127.0.0.1:80"}"#), "a plain listener has no handshakes")
        #expect(!text.contains("kind=\"timeout\""), "only errors that happened")
        let families = text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
            String(line.prefix { $0 != "{" && $0 != " " }).replacing(/_(bucket|sum|count)$/, with: "")
        }
        let typed = Set(text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { String($0.split(separator: " ")[2]) })
        let helped = Set(text.split(separator: "\n").filter { $0.hasPrefix("# HELP ") }.map { String($0.split(separator: " ")[2]) })
        #expect(Set(families).isSubset(of: typed.intersection(helped)), "every family has a type and a help text")
        #expect(typed.allSatisfy { $0.hasPrefix("warden_proxy_") })
    }

    @Test func nothingWithoutAProxy() {
        #expect(ProxyExposition.render(ProxyMetricsSnapshot()) == "")
        #expect(ProxyMetricsBoard(source: nil).exposition() == "")
    }

    @Test func secondsAreWrittenExactly() {
        #expect(ProxyExposition.seconds(1_000_000) == "0.001")
        #expect(ProxyExposition.seconds(2_500_000) == "0.0025")
        #expect(ProxyExposition.seconds(10_000_000_000) == "10")
        #expect(ProxyExposition.seconds(2_100_000_000) == "2.1")
        #expect(ProxyExposition.seconds(0) == "0")
    }

    func snapshot(_ sites: [String: ProxySeriesCounters]) -> ProxyMetricsSnapshot {
        var snapshot = ProxyMetricsSnapshot()
        for (site, counters) in sites { snapshot.series[ProxySeriesKey(site: site, route: "/")] = counters }
        return snapshot
    }

    @Test func siteTrafficIsTheLastMinutesRatesAndQuantiles() throws {
        var window = SiteTrafficWindow()
        #expect(window.summary().isEmpty)
        // At 0 s: 100 requests already counted (before the minute).
        window.record(SiteTrafficWindow.totals(snapshot(["shop": counters(Array(repeating: 200, count: 100), milliseconds: 400)])), at: 0)
        let first = try #require(window.summary().first)
        #expect(first.requestsPerSecond == 0 && first.errorRatio == 0 && first.p50 == 0.375, "one reading: no rate yet: \(first)")
        // From 5 s to 65 s: 120 more, 36 of them 5xx, all fast (3 ms); a new site's one request.
        var shop = counters(Array(repeating: 200, count: 100), milliseconds: 400)
        window.record(SiteTrafficWindow.totals(snapshot(["shop": shop])), at: 5)
        for second in stride(from: 10, through: 65, by: 5) {
            shop.add(counters(Array(repeating: 200, count: 7) + Array(repeating: 502, count: 3), milliseconds: 3), gauges: true)
            window.record(SiteTrafficWindow.totals(snapshot(["shop": shop, "blog": counters([200])])), at: Double(second))
        }
        let summary = window.summary()
        #expect(summary.map(\.site) == ["blog", "shop"])
        let traffic = try #require(summary.last)
        #expect(traffic.requestsPerSecond == 120.0 / 60, "the reading at 5 s begins the minute: \(traffic)")
        #expect(traffic.errorsPerSecond == 36.0 / 60)
        #expect(traffic.errorRatio == 36.0 / 120)
        #expect(abs(try #require(traffic.p50) - 0.00375) < 1e-12, "the slow requests before the minute are not in it: \(traffic)")
        #expect(abs(try #require(traffic.p99) - 0.004975) < 1e-12)
        let blog = try #require(summary.first)
        #expect(blog.requestsPerSecond == 1.0 / 60 && blog.errorRatio == 0, "its request came within the minute: \(blog)")
        #expect(abs(try #require(blog.p50) - 0.00375) < 1e-12)
        #expect(window.readings.count <= 13, "a minute's readings")
    }
}
