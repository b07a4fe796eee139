import WardenConfig
import WardenCore
import CoreMetrics
import Metrics
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

/// `/metrics`: swift-metrics instruments, exported in Prometheus's text format by swift-prometheus.
/// Gauges per service are made once, when a service is first seen; event counters as events happen.
final class MetricsExporter: Sendable {
    private struct ServiceInstruments {
        var up: CoreMetrics.Gauge
        var monitored: CoreMetrics.Gauge
        var status: CoreMetrics.Gauge
        var restarts: CoreMetrics.Counter
        var restartsSeen: Int
        var cpu: CoreMetrics.Gauge
        var memory: CoreMetrics.Gauge
        var responseTime: CoreMetrics.Gauge
    }

    let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let instruments = Mutex<[String: ServiceInstruments]>([:])

    init() {
        factory = PrometheusMetricsFactory(registry: registry)
    }

    /// Counts an event: `warden_events_total{service, event, state}`.
    func record(_ event: Event) {
        CoreMetrics.Counter(
            label: "warden_events_total",
            dimensions: [("service", event.service), ("event", event.kind.rawValue), ("state", event.state.rawValue)],
            factory: factory
        ).increment()
    }

    /// Brings the gauges up to date with the services and renders the exposition.
    func exposition(_ snapshots: [ServiceSnapshot]) -> String {
        instruments.withLock { instruments in
            for service in snapshots {
                let dimensions = [("service", service.name), ("type", service.type.lowercased())]
                var set = instruments[service.name] ?? ServiceInstruments(
                    up: CoreMetrics.Gauge(label: "warden_service_up", dimensions: dimensions, factory: factory),
                    monitored: CoreMetrics.Gauge(label: "warden_service_monitored", dimensions: dimensions, factory: factory),
                    status: CoreMetrics.Gauge(label: "warden_service_status", dimensions: dimensions, factory: factory),
                    restarts: CoreMetrics.Counter(label: "warden_service_restarts_total", dimensions: dimensions, factory: factory),
                    restartsSeen: 0,
                    cpu: CoreMetrics.Gauge(label: "warden_service_cpu_percent", dimensions: dimensions, factory: factory),
                    memory: CoreMetrics.Gauge(label: "warden_service_memory_bytes", dimensions: dimensions, factory: factory),
                    responseTime: CoreMetrics.Gauge(label: "warden_service_check_seconds", dimensions: dimensions, factory: factory))
                set.up.record(service.isHealthy ? 1 : 0)
                set.monitored.record(service.monitor == .notMonitored ? 0 : 1)
                set.status.record(Double(XMLStatus.statusBits(service)))
                if service.restarts > set.restartsSeen {
                    set.restarts.increment(by: service.restarts - set.restartsSeen)
                    set.restartsSeen = service.restarts
                }
                set.cpu.record(service.metrics.cpuPercent ?? 0)
                set.memory.record(Double(service.metrics.memoryBytes ?? 0))
                set.responseTime.record(service.metrics.responseTime ?? 0)
                instruments[service.name] = set
            }
        }
        return registry.emitToString()
    }
}
