import NIOCore
import Synchronization
import WardenConfig
import WardenPlatform

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
