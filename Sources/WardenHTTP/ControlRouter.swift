import WardenPlatform
import Logging
import NIOHTTP1
import Synchronization
import WardenConfig
import WardenCore

#if canImport(Glibc)
import Glibc
#endif

public struct ControlRequest: Sendable {
    public var method: String
    public var path: String
    public var query: [String: String]
    public var headers: [(String, String)]
    public var form: [String: String]
    public var client: String

    init(head: HTTPRequestHead, body: [UInt8], client: String) {
        method = head.method.rawValue
        let uri = head.uri
        let mark = uri.firstIndex(of: "?")
        path = FormDecoding.percentDecode(String(uri[..<(mark ?? uri.endIndex)]))
        query = mark.map { FormDecoding.decode(String(uri[uri.index(after: $0)...])) } ?? [:]
        headers = head.headers.map { ($0.name, $0.value) }
        let contentType = head.headers.first(name: "Content-Type") ?? ""
        form = contentType.hasPrefix("application/x-www-form-urlencoded") ? FormDecoding.decode(String(decoding: body, as: UTF8.self)) : [:]
        self.client = client
    }

    public init(method: String, path: String, query: [String: String] = [:], headers: [(String, String)] = [], form: [String: String] = [:], client: String = "127.0.0.1") {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.form = form
        self.client = client
    }

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}

public struct ControlResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    static func text(_ status: Int, _ text: String, type: String = "text/plain; charset=utf-8") -> ControlResponse {
        ControlResponse(status: status, headers: [("Content-Type", type)], body: Array(text.utf8))
    }

    static func html(_ html: String, status: Int = 200) -> ControlResponse {
        text(status, html, type: "text/html; charset=utf-8")
    }

    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// Routes requests to the dashboard, the API and actions, after authentication.
public final class ControlRouter: Sendable {
    let supervisor: Supervisor
    let policy: AccessPolicy
    let configuration: Configuration
    let logger: Logger
    /// Proves a form was served by this daemon: POSTs without it are refused (CSRF).
    let csrfToken: String
    let metrics: MetricsExporter
    /// The listener of `set metrics listen`: it answers `/metrics` and nothing else.
    let metricsOnly: Bool
    /// What the service pages chart; fed by the control server.
    let history: HistoryStore
    private let failures = Mutex<[String: Int]>([:])
    /// Recent events of proxied sites, newest last. Sites are not services, so the supervisor keeps
    /// no history for them; without this a maintenance change would be in no status at all.
    private let siteEvents = Mutex<[String: [Event]]>([:])
    static let siteEventsKept = 10

    /// Keeps an event when it is about a site (`warden maintenance on|off`).
    func record(_ event: Event) async {
        guard await supervisor.configuration.sites.contains(where: { $0.name == event.service }) else { return }
        siteEvents.withLock { $0[event.service, default: []] = Array(($0[event.service, default: []] + [event]).suffix(Self.siteEventsKept)) }
    }

    func siteStatuses() async -> [SiteStatus] {
        let sites = await supervisor.configuration.sites
        let maintenance = await supervisor.maintenanceSites
        let events = siteEvents.withLock { $0 }
        let traffic = siteTraffic()
        return sites.map { site in
            // The services behind its routes, each once, in route order.
            var services: [String] = []
            for route in site.routes {
                switch route.target {
                case .upstream(_, let service?), .instances(let service): if !services.contains(service) { services.append(service) }
                case .upstream, .directory: break
                }
            }
            return SiteStatus(
                name: site.name, hosts: site.hosts, maintenance: maintenance.contains(site.name), events: events[site.name] ?? [],
                certificate: supervisor.certificates.certificate(of: site.name), services: services,
                traffic: traffic.first { $0.site == site.name })
        }
    }

    public init(
        supervisor: Supervisor, policy: AccessPolicy, configuration: Configuration, logger: Logger, metrics: MetricsExporter = MetricsExporter(),
        metricsOnly: Bool = false
    ) {
        self.metrics = metrics
        self.metricsOnly = metricsOnly
        self.supervisor = supervisor
        self.policy = policy
        self.configuration = configuration
        self.logger = logger
        self.history = HistoryStore(cycleSeconds: configuration.daemon.interval)
        var generator = SystemRandomNumberGenerator()  // a cryptographically secure source
        self.csrfToken = (0..<4).map { _ in String(generator.next() as UInt64, radix: 16) }.joined()
    }

