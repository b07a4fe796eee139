import WardenConfig
import WardenCore
import Prometheus
import Synchronization
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

/// `/_status?format=xml` in monit's shape, so scripts written for monit keep working.
enum XMLStatus {
    static func document(_ snapshots: [ServiceSnapshot], supervisor: Supervisor, configuration: Configuration) async -> String {
        let system = SystemSnapshot.read()
        let now = WallClock.now()
        var names = utsname()
        uname(&names)
        func field<T>(_ value: T) -> String {
            withUnsafeBytes(of: value) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        var xml = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><monit><server>"
        xml += "<id>\(Int(supervisor.startedAt))</id><incarnation>\(Int(supervisor.startedAt))</incarnation>"
        xml += "<version>\(Supervisor.version)</version><uptime>\(Int(now - supervisor.startedAt))</uptime>"
        xml += "<poll>\(configuration.daemon.interval)</poll><startdelay>\(configuration.daemon.startDelay)</startdelay>"
        xml += "<localhostname>\(escape(Pages.hostName()))</localhostname><controlfile>\(escape(configuration.controlFile))</controlfile>"
        if let httpd = configuration.httpd {
            xml += "<httpd><address>\(escape(httpd.address ?? ""))</address><port>\(httpd.port ?? 0)</port><ssl>\(httpd.ssl == nil ? 0 : 1)</ssl></httpd>"
        }
        xml += "</server><platform><name>\(escape(field(names.sysname)))</name><release>\(escape(field(names.release)))</release>"
        xml += "<version>\(escape(field(names.version)))</version><machine>\(escape(field(names.machine)))</machine>"
        xml += "<cpu>\(system.cpuCount)</cpu><memory>\(system.memoryTotalBytes / 1024)</memory><swap>\(system.swapTotalBytes / 1024)</swap></platform>"
        for service in snapshots {
            xml += serviceElement(service, now: now, system: system, configuration: configuration)
        }
        // monit always has a system service: an implicit `check system $HOST` after the others.
        if !snapshots.contains(where: { $0.monitType == 5 }) {
            xml += systemService(name: Pages.hostName(), now: now, system: system)
        }
        return xml + "</monit>"
    }

    /// One `<service>`, with the elements monit 5.33 writes for its type, in monit's order
    /// (observed in ../shared/reference/monit-5.33/samples/status-sample.xml).
    static func serviceElement(_ service: ServiceSnapshot, now: Double, system: SystemSnapshot, configuration: Configuration) -> String {
        if service.monitType == 5 {
            return systemService(
                name: service.name, now: now, system: system, collected: service.lastCheck, status: statusBits(service),
                monitor: monitorValue(service), mode: service.mode, pending: service.busy)
        }
        var xml = head(
            type: service.monitType, name: service.name, collected: service.lastCheck ?? now, status: statusBits(service),
            monitor: monitorValue(service), mode: service.mode, pending: service.busy)
        if let pid = service.pid {
            let process = ProcessTable.snapshot(pid)
            let identity = ProcessResources.identity(pid)
            xml += "<pid>\(pid)</pid><ppid>\(process.map { Int($0.parentPID) } ?? -1)</ppid>"
            xml += "<uid>\(identity.map { Int($0.uid) } ?? -1)</uid><euid>\(identity.map { Int($0.euid) } ?? -1)</euid>"
            xml += "<gid>\(identity.map { Int($0.gid) } ?? -1)</gid>"
            xml += "<uptime>\(Int(service.uptimeSeconds ?? 0))</uptime>"
            xml += "<threads>\(service.metrics.threads ?? process?.threads ?? 0)</threads>"
            xml += "<children>\(service.metrics.children ?? 0)</children>"
            let kilobytes = (service.metrics.memoryBytes ?? 0) / 1024
            let totalKilobytes = (service.metrics.totalMemoryBytes ?? service.metrics.memoryBytes ?? 0) / 1024
            let percent = Double(kilobytes) / Double(max(1, system.memoryTotalBytes / 1024)) * 100
            let percentTotal = Double(totalKilobytes) / Double(max(1, system.memoryTotalBytes / 1024)) * 100
            xml += "<memory><percent>\(Pages.format(percent))</percent><percenttotal>\(Pages.format(percentTotal))</percenttotal>"
            xml += "<kilobyte>\(kilobytes)</kilobyte><kilobytetotal>\(totalKilobytes)</kilobytetotal></memory>"
            xml += "<cpu><percent>\(Pages.format(service.metrics.cpuPercent ?? 0))</percent><percenttotal>\(Pages.format(service.metrics.totalCPUPercent ?? service.metrics.cpuPercent ?? 0))</percenttotal></cpu>"
            let descriptors = ProcessResources.descriptors(pid)
            let open = descriptors?.open ?? 0
            // "unlimited" is -1, as monit prints it.
            let soft = descriptors?.limit.map { Int($0) } ?? -1
            let hard = descriptors?.hardLimit.map { Int($0) } ?? -1
            xml += "<filedescriptors><open>\(open)</open><opentotal>\(open)</opentotal>"
            xml += "<limit><soft>\(soft)</soft><hard>\(hard)</hard></limit></filedescriptors>"
            // Totals from /proc/PID/io; `count` is monit's per-second rate between cycles, which
            // warden does not sample, so it is 0.
            let io = ProcessResources.io(pid)
            let directions: [(String, [(String, UInt64?)])] = [
                ("read", [("bytesgeneric", io?.readBytes), ("bytes", io?.diskReadBytes), ("operations", io?.readOperations)]),
                ("write", [("bytesgeneric", io?.writeBytes), ("bytes", io?.diskWriteBytes), ("operations", io?.writeOperations)]),
            ]
            for (direction, totals) in directions {
                xml += "<\(direction)>"
                for (element, total) in totals {
                    xml += "<\(element)><count>0</count><total>\(total ?? 0)</total></\(element)>"
                }
                xml += "</\(direction)>"
            }
        }
        xml += ports(of: service, configuration: configuration)
        return xml + "</service>"
    }

    /// `<port>` for each TCP connection test of the service, as monit lists them.
    static func ports(of service: ServiceSnapshot, configuration: Configuration) -> String {
        guard let config = configuration.services.first(where: { $0.name == service.name }) else { return "" }
        var xml = ""
        let responseTime = service.metrics.responseTime.map { MonitFormat.fixed($0, 6) } ?? "-1.000000"
        for rule in config.rules {
            guard case .connection(let test) = rule.condition else { continue }
            let host: String, port: Int, request: String?, proto: String, type: String
            switch (test.target, test.proto) {
            case (.url(let url), _):
                (host, port, request, proto, type) = (url.host, url.port, url.path, "HTTP", url.scheme == "https" ? "TCPSSL" : "TCP")
            case (.port(let h, let p, let transport), .http(let check)):
                (host, port, request, proto, type) = (h, p, check.request, "HTTP", transport.rawValue.uppercased())
            case (.port(let h, let p, let transport), .named(let name)):
                (host, port, request, proto, type) = (h, p, nil, name.uppercased(), transport.rawValue.uppercased())
            case (.port(let h, let p, let transport), .generic):
                (host, port, request, proto, type) = (h, p, nil, "DEFAULT", transport.rawValue.uppercased())
            case (.unixSocket, _):
                continue
            }
            xml += "<port><hostname>\(escape(host))</hostname><portnumber>\(port)</portnumber>"
            if let request { xml += "<request><![CDATA[\(request.split(separator: "]]>", omittingEmptySubsequences: false).joined(separator: "]]]]><![CDATA[>"))]]></request>" }
            xml += "<protocol>\(escape(proto))</protocol><type>\(type)</type><responsetime>\(responseTime)</responsetime></port>"
        }
        return xml
    }

    static func monitorValue(_ service: ServiceSnapshot) -> Int {
        service.monitor == .monitored ? 1 : service.monitor == .initializing ? 2 : 0
    }

    /// The elements every service starts with, name to pendingaction.
    static func head(type: Int, name: String, collected: Double, status: Int, monitor: Int, mode: String, pending: Bool) -> String {
        var xml = "<service type=\"\(type)\"><name>\(escape(name))</name>"
        let microseconds = Int((collected - collected.rounded(.down)) * 1_000_000)
        xml += "<collected_sec>\(Int(collected))</collected_sec><collected_usec>\(microseconds)</collected_usec>"
        xml += "<status>\(status)</status><status_hint>0</status_hint><monitor>\(monitor)</monitor>"
        xml += "<monitormode>\(["active": 0, "passive": 1, "manual": 2][mode] ?? 0)</monitormode><onreboot>0</onreboot>"
        return xml + "<pendingaction>\(pending ? 1 : 0)</pendingaction>"
    }

    /// monit's system service: descriptors, load, CPU, memory and swap of the machine.
    static func systemService(
        name: String, now: Double, system: SystemSnapshot, collected: Double? = nil, status: Int = 0, monitor: Int = 1,
        mode: String = "active", pending: Bool = false
    ) -> String {
        var xml = head(type: 5, name: name, collected: collected ?? now, status: status, monitor: monitor, mode: mode, pending: pending)
        let descriptors = ProcessResources.systemDescriptors()
        // Linux has counted no unused handles (file-nr's second field is 0) since 2.6.
        xml += "<filedescriptors><allocated>\(descriptors?.open ?? 0)</allocated><unused>0</unused>"
        xml += "<maximum>\(descriptors?.limit ?? 0)</maximum></filedescriptors>"
        xml += "<system><load><avg01>\(load(system.load1))</avg01><avg05>\(load(system.load5))</avg05><avg15>\(load(system.load15))</avg15></load>"
        xml += "<cpu>"
        let shares = CPUShares.sample()
        for (index, element) in ["user", "system", "nice", "wait", "hardirq", "softirq", "steal", "guest", "guestnice"].enumerated() {
            xml += "<\(element)>\(Pages.format(shares[index]))</\(element)>"
        }
        xml += "</cpu>"
        let used = system.memoryTotalBytes - min(system.memoryTotalBytes, system.memoryAvailableBytes)
        xml += "<memory><percent>\(Pages.format(Double(used) / Double(max(1, system.memoryTotalBytes)) * 100))</percent><kilobyte>\(used / 1024)</kilobyte></memory>"
        let swapUsed = system.swapTotalBytes - min(system.swapTotalBytes, system.swapFreeBytes)
        let swapPercent = system.swapTotalBytes == 0 ? 0 : Double(swapUsed) / Double(system.swapTotalBytes) * 100
        xml += "<swap><percent>\(Pages.format(swapPercent))</percent><kilobyte>\(swapUsed / 1024)</kilobyte></swap></system>"
        return xml + "</service>"
    }

    /// Load averages with two decimals, as monit writes them.
    static func load(_ value: Double) -> String { MonitFormat.fixed(value, 2) }

    /// monit's event bit mask of the failing checks.
    static func statusBits(_ service: ServiceSnapshot) -> Int {
        let bits: [String: Int] = [
            "checksum": 0x1, "resource": 0x2, "timeout": 0x4, "timestamp": 0x8, "size": 0x10, "connection": 0x20,
            "permission": 0x40, "uid": 0x80, "gid": 0x100, "nonexist": 0x200, "invalid": 0x400, "data": 0x800,
            "exec": 0x1000, "fsflags": 0x2000, "icmp": 0x4000, "content": 0x8000, "instance": 0x10000,
            "action": 0x20000, "pid": 0x40000, "ppid": 0x80000, "heartbeat": 0x100000, "status": 0x200000, "uptime": 0x400000,
        ]
        return service.failures.reduce(0) { $0 | (bits[$1] ?? 0) }
    }

    static func escape(_ text: String) -> String { Pages.escape(text) }
}

