/// The proxy's request metrics as values: what its event loops counted, added up, sent by a proxy
/// worker to the daemon, and carried over a worker's restart. The proxy counts into these on its
/// event loops; the daemon renders them into `/metrics` (WardenHTTP).

/// Durations in fixed buckets from 1 ms to 10 s (Prometheus's le bounds), as `/metrics` shows them
/// and the dashboard reads its quantiles from.
public struct LatencyHistogram: Sendable, Hashable, Codable {
    /// The upper bounds, in nanoseconds.
    public static let bounds: [Int64] = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000].map { Int64($0 * 1_000_000) }
    /// Per bucket, not cumulative; the last one counts what took longer than 10 s.
    public var counts = [Int](repeating: 0, count: LatencyHistogram.bounds.count + 1)
    public var sumNanoseconds: Int64 = 0

    public init() {}

    public var count: Int { counts.reduce(0, +) }

    public mutating func record(nanoseconds: Int64) {
        // From the short end: nearly every request ends in one of the first buckets.
        var index = 0
        while index < Self.bounds.count, nanoseconds > Self.bounds[index] { index += 1 }
        counts[index] += 1
        sumNanoseconds += nanoseconds
    }

    public mutating func add(_ other: LatencyHistogram) {
        for index in counts.indices { counts[index] += other.counts[index] }
        sumNanoseconds += other.sumNanoseconds
    }

    /// What was recorded since `earlier` (a reading of the same histogram).
    public func subtracting(_ earlier: LatencyHistogram) -> LatencyHistogram {
        var difference = self
        for index in counts.indices { difference.counts[index] = max(0, counts[index] - earlier.counts[index]) }
        difference.sumNanoseconds = max(0, sumNanoseconds - earlier.sumNanoseconds)
        return difference
    }

    /// The `q` quantile in seconds, interpolated within its bucket as Prometheus's
    /// `histogram_quantile` does; the largest bound when it falls above 10 s; nil when empty.
    public func quantile(_ q: Double) -> Double? {
        let total = count
        guard total > 0 else { return nil }
        let rank = q * Double(total)
        var below = 0
        for (index, bound) in Self.bounds.enumerated() {
            let inBucket = counts[index]
            if Double(below + inBucket) >= rank, inBucket > 0 {
                let lower = index == 0 ? 0 : Double(Self.bounds[index - 1])
                let fraction = (rank - Double(below)) / Double(inBucket)
                return (lower + (Double(bound) - lower) * fraction) / 1e9
            }
            below += inBucket
        }
        return Double(Self.bounds[Self.bounds.count - 1]) / 1e9
    }
}

/// One series of the proxy's metrics: a site's route, and the instance a request went to when its
/// service has several. Empty strings stand for none (a static route has no service).
public struct ProxySeriesKey: Sendable, Hashable, Codable, Comparable {
    public var site: String
    /// The route's prefix as configured (`/`, `/api`), never a request's path.
    public var route: String
    public var service: String
    /// `myapp@8081`, as the service metrics name an instance.
    public var instance: String

    public init(site: String, route: String, service: String = "", instance: String = "") {
        self.site = site
        self.route = route
        self.service = service
        self.instance = instance
    }

    public static func < (left: Self, right: Self) -> Bool {
        (left.site, left.route, left.service, left.instance) < (right.site, right.route, right.service, right.instance)
    }
}

/// What one series counted. Every field is a counter except `tunnelsOpen`, a gauge.
public struct ProxySeriesCounters: Sendable, Hashable, Codable {
    /// The methods counted by name; any other is `other`.
    public static let methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other"]
    public static let statusClasses = ["1xx", "2xx", "3xx", "4xx", "5xx"]

    public enum UpstreamError: Int, CaseIterable, Sendable {
        /// The connection was refused (or could not be made for another reason than time).
        case refused
        /// Connecting, or waiting for the response head, took too long.
        case timeout
        /// The upstream closed or reset the connection before its response was complete.
        case reset
        /// The upstream's response could not be read as HTTP.
        case malformed

        public var label: String { "\(self)" }
    }

