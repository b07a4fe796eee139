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
            xml += "<service type=\"\(service.monitType)\"><name>\(escape(service.name))</name>"
            xml += "<collected_sec>\(Int(service.lastCheck ?? now))</collected_sec><collected_usec>0</collected_usec>"
            xml += "<status>\(statusBits(service))</status><status_hint>0</status_hint>"
            xml += "<monitor>\(service.monitor == .monitored ? 1 : service.monitor == .initializing ? 2 : 0)</monitor>"
            xml += "<monitormode>\(["active": 0, "passive": 1, "manual": 2][service.mode] ?? 0)</monitormode><onreboot>0</onreboot>"
            xml += "<pendingaction>\(service.busy ? 1 : 0)</pendingaction>"
            if let pid = service.pid {
                xml += "<pid>\(pid)</pid><uptime>\(Int(service.uptimeSeconds ?? 0))</uptime>"
                if let threads = service.metrics.threads { xml += "<threads>\(threads)</threads>" }
                xml += "<children>\(service.metrics.children ?? 0)</children>"
                let kilobytes = (service.metrics.memoryBytes ?? 0) / 1024
                let percent = Double(service.metrics.memoryBytes ?? 0) / Double(max(1, system.memoryTotalBytes)) * 100
                xml += "<memory><percent>\(Pages.format(percent))</percent><percenttotal>\(Pages.format(percent))</percenttotal>"
                xml += "<kilobyte>\(kilobytes)</kilobyte><kilobytetotal>\((service.metrics.totalMemoryBytes ?? service.metrics.memoryBytes ?? 0) / 1024)</kilobytetotal></memory>"
                xml += "<cpu><percent>\(Pages.format(service.metrics.cpuPercent ?? 0))</percent><percenttotal>\(Pages.format(service.metrics.totalCPUPercent ?? service.metrics.cpuPercent ?? 0))</percenttotal></cpu>"
            }
            if service.monitType == 5 {
                xml += "<system><load><avg01>\(Pages.format(system.load1))</avg01><avg05>\(Pages.format(system.load5))</avg05><avg15>\(Pages.format(system.load15))</avg15></load>"
                let used = system.memoryTotalBytes - system.memoryAvailableBytes
                xml += "<memory><percent>\(Pages.format(Double(used) / Double(max(1, system.memoryTotalBytes)) * 100))</percent><kilobyte>\(used / 1024)</kilobyte></memory></system>"
            }
            xml += "</service>"
        }
        return xml + "</monit>"
    }

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
