import WardenConfig
import WardenCore
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

/// `/metrics`: Prometheus text exposition of every service.
enum Metrics {
    static func exposition(_ snapshots: [ServiceSnapshot]) -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String, _ values: [(ServiceSnapshot, Double)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for (service, value) in values {
                out += "\(name){service=\"\(labelEscape(service.name))\",type=\"\(service.type.lowercased())\"} \(value)\n"
            }
        }
        family("warden_service_up", "gauge", "1 when the service is monitored and all its checks pass.", snapshots.map { ($0, $0.isHealthy ? 1 : 0) })
        family("warden_service_monitored", "gauge", "1 when warden monitors the service.", snapshots.map { ($0, $0.monitor == .notMonitored ? 0 : 1) })
        family("warden_service_status", "gauge", "monit's status bit mask of failing checks (0 = OK).", snapshots.map { ($0, Double(XMLStatus.statusBits($0))) })
        family("warden_service_restarts_total", "counter", "Starts and restarts done by warden.", snapshots.map { ($0, Double($0.restarts)) })
        family("warden_service_cpu_percent", "gauge", "CPU use of the service's process.", snapshots.compactMap { s in s.metrics.cpuPercent.map { (s, $0) } })
        family("warden_service_memory_bytes", "gauge", "Resident memory of the service's process.", snapshots.compactMap { s in s.metrics.memoryBytes.map { (s, Double($0)) } })
        family("warden_service_check_seconds", "gauge", "Response time of the last connection test.", snapshots.compactMap { s in s.metrics.responseTime.map { (s, $0) } })
        return out
    }

    static func labelEscape(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }
}

extension String {
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