/// `/metrics`: Prometheus instruments with help texts (`promtool check metrics` requires them),
/// exported in Prometheus's text format by swift-prometheus. Instruments per service are made once,
/// when a service is first seen; event counters as events happen.
public final class MetricsExporter: Sendable {
    private struct ServiceInstruments {
        var up: Gauge
        var monitored: Gauge
        var status: Gauge
        var restarts: Counter
        var restartsSeen: Int
        var cpu: Gauge
        var memory: Gauge
        var responseTime: Gauge
        var states: [String: Gauge]
        var checkDuration: DurationHistogram
        /// The `lastCheck` already in the histogram: each check is counted once, however often it is read.
        var checkSeen: Double?
        var startDuration: Gauge
        var exitStatus: Gauge?
    }

    let registry = PrometheusCollectorRegistry()
    private let instruments = Mutex<[String: ServiceInstruments]>([:])
    /// The front proxy's metrics, rendered after the services'.
    public let proxy: ProxyMetricsBoard

    public init(proxy: ProxyMetricsBoard = ProxyMetricsBoard(source: nil)) {
        self.proxy = proxy
    }

    /// 1 ms to 10 s: a local TCP check takes a millisecond, a slow HTTP check seconds.
    static let checkBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
    ]

    /// A whole metric name with its help text (`promtool check metrics` wants one for every metric).
    static func described(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// Counts an event: `warden_events_total{service, event, state}`, and the restarts it reports by cause.
    func record(_ event: Event) {
        registry.makeCounter(
            descriptor: Self.described("warden_events_total", "Events (monit's: check failed or succeeded, action done, changes) per service"),
            labels: [("service", event.service), ("event", event.kind.rawValue), ("state", event.state.rawValue)]
        ).increment()
        if let cause = RestartCause(event) {
            registry.makeCounter(
                descriptor: Self.described(
                    "warden_service_restarts_by_cause_total",
                    "Restarts per service by cause: crash (the process was gone), check (a failed check), user (an action), deploy"),
                labels: [("service", event.service), ("cause", cause.rawValue)]
            ).increment()
        }
    }

    /// Takes in what the services' snapshots show (checks done since the last look land in the
    /// histogram). Called on every scrape and once a cycle, so no check goes unseen between scrapes.
    func observe(_ snapshots: [ServiceSnapshot]) {
        instruments.withLock { instruments in
            for service in snapshots {
                var set = instruments[service.name] ?? makeInstruments(service)
                set.up.set(to: service.isHealthy ? 1 : 0)
                set.monitored.set(to: service.monitor == .notMonitored ? 0 : 1)
                set.status.set(to: Double(XMLStatus.statusBits(service)))
                if service.restarts > set.restartsSeen {
                    set.restarts.increment(by: Int64(service.restarts - set.restartsSeen))
                    set.restartsSeen = service.restarts
                }
                set.cpu.set(to: service.metrics.cpuPercent ?? 0)
                set.memory.set(to: Double(service.metrics.memoryBytes ?? 0))
                set.responseTime.set(to: service.metrics.responseTime ?? 0)
                let state = ServiceState(service)
                for (name, gauge) in set.states { gauge.set(to: name == state.rawValue ? 1 : 0) }
                // A check under way (busy) shows the previous check's duration: it is counted once it is over.
                if let checked = service.lastCheck, checked != set.checkSeen, !service.busy, let seconds = service.metrics.checkSeconds {
                    set.checkDuration.recordNanoseconds(Int64(seconds * 1e9))
                    set.checkSeen = checked
                }
                set.startDuration.set(to: service.metrics.startSeconds ?? 0)
                if let code = service.metrics.exitStatus ?? service.metrics.programStatus {
                    set.exitStatus =
                        set.exitStatus
                        ?? registry.makeGauge(
                            descriptor: Self.described(
                                "warden_service_last_exit_status",
                                "How the service's process last ended: its exit code, or -N when signal N killed it (check program: the program's last exit status)"
                            ),
                            labels: [("service", service.name)])
                    set.exitStatus?.set(to: Double(code))
                }
                instruments[service.name] = set
            }
        }
    }

    /// Brings the instruments up to date with the services and renders the exposition.
    func exposition(_ snapshots: [ServiceSnapshot]) -> String {
        observe(snapshots)
        return registry.emitToString() + proxy.exposition()
    }

    private func makeInstruments(_ service: ServiceSnapshot) -> ServiceInstruments {
        let typed = [("service", service.name), ("type", service.type.lowercased())]
        let named = [("service", service.name)]
        func gauge(_ name: String, _ help: String) -> Gauge { registry.makeGauge(descriptor: Self.described(name, help), labels: typed) }
        return ServiceInstruments(
            up: gauge("warden_service_up", "1 when the service is monitored and every check passes"),
            monitored: gauge("warden_service_monitored", "1 when warden monitors the service"),
            status: gauge("warden_service_status", "monit's bit mask of the failing checks (0 when none fails)"),
            restarts: registry.makeCounter(descriptor: Self.described("warden_service_restarts_total", "Starts of the service by warden"), labels: typed),
            restartsSeen: 0,
            cpu: gauge("warden_service_cpu_percent", "CPU use of the process at the last check, in percent of one core"),
            memory: gauge("warden_service_memory_bytes", "Resident memory of the process at the last check"),
            responseTime: gauge("warden_service_check_seconds", "Response time of the last connection check"),
            states: Dictionary(
                uniqueKeysWithValues: ServiceState.allCases.map { state in
                    (
                        state.rawValue,
                        registry.makeGauge(
                            descriptor: Self.described(
                                "warden_service_state", "1 for the state the service is in: running, starting, failed, backing_off, unmonitored"),
                            labels: named + [("state", state.rawValue)])
                    )
                }),
            checkDuration: registry.makeDurationHistogram(
                descriptor: Self.described("warden_service_check_duration_seconds", "How long each check of the service took (all its tests)"),
                labels: named, buckets: Self.checkBuckets),
            startDuration: registry.makeGauge(
                descriptor: Self.described(
                    "warden_service_start_duration_seconds", "How long the last start took, from the start program to a running process"),
                labels: named))
    }
}

