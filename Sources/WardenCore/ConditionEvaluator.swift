import WardenConfig
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

/// The result of one test of one rule in one cycle.
struct Outcome: Equatable {
    /// How results become events.
    enum Reporting: Equatable {
        /// monit's failed and succeeded: each is reported once, when the rule's window says it failed or recovered.
        case transitions
        /// monit's "changed": every change fires the action again; a cycle without change is silent.
        case changes
        /// A content test: every cycle with matching lines fires; the first cycle without recovers.
        case matches
    }

    var failed: Bool
    var kind: EventKind
    var message: String
    var reporting = Reporting.transitions
}

/// What a rule measured in one cycle and the next cycle compares with (rates, "changed" tests, where a
/// log file was read up to).
enum Measured: Equatable, Sendable {
    case counter(Double)
    case disk(DiskCounters)
    case cpu(CPUTicks)
    case text(String)
    case position(FilePosition)
    /// A network rule's history of its interface (rates, totals, saturation).
    case link(LinkStatistics)
    /// The interface as the last cycle saw it (`changed link`).
    case interface(NetworkSample)
}

/// What a file test needs to know of a file: the fields of its `stat`.
public struct FileFacts: Equatable, Sendable {
    public var modified: WallClock.Time
    /// The inode's change time (`st_ctime`): with `modified`, what `changed timestamp` watches, as monit.
    public var statusChanged: WallClock.Time
    public var size: Int64
    public var mode: Int
    public var uid: UInt32
    public var gid: UInt32

    public init(modified: WallClock.Time, statusChanged: WallClock.Time? = nil, size: Int64, mode: Int, uid: UInt32, gid: UInt32) {
        self.modified = modified
        self.statusChanged = statusChanged ?? modified
        self.size = size
        self.mode = mode
        self.uid = uid
        self.gid = gid
    }
}

/// monit's tests as pure functions of what was measured: no clock, file system or process table is read
/// here, so each rule is tested with the numbers it is given. nil means the test does not apply now.
enum ConditionEvaluator {
    static func uptime(_ op: ComparisonOperator, _ seconds: Int, startedAt: WallClock.Time?, now: WallClock.Time, service: String) -> Outcome? {
        guard let startedAt else { return nil }
        let uptime = Int(now - startedAt)
        let failed = op.compare(uptime, seconds)
        return Outcome(
            failed: failed, kind: .uptime,
            message: failed ? "uptime test failed for \(service) -- current uptime is \(uptime) seconds" : "uptime test succeeded")
    }

    /// `if exist`: fails while the process, file or filesystem is there, in monit's words.
    static func existence(_ kind: Service.Kind, found: Bool, pid: pid_t?) -> Outcome {
        let noun = kind.displayName.lowercased()
        let message: String
        switch kind {
        case .process: message = found ? "process is running with pid \(pid ?? 0)" : "process is not running"
        case .filesystem(let target): message = found ? "filesystem '\(target)' exists" : "filesystem '\(target)' doesn't exist"
        case .file, .directory, .fifo, .program, .host, .system, .network: message = found ? "\(noun) exists" : "\(noun) doesn't exist"
        }
        return Outcome(failed: found, kind: .exist, message: message)
    }

    static func programStatus(_ op: ComparisonOperator, _ expected: Int, metrics: ServiceMetrics) -> Outcome? {
        guard let status = metrics.programStatus else { return nil }
        let failed = op.compare(status, expected)
        let output = metrics.programOutput.map { $0.isEmpty ? "no output" : $0 } ?? "no output"
        return Outcome(failed: failed, kind: .status, message: failed ? "status failed (\(status)) -- \(output)" : "status succeeded (\(status)) -- \(output)")
    }

