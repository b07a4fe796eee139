import WardenConfig
import WardenPlatform

/// The result of one test of one rule in one cycle.
struct Outcome: Equatable {
    var failed: Bool
    var kind: EventKind
    var message: String
}

/// What a file test needs to know of a file: the fields of its `stat`.
public struct FileFacts: Equatable, Sendable {
    public var modified: WallClock.Time
    public var size: Int64
    public var mode: Int
    public var uid: UInt32
    public var gid: UInt32

    public init(modified: WallClock.Time, size: Int64, mode: Int, uid: UInt32, gid: UInt32) {
        self.modified = modified
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
        default:
            return nil
        }
    }

    /// monit's HTTP rules: a status ≥ 400 fails unless `status` says otherwise; `content` is an unanchored regex search.
    static func http(_ check: HTTPCheck, status: Int, body: String) -> (failed: Bool, message: String) {
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
            (failed, message) = http(check, status: result.status ?? 0, body: body)
        }
        if !failed { return Outcome(failed: false, kind: .connection, message: "connection succeeded to \(address)") }
        if inStartGrace { return nil }
        let protocolName: String
        switch proto {
        case .http: protocolName = "HTTP"
        case .named(let name): protocolName = name.uppercased()
        case .generic: protocolName = "DEFAULT"
        }
        return Outcome(failed: true, kind: .connection, message: "failed protocol test [\(protocolName)] at \(address) -- \(message)")
    }

    static func resource(
        _ metric: ResourceMetric, _ op: ComparisonOperator, _ quantity: Quantity, metrics: ServiceMetrics, system: SystemSnapshot
    ) -> Outcome? {
        var limit: Double
        var unit = ""
        switch quantity {
        case .percent(let p): limit = p; unit = "%"
        case .bytes(let b): limit = b; unit = " B"
        case .count(let c): limit = c
        case .seconds(let s): limit = s; unit = " s"
        case .rate(let r, let u): limit = r; unit = " \(u)"
        }
        let memoryTotal = Double(max(1, system.memoryTotalBytes))
        func memory(_ bytes: UInt64?) -> Double? {
            guard let bytes else { return nil }
            if case .percent = quantity { return Double(bytes) / memoryTotal * 100 }
            return Double(bytes)
        }
        let value: Double?
        switch metric {
        case .cpu, .cpuUser, .cpuSystem: value = metrics.cpuPercent
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
        default: value = nil  // issue 22: these metrics are parsed but not measured yet
        }
        guard let value else { return nil }
        if case .bytes = quantity { limit = limit.rounded() }
        let failed = op.compare(value, limit)
        let shown = (value * 10).rounded() / 10
        return Outcome(
            failed: failed, kind: .resource,
            message: failed
                ? "\(metric.rawValue) of \(shown)\(unit) matches resource limit [\(metric.rawValue) \(op.rawValue) \(limit)\(unit)]"
                : "\(metric.rawValue) check succeeded [current \(metric.rawValue) = \(shown)\(unit)]")
    }
}
