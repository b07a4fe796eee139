import WardenPlatform

/// Small charts over one time axis, with events as vertical marks across them: a service's history
/// (CPU, memory, check latency) and a site's (requests, errors, latency). Inline SVG built on the
/// server: it shows without JavaScript and in a screenshot; the page's refresh keeps it live.
enum HistoryChart {
    static let width = 720.0
    static let left = 70.0
    static let right = 12.0
    static let top = 22.0
    static let panelHeight = 80.0
    /// Between panels: room for the next panel's title.
    static let panelGap = 30.0
    static let axisHeight = 34.0
    static var plotWidth: Double { width - left - right }
    static func totalHeight(panels: Int) -> Double { top + Double(panels) * (panelHeight + panelGap) - panelGap + axisHeight }

    /// One line of a panel: `value` lines are the figures, `max` lines the day's maxima drawn fainter.
    struct Line {
        /// `data-series` of its polylines.
        var series: String
        /// Its name in the chart's summary.
        var title: String
        var kind = "value"
        var stroke = "#1a5fb4"
        /// `stroke-dasharray`, for a line told apart by more than its colour.
        var dash: String? = nil
        var values: [(time: Double, value: Double?)]
    }

    /// One chart of the stack: its title, its lines and how its axis is labelled.
    struct Panel {
        /// `data-series` of its group.
        var series: String
        var title: String
        var lines: [Line]
        /// The top of the axis for the highest value drawn.
        var axisMaximum: (Double) -> Double
        var label: (Double) -> String

        var highest: Double? { lines.flatMap { $0.values.compactMap(\.value) }.filter(\.isFinite).max() }
    }

    static func title(_ series: HistorySeries) -> String {
        switch series {
        case .cpu: "CPU (% of one core)"
        case .memory: "Memory (resident)"
        case .check: "Check latency (ms)"
        }
    }

    /// The top of a series' axis: a round number in its unit (memory in MiB, as it is labelled).
    static func axisMaximum(_ value: Double, _ series: HistorySeries) -> Double {
        series == .memory ? niceMaximum(value / 1_048_576) * 1_048_576 : niceMaximum(value)
    }

    /// A value as its axis labels it.
    static func label(_ value: Double, _ series: HistorySeries) -> String {
        switch series {
        case .cpu: Pages.format(value) + " %"
        case .memory: Pages.bytes(UInt64(max(0, value)))
        case .check: Pages.format(value * 1000) + " ms"
        }
    }

    /// The top of an axis: the smallest 1, 2 or 5 times a power of ten at or above `value`.
    static func niceMaximum(_ value: Double) -> Double {
        guard value.isFinite, value > 0 else { return 1 }
        var step = 1.0
        while step * 10 <= value { step *= 10 }
        while step > value { step /= 10 }
        return [1.0, 2, 5, 10].map { $0 * step }.first { $0 >= value } ?? 10 * step
    }

    /// Two points further apart than this are not joined: warden or the service was not checked
    /// in between (warden restarted, the service unmonitored). Three times the usual spacing (the
    /// median, at least the nominal one: `every N cycles` spaces a service's checks wider).
    static func gapLimit(_ times: [Double], nominal: Double) -> Double {
        let spacings = zip(times.dropFirst(), times).map { $0 - $1 }.sorted()
        let median = spacings.isEmpty ? nominal : spacings[spacings.count / 2]
        return 3 * max(nominal, median)
    }

    /// The runs of consecutive known values, each drawn as one line.
    static func segments(_ values: [(time: Double, value: Double?)], gapLimit: Double) -> [[(time: Double, value: Double)]] {
        var segments: [[(time: Double, value: Double)]] = []
        var run: [(time: Double, value: Double)] = []
        for point in values {
            guard let known = point.value, known.isFinite else {
                if !run.isEmpty { segments.append(run) }
                run = []
                continue
            }
            if let previous = run.last, point.time - previous.time > gapLimit {
                segments.append(run)
                run = []
            }
            run.append((point.time, known))
        }
        if !run.isEmpty { segments.append(run) }
        return segments
    }

    static func coordinate(_ value: Double) -> String { Pages.format(value) }