    public func handle(_ request: ControlRequest) async -> ControlResponse {
        let identity: (user: String?, readOnly: Bool)
        switch policy.authenticate(authorization: request.header("Authorization")) {
        case .granted(let user, let readOnly):
            identity = (user, readOnly)
            failures.withLock { $0[request.client] = nil }
        case .denied:
            // Repeated failures from one address are answered ever more slowly (up to 3 s).
            let count = failures.withLock { failures -> Int in
                failures[request.client, default: 0] += 1
                return failures[request.client]!
            }
            if count > 1 { try? await Task.sleep(for: .milliseconds(min(3000, 50 << min(count, 8)))) }
            let who = request.header("Authorization") == nil ? "no credentials" : "wrong credentials"
            logger.error("HttpRequest: access denied -- client [\(request.client)]: \(who)")
            var response = ControlResponse.html(Pages.unauthorized, status: 401)
            response.headers.append(("WWW-Authenticate", "Basic realm=\"warden\""))
            return response
        }

        if metricsOnly, request.path != "/metrics" { return .text(404, "Not Found") }
        switch (request.method, request.path) {
        case ("GET", "/"), ("HEAD", "/"):
            return .html(
                Pages.dashboard(
                    await supervisor.snapshots(), sites: await siteRows(), supervisor: supervisor, csrfToken: csrfToken,
                    readOnly: identity.readOnly))
        case ("GET", "/_status"):
            return await status(request)
        case ("GET", "/_summary"):
            return .text(200, TextStatus.summary(await supervisor.snapshots()))
        case ("GET", "/metrics"):
            metrics.observe(certificates: supervisor.certificates.all)
            await metrics.proxy.refresh(fresh: true)
            return .text(200, metrics.exposition(await supervisor.snapshots()), type: "text/plain; version=0.0.4; charset=utf-8")
        case ("POST", "/_doaction"):
            return await action(request, identity: identity, service: request.form["service"], redirect: false)
        case ("POST", "/_maintenance"):
            return await maintenance(request, identity: identity)
        case ("POST", "/_deploy"):
            return await deploy(request, identity: identity)
        case ("GET", "/_history"):
            return request.query["site"] != nil ? siteHistoryDocument(request) : historyDocument(request)
        case ("GET", let path) where path.hasPrefix("/_site/"), ("HEAD", let path) where path.hasPrefix("/_site/"):
            return await sitePage(String(path.dropFirst("/_site/".count)), request: request, readOnly: identity.readOnly)
        case ("GET", "/_deploy"):
            guard let record = await supervisor.deployRecord(of: request.query["service"] ?? "") else {
                return .text(404, "no deploy of \"\(request.query["service"] ?? "")\" since warden started")
            }
            return ControlResponse(status: 200, headers: [("Content-Type", "application/json")], body: (try? JSONCoding.encode(record)) ?? [])
        case ("GET", _), ("HEAD", _):
            let name = String(request.path.dropFirst())
            guard let snapshot = await supervisor.snapshot(named: name) else {
                return .html(Pages.message("Not found", "There is no service named \"\(Pages.escape(name))\"."), status: 404)
            }
            return .html(
                Pages.service(
                    snapshot, csrfToken: csrfToken, readOnly: identity.readOnly, configuration: configuration,
                    history: chart(of: name, range: HistoryRange(rawValue: request.query["range"] ?? "") ?? .hour)))
        case ("POST", _):
            return await action(request, identity: identity, service: String(request.path.dropFirst()), redirect: true)
        default:
            return .text(405, "Method Not Allowed")
        }
    }

    private func status(_ request: ControlRequest) async -> ControlResponse {
        let snapshots = await supervisor.snapshots()
        switch request.query["format"]?.lowercased() {
        case "xml":
            return .text(200, await XMLStatus.document(snapshots, supervisor: supervisor, configuration: configuration), type: "text/xml; charset=ISO-8859-1")
        case "json":
            let document = StatusDocument(
                version: Supervisor.version, uptime: WallClock.now() - supervisor.startedAt, poll: configuration.daemon.interval,
                controlFile: configuration.controlFile, services: snapshots, sites: await siteStatuses())
            let bytes = (try? JSONCoding.encode(document, pretty: true)) ?? []
            return ControlResponse(status: 200, headers: [("Content-Type", "application/json")], body: bytes)
        case "table":
            let now = WallClock.now()
            return .text(
                200,
                StatusTable.render(
                    host: Pages.hostName(), system: SystemSnapshot.read(), wardenUptime: now - supervisor.startedAt, services: snapshots,
                    sites: await siteStatuses(), now: now, colour: request.query["color"] == "1"))
        default:
            return .text(200, TextStatus.status(snapshots, name: request.query["service"], sites: await siteStatuses()))
        }
    }

