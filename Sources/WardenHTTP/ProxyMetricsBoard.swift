import Synchronization
import WardenCore

/// The proxy's half of `/metrics`, the traffic of each site over the last minute for the dashboard
/// and `warden status`, and each site's history for its charts: the latest totals read from the
/// proxy (in this process, or a worker's reports), a minute of per-site readings, and the rings.
public final class ProxyMetricsBoard: Sendable {
    struct State {
        var latest: ProxyMetricsSnapshot?
        var window = SiteTrafficWindow()
        /// Every site the proxy has counted requests of since warden started (its totals keep the
        /// series of a site removed by a reload, so a history is bounded by the sites ever configured).
        var histories: [String: SiteHistory] = [:]
    }

    private let source: (any ProxyMetricsSource)?
    private let state = Mutex(State())
    private let started = ContinuousClock.now

    public init(source: (any ProxyMetricsSource)?) {
        self.source = source
    }

    /// Reads the proxy's totals; `fresh` for a scrape, which asks a worker for a new report.
    func refresh(fresh: Bool) async {
        guard let source, let snapshot = await source.proxyMetrics(fresh: fresh) else { return }
        record(snapshot, monotonic: (ContinuousClock.now - started) / .seconds(1), wall: WallClock.now())
    }

    /// Takes a reading: the minute's rates on the monotonic clock, the charts' points on the wall clock
    /// (their axis is the time of day). Tests call it with a manual clock's times.
    func record(_ snapshot: ProxyMetricsSnapshot, monotonic: Double, wall: Double) {
        let sites = SiteTrafficWindow.totals(snapshot)
        state.withLock { state in
            state.latest = snapshot
            state.window.record(sites, at: monotonic)
            for (site, totals) in sites {
                // Taken out, not copied: its rings change in place.
                var history = state.histories.removeValue(forKey: site) ?? SiteHistory()
                history.record(totals, at: wall)
                state.histories[site] = history
            }
        }
    }

    /// A maintenance event marks its site's charts.
    func mark(_ event: Event) {
        guard event.action == "maintenance" else { return }
        state.withLock { state in
            var history = state.histories.removeValue(forKey: event.service) ?? SiteHistory()
            history.mark(HistoryMark(event))
            state.histories[event.service] = history
        }
    }

    func history(of site: String) -> SiteHistory? { state.withLock { $0.histories[site] } }

    func exposition() -> String {
        state.withLock { $0.latest }.map(ProxyExposition.render) ?? ""
    }

    /// Each site's request rate, error rate and latency over the last minute.
    public func siteTraffic() -> [SiteTraffic] {
        state.withLock { $0.window.summary() }
    }
}

extension ControlRouter {
    /// Each site's request rate, error rate and p50/p99 latency over the last minute (for the pages).
    public func siteTraffic() -> [SiteTraffic] { metrics.proxy.siteTraffic() }
}

/// A site's traffic over the last minute, for the dashboard's front page, `warden status` and its JSON.
public struct SiteTraffic: Sendable, Equatable, Codable {
    public var site: String
    public var requestsPerSecond: Double
    /// 5xx answers per second.
    public var errorsPerSecond: Double
    /// The share of 5xx answers (0 without requests).
    public var errorRatio: Double
    /// Seconds; nil without requests.
    public var p50: Double?
    public var p99: Double?
    /// The seconds the figures span: a minute (up to a second more between readings), less while warden is young.
    public var windowSeconds: Double
}

/// Per-site readings of the proxy's totals, a minute's worth: a rate is the difference between the
/// newest reading and the oldest one within the minute, divided by the time between them.
struct SiteTrafficWindow {
    struct Totals: Equatable {
        var requests = 0
        var serverErrors = 0
        var duration = LatencyHistogram()
    }

    static let seconds: Double = 60
    /// Bounds memory when readings come often (every scrape adds one).
    static let maximumReadings = 600
    private(set) var readings: [(time: Double, sites: [String: Totals])] = []