/// The one state a service is in, for `warden_service_state{state}`.
enum ServiceState: String, CaseIterable {
    case running, starting, failed
    case backingOff = "backing_off"
    case unmonitored

    init(_ service: ServiceSnapshot) {
        if service.monitor == .notMonitored {
            self = .unmonitored
        } else if service.backingOff {
            self = .backingOff
        } else if service.busy || service.monitor == .initializing {
            self = .starting
        } else if service.isHealthy {
            self = .running
        } else {
            self = .failed
        }
    }
}

/// Why warden restarted a service, read from the event that says it did.
enum RestartCause: String {
    /// The process was gone.
    case crash
    /// A check failed with `then restart`.
    case check
    /// Someone asked (`warden restart`, the dashboard).
    case user
    /// A new generation of its instances replaces the serving one (`warden deploy`).
    case deploy

    init?(_ event: Event) {
        switch (event.kind, event.state, event.action) {
        case (.action, .changed, "restart"): self = .user
        case (.action, .changed, "deploy"): self = .deploy
        case (.nonexist, .failed, "restart"): self = .crash
        case (_, .failed, "restart"): self = .check
        default: return nil
        }
    }
}

/// `warden status` without a name: the dashboard's front page in a terminal. The host, then the
/// services and the sites in aligned columns; in colour when asked (the CLI asks when its standard
/// output is a terminal and NO_COLOR is not set), plain text otherwise.
public enum StatusTable {
    /// What the CLI asks the daemon for: the table (in colour or not), or one service's or site's
    /// status in monit's words.
    public static func path(service: String?, colour: Bool) -> String {
        if let service { return "/_status?service=\(Pages.escapeURL(service))" }
        return "/_status?format=table" + (colour ? "&color=1" : "")
    }

