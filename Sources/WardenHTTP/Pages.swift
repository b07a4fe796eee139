import WardenConfig
import WardenCore
import WardenPlatform

/// The dashboard's HTML: no JavaScript needed, no external assets, readable on a phone.
public enum Pages {
    static let style = """
        body{font-family:system-ui,-apple-system,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
        header{background:#1d2330;color:#fff;padding:.8em 1.2em}header a{color:#fff;text-decoration:none}
        main{padding:1em;max-width:70em;margin:auto}table{border-collapse:collapse;width:100%;background:#fff}
        th,td{padding:.45em .6em;text-align:left;border-bottom:1px solid #e3e6ea;font-size:.92em}
        th{background:#eef0f3}.ok{color:#137333;font-weight:600}.fail{color:#c5221f;font-weight:600}
        .off{color:#80868b;font-weight:600}.init{color:#b06000;font-weight:600}
        .summary{display:flex;flex-wrap:wrap;gap:1.5em;margin-bottom:1em}.summary div{background:#fff;padding:.6em 1em}
        form{display:inline}button{margin:.2em;padding:.4em .9em}.wrap{overflow-x:auto}
        h2.sites{margin-top:1.5em}figure.history{margin:1em 0;background:#fff;padding:.5em;overflow-x:auto}
        figure.history svg{max-width:100%;height:auto}figcaption{font-size:.85em;color:#5f6368}
        td.number{text-align:right;font-variant-numeric:tabular-nums}p.note{font-size:.85em;color:#5f6368}
        """

    static func page(_ title: String, refresh: Bool = true, _ body: String) -> String {
        """
        <!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>\(escape(title))</title>\
        <meta name="viewport" content="width=device-width, initial-scale=1">\(refresh ? "<meta http-equiv=\"refresh\" content=\"5\">" : "")\
        <style>\(style)</style></head><body><header><a href="/">warden</a> &mdash; \(escape(title))</header><main>\(body)</main></body></html>
        """
    }

    static func statusClass(_ snapshot: ServiceSnapshot) -> String {
        switch snapshot.monitor {
        case .notMonitored: "off"
        case .initializing: snapshot.failures.isEmpty ? "init" : "fail"
        case .monitored: snapshot.failures.isEmpty ? "ok" : "fail"
        }
    }

    /// A proxied site on the front page and its own page: its status (with its traffic) and where its
    /// routes send requests.
    struct SiteRow {
        var status: SiteStatus
        var routes: [Site.Route]
    }

    /// A service page's charts over one range.
    struct Chart {
        var range: HistoryRange
        var svg: String
    }

    static func dashboard(_ snapshots: [ServiceSnapshot], sites: [SiteRow], supervisor: Supervisor, csrfToken: String, readOnly: Bool) -> String {
        let system = SystemSnapshot.read()
        let usedMemory = system.memoryTotalBytes - system.memoryAvailableBytes
        let uptime = duration(WallClock.now() - supervisor.startedAt)
        var rows = ""
        for service in snapshots {
            rows += """
                <tr id="service-\(escape(service.name))"><td><a href="/\(escapeURL(service.name))">\(escape(service.name))</a></td>\
                <td>\(service.type)</td><td class="\(statusClass(service))" data-status="\(escape(service.status))">\(escape(service.status))</td>\
                <td>\(service.pid.map(String.init) ?? "-")</td><td>\(service.uptimeSeconds.map(duration) ?? "-")</td>\
                <td>\(service.metrics.cpuPercent.map { format($0) + "%" } ?? "-")</td>\
                <td>\(service.metrics.memoryBytes.map(bytes) ?? "-")</td><td>\(service.restarts)</td>\
                <td>\(escape(service.events.last?.message ?? "-"))</td><td>\(service.lastCheck.map { TimeFormat.http($0) } ?? "-")</td></tr>
                """
        }
        return page(
            "\(hostName())",
            """
            <div class="summary"><div>Host <b>\(escape(hostName()))</b></div><div>Uptime \(duration(system.uptimeSeconds))</div>\
            <div>Load \(format(system.load1)) \(format(system.load5)) \(format(system.load15))</div>\
            <div>Memory \(bytes(usedMemory)) of \(bytes(system.memoryTotalBytes))</div>\
            <div>warden \(Supervisor.version), up \(uptime)</div></div>
            <div class="wrap"><table><thead><tr><th>Service</th><th>Type</th><th>Status</th><th>PID</th><th>Uptime</th>\
            <th>CPU</th><th>Memory</th><th>Restarts</th><th>Last result</th><th>Checked</th></tr></thead><tbody>\(rows)</tbody></table></div>\
            \(siteTable(sites, snapshots: snapshots, csrfToken: csrfToken, readOnly: readOnly))
            \(certificates(supervisor.certificates.all, now: WallClock.now()))
            """)
    }

