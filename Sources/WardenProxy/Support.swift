import Crypto
import NIOCore
import Synchronization
import WardenConfig
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

/// Which services are up and which sites are in planned maintenance, fed by the supervisor.
/// Every request asks; nearly always every service is up and no site is in maintenance, which
/// two atomic counts answer without the lock or hashing a name.
public final class ServiceAvailability: Sendable {
    private let state = Mutex<(up: [String: Bool], maintenance: Set<String>)>(([:], []))
    private let servicesDown = Atomic<Int>(0)
    private let sitesInMaintenance = Atomic<Int>(0)
    /// One count per service ever named by a route or a drain (a handful), never removed: routes of
    /// every reload share it, so requests that started before a reload are counted too.
    private let trafficByService = Mutex<[String: ServiceTraffic]>([:])
    /// The instances of each service with `instances`, kept like the counts.
    private let backendsByService = Mutex<[String: BackendSet]>([:])

    /// The key of `balance sticky cookie`: the feed's (kept across restarts of warden), else this process's.
    private let stickyKey = Mutex(StickyCookie(key: SymmetricKey(size: .bits256)))

    var stickyCookie: StickyCookie { stickyKey.withLock { $0 } }

    public func setStickyKey(_ key: [UInt8]) {
        guard key.count == StickyCookie.keyBytes else { return }
        stickyKey.withLock { $0 = StickyCookie(key: SymmetricKey(data: key)) }
    }

    /// Told the name of an instance a request could not reach (once per failure, not per request).
    private let unreachableReport = Mutex<(@Sendable (String) -> Void)?>(nil)

    public init() {}

    public func onUnreachableInstance(_ report: @escaping @Sendable (String) -> Void) {
        unreachableReport.withLock { $0 = report }
    }

    /// Passive health: keeps new requests away from the instance and asks the supervisor to check it;
    /// the next report of the instances lets it in again (without it, once the check has passed).
    func unreachable(_ target: BackendSet.Target) {
        guard !target.failed.exchange(true, ordering: .relaxed) else { return }
        let report = unreachableReport.withLock { $0 }
        report?(target.backend.instance)
    }

    /// Services down until a delayed automatic start, with the seconds until it (read only for a
    /// service found down).
    private let delayedStarts = Mutex<[String: Int]>([:])

    public func setDelayedStarts(_ services: [String: Int]) {
        delayedStarts.withLock { $0 = services }
    }

    func secondsUntilStart(_ service: String) -> Int? {
        delayedStarts.withLock { $0[service] }
    }

    /// The instances `service`'s requests go to from now on.
    public func setBackends(_ service: String, _ backends: [Backend]) {
        self.backends(for: service).replace(backends, traffic: traffic(for:), isUp: isUp)
    }

    func backends(for service: String) -> BackendSet {
        backendsByService.withLock { table in
            if let known = table[service] { return known }
            let new = BackendSet()
            table[service] = new
            return new
        }
    }

    public func set(_ service: String, up: Bool) {
        state.withLock {
            $0.up[service] = up
            // Sequentially consistent, with `isUp` and `ServiceTraffic.enter`: see `hold`.
            servicesDown.store($0.up.values.count { !$0 }, ordering: .sequentiallyConsistent)
        }
    }

    /// Unknown services count as up: the proxy then just tries the upstream. (Inlined: the name
    /// is not even retained while every service is up.)
    @inline(__always)
    public func isUp(_ service: String) -> Bool {
        guard servicesDown.load(ordering: .sequentiallyConsistent) > 0 else { return true }
        return state.withLock { $0.up[service] ?? true }
    }

    /// Before a planned stop: new requests for `service` wait, as while it is down, until the
    /// supervisor reports it up again. A request counts itself in flight before it checks `isUp`,
    /// and this marks the service down before anyone reads the count: so a request is either held
    /// or seen by `requestsInFlight`, whatever the threads' timing.
    public func hold(_ service: String) {
        set(service, up: false)
    }

    /// Requests sent to `service`'s upstream whose response has not ended or failed yet.
    public func requestsInFlight(_ service: String) -> Int {
        traffic(for: service).count
    }

    /// Starts the drain before a planned stop of `service`. New requests for it are held at once, except
    /// for an instance a deploy's switch took out of service behind `balance sticky cookie`: its pinned
    /// clients keep reaching it until they have been quiet for `Drain.pinnedQuiet`, then it is held.
    public func beginDrain(_ service: String, timeout: TimeAmount, now: NIODeadline = .now()) -> Drain {
        let pinned = backendsByService.withLock { table in
            table.values.lazy.filter { $0.keepsPins.load(ordering: .relaxed) }.compactMap { $0.retiring(service) }.first
        }
        if let pinned { pinned.drain.store(.pinnedOnly, ordering: .relaxed) } else { hold(service) }
        return Drain(
            service: service, began: now, deadline: now + timeout, pinned: pinned, inFlightAtStart: requestsInFlight(service),
            pinnedAtStart: pinned?.pinnedRequests.load(ordering: .relaxed) ?? 0)
    }

