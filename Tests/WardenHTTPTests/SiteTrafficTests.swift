import Foundation
import Testing
import WardenConfig
import WardenCore
import WardenTestSupport
@testable import WardenHTTP

/// The sites' figures: the last minute's rates and percentiles from two readings of the proxy's
/// totals, each site's history rings, and the SVG charts drawn from them.
@Suite("Sites: the last minute's traffic, the history rings and the site charts")
struct SiteTrafficTests {
    static let millisecond: Int64 = 1_000_000
    /// Wall-clock seconds at the manual clock's zero.
    static let origin = 1_800_000_000.0

    /// Adds requests of one status and duration to a site's series.
    func add(_ count: Int, status: Int, milliseconds: Double, to counters: inout ProxySeriesCounters) {
        for _ in 0..<count {
            counters.requests[ProxySeriesCounters.requestIndex(status: status, method: 0)] += 1
            counters.duration.record(nanoseconds: Int64(milliseconds * Double(Self.millisecond)))
        }
    }

    func snapshot(_ sites: [String: ProxySeriesCounters]) -> ProxyMetricsSnapshot {
        var snapshot = ProxyMetricsSnapshot()
        for (site, counters) in sites { snapshot.series[ProxySeriesKey(site: site, route: "/", service: "app")] = counters }
        return snapshot
    }

    /// Reads the board at the manual clock's time, as the metrics feed does every second.
    func record(_ board: ProxyMetricsBoard, _ snapshot: ProxyMetricsSnapshot, _ clock: ManualClock) {
        let seconds = Double(clock.now.offset.components.seconds)
        board.record(snapshot, monotonic: seconds, wall: Self.origin + seconds)
    }