    /// The sites beside the services: hosts, where requests go, their traffic over the last minute
    /// (from the proxy's counters and duration histogram), maintenance (with its switch for users who
    /// may act). Each site's name leads to its page with the charts.
    static func siteTable(_ sites: [SiteRow], snapshots: [ServiceSnapshot], csrfToken: String, readOnly: Bool) -> String {
        guard !sites.isEmpty else { return "" }
        var rows = ""
        for site in sites {
            let name = site.status.name
            let traffic = site.status.traffic
            let routes = site.routes.map { "<li>" + route($0, snapshots: snapshots) + "</li>" }.joined()
            rows += """
                <tr id="site-\(escape(name))"><td><a href="\(sitePath(name))">\(escape(name))</a></td><td>\(escape(hosts(site.status)))</td>\
                <td><ul class="routes">\(routes)</ul></td>\(trafficCells(traffic))\
                <td>\(maintenanceSwitch(site.status, csrfToken: csrfToken, readOnly: readOnly, onSitePage: false))</td></tr>
                """
        }
        return """
            <h2 class="sites">Sites</h2><div class="wrap"><table id="sites"><thead><tr><th>Site</th><th>Hosts</th>\
            <th>Routes: service and upstreams</th><th>Requests/s</th><th>5xx</th><th>p50</th><th>p99</th><th>Maintenance</th></tr></thead>\
            <tbody>\(rows)</tbody></table></div><p class="note" id="traffic-window">\(trafficNote(sites.compactMap(\.status.traffic)))</p>
            """
    }

    static func sitePath(_ name: String) -> String { "/_site/" + escapeURL(name) }

    static func hosts(_ site: SiteStatus) -> String { site.hosts.isEmpty ? "(default)" : site.hosts.joined(separator: " ") }

    /// Requests per second, the share of 5xx answers, p50 and p99, with the figures in data attributes.
    static func trafficCells(_ traffic: SiteTraffic?) -> String {
        let figures = TrafficFormat.cells(traffic)
        return """
            <td class="number" data-rate="\(traffic?.requestsPerSecond ?? 0)">\(figures.rate)</td>\
            <td class="number\(traffic?.errorRatio ?? 0 > 0 ? " fail" : "")" data-errors="\(traffic?.errorRatio ?? 0)">\(figures.errors)</td>\
            <td class="number" data-p50="\(traffic?.p50 ?? 0)">\(figures.p50)</td><td class="number" data-p99="\(traffic?.p99 ?? 0)">\(figures.p99)</td>
            """
    }

    /// Which window the figures span, said under them.
    static func trafficNote(_ traffic: [SiteTraffic]) -> String {
        "Requests per second, share of 5xx answers and p50/p99 latency \(TrafficFormat.window(traffic)), from the proxy's counters and duration histogram."
    }

    /// The site's maintenance state, and the switch for users who may act (CSRF-protected like every
    /// action). On the site's page, the answer leads back to it (else to the front page).
    static func maintenanceSwitch(_ site: SiteStatus, csrfToken: String, readOnly: Bool, onSitePage: Bool) -> String {
        let state = site.maintenance ? "on" : "off"
        var cell = "<span class=\"\(site.maintenance ? "init" : "ok")\" data-maintenance=\"\(state)\">\(state)</span>"
        if !readOnly {
            let next = site.maintenance ? "off" : "on"
            cell += """
                <form method="post" action="/_maintenance"><input type="hidden" name="securitytoken" value="\(csrfToken)">\
                <input type="hidden" name="site" value="\(escape(site.name))"><input type="hidden" name="action" value="\(next)">\
                \(onSitePage ? "<input type=\"hidden\" name=\"back\" value=\"site\">" : "")\
                <button type="submit" name="do" value="maintenance-\(next)">Maintenance \(next)</button></form>
                """
        }
        return cell
    }

