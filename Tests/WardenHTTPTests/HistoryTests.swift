import Foundation
import Testing
import WardenConfig
import WardenCore
import WardenTestSupport
@testable import WardenHTTP

@Suite("History: the ring, the per-service history and its SVG charts")
struct HistoryTests {
    /// Wall-clock seconds from a manual clock that starts at a round hour.
    struct Time {
        let clock = ManualClock()
        let origin = 1_800_000_000.0
        var now: Double { origin + Double(clock.now.offset.components.seconds) }
        func advance(_ seconds: Int) { clock.advance(by: .seconds(seconds)) }
    }

    @Test func ringKeepsTheNewestInOrder() {
        var ring = Ring<Int>(capacity: 3)
        #expect(ring.elements.isEmpty && ring.last == nil)
        for value in 1...2 { ring.append(value) }
        #expect(ring.elements == [1, 2] && ring.last == 2)
        for value in 3...7 { ring.append(value) }
        #expect(ring.elements == [5, 6, 7], "the oldest are replaced")
        #expect(ring.last == 7)
        ring.removeAll()
        ring.append(8)
        #expect(ring.elements == [8])
    }

    @Test func anHourOfChecksThenOneAMinuteForADay() {
        let time = Time()
        var history = ServiceHistory(cycleSeconds: 10)
        // Two hours of checks every 10 s; CPU rises by one per check, memory is constant, latency unknown.
        for step in 0..<720 {
            history.record(time: time.now, cpu: Double(step), memory: 1000, check: nil)
            time.advance(10)
        }
        let now = time.now - 10
        let hour = history.points(.hour, now: now)
        #expect(hour.count == 360, "a point per cycle for an hour (360 at 10 s), the older ones gone")
        #expect(hour.first?.cpu == 360 && hour.last?.cpu == 719)
        #expect(hour.allSatisfy { $0.check == nil && $0.memory == 1000 && $0.cpuMax == nil })
        let day = history.points(.day, now: now)
        #expect(day.count == 120, "a point a minute, the minute being filled included")
        // The first minute: checks 0…5, mean 2.5, highest 5.
        #expect(day.first?.time == time.origin && day.first?.cpu == 2.5 && day.first?.cpuMax == 5)
        #expect(day.last?.cpu == 716.5 && day.last?.cpuMax == 719, "the last minute so far")
        #expect(day.first?.check == nil && day.first?.checkMax == nil)
    }