    /// An SVG `<text>` at (x, y), its content escaped.
    static func text(_ content: String, x: Double, y: Double, _ attributes: String) -> String {
        "<text x=\"\(coordinate(x))\" y=\"\(coordinate(y))\" \(attributes)>\(Pages.escape(content))</text>"
    }

    /// A service's charts: CPU, memory and check latency. `id` makes the element ids unique on the page.
    static func svg(
        service: String, points: [HistoryPoint], marks: [HistoryMark], from start: Double, to end: Double, nominalSpacing: Double,
        id: String = "history"
    ) -> String {
        let panels = HistorySeries.allCases.map { series in
            Panel(
                series: series.rawValue, title: title(series),
                lines: [
                    // The day's maxima, fainter, under its means.
                    Line(
                        series: series.rawValue, title: title(series), kind: "max", stroke: "#9ab6e0", dash: "3 2",
                        values: points.map { ($0.time, $0.maximum(series)) }),
                    Line(series: series.rawValue, title: title(series), values: points.map { ($0.time, $0.value(series)) }),
                ], axisMaximum: { axisMaximum($0, series) }, label: { label($0, series) })
        }
        return svg(
            title: "CPU, memory and check latency of '\(service)'", panels: panels, times: points.map(\.time), marks: marks, from: start, to: end,
            nominalSpacing: nominalSpacing, id: id, describeMarks: restartsAndEvents)
    }

    /// The charts of `panels`, stacked over one time axis from `start` to `end`.
    static func svg(
        title chartTitle: String, panels: [Panel], times: [Double], marks: [HistoryMark], from start: Double, to end: Double,
        nominalSpacing: Double, id: String, describeMarks: ([HistoryMark]) -> String
    ) -> String {
        let span = max(1, end - start)
        let height = totalHeight(panels: panels.count)
        func x(_ time: Double) -> Double { left + (time - start) / span * plotWidth }
        let limit = gapLimit(times, nominal: nominalSpacing)
        let caption = summary(panels: panels, count: times.count, from: start, to: end) + describeMarks(marks.filter { $0.time >= start && $0.time <= end })
        var svg = """
            <svg id="\(id)" class="chart" role="img" aria-labelledby="\(id)-title \(id)-desc" viewBox="0 0 \(Int(width)) \(Int(height))" \
            data-start="\(start)" data-end="\(end)" \
            width="\(Int(width))" height="\(Int(height))" xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="sans-serif">\
            <title id="\(id)-title">\(Pages.escape(chartTitle))</title>\
            <desc id="\(id)-desc">\(Pages.escape(caption))</desc>
            """
        for (index, panel) in panels.enumerated() {
            let panelTop = top + Double(index) * (panelHeight + panelGap)
            let bottom = panelTop + panelHeight
            let scale = panel.axisMaximum(panel.highest ?? 0)
            func y(_ value: Double) -> Double { bottom - min(value, scale) / scale * panelHeight }
            svg += "<g class=\"panel\" data-series=\"\(panel.series)\" data-scale=\"\(scale)\">"
            svg += text(panel.title, x: left, y: panelTop - 6, "font-weight=\"600\"")
            svg += """
                <rect x="\(coordinate(left))" y="\(coordinate(panelTop))" width="\(coordinate(plotWidth))" height="\(coordinate(panelHeight))" \
                fill="#fff" stroke="#c8ccd2"/>
                """
            for (value, anchor) in [(scale, panelTop + 4), (0, bottom)] {
                svg += text(panel.label(value), x: left - 6, y: anchor + 4, "text-anchor=\"end\"")
            }
            if times.isEmpty {
                svg += text("no data yet", x: left + plotWidth / 2, y: panelTop + panelHeight / 2 + 4, "text-anchor=\"middle\" fill=\"#80868b\"")
            }
            for line in panel.lines {
                for run in segments(line.values, gapLimit: limit) {
                    let list = run.map { "\(coordinate(x($0.time))),\(coordinate(y($0.value)))" }.joined(separator: " ")
                    let dashes = line.dash.map { " stroke-dasharray=\"\($0)\"" } ?? ""
                    svg += """
                        <polyline class="\(line.kind)" data-series="\(line.series)" points="\(list)" fill="none" \
                        stroke="\(line.stroke)"\(dashes) stroke-width="1.5"/>
                        """
                    // A lone point would draw nothing as a line.
                    if run.count == 1, line.kind == "value" {
                        let (cx, cy) = (coordinate(x(run[0].time)), coordinate(y(run[0].value)))
                        svg += "<circle cx=\"\(cx)\" cy=\"\(cy)\" r=\"2.5\" fill=\"\(line.stroke)\"/>"
                    }
                }
            }
            svg += "</g>"
        }
        let chartBottom = height - axisHeight
        for mark in marks where mark.time >= start && mark.time <= end {
            let colour = mark.kind.isRestart ? "#c5221f" : mark.kind == .failure || mark.kind == .maintenanceOn ? "#b06000" : "#80868b"
            svg += """
                <line class="mark" data-kind="\(mark.kind.label)" x1="\(coordinate(x(mark.time)))" y1="\(coordinate(top))" \
                x2="\(coordinate(x(mark.time)))" y2="\(coordinate(chartBottom))" stroke="\(colour)" stroke-width="1.5" \
                \(mark.kind.isRestart ? "" : "stroke-dasharray=\"4 3\"")><title>\(Pages.escape("\(mark.kind.label) at \(clock(mark.time, seconds: true)) UTC"))</title></line>
                """
        }
        for tick in ticks(from: start, to: end) {
            let at = coordinate(x(tick))
            svg += "<line x1=\"\(at)\" y1=\"\(coordinate(chartBottom))\" x2=\"\(at)\" y2=\"\(coordinate(chartBottom + 4))\" stroke=\"#5f6368\"/>"
            svg += text(clock(tick, seconds: tickStep(end - start) < 60), x: x(tick), y: chartBottom + 16, "text-anchor=\"middle\"")
        }
        svg += text("time (UTC)", x: width - right, y: height - 4, "text-anchor=\"end\"") + "</svg>"
        return "<figure class=\"history\">\(svg)<figcaption>\(Pages.escape(caption))</figcaption></figure>"
    }