    /// State-changing requests: POST only, with the CSRF token (or the CLI's header), never read-only.
    /// Returns the refusal, or nil when the change may go ahead.
    private func refusal(_ request: ControlRequest, identity: (user: String?, readOnly: Bool)) -> ControlResponse? {
        let token = request.form["securitytoken"] ?? request.header("X-CSRF-Token") ?? ""
        let fromCLI = request.header("X-Requested-By") == "warden-cli"
        guard fromCLI || AccessPolicy.constantTimeEquals(Array(token.utf8), Array(csrfToken.utf8)) else {
            logger.error("HttpRequest: access denied -- client [\(request.client)]: missing or invalid CSRF token")
            return .html(Pages.message("Forbidden", "Invalid CSRF token."), status: 403)
        }
        guard !identity.readOnly else {
            logger.error("HttpRequest: access denied -- client [\(request.client)]: user '\(identity.user ?? "")' is read-only")
            return .html(Pages.message("Forbidden", "You are not allowed to change anything (read-only user)."), status: 403)
        }
        return nil
    }

    private func action(_ request: ControlRequest, identity: (user: String?, readOnly: Bool), service: String?, redirect: Bool) async -> ControlResponse {
        if let refusal = refusal(request, identity: identity) { return refusal }
        guard let raw = request.form["action"], let action = UserAction(rawValue: raw) else {
            return .text(400, "invalid action \"\(request.form["action"] ?? "")\"")
        }
        guard let service, await supervisor.hasService(service) else {
            return .text(400, "There is no service named \"\(service ?? "")\"")
        }
        logger.info("'\(service)' \(action.rawValue) requested by \(identity.user ?? "client") from \(request.client)")
        // Like monit, the answer does not wait for the action to finish.
        let supervisor = self.supervisor
        Task { try? await supervisor.perform(action, on: service) }
        if redirect {
            return ControlResponse(status: 303, headers: [("Location", "/\(Pages.escapeURL(service))")], body: [])
        }
        return .text(200, "\(action.rawValue) \(service)\n")
    }
}

extension ControlRouter {
    /// `warden deploy NAME`: `service=NAME`; answers once the deploy has begun.
    fileprivate func deploy(_ request: ControlRequest, identity: (user: String?, readOnly: Bool)) async -> ControlResponse {
        if let refusal = refusal(request, identity: identity) { return refusal }
        let service = request.form["service"] ?? ""
        do {
            try await supervisor.beginDeploy(service)
        } catch {
            return .text(400, "\(error)")
        }
        logger.info("'\(service)' deploy requested by \(identity.user ?? "client") from \(request.client)")
        if request.form["securitytoken"] != nil {
            // From the dashboard's button: back to the page, where the events show the deploy.
            return ControlResponse(status: 303, headers: [("Location", "/")], body: [])
        }
        return .text(202, "deploy \(service) started\n")
    }

    /// `warden maintenance on|off SITE`: `site=NAME&action=on|off`.
    fileprivate func maintenance(_ request: ControlRequest, identity: (user: String?, readOnly: Bool)) async -> ControlResponse {
        if let refusal = refusal(request, identity: identity) { return refusal }
        guard let site = request.form["site"], let action = request.form["action"], action == "on" || action == "off" else {
            return .text(400, "name a site and 'on' or 'off'")
        }
        do {
            try await supervisor.setMaintenance(site, action == "on")
        } catch {
            return .text(400, "\(error)")
        }
        logger.info("'\(site)' maintenance \(action) requested by \(identity.user ?? "client") from \(request.client)")
        if request.form["securitytoken"] != nil {
            // From the dashboard's button: back to the page it is on (the site's, or the front page), which shows the site's new state.
            let page = request.form["back"] == "site" ? Pages.sitePath(site) : "/#site-\(Pages.escapeURL(site))"
            return ControlResponse(status: 303, headers: [("Location", page)], body: [])
        }
        return .text(200, "maintenance \(action) \(site)\n")
    }
}

extension ControlRouter {
    /// The sites as the front page lists them: the status, and what each route sends to.
    fileprivate func siteRows() async -> [Pages.SiteRow] {
        let definitions = await supervisor.configuration.sites
        return await siteStatuses().map { status in
            Pages.SiteRow(status: status, routes: definitions.first { $0.name == status.name }?.routes ?? [])
        }
    }

    fileprivate func historyView(of name: String, range: HistoryRange) -> HistoryDocument? {
        guard let history = history.history(of: name) else { return nil }
        let now = WallClock.now()
        let window = history.window(range, now: now)
        return HistoryDocument(
            service: name, range: range.rawValue, start: window.start, end: window.end, points: history.points(range, now: now),
            marks: history.marks(range, now: now))
    }