    /// Once it is over: while a check runs its snapshot still shows the previous check's figures.
    @Test func aCheckIsRecordedOnceHoweverOftenItIsRead() throws {
        var history = ServiceHistory(cycleSeconds: 1)
        try history.observe(snapshot(lastCheck: 100, checkSeconds: 0.25, cpuPercent: 3, memoryBytes: 2048))
        try history.observe(snapshot(lastCheck: 100, checkSeconds: 0.25, cpuPercent: 3, memoryBytes: 2048))
        try history.observe(snapshot(busy: true, lastCheck: 101, checkSeconds: 0.25, cpuPercent: 3, memoryBytes: 2048))
        try history.observe(snapshot(lastCheck: 101, checkSeconds: nil, cpuPercent: nil, memoryBytes: nil))
        try history.observe(snapshot(lastCheck: nil))
        #expect(
            history.points(.hour, now: 101) == [
                HistoryPoint(time: 100, cpu: 3, memory: 2048, check: 0.25), HistoryPoint(time: 101, cpu: nil, memory: nil, check: nil),
            ])
    }

    @Test func marksComeFromTheEventsAndStayInTheirWindow() {
        var history = ServiceHistory(cycleSeconds: 1)
        let events = [
            Event(date: 10, service: "app", kind: .nonexist, state: .failed, message: "", action: "restart"),
            Event(date: 20, service: "app", kind: .connection, state: .failed, message: "", action: "alert"),
            Event(date: 30, service: "app", kind: .action, state: .changed, message: "", action: "restart"),
            Event(date: 4000, service: "app", kind: .connection, state: .succeeded, message: "", action: "alert"),
        ]
        for event in events { history.mark(HistoryMark(event)) }
        #expect(history.marks(.day, now: 4000).map(\.kind) == [.crash, .failure, .user, .change])
        #expect(history.marks(.hour, now: 4000).map(\.kind) == [.change], "an hour back from 4000 s")
    }

    /// A young history is drawn across the whole plot (at least a minute of it), an old one over its range.
    @Test func theWindowBeginsWithTheHistory() {
        let time = Time()
        var history = ServiceHistory(cycleSeconds: 1)
        #expect(history.window(.hour, now: time.now) == (time.now - 60, time.now), "nothing yet: a minute")
        history.record(time: time.now, cpu: 1, memory: nil, check: nil)
        time.advance(600)
        #expect(history.window(.hour, now: time.now) == (time.origin, time.now), "since the first point")
        history.mark(HistoryMark(time: time.origin - 5, kind: .crash))
        #expect(history.window(.hour, now: time.now).start == time.origin - 5, "a mark before the first point")
        time.advance(7200)
        #expect(history.window(.hour, now: time.now) == (time.now - 3600, time.now))
        #expect(history.window(.day, now: time.now) == (time.origin - 5, time.now))
    }

    /// A deploy is an event of the service, whose instances have the charts; a service gone is forgotten.
    @Test func theStoreMarksInstancesAndForgetsServicesGone() throws {
        let store = HistoryStore(cycleSeconds: 1)
        store.observe([try snapshot(name: "myapp@8101", instanceOf: "myapp"), try snapshot(name: "db")])
        store.record(Event(date: 100, service: "myapp", kind: .action, state: .changed, message: "deploy started", action: "deploy"))
        store.record(Event(date: 100, service: "db", kind: .nonexist, state: .failed, message: "", action: "restart"))
        #expect(store.history(of: "myapp@8101")?.marks(.hour, now: 100).map(\.kind) == [.deploy])
        #expect(store.history(of: "db")?.marks(.hour, now: 100).map(\.kind) == [.crash])
        #expect(store.history(of: "db")?.points(.hour, now: 100).count == 1)
        store.observe([try snapshot(name: "db")])
        #expect(store.history(of: "myapp@8101") == nil)
    }

    @Test func aClockThatGoesBackStartsAnew() {
        var history = ServiceHistory(cycleSeconds: 1)
        history.record(time: 500, cpu: 1, memory: nil, check: nil)
        history.record(time: 400, cpu: 2, memory: nil, check: nil)
        #expect(history.points(.hour, now: 500).map(\.cpu) == [2])
    }

    /// The stated bound (README): what a service's rings take, reserved when it is first seen.
    @Test func memoryIsBoundedAsDocumented() {
        #expect(MemoryLayout<ServiceHistory.CheckPoint>.stride == 32)
        #expect(MemoryLayout<ServiceHistory.MinutePoint>.stride == 56)
        #expect(MemoryLayout<HistoryMark>.stride == 16)
        #expect(ServiceHistory.bytes(cycleSeconds: 1) == 199_936)
        #expect(ServiceHistory.bytes(cycleSeconds: 30) == 88_576)
        var history = ServiceHistory(cycleSeconds: 30)
        for step in 0..<10_000 { history.record(time: Double(step * 30), cpu: 1, memory: 1, check: 1) }
        #expect(history.points(.hour, now: 300_000).count == 120, "never more than the ring holds")
    }

    // MARK: - SVG

    /// The `points` of each polyline of a series, as numbers.
    func lines(_ svg: String, series: HistorySeries, kind: String = "value") -> [[[Double]]] {
        let pattern = #"<polyline class="\#(kind)" data-series="\#(series.rawValue)" points="([^"]*)""#
        return svg.matches(of: try! Regex(pattern)).map { match in
            String(match.output[1].substring ?? "").split(separator: " ").map { $0.split(separator: ",").map { Double($0)! } }
        }
    }

    @Test func valuesAreScaledToTheAxes() {
        let mebibyte = 1_048_576.0
        let points = [
            HistoryPoint(time: 1000, cpu: 50, memory: 0.3 * mebibyte, check: 0.004), HistoryPoint(time: 1600, cpu: 100, memory: 0.15 * mebibyte, check: 0.002),
        ]
        let svg = HistoryChart.svg(service: "app", points: points, marks: [], from: 1000, to: 1600, nominalSpacing: 600)
        // The plot spans x 70…708; CPU's panel y 22…102, axis up to 100 %, so 50 % is half way.
        #expect(lines(svg, series: .cpu) == [[[70, 62], [708, 22]]])
        // Memory's panel is y 132…212, up to 0.5 MiB (the round value above 0.3): 0.3 at 3/5, 0.15 at 3/10.
        #expect(lines(svg, series: .memory) == [[[70, 164], [708, 188]]])
        #expect(svg.contains(">512.0 kB</text>") && svg.contains(">5.0 ms</text>") && svg.contains(">100.0 %</text>"), "axis labels with units")
        #expect(HistoryChart.niceMaximum(0) == 1 && HistoryChart.niceMaximum(1) == 1 && HistoryChart.niceMaximum(1.2) == 2)
        #expect(HistoryChart.niceMaximum(7) == 10 && HistoryChart.niceMaximum(120) == 200)
        #expect(abs(HistoryChart.niceMaximum(0.0042) - 0.005) < 1e-12)
    }

    @Test func anEmptyHistorySaysSo() {
        let svg = HistoryChart.svg(service: "app", points: [], marks: [], from: 0, to: 3600, nominalSpacing: 1)
        #expect(!svg.contains("<polyline"))
        #expect(svg.components(separatedBy: "no data yet").count == 6, "in each of the three panels, the description and the caption")
        #expect(svg.contains("role=\"img\"") && svg.contains("<title id=\"history-title\">") && svg.contains("<desc id=\"history-desc\">"))
    }

    @Test func onePointIsADot() {
        let svg = HistoryChart.svg(
            service: "app", points: [HistoryPoint(time: 1800, cpu: 1, memory: nil, check: nil)], marks: [], from: 0, to: 3600, nominalSpacing: 1)
        #expect(lines(svg, series: .cpu).map(\.count) == [1])
        #expect(svg.contains("<circle"), "a lone point would draw nothing as a line")
        #expect(lines(svg, series: .memory).isEmpty, "no value, no line")
    }

    /// Checks stopped for a while (warden restarted, the service unmonitored): two lines, not one
    /// bridging the time nothing was measured.
    @Test func aGapBreaksTheLine() {
        let times: [Double] = [0, 10, 20, 30, 500, 510, 520]
        let points = times.map { HistoryPoint(time: $0, cpu: 5, memory: 10, check: 0.1) }
        let svg = HistoryChart.svg(service: "app", points: points, marks: [], from: 0, to: 600, nominalSpacing: 10)
        for series in HistorySeries.allCases {
            #expect(lines(svg, series: series).map(\.count) == [4, 3], "\(series)")
        }
        // A point without a value (the process was not running) breaks it too.
        var missing = points
        missing[1].cpu = nil
        #expect(lines(HistoryChart.svg(service: "app", points: missing, marks: [], from: 0, to: 600, nominalSpacing: 10), series: .cpu).map(\.count) == [1, 2, 3])
    }

    @Test func theDayDrawsMeansAndMaxima() {
        let points = [
            HistoryPoint(time: 0, cpu: 1, memory: 2, check: 0.1, cpuMax: 4, memoryMax: 2, checkMax: 0.2),
            HistoryPoint(time: 60, cpu: 2, memory: 2, check: 0.1, cpuMax: 5, memoryMax: 2, checkMax: 0.3),
        ]
        let svg = HistoryChart.svg(service: "app", points: points, marks: [], from: 0, to: 86400, nominalSpacing: 60)
        #expect(lines(svg, series: .cpu).count == 1 && lines(svg, series: .cpu, kind: "max").count == 1)
        #expect(svg.contains(">5.0 %</text>"), "the axis reaches the highest maximum")
    }

    @Test func marksAndNamesAreDrawnEscaped() {
        let marks = [HistoryMark(time: 300, kind: .crash), HistoryMark(time: 5000, kind: .user)]
        let svg = HistoryChart.svg(service: "<b>\"x\"</b>", points: [], marks: marks, from: 0, to: 600, nominalSpacing: 10)
        #expect(svg.components(separatedBy: "class=\"mark\"").count == 2, "only the mark inside the window")
        #expect(svg.contains("data-kind=\"restart (crash)\" x1=\"\(HistoryChart.coordinate(HistoryChart.left + HistoryChart.plotWidth / 2))\""))
        #expect(!svg.contains("<b>") && svg.contains("&lt;b&gt;&quot;x&quot;&lt;/b&gt;"))
        #expect(svg.contains("1 restart, 0 other events"))
    }
}