    @Test func ratesAndPercentilesComeFromTwoReadingsAMinuteApart() throws {
        let clock = ManualClock()
        let board = ProxyMetricsBoard(source: nil)
        // Before the minute: 100 slow requests (800 ms), which must not count in it.
        var web = ProxySeriesCounters()
        add(100, status: 200, milliseconds: 800, to: &web)
        record(board, snapshot(["web": web]), clock)
        let first = try #require(board.siteTraffic().first)
        #expect(first.requestsPerSecond == 0 && first.windowSeconds == 0, "one reading: no rate yet")
        // Within it: 500 answers in 3 ms, 10 failures (502) in 400 ms.
        clock.advance(by: .seconds(60))
        add(500, status: 200, milliseconds: 3, to: &web)
        add(10, status: 502, milliseconds: 400, to: &web)
        record(board, snapshot(["web": web]), clock)
        let traffic = try #require(board.siteTraffic().first)
        #expect(traffic.site == "web" && traffic.windowSeconds == 60)
        #expect(traffic.requestsPerSecond == 510.0 / 60, "\(traffic)")
        #expect(traffic.errorsPerSecond == 10.0 / 60)
        #expect(traffic.errorRatio == 10.0 / 510)
        // p50: rank 255 of the 500 in (2.5 ms, 5 ms]; p99: rank 504.9, 4.9 into the 10 in (250 ms, 500 ms].
        let (p50, p99) = (try #require(traffic.p50), try #require(traffic.p99))
        let expected: (p50: Double, p99: Double) = (0.0025 + 0.0025 * 255 / 500, 0.25 + 0.25 * 4.9 / 10)
        #expect(abs(p50 - expected.p50) < 1e-12, "\(traffic)")
        #expect(abs(p99 - expected.p99) < 1e-12, "\(traffic)")
        let cells = TrafficFormat.cells(traffic)
        #expect([cells.rate, cells.errors, cells.p50, cells.p99] == ["8.5", "2.0%", "3.8 ms", "372.5 ms"])
        #expect(TrafficFormat.window([traffic]) == "over the last minute")
        // A minute on, nothing more: the reading at 0 s is out of the window, the one at 60 s begins it.
        clock.advance(by: .seconds(61))
        record(board, snapshot(["web": web]), clock)
        let quiet = try #require(board.siteTraffic().first)
        #expect(quiet.requestsPerSecond == 0 && quiet.p50 == nil && quiet.windowSeconds == 61, "\(quiet)")
        let quietCells = TrafficFormat.cells(quiet)
        #expect([quietCells.rate, quietCells.errors, quietCells.p50, quietCells.p99] == ["0.0", "-", "-", "-"], "no share or percentile without requests")
        var young = quiet
        young.windowSeconds = 30
        #expect(TrafficFormat.window([young]) == "over the last 30 s", "while warden is younger than the window")
    }

    /// A reading every second for two hours: a point per 10 s for the last hour, one per minute for
    /// the day, never more than the rings hold, each the traffic of its own span.
    @Test func theRingsKeepAnHourOfTenSecondPointsAndADayOfMinutes() throws {
        let clock = ManualClock()
        let board = ProxyMetricsBoard(source: nil)
        var web = ProxySeriesCounters()
        for second in 0...7200 {
            if second > 0 {
                // 9 answers in 3 ms and one 503 in 40 ms every second; from the second hour on, 20 more a second.
                add(second > 3600 ? 29 : 9, status: 200, milliseconds: 3, to: &web)
                add(1, status: 503, milliseconds: 40, to: &web)
            }
            record(board, snapshot(["web": web]), clock)
            clock.advance(by: .seconds(1))
        }
        let now = Self.origin + 7200
        let history = try #require(board.history(of: "web"))
        let hour = history.points(.hour, now: now)
        #expect(hour.count == 360, "an hour of 10 s points")
        #expect(hour.first?.time == now - 3590 && hour.last?.time == now)
        #expect(hour.allSatisfy { $0.requestsPerSecond == 30 && $0.errorsPerSecond == 1 }, "\(hour.prefix(3))")
        // p50: rank 150 of 300 in 10 s, 290 of them in (2.5 ms, 5 ms]; p99: rank 297, 7 into the 10 in (25 ms, 50 ms].
        let last = try #require(hour.last)
        let expected: (p50: Double, p99: Double) = (0.0025 + 0.0025 * 150 / 290, 0.025 + 0.025 * 7 / 10)
        #expect(abs((last.p50 ?? 0) - expected.p50) < 1e-12 && abs((last.p99 ?? 0) - expected.p99) < 1e-12, "\(last)")
        let day = history.points(.day, now: now)
        #expect(day.count == 120 && day.first?.time == Self.origin + 60, "a point per minute since the first reading")
        #expect(day.first?.requestsPerSecond == 10 && day.last?.requestsPerSecond == 30)
        #expect(history.window(.hour, now: now) == (now - 3600, now))
        #expect(history.window(.day, now: now) == (Self.origin, now), "a young day's chart begins with its first reading")

        // The memory stated in SiteHistory's comment and docs/dashboard.md, reserved at once.
        #expect(MemoryLayout<SiteHistory.StoredPoint>.stride == 40)
        #expect(SiteHistory.bytes == 73_024)
    }

    @Test func totalsThatBeginAgainStartANewSpanAndMaintenanceMarksTheChart() {
        var history = SiteHistory()
        var totals = SiteTrafficWindow.Totals()
        totals.requests = 1000
        history.record(totals, at: 100)
        totals.requests = 5
        history.record(totals, at: 110)
        #expect(history.points(.hour, now: 200).isEmpty, "no negative rate, no point across the reset")
        totals.requests = 105
        history.record(totals, at: 120)
        #expect(history.points(.hour, now: 200).map(\.requestsPerSecond) == [10])
        history.mark(HistoryMark(Event(date: 130, service: "web", kind: .action, state: .changed, message: "maintenance on", action: "maintenance")))
        history.mark(HistoryMark(Event(date: 140, service: "web", kind: .action, state: .changed, message: "maintenance off", action: "maintenance")))
        #expect(history.marks(.hour, now: 200).map(\.kind) == [.maintenanceOn, .maintenanceOff])
    }

    /// The polylines of one series: each point as (x, y).
    func lines(_ svg: String, series: String) -> [[(x: Double, y: Double)]] {
        let pattern = try! Regex(#"<polyline class="value" data-series="\#(series)" points="([^"]*)""#)
        return svg.matches(of: pattern).map { match in
            String(match.output[1].substring ?? "").split(separator: " ").map {
                let numbers = $0.split(separator: ",").map { Double($0)! }
                return (numbers[0], numbers[1])
            }
        }
    }

    /// Each recorded point is drawn at its time across the plot (x 70…708 over the window) and at its
    /// value on its panel's axis (80 px tall from y 22, panels 110 px apart).
    @Test func theSiteChartDrawsTheRecordedPoints() throws {
        var history = SiteHistory()
        var totals = SiteTrafficWindow.Totals()
        var counters = ProxySeriesCounters()
        let rates = [3, 7, 12, 5]
        history.record(totals, at: Self.origin)
        for (index, rate) in rates.enumerated() {
            add(rate * 10, status: 200, milliseconds: 3, to: &counters)
            add(index, status: 500, milliseconds: 120, to: &counters)
            totals = SiteTrafficWindow.totals(snapshot(["web": counters]))["web"]!
            history.record(totals, at: Self.origin + Double(index + 1) * 10)
        }
        let now = Self.origin + 60
        let points = history.points(.hour, now: now)
        #expect(points.map(\.requestsPerSecond) == [3, 7.1, 12.2, 5.3])
        let window = history.window(.hour, now: now)
        #expect(window == (Self.origin, now))
        let svg = HistoryChart.siteSVG(site: "web", points: points, marks: [], from: window.start, to: window.end, nominalSpacing: 10)
        let series: [(panel: Int, name: String, value: (SitePoint) -> Double?)] = [
            (0, "requests", { $0.requestsPerSecond }), (1, "errors", { $0.errorsPerSecond }), (2, "p50", { $0.p50 }), (2, "p99", { $0.p99 }),
        ]
        for (panel, name, value) in series {
            let panelName = panel == 2 ? "latency" : name
            let scale = try #require(
                svg.firstMatch(of: try Regex(#"data-series="\#(panelName)" data-scale="([0-9.e+-]+)""#)).flatMap { Double(String($0.output[1].substring ?? "")) })
            let drawn = lines(svg, series: name).flatMap { $0 }
            let recorded = points.compactMap { point in value(point).map { (time: point.time, value: $0) } }
            #expect(drawn.count == recorded.count && !drawn.isEmpty, "\(name): \(drawn.count) drawn, \(recorded.count) recorded")
            let bottom = 22 + 80 + Double(panel) * 110
            for (point, expected) in zip(drawn, recorded) {
                #expect(abs(point.x - (70 + (expected.time - window.start) / (window.end - window.start) * 638)) < 0.06, "\(name) x: \(point)")
                #expect(abs(point.y - (bottom - expected.value / scale * 80)) < 0.06, "\(name) y: \(point) for \(expected.value) of \(scale)")
            }
        }
        #expect(lines(svg, series: "errors").first?.count == 4, "no 5xx in the first span: 0 per second is drawn too, at the bottom")
        #expect(svg.contains(">20.0/s</text>"), "the requests' axis is round above 12.2 per second")
        #expect(svg.contains("; 0 maintenance changes."))
    }

    @Test func theFrontPageAndTheSitePageShowTheTraffic() {
        let traffic = SiteTraffic(site: "web", requestsPerSecond: 8.5, errorsPerSecond: 0.2, errorRatio: 0.025, p50: 0.0038, p99: 0.3725, windowSeconds: 60)
        let status = SiteStatus(name: "web", hosts: ["app.local"], maintenance: false, events: [], services: ["app"], traffic: traffic)
        let row = Pages.SiteRow(status: status, routes: [])
        let front = Pages.siteTable([row], snapshots: [], csrfToken: "t0k", readOnly: false)
        #expect(front.contains("<a href=\"/_site/web\">web</a>"))
        #expect(front.contains(">8.5</td>") && front.contains(">2.5%</td>") && front.contains(">3.8 ms</td>") && front.contains(">372.5 ms</td>"), "\(front)")
        #expect(front.contains("over the last minute"))
        let page = Pages.site(row, snapshots: [], csrfToken: "t0k", readOnly: false, chart: nil, now: Self.origin)
        #expect(page.contains("<span id=\"maintenance\">") && page.contains("name=\"back\" value=\"site\"") && page.contains("value=\"t0k\""))
        let guest = Pages.site(row, snapshots: [], csrfToken: "t0k", readOnly: true, chart: nil, now: Self.origin)
        #expect(!guest.contains("<form"), "no switch for a read-only user")
    }
}