    enum Style: String {
        case bold = "1", dim = "2", red = "31", green = "32", yellow = "33"
    }

    struct Cell {
        var text: String
        var style: Style?

        init(_ text: String, _ style: Style? = nil) {
            self.text = text
            self.style = style
        }
    }

    static func render(
        host: String, system: SystemSnapshot, wardenUptime: Double, services: [ServiceSnapshot], sites: [SiteStatus], now: Double, colour: Bool
    ) -> String {
        let used = system.memoryTotalBytes - min(system.memoryTotalBytes, system.memoryAvailableBytes)
        var out = "warden \(Supervisor.version) on \(host), up \(Pages.duration(wardenUptime)); system up \(Pages.duration(system.uptimeSeconds)), "
        out += "load \(Pages.format(system.load1)) \(Pages.format(system.load5)) \(Pages.format(system.load15)), "
        out += "memory \(Pages.bytes(used)) of \(Pages.bytes(system.memoryTotalBytes))\n\n"
        let serviceRows = services.map { service -> [Cell] in
            [
                Cell(service.name), Cell(service.type), Cell(service.status, style(service)), Cell(service.pid.map(String.init) ?? "-"),
                Cell(service.uptimeSeconds.map(Pages.duration) ?? "-"), Cell(service.metrics.cpuPercent.map { Pages.format($0) + "%" } ?? "-"),
                Cell(service.metrics.memoryBytes.map(Pages.bytes) ?? "-"), Cell(String(service.restarts)),
                Cell(service.metrics.exitStatus.map(exitCode) ?? "-", service.metrics.exitStatus.flatMap { $0 == 0 ? nil : .red }),
                Cell(service.lastCheck.map { Pages.duration(max(0, now - $0)) + " ago" } ?? "-"),
                // A program's output in a message would break the row.
                Cell(service.events.last.map { $0.message.split(whereSeparator: \.isNewline).joined(separator: " ") } ?? "-"),
            ]
        }
        out += table(
            ["SERVICE", "TYPE", "STATUS", "PID", "UPTIME", "CPU", "MEMORY", "RESTARTS", "EXIT", "CHECKED", "LAST EVENT"], serviceRows,
            right: [3, 5, 6, 7, 8], colour: colour)
        guard !sites.isEmpty else { return out }
        let siteRows = sites.map { site -> [Cell] in
            let figures = TrafficFormat.cells(site.traffic)
            let days = site.certificate?.daysLeft(now: now)
            return [
                Cell(site.name), Cell(Pages.hosts(site)), Cell(site.services.map { $0.isEmpty ? "-" : $0.joined(separator: " ") } ?? "-"),
                Cell(figures.rate), Cell(figures.errors, site.traffic.flatMap { $0.errorRatio > 0 ? .red : nil }), Cell(figures.p50),
                Cell(figures.p99), Cell(site.maintenance ? "on" : "off", site.maintenance ? .yellow : nil),
                Cell(
                    site.certificate.map { TimeFormat.string($0.notAfter, "%Y-%m-%d", utc: true) + " (\(days ?? 0) days)" } ?? "-",
                    days.flatMap { $0 < 14 ? .red : nil }),
            ]
        }
        out += "\n"
        out += table(["SITE", "HOSTS", "SERVICE", "REQ/S", "5XX", "P50", "P99", "MAINTENANCE", "CERTIFICATE"], siteRows, right: [3, 4, 5, 6], colour: colour)
        return out + "(requests per second, 5xx share and latency \(TrafficFormat.window(sites.compactMap(\.traffic))))\n"
    }