    /// `userID`/`groupID` resolve the names a rule gives (nil: no such user or group, which fails the test).
    static func file(
        _ condition: Condition, path: String, facts: FileFacts, now: WallClock.Time,
        userID: (String) -> UInt32?, groupID: (String) -> UInt32?
    ) -> Outcome? {
        switch condition {
        case .timestamp(let op, let seconds):
            let age = Int(now) - Int(facts.modified)
            let failed = op.compare(age, seconds)
            return Outcome(failed: failed, kind: .timestamp, message: failed ? "timestamp test failed for \(path) -- modified \(age) s ago" : "timestamp test succeeded for \(path)")
        case .size(let op, let bytes):
            let failed = op.compare(facts.size, bytes)
            return Outcome(failed: failed, kind: .size, message: failed ? "size test failed for \(path) -- current size is \(facts.size) B" : "size check succeeded for \(path)")
        case .permission(let mode):
            let failed = facts.mode != mode
            return Outcome(failed: failed, kind: .permission, message: failed ? "permission test failed for \(path) -- current permission is \(String(facts.mode, radix: 8))" : "permission test succeeded")
        case .uid(let user):
            let failed = userID(user) != facts.uid
            return Outcome(failed: failed, kind: .uid, message: failed ? "uid test failed for \(path) -- current uid is \(facts.uid)" : "uid test succeeded")
        case .gid(let group):
            let failed = groupID(group) != facts.gid
            return Outcome(failed: failed, kind: .gid, message: failed ? "gid test failed for \(path) -- current gid is \(facts.gid)" : "gid test succeeded")
        case .connection, .resource, .nonexistence, .existence, .changedTimestamp, .changedSize, .changedPID, .changedPPID, .uptime,
            .programStatus, .changedProgramStatus, .checksum, .changedChecksum, .euid, .content, .ping, .link, .changedLink,
            .saturation, .transferred, .filesystemFlags:
            // Not a test of one stat(2): the supervisor measures and decides these elsewhere.
            return nil
        }
    }

