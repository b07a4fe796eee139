import Testing
@testable import WardenCore

@Suite("Proxy metrics: histogram, aggregation, worker reports")
struct ProxyMetricsTests {
    static let millisecond: Int64 = 1_000_000

    @Test func histogramBucketsResolveOneMillisecondToTenSeconds() {
        var histogram = LatencyHistogram()
        let microseconds: [Int64] = [500, 1000, 1200, 3000, 9000, 10_000, 10_500, 700_000, 10_000_000, 12_000_000]
        for value in microseconds { histogram.record(nanoseconds: value * 1000) }
        // Upper bounds are inclusive, as Prometheus's `le`; the last bucket is above 10 s.
        #expect(histogram.counts == [2, 1, 1, 2, 1, 0, 0, 0, 0, 1, 0, 0, 1, 1])
        #expect(histogram.count == 10)
        #expect(histogram.sumNanoseconds == microseconds.reduce(0, +) * 1000)
        #expect(LatencyHistogram.bounds.first == Self.millisecond && LatencyHistogram.bounds.last == 10_000 * Self.millisecond)
    }

    @Test func quantilesInterpolateWithinTheirBucketAsPrometheusDoes() throws {
        var histogram = LatencyHistogram()
        #expect(histogram.quantile(0.5) == nil, "no requests, no latency")
        // 100 requests: 50 in (0, 1 ms], 40 in (5, 10 ms], 10 in (250, 500 ms].
        for _ in 0..<50 { histogram.record(nanoseconds: Self.millisecond / 2) }
        for _ in 0..<40 { histogram.record(nanoseconds: 7 * Self.millisecond) }
        for _ in 0..<10 { histogram.record(nanoseconds: 300 * Self.millisecond) }
        #expect(try #require(histogram.quantile(0.5)) == 0.001, "the 50th of 50 in the first bucket: its upper bound")
        #expect(abs(try #require(histogram.quantile(0.7)) - 0.0075) < 1e-12, "20 of 40 into (5, 10]: half way")
        #expect(abs(try #require(histogram.quantile(0.99)) - 0.475) < 1e-12, "9 of 10 into (250, 500]")
        var slow = LatencyHistogram()
        slow.record(nanoseconds: 60_000 * Self.millisecond)
        #expect(slow.quantile(0.5) == 10, "above the last bound: the last bound, as histogram_quantile")
    }

    @Test func aDifferenceOfTwoReadingsIsWhatHappenedBetweenThem() {
        var before = LatencyHistogram()
        before.record(nanoseconds: Self.millisecond)
        var after = before
        after.record(nanoseconds: 2 * Self.millisecond)
        let difference = after.subtracting(before)
        #expect(difference.count == 1 && difference.counts[1] == 1 && difference.sumNanoseconds == 2 * Self.millisecond)
    }

    /// `requests`: (status, method index) of each.
    func counters(requests: [(Int, Int)] = [], tunnelsOpen: Int = 0, errors: Int = 0) -> ProxySeriesCounters {
        var counters = ProxySeriesCounters()
        for (status, method) in requests {
            counters.requests[ProxySeriesCounters.requestIndex(status: status, method: method)] += 1
            counters.duration.record(nanoseconds: Self.millisecond)
        }
        counters.tunnelsOpened = tunnelsOpen
        counters.tunnelsOpen = tunnelsOpen
        counters.upstreamErrors[ProxySeriesCounters.UpstreamError.refused.rawValue] = errors
        return counters
    }

    @Test func statusesFallInTheirClassAndOddOnesInTheNearest() {
        #expect(ProxySeriesCounters.requestIndex(status: 101, method: 0) == 0)
        #expect(ProxySeriesCounters.requestIndex(status: 204, method: 2) == 10 + 2)
        #expect(ProxySeriesCounters.requestIndex(status: 599, method: 9) == 40 + 9)
        #expect(ProxySeriesCounters.requestIndex(status: 700, method: 0) == 40)
        #expect(ProxySeriesCounters.requestIndex(status: 0, method: 0) == 0)
        #expect(ProxySeriesCounters.methods.last == "other")
    }