    /// Round times for the axis, at most 8: every 10 minutes over an hour, every 3 hours over a day.
    static func tickStep(_ span: Double) -> Double {
        [10.0, 30, 60, 300, 600, 1800, 3600, 10800].first { span / $0 <= 8 } ?? 21600
    }

    static func ticks(from start: Double, to end: Double) -> [Double] {
        let step = tickStep(end - start)
        var tick = (start / step).rounded(.up) * step
        var ticks: [Double] = []
        while tick <= end, ticks.count < 50 {
            ticks.append(tick)
            tick += step
        }
        return ticks
    }

    static func clock(_ time: Double, seconds: Bool) -> String {
        TimeFormat.string(time, seconds ? "%H:%M:%S" : "%H:%M", utc: true)
    }

    /// The charts in words, for screen readers and the caption: each figure's last value and its
    /// highest (a day's maxima included).
    static func summary(panels: [Panel], count: Int, from start: Double, to end: Double) -> String {
        var text = "From \(clock(start, seconds: false)) to \(clock(end, seconds: false)) UTC, \(count) point\(count == 1 ? "" : "s")"
        if count == 0 { text += ", no data yet" }
        for panel in panels {
            let maxima = panel.lines.filter { $0.kind == "max" }.flatMap { $0.values.compactMap(\.value) }
            for line in panel.lines where line.kind == "value" {
                guard let highest = (line.values.compactMap(\.value) + maxima).max() else { continue }
                let now = line.values.last?.value.map(panel.label) ?? "unknown"
                text += "; \(line.title.lowercased()): now \(now), highest \(panel.label(highest))"
            }
        }
        return text
    }

    /// A service's marks in words, for the summary.
    static func restartsAndEvents(_ marks: [HistoryMark]) -> String {
        let restarts = marks.filter(\.kind.isRestart).count
        return "; \(restarts) restart\(restarts == 1 ? "" : "s"), \(marks.count - restarts) other event\(marks.count - restarts == 1 ? "" : "s")."
    }
}