    /// A site's page: what the front page says of it, its charts and its events.
    static func site(_ site: SiteRow, snapshots: [ServiceSnapshot], csrfToken: String, readOnly: Bool, chart: Chart?, now: Double) -> String {
        let status = site.status
        let figures = TrafficFormat.cells(status.traffic)
        var details: [(String, String)] = [
            ("Hosts", escape(hosts(status))),
            ("Routes", "<ul class=\"routes\">" + site.routes.map { "<li>" + route($0, snapshots: snapshots) + "</li>" }.joined() + "</ul>"),
            ("Maintenance", "<span id=\"maintenance\">" + maintenanceSwitch(status, csrfToken: csrfToken, readOnly: readOnly, onSitePage: true) + "</span>"),
            ("Requests", figures.rate + " per second"), ("5xx answers", figures.errors), ("Latency", "p50 \(figures.p50), p99 \(figures.p99)"),
        ]
        if let certificate = status.certificate {
            details.append(("Certificate", "\(escape(certificate.names.joined(separator: " "))), expires \(TimeFormat.http(certificate.notAfter)) (\(certificate.daysLeft(now: now)) days)"))
        }
        let table = details.map { "<tr><th>\($0.0)</th><td>\($0.1)</td></tr>" }.joined()
        let charts = chart.map { chart -> String in
            let other: HistoryRange = chart.range == .hour ? .day : .hour
            let link = "<a href=\"\(sitePath(status.name))?range=\(other.rawValue)\">last \(other.rawValue)</a>"
            let spans = chart.range == .hour ? "a point per 10 s" : "a point per minute"
            return "<h3>Last \(chart.range.rawValue) <small>(\(spans); \(link))</small></h3>\(chart.svg)"
        } ?? "<p>No traffic counted yet.</p>"
        let events = status.events.reversed().map {
            "<tr><td>\(TimeFormat.http($0.date))</td><td>\(escape($0.title))</td><td>\(escape($0.message))</td></tr>"
        }.joined()
        return page(
            status.name,
            """
            <h2>Site '\(escape(status.name))'</h2><div class="wrap"><table id="site">\(table)</table></div>\
            <p class="note" id="traffic-window">\(trafficNote(status.traffic.map { [$0] } ?? []))</p>\(charts)\
            <h3>Recent events</h3><div class="wrap"><table><thead><tr><th>Date</th><th>Event</th><th>Description</th></tr></thead>\
            <tbody>\(events.isEmpty ? "<tr><td colspan=3>none</td></tr>" : events)</tbody></table></div>
            """)
    }

    /// `/prefix → service NAME: 127.0.0.1:8101, …`: where a route sends requests (never an upstream's credentials).
    static func route(_ route: Site.Route, snapshots: [ServiceSnapshot]) -> String {
        func link(_ service: String) -> String { "service <a href=\"/\(escapeURL(service))\">\(escape(service))</a>" }
        let target: String
        switch route.target {
        case .upstream(let url, let service):
            let upstream = escape("\(url.scheme)://\(url.host):\(url.port)\(url.path)")
            target = service.map { link($0) + ": " + upstream } ?? upstream
        case .instances(let service):
            let ready = snapshots.compactMap { $0.instance?.group == service && $0.instance?.ready == true ? $0.instance?.port : nil }
            target = link(service) + ": " + (ready.isEmpty ? "no instance ready" : ready.map { "127.0.0.1:\($0)" }.joined(separator: ", "))
        case .directory(let directory):
            target = "files in " + escape(directory)
        }
        return "<code>\(escape(route.prefix))</code> &rarr; " + target
    }