    @Test func eventLoopsAddUpPerSeriesAndListener() {
        let api = ProxySeriesKey(site: "shop", route: "/api", service: "app")
        let web = ProxySeriesKey(site: "shop", route: "/")
        var first = ProxyMetricsSnapshot()
        first.series[api] = counters(requests: [(200, 0), (500, 2)], tunnelsOpen: 1)
        first.listeners["127.0.0.1:80"] = ProxyListenerCounters()
        first.listeners["127.0.0.1:80"]!.connectionsOpen = 3
        first.idleUpstreamConnections["127.0.0.1:8080"] = 2
        var second = ProxyMetricsSnapshot()
        second.series[api] = counters(requests: [(200, 0)], tunnelsOpen: 2)
        second.series[web] = counters(requests: [(304, 1)])
        second.listeners["127.0.0.1:80"] = ProxyListenerCounters()
        second.listeners["127.0.0.1:80"]!.connectionsOpen = 4
        second.idleUpstreamConnections["127.0.0.1:8080"] = 5
        var total = ProxyMetricsSnapshot()
        total.merge(first)
        total.merge(second)
        #expect(total.series[api]!.requests[ProxySeriesCounters.requestIndex(status: 200, method: 0)] == 2)
        #expect(total.series[api]!.serverErrors == 1)
        #expect(total.series[api]!.requestCount == 3)
        #expect(total.series[api]!.duration.count == 3)
        #expect(total.series[api]!.tunnelsOpen == 3)
        #expect(total.series[web]!.requestCount == 1)
        #expect(total.listeners["127.0.0.1:80"]!.connectionsOpen == 7)
        #expect(total.idleUpstreamConnections["127.0.0.1:8080"] == 7)
    }

    @Test func aRestartedWorkerStartsFromZeroButTheTotalsNeverGoBack() throws {
        let key = ProxySeriesKey(site: "shop", route: "/")
        func snapshot(_ requests: Int, tunnelsOpen: Int, connections: Int) -> ProxyMetricsSnapshot {
            var snapshot = ProxyMetricsSnapshot()
            snapshot.series[key] = counters(requests: Array(repeating: (200, 0), count: requests), tunnelsOpen: tunnelsOpen)
            snapshot.listeners["l"] = ProxyListenerCounters()
            snapshot.listeners["l"]!.connectionsAccepted = connections
            snapshot.listeners["l"]!.connectionsOpen = connections
            return snapshot
        }
        var totals = ProxyMetricsTotals()
        #expect(totals.current == nil, "nothing reported yet")
        totals.record(snapshot(5, tunnelsOpen: 1, connections: 2), origin: 1)
        totals.record(snapshot(7, tunnelsOpen: 1, connections: 2), origin: 1)
        #expect(try #require(totals.current).series[key]!.requestCount == 7)
        // The worker is killed; its successor counts from zero.
        totals.record(snapshot(2, tunnelsOpen: 0, connections: 1), origin: 2)
        var current = try #require(totals.current)
        #expect(current.series[key]!.requestCount == 9, "7 carried over plus 2")
        #expect(current.series[key]!.duration.count == 9)
        #expect(current.series[key]!.tunnelsOpened == 1, "a counter, carried over")
        #expect(current.series[key]!.tunnelsOpen == 0, "the tunnels of the dead worker are gone")
        #expect(current.listeners["l"]!.connectionsAccepted == 3)
        #expect(current.listeners["l"]!.connectionsOpen == 1)
        // A late report of the dead worker is not counted again, nor taken for the running one's.
        totals.record(snapshot(8, tunnelsOpen: 1, connections: 2), origin: 1)
        totals.record(snapshot(3, tunnelsOpen: 0, connections: 1), origin: 2)
        current = try #require(totals.current)
        #expect(current.series[key]!.requestCount == 10)
    }

    @Test func aReportInPartsIsCountedOnceWhole() throws {
        var snapshot = ProxyMetricsSnapshot()
        for index in 0..<40 {
            snapshot.series[ProxySeriesKey(site: "site\(index)", route: "/", service: "app", instance: "app@\(8000 + index)")] = counters(
                requests: [(200, 0), (404, 1), (502, 2)], errors: index)
        }
        snapshot.listeners["127.0.0.1:443"] = ProxyListenerCounters()
        snapshot.idleUpstreamConnections["127.0.0.1:8000"] = 4
        let parts = ProxyMetricsReport.split(snapshot, origin: 9, sequence: 3)
        #expect(parts.count > 3, "40 series do not fit one pipe write")
        for part in parts {
            let line = try JSONCoding.encode(part)
            #expect(line.count < 4000, "each part is written to the pipe at once: \(line.count) bytes")
        }
        var totals = ProxyMetricsTotals()
        for part in parts.dropLast() {
            let whole = totals.receive(part)
            #expect(!whole, "not whole yet")
        }
        #expect(totals.current == nil)
        let whole = totals.receive(parts.last!)
        #expect(whole)
        #expect(totals.current == snapshot)
        // Parts of an interrupted report are dropped when the next report begins.
        var next = snapshot
        next.series[ProxySeriesKey(site: "site0", route: "/", service: "app", instance: "app@8000")]!.maintenanceAnswers = 1
        let newer = ProxyMetricsReport.split(next, origin: 9, sequence: 4)
        _ = totals.receive(newer[0])
        for part in ProxyMetricsReport.split(next, origin: 9, sequence: 5) { totals.receive(part) }
        #expect(totals.current == next)
    }
}