    /// The requests the drain saw through once it is over (a pinned instance's clients quiet, then
    /// none in flight), or at its deadline; nil while it lasts.
    public func finished(_ drain: Drain, now: NIODeadline = .now()) -> Int? {
        if let pinned = drain.pinned, pinned.drain.load(ordering: .sequentiallyConsistent) == .pinnedOnly {
            // Quiet since the drain began at least: a client's next click may still be coming.
            let last = max(drain.began, .uptimeNanoseconds(pinned.lastPinned.load(ordering: .relaxed)))
            guard now - last >= Drain.pinnedQuiet || now >= drain.deadline else { return nil }
            // Closed before the count is read, as `hold` does: a request is either turned away by
            // `takesRequests` or counted below.
            pinned.drain.store(.over, ordering: .sequentiallyConsistent)
            hold(drain.service)
        }
        guard requestsInFlight(drain.service) == 0 || now >= drain.deadline else { return nil }
        let pinnedRequests = drain.pinned.map { $0.pinnedRequests.load(ordering: .relaxed) } ?? 0
        return drain.inFlightAtStart + pinnedRequests - drain.pinnedAtStart
    }

    func traffic(for service: String) -> ServiceTraffic {
        trafficByService.withLock { table in
            if let known = table[service] { return known }
            let new = ServiceTraffic(service: service)
            table[service] = new
            return new
        }
    }

    /// The sites in planned maintenance (`warden maintenance on SITE`): they answer with their
    /// maintenance page at once.
    public func setMaintenance(_ sites: Set<String>) {
        state.withLock {
            $0.maintenance = sites
            sitesInMaintenance.store(sites.count, ordering: .releasing)
        }
    }

    @inline(__always)
    public func inMaintenance(_ site: String) -> Bool {
        guard sitesInMaintenance.load(ordering: .acquiring) > 0 else { return false }
        return state.withLock { $0.maintenance.contains(site) }
    }
}

/// The requests of one service in flight, counted by the proxy handlers while they wait for its
/// response: two atomic operations per request.
final class ServiceTraffic: Sendable {
    let service: String
    private let inFlight = Atomic<Int>(0)

    init(service: String) { self.service = service }

    /// Sequentially consistent: ordered before the `isUp` check that follows it (see `hold`).
    func enter() { inFlight.add(1, ordering: .sequentiallyConsistent) }

    func leave() { inFlight.subtract(1, ordering: .relaxed) }

    var count: Int { inFlight.load(ordering: .sequentiallyConsistent) }
}

/// The sites as the last (re)load defined them, with their open log files and maintenance pages.
/// A reload swaps the whole table; requests in flight keep the entry they started with.
public final class SiteTable: Sendable {
    /// A `pass` route's upstream.
    final class Upstream: Sendable {
        /// The fixed address of `pass … to URL`; with `backends`, each request picks one instead.
        let url: HTTPURL
        let service: String?
        /// The count of `service`'s requests in flight (nil without `for service`, and with `backends`,
        /// where each instance has its own).
        let traffic: ServiceTraffic?
        /// `pass … to service NAME`: the service's ready instances, and how to choose among them.
        let backends: BackendSet?
        let balance: Site.Balance
        /// The path a route's prefix is replaced with (`pass /app to http://host/base/`); nil for a
        /// bare `http://host/`, where a request keeps the client's URI bytes as they came.
        let basePath: String?
        /// `pass … to https://…`.
        let tls: UpstreamTLSClient?

        init(
            url: HTTPURL, service: String?, traffic: ServiceTraffic?, backends: BackendSet? = nil, balance: Site.Balance = .roundRobin,
            tls: UpstreamTLSClient? = nil
        ) {
            self.url = url
            self.service = service
            self.traffic = traffic
            self.backends = backends
            self.balance = balance
            self.tls = tls
            basePath = url.path == "/" ? nil : url.path
        }
    }

    /// A route as requests use it. Entries, routes and upstreams are classes: each request keeps
    /// the ones it took, and a reference is cheaper to copy than a URL's strings.
    final class Route: Sendable {
        enum Target {
            case upstream(Upstream)
            case directory(String)
        }

        let prefix: String
        let target: Target