    static func service(_ service: ServiceSnapshot, csrfToken: String, readOnly: Bool, configuration: Configuration, history: Chart?) -> String {
        var buttons = ""
        if !readOnly {
            for action in UserAction.allCases {
                buttons += """
                    <form method="post" action="/\(escapeURL(service.name))"><input type="hidden" name="securitytoken" value="\(csrfToken)">\
                    <input type="hidden" name="action" value="\(action.rawValue)"><button type="submit" name="do" value="\(action.rawValue)">\(action.rawValue.capitalizedFirst)</button></form>
                    """
            }
            if let group = service.instance?.group {
                buttons += """
                    <form method="post" action="/_deploy"><input type="hidden" name="securitytoken" value="\(csrfToken)">\
                    <input type="hidden" name="service" value="\(escape(group))"><button type="submit">Deploy \(escape(group))</button></form>
                    """
            }
        }
        // An instance is shown with its service's definition.
        let config = configuration.service(named: service.instance?.group ?? service.name)
        var details: [(String, String)] = [
            ("Status", "<span class=\"\(statusClass(service))\" id=\"status\">\(escape(service.status))</span>"),
            ("Monitoring", service.monitor.rawValue), ("Mode", service.mode),
            ("PID", service.pid.map(String.init) ?? "-"), ("Uptime", service.uptimeSeconds.map(duration) ?? "-"),
            ("Restarts", String(service.restarts)),
            ("Last exit", service.metrics.exitStatus.map { "<span id=\"exit\" data-exit=\"\($0)\">\(escape(Pages.exit($0, at: service.metrics.exitedAt)))</span>" } ?? "-"),
            ("CPU", service.metrics.cpuPercent.map { format($0) + "%" } ?? "-"),
            ("Memory", service.metrics.memoryBytes.map(bytes) ?? "-"),
            ("Groups", service.groups.isEmpty ? "-" : escape(service.groups.joined(separator: ", "))),
            ("Depends on", service.dependencies.isEmpty ? "-" : escape(service.dependencies.joined(separator: ", "))),
        ]
        if let instance = service.instance {
            details.append(
                ("Instance", "\(instance.index) of '\(escape(instance.group))' on port \(instance.port), \(instance.ready ? "ready" : "not ready")"))
        }
        if let start = config?.start { details.append(("Start program", escape(start.commandLine))) }
        if let stop = config?.stop { details.append(("Stop program", escape(stop.commandLine))) }
        if let rules = config?.rules, !rules.isEmpty { details.append(("Rules", "\(rules.count) (\(rules.map(\.action.name).joined(separator: ", ")))")) }
        let table = details.map { "<tr><th>\($0.0)</th><td>\($0.1)</td></tr>" }.joined()
        let events = service.events.reversed().map {
            "<tr><td>\(TimeFormat.http($0.date))</td><td>\(escape($0.title))</td><td>\(escape($0.message))</td><td>\(escape($0.action))</td></tr>"
        }.joined()
        // The last lines of its own output, read from its log file as the page is built (and refreshed).
        let output = configuration.logPath(ofServiceNamed: service.name).map { LogTail(path: $0).lastLines(20, window: 64 << 10) } ?? []
        let log = output.isEmpty ? "" : "<h3>Output</h3><pre id=\"log\">\(escape(output.joined(separator: "\n")))</pre>"
        let charts = history.map { chart -> String in
            let other: HistoryRange = chart.range == .hour ? .day : .hour
            let link = "<a href=\"/\(escapeURL(service.name))?range=\(other.rawValue)\">last \(other.rawValue)</a>"
            return "<h3>Last \(chart.range.rawValue) <small>(\(link))</small></h3>\(chart.svg)"
        } ?? ""
        return page(
            service.name,
            """
            <h2>\(escape(service.type)) '\(escape(service.name))'</h2><div class="wrap"><table>\(table)</table></div>
            <p>\(buttons)</p>\(charts)<h3>Recent events</h3><div class="wrap"><table><thead><tr><th>Date</th><th>Event</th><th>Description</th>\
            <th>Action</th></tr></thead><tbody>\(events.isEmpty ? "<tr><td colspan=4>none</td></tr>" : events)</tbody></table></div>\(log)
            """)
    }

    static let unauthorized = page(
        "401 Unauthorized", refresh: false,
        "<h2>Unauthorized</h2><p>You are not authorized to access warden. Either you supplied the wrong credentials, or your browser doesn't understand how to supply them.</p>")

    static func message(_ title: String, _ text: String) -> String {
        page(title, refresh: false, "<h2>\(escape(title))</h2><p>\(text)</p>")
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "&": out += "&amp;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }

    public static func escapeURL(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            if (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a) || "-_.~".utf8.contains(byte) {
                out.append(Character(UnicodeScalar(byte)))
            } else {
                out += "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
            }
        }
        return out
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, abs(seconds) < 1e15 else { return "-" }
        let total = Int(seconds)
        let days = total / 86400
        let hours = total % 86400 / 3600
        let minutes = total % 3600 / 60
        if days > 0 { return "\(days)d \(hours)h \(minutes)m" }
        if hours > 0 { return "\(hours)h \(minutes)m" }
        return "\(minutes)m \(total % 60)s"
    }