    static func style(_ service: ServiceSnapshot) -> Style {
        switch Pages.statusClass(service) {
        case "ok": .green
        case "off": .dim
        case "init": .yellow
        default: .red
        }
    }

    static func exitCode(_ code: Int) -> String { code < 0 ? "signal \(-code)" : String(code) }

    /// Columns as wide as their widest cell, two spaces apart, numbers to the right; the last column
    /// is not padded. Colour goes around a cell's text, never its padding, so it keeps the alignment.
    static func table(_ header: [String], _ rows: [[Cell]], right: Set<Int>, colour: Bool) -> String {
        let all = [header.map { Cell($0, .bold) }] + rows
        let widths = header.indices.map { column in all.map { $0[column].text.count }.max() ?? 0 }
        var out = ""
        for row in all {
            var line = ""
            for (column, cell) in row.enumerated() {
                let fill = String(repeating: " ", count: widths[column] - cell.text.count)
                let text = colour ? cell.style.map { "\u{1B}[\($0.rawValue)m\(cell.text)\u{1B}[0m" } ?? cell.text : cell.text
                let last = column == row.count - 1
                line += right.contains(column) ? fill + text : text + (last ? "" : fill)
                if !last { line += "  " }
            }
            out += line + "\n"
        }
        return out
    }
}

/// How a site's traffic is written, on the pages and in `warden status`.
enum TrafficFormat {
    /// Requests per second, the share of 5xx answers, p50 and p99; "-" for what is not known
    /// (a share and percentiles without requests).
    static func cells(_ traffic: SiteTraffic?) -> (rate: String, errors: String, p50: String, p99: String) {
        guard let traffic else { return ("-", "-", "-", "-") }
        let answered = traffic.p50 != nil
        return (
            Pages.format(traffic.requestsPerSecond), answered ? Pages.format(traffic.errorRatio * 100) + "%" : "-", latency(traffic.p50),
            latency(traffic.p99)
        )
    }

    static func latency(_ seconds: Double?) -> String {
        guard let seconds else { return "-" }
        return seconds < 1 ? Pages.format(seconds * 1000) + " ms" : Pages.format(seconds) + " s"
    }

    /// "over the last minute", or the shorter span the figures cover while warden is young.
    static func window(_ traffic: [SiteTraffic]) -> String {
        let seconds = traffic.map(\.windowSeconds).max() ?? SiteTrafficWindow.seconds
        return seconds >= SiteTrafficWindow.seconds - 1 ? "over the last minute" : "over the last \(Int(seconds.rounded())) s"
    }
}