        init(_ route: Site.Route, balance: Site.Balance, availability: ServiceAvailability, tls: (UpstreamTLSClient.Key) -> UpstreamTLSClient) {
            prefix = route.prefix
            switch route.target {
            case .upstream(let url, let service):
                target = .upstream(
                    Upstream(
                        url: url, service: service, traffic: service.map(availability.traffic(for:)),
                        tls: route.tls.map { tls(.init(settings: $0, host: url.host)) }))
            case .instances(let service):
                let anyInstance = HTTPURL(scheme: "http", host: "127.0.0.1", port: 0, path: "/")
                let backends = availability.backends(for: service)
                if case .stickyCookie = balance { backends.keepsPins.store(true, ordering: .relaxed) }
                target = .upstream(Upstream(url: anyInstance, service: service, traffic: nil, backends: backends, balance: balance))
            case .directory(let directory): target = .directory(directory)
            }
        }
    }

    final class Entry: Sendable {
        let site: Site
        /// Longest prefix first, so the first match wins.
        let routes: [Route]
        let accessLog: LogFile?
        let errorLog: LogFile?
        let maintenancePage: [UInt8]?

        init(site: Site, routes: [Route], accessLog: LogFile?, errorLog: LogFile?, maintenancePage: [UInt8]?) {
            self.site = site
            self.routes = routes
            self.accessLog = accessLog
            self.errorLog = errorLog
            self.maintenancePage = maintenancePage
        }

        /// `path` is cut out of the URI only when there is a route other than `/` to try.
        func route(for path: @autoclosure () -> Substring) -> Route? {
            // Longest prefix first: `/`, which takes every path, is last, and usually alone.
            guard routes.count > 1 || routes.first?.prefix != "/" else { return routes.first }
            let path = path()
            return routes.first { route in
                route.prefix == "/" || path == route.prefix
                    || (path.hasPrefix(route.prefix) && (route.prefix.hasSuffix("/") || path.dropFirst(route.prefix.count).first == "/"))
            }
        }
    }

    struct Snapshot: Sendable {
        var entries: [Entry] = []
        var byHost: [String: Int] = [:]
        var fallback: Int?

        /// The site for a `Host` header (case and port ignored), else the `default` one, else the first.
        func entry(forHost header: String?) -> Entry? {
            if let header, !byHost.isEmpty, let index = byHost[Self.hostName(header)] { return entries[index] }
            return fallback.map { entries[$0] }
        }

        static func hostName(_ header: String) -> String {
            let utf8 = header.utf8
            var end = utf8.endIndex
            if utf8.first == UInt8(ascii: "[") {
                if let close = utf8.firstIndex(of: UInt8(ascii: "]")) { end = utf8.index(after: close) }
            } else if let colon = utf8.lastIndex(of: UInt8(ascii: ":")) {
                end = colon
            }
            let name = Substring(utf8[..<end])
            return name.utf8.contains(where: { $0 &- 65 < 26 }) ? name.lowercased() : String(name)
        }
    }

    private let current = Mutex(Snapshot())
    /// Counts loads, so a connection re-reads the table only after one.
    private let generation = Atomic<Int>(0)
    private let availability: ServiceAvailability

    public init(sites: [Site], availability: ServiceAvailability) {
        self.availability = availability
        load(sites)
    }

    var snapshot: Snapshot { current.withLock { $0 } }

    /// One connection's copy of the table, taken again only after a reload: a request costs an
    /// atomic load instead of the lock and the copy.
    struct View {
        private var generation = -1
        private var snapshot = Snapshot()

        mutating func entry(forHost header: String?, in table: SiteTable) -> Entry? {
            let latest = table.generation.load(ordering: .acquiring)
            if latest != generation {
                snapshot = table.snapshot
                generation = latest
            }
            return snapshot.entry(forHost: header)
        }
    }

    /// Installs new sites; log files already open under the same path stay open, and an `https://`
    /// upstream whose options did not change keeps its TLS context (and so its pooled connections).
    public func load(_ sites: [Site]) {
        let old = snapshot
        var logs: [String: LogFile] = [:]
        var clients: [UpstreamTLSClient.Key: UpstreamTLSClient] = [:]
        for entry in old.entries {
            for log in [entry.accessLog, entry.errorLog].compactMap({ $0 }) { logs[log.path] = log }
            for route in entry.routes {
                if case .upstream(let upstream) = route.target, let client = upstream.tls { clients[client.key] = client }
            }
        }
        func tls(_ key: UpstreamTLSClient.Key) -> UpstreamTLSClient {
            if let client = clients[key] { return client }
            let client = UpstreamTLSClient(key)
            clients[key] = client
            return client
        }
        func log(_ path: String?) -> LogFile? {
            guard let path else { return nil }
            if let open = logs[path] { return open }
            let file = LogFile(path: path)
            logs[path] = file
            return file
        }
        var next = Snapshot()
        for site in sites {
            let index = next.entries.count
            next.entries.append(
                Entry(
                    site: site, routes: site.routes.sorted { $0.prefix.count > $1.prefix.count }.map { Route($0, balance: site.balance, availability: availability, tls: tls) }, accessLog: log(site.accessLog),
                    errorLog: log(site.errorLog), maintenancePage: site.maintenancePage.flatMap { try? FileSystemReader().read($0) }))
            for host in site.hosts {
                if host == "*" {
                    if next.fallback == nil { next.fallback = index }
                } else if next.byHost[host.lowercased()] == nil {
                    next.byHost[host.lowercased()] = index
                }
            }
        }
        if next.fallback == nil, !next.entries.isEmpty { next.fallback = 0 }
        current.withLock { $0 = next }
        generation.add(1, ordering: .releasing)
    }

