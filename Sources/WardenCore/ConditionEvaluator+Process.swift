import WardenConfig
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

/// `check process` and `check system`: descriptors, I/O rates, identities and CPU time by kind.
extension ConditionEvaluator {
    /// `[total] filedescriptors OP N|N%`: open descriptors, or their share of the limit (the process's
    /// `RLIMIT_NOFILE`, or the system's maximum). nil when a share is asked and there is no limit.
    static func descriptors(_ op: ComparisonOperator, _ quantity: Quantity, usage: DescriptorUsage, total: Bool) -> Outcome? {
        let prefix = total ? "total " : ""
        switch quantity {
        case .percent(let limitPercent):
            guard let limit = usage.limit, limit > 0 else { return nil }
            let percent = 100 * Double(usage.open) / Double(limit)
            let failed = op.compare(percent, limitPercent)
            return Outcome(
                failed: failed, kind: .resource,
                message: failed
                    ? "\(prefix)filedescriptors usage of \(MonitFormat.fixed(percent))% matches limit [filedescriptors \(op.rawValue) \(MonitFormat.fixed(limitPercent))%]"
                    : "\(prefix)filedescriptors usage test succeeded [current filedescriptors usage = \(MonitFormat.fixed(percent))%]")
        case .count(let limit):
            let failed = op.compare(Double(usage.open), limit)
            return Outcome(
                failed: failed, kind: .resource,
                message: failed
                    ? "\(prefix)filedescriptors usage of \(usage.open) matches limit [filedescriptors \(op.rawValue) \(MonitFormat.fixed(limit, 0))]"
                    : "\(prefix)filedescriptors test succeeded [current filedescriptors usage = \(usage.open)]")
        case .bytes, .seconds, .rate:
            return nil  // refused by `warden -t` (ResourceMetric.accepts)
        }
    }

    /// `read rate`, `disk read`, `write rate`, `disk write` of a process between two cycles; `now` and
    /// `before` are the counter the rule reads. nil in the first cycle and after a restart (the counter
    /// went back).
    static func processRate(
        _ metric: ResourceMetric, _ op: ComparisonOperator, _ quantity: Quantity, now: UInt64, before: UInt64?, seconds: Double
    ) -> Outcome? {
        guard let before, now >= before, seconds > 0, let perSecond = quantity.rateLimit else { return nil }
        let (limit, operations) = perSecond
        let reading = metric == .readBytes || metric == .readOperations || metric == .diskReadBytes
        let physical = !operations && (metric == .diskReadBytes || metric == .diskWriteBytes)
        return rate(reading ? "read" : "write", Double(now - before) / seconds, op, limit: limit, operations: operations, physical: physical)
    }

    /// The counter of /proc/PID/io a process rate rule reads.
    static func counter(_ metric: ResourceMetric, _ quantity: Quantity, of io: ProcessIO) -> UInt64? {
        let operations = quantity.rateLimit?.operations ?? false
        switch metric {
        case .readBytes, .readOperations, .diskReadBytes:
            if operations { return io.readOperations }
            return metric == .diskReadBytes ? io.diskReadBytes : io.readBytes
        case .writeBytes, .writeOperations, .diskWriteBytes:
            if operations { return io.writeOperations }
            return metric == .diskWriteBytes ? io.diskWriteBytes : io.writeBytes
        default:
            return nil  // not an I/O metric; `resourceOutcome` sends no other here
        }
    }

    /// `changed ppid`: nil the first time.
    static func changedParent(_ now: pid_t, before: pid_t?) -> Outcome? {
        guard let before else { return nil }
        if now != before { return Outcome(failed: true, kind: .ppid, message: "process PPID changed from \(before) to \(now)", reporting: .changes) }
        return Outcome(failed: false, kind: .ppid, message: "process PPID has not changed since last cycle", reporting: .changes)
    }

    /// `failed uid|euid|gid` of a process; `expected` nil when the name resolves to no user or group.
    static func identity(_ which: String, kind: EventKind, current: UInt32, expected: UInt32?, service: String) -> Outcome {
        if expected != current {
            return Outcome(failed: true, kind: kind, message: "\(which) test failed for \(service) -- current \(which) is \(current)")
        }
        return Outcome(failed: false, kind: kind, message: "\(which) test succeeded [current \(which) = \(current)]")
    }

    /// `changed status` of a check program: nil the first time.
    static func changedStatus(_ now: Int, before: Int?, output: String) -> Outcome? {
        guard let before else { return nil }
        let shown = output.isEmpty ? "no output" : output
        if now != before {
            return Outcome(failed: true, kind: .status, message: "status changed (\(before) -> \(now)) -- \(shown)", reporting: .changes)
        }
        return Outcome(failed: false, kind: .status, message: "status didn't change (\(now)) -- \(shown)", reporting: .changes)
    }

    /// `check system`'s `cpu [user|system|wait|…]`: the share of the machine's CPU time between two
    /// cycles spent so; plain `cpu` is user + system, as monit counts it. nil in the first cycle.
    static func systemCPU(_ metric: ResourceMetric, _ op: ComparisonOperator, _ quantity: Quantity, now: CPUTicks, before: CPUTicks?) -> Outcome? {
        guard let before, case .percent(let limit) = quantity, now.total > before.total else { return nil }
        func share(_ field: (CPUTicks) -> UInt64) -> Double {
            100 * Double(field(now) &- field(before)) / Double(now.total - before.total)
        }
        let measured: (value: Double, name: String)
        switch metric {
        case .cpu: measured = (share { $0.user + $0.system }, "cpu usage")
        case .cpuUser: measured = (share(\.user), "cpu user usage")
        case .cpuSystem: measured = (share(\.system), "cpu system usage")
        case .cpuWait: measured = (share(\.iowait), "cpu I/O wait")
        case .cpuNice: measured = (share(\.nice), "cpu nice usage")
        case .cpuHardIRQ: measured = (share(\.irq), "cpu hardware IRQ usage")
        case .cpuSoftIRQ: measured = (share(\.softirq), "cpu software IRQ usage")
        case .cpuSteal: measured = (share(\.steal), "cpu steal usage")
        case .cpuGuest: measured = (share(\.guest), "cpu guest usage")
        default: return nil  // not a CPU metric; `resourceOutcome` sends no other here
        }
        let (value, name) = measured
        let failed = op.compare(value, limit)
        return Outcome(
            failed: failed, kind: .resource,
            message: failed
                ? "\(name) of \(MonitFormat.fixed(value))% matches resource limit [\(name) \(op.rawValue) \(MonitFormat.fixed(limit))%]"
                : "\(name) check succeeded [current \(name) = \(MonitFormat.fixed(value))%]")
    }
}