    /// By `statusClass * methods.count + method`.
    public var requests = [Int](repeating: 0, count: ProxySeriesCounters.statusClasses.count * ProxySeriesCounters.methods.count)
    public var duration = LatencyHistogram()
    /// By `UpstreamError.rawValue`.
    public var upstreamErrors = [Int](repeating: 0, count: UpstreamError.allCases.count)
    /// Requests held while their service was down: the count, and how long each waited.
    public var held = LatencyHistogram()
    public var maintenanceAnswers = 0
    /// Body bytes received from clients and sent to them (nginx's `$body_bytes_sent`).
    public var requestBytes = 0
    public var responseBytes = 0
    public var tunnelsOpened = 0
    public var tunnelsOpen = 0
    /// Requests sent on a kept-alive upstream connection from the pool.
    public var reusedConnections = 0

    public init() {}

    /// The index into `requests`; a status outside 100…599 counts with its nearest class.
    @inline(__always)
    public static func requestIndex(status: Int, method: Int) -> Int {
        min(max(status / 100 - 1, 0), statusClasses.count - 1) * methods.count + method
    }

    public var requestCount: Int { requests.reduce(0, +) }

    /// 5xx answers.
    public var serverErrors: Int {
        requests[(Self.statusClasses.count - 1) * Self.methods.count..<Self.statusClasses.count * Self.methods.count].reduce(0, +)
    }

    /// Adds `other`'s counters, and its gauges unless they belong to a worker that has ended.
    public mutating func add(_ other: ProxySeriesCounters, gauges: Bool) {
        for index in requests.indices { requests[index] += other.requests[index] }
        duration.add(other.duration)
        for index in upstreamErrors.indices { upstreamErrors[index] += other.upstreamErrors[index] }
        held.add(other.held)
        maintenanceAnswers += other.maintenanceAnswers
        requestBytes += other.requestBytes
        responseBytes += other.responseBytes
        tunnelsOpened += other.tunnelsOpened
        reusedConnections += other.reusedConnections
        if gauges { tunnelsOpen += other.tunnelsOpen }
    }
}

/// One listener (`address:port`): client connections and TLS handshakes.
public struct ProxyListenerCounters: Sendable, Hashable, Codable {
    public var connectionsAccepted = 0
    /// A gauge.
    public var connectionsOpen = 0
    public var tlsHandshakes = 0
    public var tlsHandshakeFailures = 0

    public init() {}

    public mutating func add(_ other: ProxyListenerCounters, gauges: Bool) {
        connectionsAccepted += other.connectionsAccepted
        tlsHandshakes += other.tlsHandshakes
        tlsHandshakeFailures += other.tlsHandshakeFailures
        if gauges { connectionsOpen += other.connectionsOpen }
    }
}

/// Everything the proxy counted, cumulative since it started (or, in the daemon, since warden did).
public struct ProxyMetricsSnapshot: Sendable, Hashable, Codable {
    public var series: [ProxySeriesKey: ProxySeriesCounters] = [:]
    /// By `address:port`.
    public var listeners: [String: ProxyListenerCounters] = [:]
    /// Idle kept-alive connections by upstream `host:port` (a gauge).
    public var idleUpstreamConnections: [String: Int] = [:]

    public init() {}

    /// Adds another event loop's (or report part's) counts; `gauges: false` for the counts of a
    /// worker that has ended, whose connections and tunnels are gone with it.
    public mutating func merge(_ other: ProxyMetricsSnapshot, gauges: Bool = true) {
        for (key, counters) in other.series { series[key, default: ProxySeriesCounters()].add(counters, gauges: gauges) }
        for (name, counters) in other.listeners { listeners[name, default: ProxyListenerCounters()].add(counters, gauges: gauges) }
        if gauges { idleUpstreamConnections.merge(other.idleUpstreamConnections, uniquingKeysWith: +) }
    }
}

/// A worker's snapshot on its way to the daemon, in parts small enough for one atomic pipe write
/// (its standard output is shared with its log lines) and for the daemon's line reader.
public struct ProxyMetricsReport: Sendable, Hashable, Codable {
    /// Chosen by each worker at its start: a report from another origin comes from a new worker.
    public var origin: UInt64
    public var sequence: Int
    public var part: Int
    public var parts: Int
    /// The daemon's `reportMetrics` request this answers (nil: a report of the worker's own).
    public var request: Int?
    public var snapshot: ProxyMetricsSnapshot