    public func reopenLogs() {
        var seen = Set<String>()
        for entry in snapshot.entries {
            for log in [entry.accessLog, entry.errorLog].compactMap({ $0 }) where seen.insert(log.path).inserted { log.reopen() }
        }
    }
}

/// Counts client connections against `max connections`.
final class ConnectionLimit: Sendable {
    let maximum: Int
    private let open = Atomic<Int>(0)
    private let lastComplaint = Atomic<Int>(0)

    init(maximum: Int) { self.maximum = maximum }

    /// Takes a slot, or returns false when all are in use.
    func acquire() -> Bool {
        if open.add(1, ordering: .relaxed).newValue <= maximum { return true }
        open.subtract(1, ordering: .relaxed)
        return false
    }

    func release() { open.subtract(1, ordering: .relaxed) }

    /// True at most once a second, so a flood does not flood the log as well.
    func shouldComplain() -> Bool {
        let now = time(nil)
        return lastComplaint.exchange(now, ordering: .relaxed) != now
    }
}

/// An access or error log file, re-opened on SIGUSR1. Never follows a symlink at its path, and
/// creates the file readable by its owner and group only.
public final class LogFile: Sendable {
    let path: String
    private let fd = Mutex<Int32>(-1)
    /// The formatted time of the last line, reused within the same second.
    private let stamp = Mutex<(second: time_t, combined: String, error: String)>((-1, "", ""))

    public init(path: String) {
        self.path = path
        reopen()
    }

    deinit {
        fd.withLock { if $0 >= 0 { close($0) } }
    }

    public func reopen() {
        let new = LogFileOpening.open(path)
        let old = fd.withLock { fd -> Int32 in defer { fd = new }; return fd }
        if old >= 0 { close(old) }
    }

    func write(_ line: String) {
        var bytes = Array(line.utf8)
        fd.withLock { fd in
            guard fd >= 0 else { return }
            _ = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        }
    }

    private func stamps(_ now: time_t) -> (combined: String, error: String) {
        stamp.withLock { stamp in
            if stamp.second != now {
                stamp = (now, TimeFormat.string(Double(now), "%d/%b/%Y:%H:%M:%S %z"), TimeFormat.string(Double(now), "%Y/%m/%d %H:%M:%S"))
            }
            return (stamp.combined, stamp.error)
        }
    }

    /// nginx's `combined` format.
    func writeAccess(client: String, request: String, status: Int, bytes: Int, referer: String?, agent: String?) {
        let time = stamps(Glibc.time(nil)).combined
        write("\(client) - - [\(time)] \"\(request)\" \(status) \(bytes) \"\(referer ?? "-")\" \"\(agent ?? "-")\"\n")
    }

    /// nginx's error log line: `2026/11/25 16:00:48 [error] PID#0: *CONNECTION message, client: …`.
    func writeError(level: String, connection: UInt64, message: String, details: [(String, String)]) {
        let time = stamps(Glibc.time(nil)).error
        let context = details.map { "\($0.0): \($0.1)" }.joined(separator: ", ")
        write("\(time) [\(level)] \(getpid())#0: *\(connection) \(message)\(context.isEmpty ? "" : ", " + context)\n")
    }
}

/// The small HTML pages the proxy answers with itself.
enum ProxyPages {
    static func page(_ status: Int, _ title: String, _ text: String) -> [UInt8] {
        Array("<!DOCTYPE html><html><head><title>\(status) \(title)</title></head><body><center><h1>\(status) \(title)</h1></center><hr><center>\(text)</center></body></html>\n".utf8)
    }

    static let badGateway = page(502, "Bad Gateway", "warden")
    static let gatewayTimeout = page(504, "Gateway Time-out", "warden")
    static let notFound = page(404, "Not Found", "warden")
    static let defaultMaintenance = page(503, "Service Temporarily Unavailable", "The application is being restarted; please try again in a moment.")
}