    /// The service page's charts; nil before the service's first check.
    fileprivate func chart(of name: String, range: HistoryRange) -> Pages.Chart? {
        guard let view = historyView(of: name, range: range) else { return nil }
        let svg = HistoryChart.svg(
            service: name, points: view.points, marks: view.marks, from: view.start, to: view.end,
            nominalSpacing: range == .hour ? Double(history.cycleSeconds) : 60)
        return Pages.Chart(range: range, svg: svg)
    }

    /// `GET /_site/NAME[?range=day]`: a site's page.
    fileprivate func sitePage(_ name: String, request: ControlRequest, readOnly: Bool) async -> ControlResponse {
        guard let site = await siteRows().first(where: { $0.status.name == name }) else {
            return .html(Pages.message("Not found", "There is no site named \"\(Pages.escape(name))\"."), status: 404)
        }
        let range = HistoryRange(rawValue: request.query["range"] ?? "") ?? .hour
        let chart = siteHistoryView(of: name, range: range).map { view in
            Pages.Chart(
                range: range,
                svg: HistoryChart.siteSVG(
                    site: name, points: view.points, marks: view.marks, from: view.start, to: view.end,
                    nominalSpacing: range == .hour ? SiteHistory.hourSpan : SiteHistory.daySpan))
        }
        return .html(
            Pages.site(
                site, snapshots: await supervisor.snapshots(), csrfToken: csrfToken, readOnly: readOnly, chart: chart, now: WallClock.now()))
    }

    fileprivate func siteHistoryView(of name: String, range: HistoryRange) -> SiteHistoryDocument? {
        guard let history = metrics.proxy.history(of: name) else { return nil }
        let now = WallClock.now()
        let window = history.window(range, now: now)
        return SiteHistoryDocument(
            site: name, range: range.rawValue, start: window.start, end: window.end, points: history.points(range, now: now),
            marks: history.marks(range, now: now))
    }

    /// `GET /_history?site=NAME&range=hour|day`: the points and marks a site's charts draw.
    fileprivate func siteHistoryDocument(_ request: ControlRequest) -> ControlResponse {
        let name = request.query["site"] ?? ""
        guard let range = HistoryRange(rawValue: request.query["range"] ?? "hour") else { return .text(400, "range is 'hour' or 'day'") }
        guard let view = siteHistoryView(of: name, range: range) else { return .text(404, "no history of site \"\(name)\"") }
        return ControlResponse(status: 200, headers: [("Content-Type", "application/json")], body: (try? JSONCoding.encode(view)) ?? [])
    }

    /// `GET /_history?service=NAME&range=hour|day`: the points and marks the service's charts draw.
    fileprivate func historyDocument(_ request: ControlRequest) -> ControlResponse {
        let name = request.query["service"] ?? ""
        guard let range = HistoryRange(rawValue: request.query["range"] ?? "hour") else { return .text(400, "range is 'hour' or 'day'") }
        guard let view = historyView(of: name, range: range) else { return .text(404, "no history of \"\(name)\"") }
        return ControlResponse(status: 200, headers: [("Content-Type", "application/json")], body: (try? JSONCoding.encode(view)) ?? [])
    }
}

/// The JSON status document (`/_status?format=json`, `warden status --json`).
public struct StatusDocument: Codable, Sendable {
    public var version: String
    public var uptime: Double
    public var poll: Int
    public var controlFile: String
    public var services: [ServiceSnapshot]
    /// Proxied sites (`check site`); absent from daemons older than this field.
    public var sites: [SiteStatus]?
}

/// A proxied site in the status: whether it is in planned maintenance, and its recent events.
public struct SiteStatus: Codable, Sendable {
    public var name: String
    public var hosts: [String]
    public var maintenance: Bool
    public var events: [Event]
    /// The certificate the site is served with over TLS (absent without one, and from older daemons).
    public var certificate: SiteCertificate?
    /// The services behind its routes (absent from older daemons).
    public var services: [String]?
    /// Its requests over the last minute (absent before the proxy has counted any, and from older daemons).
    public var traffic: SiteTraffic?
}

enum FormDecoding {
    static func decode(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            result[percentDecode(String(parts[0]))] = parts.count > 1 ? percentDecode(String(parts[1])) : ""
        }
        return result
    }

    static func percentDecode(_ text: String) -> String {
        PercentEncoding.decode(text, plusAsSpace: true) ?? text
    }
}