    static func bytes(_ value: UInt64) -> String {
        let units = ["B", "kB", "MB", "GB", "TB"]
        var amount = Double(value)
        var unit = 0
        while amount >= 1024, unit < units.count - 1 {
            amount /= 1024
            unit += 1
        }
        return "\(format(amount)) \(units[unit])"
    }

    static let signalNames = [1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE", 15: "SIGTERM"]

    /// How a process ended: "exit status 3", "killed by signal 9 (SIGKILL)", and when.
    static func exit(_ code: Int, at time: Double?) -> String {
        let what = code >= 0 ? "exit status \(code)" : "killed by signal \(-code)" + (signalNames[-code].map { " (\($0))" } ?? "")
        return what + (time.map { " at " + TimeFormat.http($0) } ?? "")
    }

    static func format(_ value: Double) -> String {
        guard value.isFinite, abs(value) < 1e15 else { return value.isNaN ? "-" : String(describing: value) }
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(abs(tenths % 10))"
    }

    public static func hostName() -> String { HostName.current }
}

extension String {
    var capitalizedFirst: String { prefix(1).uppercased() + dropFirst() }
}

#if canImport(Glibc)
import Glibc
#endif

/// monit's plain-text status and summary, as the CLI prints them.
enum TextStatus {
    static func summary(_ snapshots: [ServiceSnapshot]) -> String {
        var out = "warden \(Supervisor.version)\n"
        out += " " + "Service Name".padding(33) + "Status".padding(28) + "Type".padding(14) + "\n"
        for service in snapshots {
            let status = service.status.count > 28 ? String(service.status.prefix(25)) + "..." : service.status
            out += " " + service.name.padding(33) + status.padding(28) + service.type.padding(14) + "\n"
        }
        return out
    }

    static func status(_ snapshots: [ServiceSnapshot], name: String?, sites: [SiteStatus] = []) -> String {
        var out = "warden \(Supervisor.version)\n\n"
        for service in snapshots where name == nil || service.name == name {
            out += "\(service.type) '\(service.name)'\n"
            var lines = [
                ("status", service.status), ("monitoring status", service.monitor == .notMonitored ? "Not monitored" : service.monitor == .initializing ? "Initializing" : "Monitored"),
                ("monitoring mode", service.mode),
            ]
            if let pid = service.pid { lines.append(("pid", String(pid))) }
            if let uptime = service.uptimeSeconds { lines.append(("uptime", Pages.duration(uptime))) }
            if let cpu = service.metrics.cpuPercent { lines.append(("cpu", Pages.format(cpu) + "%")) }
            if let memory = service.metrics.memoryBytes { lines.append(("memory", Pages.bytes(memory))) }
            lines.append(("restarts", String(service.restarts)))
            if let code = service.metrics.exitStatus { lines.append(("last exit", Pages.exit(code, at: service.metrics.exitedAt))) }
            if let checked = service.lastCheck { lines.append(("data collected", TimeFormat.http(checked))) }
            for (key, value) in lines { out += "  " + key.padding(30) + value + "\n" }
            out += "\n"
        }
        for site in sites where name == nil || site.name == name {
            out += "Site '\(site.name)'\n"
            var lines = [("hosts", Pages.hosts(site)), ("maintenance", site.maintenance ? "on" : "off")]
            if let services = site.services, !services.isEmpty { lines.append(("services", services.joined(separator: " "))) }
            if let traffic = site.traffic {
                let figures = TrafficFormat.cells(traffic)
                lines.append(("requests", "\(figures.rate)/s, 5xx \(figures.errors), p50 \(figures.p50), p99 \(figures.p99) (\(TrafficFormat.window([traffic])))"))
            }
            if let event = site.events.last { lines.append(("last event", "\(event.title): \(event.message) (\(TimeFormat.http(event.date)))")) }
            lines += certificateLines(site.certificate, now: WallClock.now())
            for (key, value) in lines { out += "  " + key.padding(30) + value + "\n" }
            out += "\n"
        }
        return out
    }
}

extension String {
    func padding(_ width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
}