    /// Below PIPE_BUF (4096) with room for the answer's envelope.
    public static let maximumPartBytes = 3000

    public init(origin: UInt64, sequence: Int, part: Int, parts: Int, request: Int? = nil, snapshot: ProxyMetricsSnapshot) {
        self.origin = origin
        self.sequence = sequence
        self.part = part
        self.parts = parts
        self.request = request
        self.snapshot = snapshot
    }

    /// `snapshot` cut into parts of whole series, each encoding to about `maximumBytes` at most;
    /// the listeners and pools ride in the first part.
    public static func split(
        _ snapshot: ProxyMetricsSnapshot, origin: UInt64, sequence: Int, request: Int? = nil, maximumBytes: Int = maximumPartBytes
    ) -> [ProxyMetricsReport] {
        func size(_ part: ProxyMetricsSnapshot) -> Int { (try? JSONCoding.encode(part).count) ?? 0 }
        let empty = size(ProxyMetricsSnapshot())
        var pieces = [ProxyMetricsSnapshot()]
        pieces[0].listeners = snapshot.listeners
        pieces[0].idleUpstreamConnections = snapshot.idleUpstreamConnections
        var used = size(pieces[0])
        for key in snapshot.series.keys.sorted() {
            var alone = ProxyMetricsSnapshot()
            alone.series[key] = snapshot.series[key]
            let bytes = size(alone) - empty
            if used + bytes > maximumBytes, used > empty {
                pieces.append(ProxyMetricsSnapshot())
                used = empty
            }
            pieces[pieces.count - 1].series[key] = snapshot.series[key]
            used += bytes
        }
        return pieces.enumerated().map {
            ProxyMetricsReport(origin: origin, sequence: sequence, part: $0.offset, parts: pieces.count, request: request, snapshot: $0.element)
        }
    }
}

/// The daemon's totals of a worker's reports: parts put back together, and the counts of workers
/// that ended carried over, so a counter never goes back when a worker is started again (gauges
/// are the running worker's only).
public struct ProxyMetricsTotals: Sendable {
    private var carried = ProxyMetricsSnapshot()
    private var latest: (origin: UInt64, snapshot: ProxyMetricsSnapshot)?
    /// Workers whose counts are carried: a late report of theirs is ignored.
    private var ended: Set<UInt64> = []
    private var pending: (origin: UInt64, sequence: Int, parts: Set<Int>, snapshot: ProxyMetricsSnapshot)?

    public init() {}

    /// Takes a part; returns true once it completes a report.
    @discardableResult
    public mutating func receive(_ report: ProxyMetricsReport) -> Bool {
        if pending?.origin != report.origin || pending?.sequence != report.sequence {
            pending = (report.origin, report.sequence, [], ProxyMetricsSnapshot())
        }
        pending!.parts.insert(report.part)
        pending!.snapshot.merge(report.snapshot)
        guard pending!.parts.count == report.parts else { return false }
        record(pending!.snapshot, origin: report.origin)
        pending = nil
        return true
    }

    /// A whole report of the worker `origin`.
    public mutating func record(_ snapshot: ProxyMetricsSnapshot, origin: UInt64) {
        guard !ended.contains(origin) else { return }
        if let latest, latest.origin != origin {
            carried.merge(latest.snapshot, gauges: false)
            ended.insert(latest.origin)
        }
        latest = (origin, snapshot)
    }

    /// Nil until a worker has reported.
    public var current: ProxyMetricsSnapshot? {
        guard let latest else { return nil }
        var total = carried
        total.merge(latest.snapshot)
        return total
    }
}

/// Where the daemon reads the proxy's metrics: the proxy in its own process, or the reports of a worker.
public protocol ProxyMetricsSource: Sendable {
    /// The totals now; `fresh` asks a worker for a new report (for a scrape) instead of the last one.
    func proxyMetrics(fresh: Bool) async -> ProxyMetricsSnapshot?
}
