import WardenCore

/// One point of a site's charts: its traffic over a span (about 10 s on the hour's chart, a minute on
/// the day's), stamped at the span's end.
public struct SitePoint: Sendable, Hashable, Codable {
    public var time: Double
    public var requestsPerSecond: Double
    /// 5xx answers per second.
    public var errorsPerSecond: Double
    /// Seconds, from the span's part of the proxy's duration histogram; nil without requests.
    public var p50: Double?
    public var p99: Double?
}

/// One site's recent traffic, in memory: a point per 10 s for the last hour and a point per minute for
/// the last day, each the difference between two readings of the proxy's totals (so a minute's p99
/// is the minute's, not a mean of quantiles), and the marks of its maintenance. Pure: the caller gives
/// every time (wall-clock seconds).
///
/// Memory is fixed when it is made (`bytes`): 40 bytes per point, 16 per mark, 1800 points and
/// 64 marks, about 73 kB per site.
public struct SiteHistory: Sendable {
    /// NaN when unknown: an optional would take 16 bytes instead of 8.
    struct StoredPoint {
        var time, requests, errors, p50, p99: Double
    }

    /// A reading of the totals that begins a span.
    struct Base {
        var time: Double
        var totals: SiteTrafficWindow.Totals
    }

    static let hourSpan = 10.0
    static let daySpan = 60.0
    static let hourPointsKept = 360
    static let dayPointsKept = 1440
    static let marksKept = 64

    /// The bytes a site's history takes at most, whatever happens: its rings are reserved at once.
    public static var bytes: Int {
        (hourPointsKept + dayPointsKept) * MemoryLayout<StoredPoint>.stride + marksKept * MemoryLayout<HistoryMark>.stride
    }

    private var hour = Ring<StoredPoint>(capacity: hourPointsKept)
    private var day = Ring<StoredPoint>(capacity: dayPointsKept)
    private var marks = Ring<HistoryMark>(capacity: marksKept)
    private var hourBase: Base?
    private var dayBase: Base?

    public init() {}

    /// Takes a reading of the site's totals (cumulative, as the proxy counts them): a point for each
    /// span it completes.
    mutating func record(_ totals: SiteTrafficWindow.Totals, at time: Double) {
        if let base = hourBase ?? dayBase, time < base.time {
            // The wall clock went back: older points would be drawn after newer ones.
            hour.removeAll()
            day.removeAll()
            marks.removeAll()
            (hourBase, dayBase) = (nil, nil)
        }
        Self.advance(&hour, base: &hourBase, span: Self.hourSpan, totals, at: time)
        Self.advance(&day, base: &dayBase, span: Self.daySpan, totals, at: time)
    }

    private static func advance(_ ring: inout Ring<StoredPoint>, base: inout Base?, span: Double, _ totals: SiteTrafficWindow.Totals, at time: Double) {
        guard let start = base, totals.requests >= start.totals.requests else {
            // The first reading, or totals that began again: a span starts here.
            base = Base(time: time, totals: totals)
            return
        }
        let elapsed = time - start.time
        guard elapsed >= span else { return }
        let latency = totals.duration.subtracting(start.totals.duration)
        ring.append(
            StoredPoint(
                time: time, requests: Double(totals.requests - start.totals.requests) / elapsed,
                errors: Double(max(0, totals.serverErrors - start.totals.serverErrors)) / elapsed, p50: latency.quantile(0.5) ?? .nan,
                p99: latency.quantile(0.99) ?? .nan))
        base = Base(time: time, totals: totals)
    }

    mutating func mark(_ mark: HistoryMark) { marks.append(mark) }

    /// The points of `range` up to `now`, oldest first.
    public func points(_ range: HistoryRange, now: Double) -> [SitePoint] {
        let start = now - range.seconds
        func known(_ value: Double) -> Double? { value.isNaN ? nil : value }
        return (range == .hour ? hour : day).elements.filter { $0.time >= start && $0.time <= now }.map {
            SitePoint(time: $0.time, requestsPerSecond: $0.requests, errorsPerSecond: $0.errors, p50: known($0.p50), p99: known($0.p99))
        }
    }

    public func marks(_ range: HistoryRange, now: Double) -> [HistoryMark] {
        marks.elements.filter { $0.time >= now - range.seconds && $0.time <= now }
    }

    /// As a service's (`ServiceHistory.window`): the whole range, or since the history began (at least a minute).
    public func window(_ range: HistoryRange, now: Double) -> (start: Double, end: Double) {
        let (ring, span, base) = range == .hour ? (hour, Self.hourSpan, hourBase) : (day, Self.daySpan, dayBase)
        // A point stands for the span before it: the chart begins where the first one's span did.
        let first = ring.elements.first.map { $0.time - span } ?? base?.time
        let earliest = [first, marks.elements.first?.time].compactMap { $0 }.min() ?? now
        return (max(now - range.seconds, min(earliest, now - 60)), now)
    }
}

/// `GET /_history?site=NAME&range=hour|day`: what a site's charts draw.
public struct SiteHistoryDocument: Sendable, Codable {
    public var site: String
    public var range: String
    public var start: Double
    public var end: Double
    public var points: [SitePoint]
    public var marks: [HistoryMark]
}

extension HistoryChart {
    static func latencyLabel(_ value: Double) -> String { Pages.format(value * 1000) + " ms" }

    /// A site's charts: requests, 5xx answers and p50/p99 latency per second, over one time axis,
    /// its maintenance as marks.
    static func siteSVG(site: String, points: [SitePoint], marks: [HistoryMark], from start: Double, to end: Double, nominalSpacing: Double) -> String {
        let perSecond = { (value: Double) in Pages.format(value) + "/s" }
        let panels = [
            Panel(
                series: "requests", title: "Requests (per second)",
                lines: [Line(series: "requests", title: "Requests (per second)", values: points.map { ($0.time, $0.requestsPerSecond) })],
                axisMaximum: niceMaximum, label: perSecond),
            Panel(
                series: "errors", title: "Errors (5xx answers per second)",
                lines: [
                    Line(
                        series: "errors", title: "Errors (5xx answers per second)", stroke: "#c5221f", values: points.map { ($0.time, $0.errorsPerSecond) })
                ], axisMaximum: niceMaximum, label: perSecond),
            Panel(
                series: "latency", title: "Latency: p50, p99 (dashed)",
                lines: [
                    Line(series: "p50", title: "p50 latency", values: points.map { ($0.time, $0.p50) }),
                    Line(series: "p99", title: "p99 latency", stroke: "#e66100", dash: "5 3", values: points.map { ($0.time, $0.p99) }),
                ], axisMaximum: niceMaximum, label: latencyLabel),
        ]
        return svg(
            title: "Requests, errors and latency of site '\(site)'", panels: panels, times: points.map(\.time), marks: marks, from: start, to: end,
            nominalSpacing: nominalSpacing, id: "site-history"
        ) { marks in
            "; \(marks.count) maintenance change\(marks.count == 1 ? "" : "s")."
        }
    }
}