    /// monit's HTTP rules: a status ≥ 400 fails unless `status` says otherwise; `content` is an unanchored
    /// regex search; `checksum` compares the body's digest (`digest`).
    static func http(_ check: HTTPCheck, status: Int, body: String, digest: String? = nil) -> (failed: Bool, message: String) {
        if let expected = check.status {
            if !expected.op.compare(status, expected.value) {
                return (true, "HTTP error: status \(status) does not match \(expected.op.rawValue) \(expected.value)")
            }
        } else if status >= 400 {
            return (true, "HTTP error: Server returned status \(status)")
        }
        if let content = check.content {
            let found = RegexSearch.matches(content.value, in: body)
            if found != (content.op == .equal) {
                return (true, "HTTP error: Regular expression \(content.op == .equal ? "doesn't match" : "matches"): '\(content.value)'")
            }
        }
        if let expected = check.checksum, expected.lowercased() != digest {
            return (true, "HTTP error: Document checksum mismatch -- expected \(expected) got \(digest ?? "none")")
        }
        return (false, "HTTP status \(status)")
    }

    /// A connection test's outcome; `inStartGrace`: the service was started recently and no test has
    /// passed since, so a failure does not count yet.
    static func connection(
        _ proto: ConnectionProtocol, result: ProbeResult, body: String, address: String, inStartGrace: Bool
    ) -> Outcome? {
        var failed = !result.succeeded
        var message = result.message
        if result.succeeded, case .http(let check) = proto {
            (failed, message) = http(check, status: result.status ?? 0, body: body, digest: result.bodyDigest)
        }
        if !failed { return Outcome(failed: false, kind: .connection, message: "connection succeeded to \(address)") }
        if inStartGrace { return nil }
        let protocolName: String
        switch proto {
        case .http: protocolName = "HTTP"
        // monit names the protocol, not its TLS variant: smtps is "[SMTP] at … [TCP/IP TLS]".
        case .named(let name) where ["smtps", "imaps", "pops", "mysqls"].contains(name): protocolName = String(name.dropLast()).uppercased()
        case .named(let name): protocolName = name.uppercased()
        case .generic: protocolName = "DEFAULT"
        }
        return Outcome(failed: true, kind: .connection, message: "failed protocol test [\(protocolName)] at \(address) -- \(message)")
    }

    /// monit's name of a network endpoint in its messages: `[HOST]:PORT/REQUEST [TCP/IP TLS]`, the
    /// transport (TCP or UDP), the address family (IP when either, IPv4, IPv6) and TLS if used.
    static func portDescription(host: String, port: Int, request: String, udp: Bool, family: Int?, tls: Bool) -> String {
        "[\(host)]:\(port)\(request) [\(udp ? "UDP" : "TCP")/\(family.map { "IPv\($0)" } ?? "IP")\(tls ? " TLS" : "")]"
    }

    /// The request a port test makes, as monit shows it after the port: HTTP's path, websocket's request.
    static func request(of test: ConnectionTest) -> String {
        switch test.proto {
        case .http(let check): check.request
        case .named("websocket"): test.protocolOptions["request"] ?? ""
        case .named, .generic: ""
        }
    }

    static func resource(
        _ metric: ResourceMetric, _ op: ComparisonOperator, _ quantity: Quantity, metrics: ServiceMetrics, system: SystemSnapshot
    ) -> Outcome? {
        let limit: Double
        switch quantity {
        case .percent(let p): limit = p
        case .bytes(let b): limit = b.rounded()
        case .count(let c): limit = c
        case .seconds, .rate: return nil  // refused by `warden -t` (ResourceMetric.accepts)
        }
        let memoryTotal = Double(max(1, system.memoryTotalBytes))
        func memory(_ bytes: UInt64?) -> Double? {
            guard let bytes else { return nil }
            if case .percent = quantity { return Double(bytes) / memoryTotal * 100 }
            return Double(bytes)
        }
        let value: Double?
        switch metric {
        case .cpu: value = metrics.cpuPercent
        case .totalCPU: value = metrics.totalCPUPercent ?? metrics.cpuPercent
        case .memory: value = memory(metrics.memoryBytes ?? (system.memoryTotalBytes - system.memoryAvailableBytes))
        case .totalMemory: value = memory(metrics.totalMemoryBytes ?? metrics.memoryBytes)
        case .swap:
            let used = system.swapTotalBytes - system.swapFreeBytes
            if case .percent = quantity { value = system.swapTotalBytes == 0 ? 0 : Double(used) / Double(system.swapTotalBytes) * 100 } else { value = Double(used) }
        case .children: value = metrics.children.map(Double.init)
        case .threads: value = metrics.threads.map(Double.init)
        case .loadAverage1: value = system.load1
        case .loadAverage5: value = system.load5
        case .loadAverage15: value = system.load15
        case .loadAveragePerCore1: value = system.load1 / Double(max(1, system.cpuCount))
        case .loadAveragePerCore5: value = system.load5 / Double(max(1, system.cpuCount))
        case .loadAveragePerCore15: value = system.load15 / Double(max(1, system.cpuCount))
        case .cpuUser, .cpuSystem, .cpuWait, .cpuNice, .cpuHardIRQ, .cpuSoftIRQ, .cpuSteal, .cpuGuest, .fileDescriptors,
            .totalFileDescriptors, .readBytes, .writeBytes, .readOperations, .writeOperations, .diskReadBytes, .diskWriteBytes,
            .spaceUsage, .inodeUsage, .spaceFree, .inodeFree, .serviceTime, .upload, .download:
            // Measured between cycles or by other means: `ServiceSupervisor.resourceOutcome` sends them elsewhere.
            value = nil
        }
        guard let value else { return nil }
        let failed = op.compare(value, limit)
        let message = monitMessage(metric, quantity, value: value, limit: limit, op: op, failed: failed)
        return Outcome(failed: failed, kind: .resource, message: message)
    }

    /// monit's words for the resource tests of `validate.c`: "mem usage of 92.0% matches resource limit
    /// [mem usage > 90.0%]", "threads check succeeded [current threads = 4]", …
    static func monitMessage(_ metric: ResourceMetric, _ quantity: Quantity, value: Double, limit: Double, op: ComparisonOperator, failed: Bool) -> String {
        let isPercent = if case .percent = quantity { true } else { false }
        let isSize = if case .bytes = quantity { true } else { false }
        func shown(_ number: Double) -> String {
            isPercent ? "\(MonitFormat.fixed(number))%" : isSize ? MonitFormat.bytes(number) : MonitFormat.fixed(number)
        }
        // The test's name in the failure, in its brackets, and in the success.
        var (name, bracket, current) = (metric.testName, metric.testName, metric.testName)
        switch metric {
        case .cpu: (name, bracket, current) = ("cpu usage", "cpu usage", "cpu usage")
        case .totalCPU: (name, bracket, current) = ("total cpu usage", "cpu usage", "cpu usage")
        case .memory: name = isPercent ? "mem usage" : "mem amount"; (bracket, current) = (name, name)
        case .totalMemory: (name, bracket, current) = ("total mem amount", "total mem amount", "total mem amount")
        case .swap: name = isPercent ? "swap usage" : "swap amount"; (bracket, current) = (name, name)
        case .threads, .children:
            let count = MonitFormat.fixed(value, 0)
            return failed
                ? "\(metric.testName) count \(count) matches resource limit [\(metric.testName) \(op.rawValue) \(MonitFormat.fixed(limit, 0))]"
                : "\(metric.testName) check succeeded [current \(metric.testName) = \(count)]"
        default: break  // loadavg: its name as it is
        }
        return failed
            ? "\(name) of \(shown(value)) matches resource limit [\(bracket) \(op.rawValue) \(shown(limit))]"
            : "\(current == bracket ? name : current) check succeeded [current \(current) = \(shown(value))]"
    }
}

/// Numbers as monit prints them in its messages.
public enum MonitFormat {
    /// `value` with `digits` decimals (monit's `%.1f`, `%.2f`, `%.6f`), without Foundation.
    public static func fixed(_ value: Double, _ digits: Int = 1) -> String {
        guard value.isFinite else { return "\(value)" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        // Beyond what an Int64 holds exactly, the plain description (no trap on a huge figure).
        guard abs(value) * scale < 9e15 else { return "\(value)" }
        let scaled = Int64((abs(value) * scale).rounded())
        let sign = value < 0 && scaled != 0 ? "-" : ""
        let whole = scaled / Int64(scale)
        guard digits > 0 else { return "\(sign)\(whole)" }
        var fraction = String(scaled % Int64(scale))
        while fraction.count < digits { fraction = "0" + fraction }
        return "\(sign)\(whole).\(fraction)"
    }

    /// monit's `Fmt_bytes2str`: `512 B`, `1.5 kB`, `92.4 MB`, and a whole figure without decimals (`1 MB`).
    static func bytes(_ value: Double) -> String {
        scaled(value, steps: [(1024, "B"), (1024, "kB"), (1024, "MB"), (1024, "GB"), (1024, "TB"), (1024, "PB"), (.infinity, "EB")], digits: 1)
    }

    /// monit's `Fmt_time2str`, given milliseconds: `0.450 ms`, `100 ms`, `1.250 s`, `2 m`.
    static func milliseconds(_ value: Double) -> String {
        scaled(value, steps: [(1000, "ms"), (60, "s"), (60, "m"), (24, "h"), (365, "d"), (.infinity, "y")], digits: 3)
    }

    /// The value in the first unit it stays below the base of, with `digits` decimals unless it is whole.
    private static func scaled(_ value: Double, steps: [(base: Double, unit: String)], digits: Int) -> String {
        var magnitude = abs(value)
        let sign = value < 0 ? "-" : ""
        for step in steps {
            guard magnitude >= step.base else {
                let whole = abs(magnitude - magnitude.rounded()) < 1e-6
                return "\(sign)\(fixed(magnitude, whole ? 0 : digits)) \(step.unit)"
            }
            magnitude /= step.base
        }
        return "\(sign)\(fixed(magnitude, digits))"
    }

    /// monit's `Time_localStr`: `Thu, 03 Dec 2026 08:27:32` in local time.
    static func date(_ seconds: WallClock.Time) -> String {
        var time = time_t(seconds)
        var parts = tm()
        localtime_r(&time, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%a, %d %b %Y %H:%M:%S", &parts)
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