    /// Each site's totals: its routes' series added up.
    static func totals(_ snapshot: ProxyMetricsSnapshot) -> [String: Totals] {
        var sites: [String: Totals] = [:]
        for (key, counters) in snapshot.series where !key.site.isEmpty {
            sites[key.site, default: Totals()].requests += counters.requestCount
            sites[key.site, default: Totals()].serverErrors += counters.serverErrors
            sites[key.site, default: Totals()].duration.add(counters.duration)
        }
        return sites
    }

    mutating func record(_ sites: [String: Totals], at time: Double) {
        readings.append((time, sites))
        // The oldest reading kept is the last one at least a minute old: the rates span the minute.
        while readings.count > 2, readings[1].time <= time - Self.seconds { readings.removeFirst() }
        if readings.count > Self.maximumReadings { readings.removeFirst(readings.count - Self.maximumReadings) }
    }

    func summary() -> [SiteTraffic] {
        guard let newest = readings.last else { return [] }
        let oldest = readings.count > 1 ? readings[0] : (time: newest.time, sites: [:])
        let elapsed = newest.time - oldest.time
        return newest.sites.keys.sorted().map { site in
            let now = newest.sites[site]!
            let before = oldest.sites[site] ?? Totals()
            let requests = max(0, now.requests - before.requests)
            let errors = max(0, now.serverErrors - before.serverErrors)
            let latency = now.duration.subtracting(before.duration)
            return SiteTraffic(
                site: site, requestsPerSecond: elapsed > 0 ? Double(requests) / elapsed : 0,
                errorsPerSecond: elapsed > 0 ? Double(errors) / elapsed : 0, errorRatio: requests > 0 ? Double(errors) / Double(requests) : 0,
                p50: latency.quantile(0.5), p99: latency.quantile(0.99), windowSeconds: elapsed)
        }
    }
}

/// The proxy's metrics in Prometheus's text format, with a help text and a type for every family
/// (`promtool check metrics` wants both). A label without a value is left out.
enum ProxyExposition {
    typealias Labels = [(String, String)]
    /// A sample: the suffix of the family's name (`_bucket`), its labels and its value.
    typealias Sample = (suffix: String, labels: Labels, value: String)

    static func render(_ snapshot: ProxyMetricsSnapshot) -> String {
        var text = ""
        let series = snapshot.series.sorted { $0.key < $1.key }
        func labels(_ key: ProxySeriesKey) -> Labels {
            [("site", key.site), ("route", key.route), ("service", key.service), ("service_instance", key.instance)]
        }
        func family(_ name: String, _ type: String, _ help: String, _ samples: [Sample]) {
            guard !samples.isEmpty else { return }
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for sample in samples { text += "\(name)\(sample.suffix)\(format(sample.labels)) \(sample.value)\n" }
        }
        func counter(_ name: String, _ help: String, _ value: (ProxySeriesCounters) -> Int) {
            family(name, "counter", help, series.map { ("", labels($0.key), String(value($0.value))) })
        }
        func gauge(_ name: String, _ help: String, _ samples: [(Labels, Int)]) {
            family(name, "gauge", help, samples.map { ("", $0.0, String($0.1)) })
        }
        func histogram(_ name: String, _ help: String, _ value: (ProxySeriesCounters) -> LatencyHistogram) {
            family(name, "histogram", help, series.flatMap { histogramSamples(labels($0.key), value($0.value)) })
        }

        family(
            "warden_proxy_requests_total", "counter", "Requests answered, by site, route, status class and method",
            series.flatMap { key, counters in
                counters.requests.indices.compactMap { index -> Sample? in
                    guard counters.requests[index] > 0 else { return nil }
                    let methods = ProxySeriesCounters.methods
                    let extra = [("code_class", ProxySeriesCounters.statusClasses[index / methods.count]), ("method", methods[index % methods.count])]
                    return ("", labels(key) + extra, String(counters.requests[index]))
                }
            })
        histogram("warden_proxy_request_duration_seconds", "Time from a request's head to the end of its answer") { $0.duration }
        family(
            "warden_proxy_upstream_errors_total", "counter", "Upstream connections refused or timed out, reset, or answering malformed HTTP",
            series.flatMap { key, counters in
                ProxySeriesCounters.UpstreamError.allCases.compactMap { kind -> Sample? in
                    let count = counters.upstreamErrors[kind.rawValue]
                    return count > 0 ? ("", labels(key) + [("kind", kind.label)], String(count)) : nil
                }
            })
        histogram("warden_proxy_hold_duration_seconds", "How long requests were held while their service was down (_count: requests held)") { $0.held }
        counter("warden_proxy_maintenance_responses_total", "Requests answered with the site's maintenance page") { $0.maintenanceAnswers }
        counter("warden_proxy_request_bytes_total", "Request body bytes received from clients") { $0.requestBytes }
        counter("warden_proxy_response_bytes_total", "Response body bytes sent to clients") { $0.responseBytes }
        counter("warden_proxy_upstream_reused_connections_total", "Requests sent on a kept-alive upstream connection") { $0.reusedConnections }
        counter("warden_proxy_websocket_tunnels_total", "Upgraded connections (WebSocket) tunnelled") { $0.tunnelsOpened }
        gauge("warden_proxy_websocket_tunnels_open", "Upgraded connections (WebSocket) open now", series.map { (labels($0.key), $0.value.tunnelsOpen) })

        let listeners = snapshot.listeners.sorted { $0.key < $1.key }.map { ([("listener", $0.key)], $0.value) }
        gauge("warden_proxy_connections_open", "Client connections open now", listeners.map { ($0.0, $0.1.connectionsOpen) })
        family("warden_proxy_connections_total", "counter", "Client connections accepted", listeners.map { ("", $0.0, String($0.1.connectionsAccepted)) })
        let tls = listeners.filter { $0.1.tlsHandshakes + $0.1.tlsHandshakeFailures > 0 }
        family("warden_proxy_tls_handshakes_total", "counter", "TLS handshakes completed", tls.map { ("", $0.0, String($0.1.tlsHandshakes)) })
        family(
            "warden_proxy_tls_handshake_failures_total", "counter", "TLS connections closed before their handshake completed",
            tls.map { ("", $0.0, String($0.1.tlsHandshakeFailures)) })
        gauge(
            "warden_proxy_upstream_idle_connections", "Kept-alive upstream connections waiting in the pool",
            snapshot.idleUpstreamConnections.sorted { $0.key < $1.key }.map { ([("upstream", $0.key)], $0.value) })
        return text
    }

    /// Cumulative buckets, the sum and the count.
    static func histogramSamples(_ labels: Labels, _ histogram: LatencyHistogram) -> [Sample] {
        var samples: [Sample] = []
        var cumulative = 0
        for (index, bound) in LatencyHistogram.bounds.enumerated() {
            cumulative += histogram.counts[index]
            samples.append(("_bucket", labels + [("le", seconds(bound))], String(cumulative)))
        }
        return samples + [
            ("_bucket", labels + [("le", "+Inf")], String(histogram.count)), ("_sum", labels, seconds(histogram.sumNanoseconds)),
            ("_count", labels, String(histogram.count)),
        ]
    }

    static func seconds(_ nanoseconds: Int64) -> String {
        let whole = nanoseconds / 1_000_000_000
        let fraction = nanoseconds % 1_000_000_000
        guard fraction != 0 else { return String(whole) }
        var digits = String(fraction)
        digits = String(repeating: "0", count: 9 - digits.count) + digits
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(whole).\(digits)"
    }

    /// `{a="x",b="y"}`, values escaped; an empty value leaves its label out.
    static func format(_ labels: Labels) -> String {
        let parts = labels.filter { !$0.1.isEmpty }.map { "\($0.0)=\"\(escape($0.1))\"" }
        return parts.isEmpty ? "" : "{\(parts.joined(separator: ","))}"
    }

    static func escape(_ value: String) -> String {
        var escaped = ""
        for character in value {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
