import WardenConfig
import WardenPlatform

/// `check filesystem`: space and inodes from statvfs, rates and service time from the device's counters
/// between two cycles, and the mount flags.
extension ConditionEvaluator {
    /// `space usage|free`, `inode usage|free`, in % or absolute (bytes for space, a count for inodes).
    /// Usage in % counts the blocks reserved for root as used, as `df` and monit do.
    static func filesystem(_ metric: ResourceMetric, _ op: ComparisonOperator, _ quantity: Quantity, facts: FilesystemFacts) -> Outcome? {
        let percent: Double
        let limitPercent: Double?
        var limit: Double = 0
        switch quantity {
        case .percent(let p): limitPercent = p
        case .bytes(let b): limitPercent = nil; limit = b
        case .count(let c): limitPercent = nil; limit = c
        case .seconds, .rate: return nil  // refused by `warden -t` (ResourceMetric.accepts)
        }
        let name = metric.testName
        func outcome(_ value: Double, shown: String, limitShown: String) -> Outcome {
            let failed = op.compare(value, limitPercent ?? limit)
            return Outcome(
                failed: failed, kind: .resource,
                message: failed
                    ? "\(name) \(shown) matches resource limit [\(name) \(op.rawValue) \(limitShown)]"
                    : "\(name) test succeeded [current \(name) = \(shown)]")
        }
        switch metric {
        case .spaceUsage, .spaceFree:
            let usedPercent = facts.blocks > 0 ? 100 * Double(facts.blocks - min(facts.blocks, facts.blocksAvailable)) / Double(facts.blocks) : 0
            percent = metric == .spaceUsage ? usedPercent : 100 - usedPercent
            if let limitPercent {
                return outcome(percent, shown: "\(MonitFormat.fixed(percent))%", limitShown: "\(MonitFormat.fixed(limitPercent))%")
            }
            let blocks = metric == .spaceUsage ? facts.blocks - min(facts.blocks, facts.blocksFree) : facts.blocksFree
            let bytes = Double(blocks) * Double(max(1, facts.blockSize))
            return outcome(bytes, shown: MonitFormat.bytes(bytes), limitShown: MonitFormat.bytes(limit))
        case .inodeUsage, .inodeFree:
            // A filesystem without inodes (some FUSE and network ones) passes, as in monit.
            guard facts.files > 0 else { return Outcome(failed: false, kind: .resource, message: "\(name) test succeeded [no inodes]") }
            let used = facts.files - min(facts.files, facts.filesFree)
            percent = 100 * Double(metric == .inodeUsage ? used : facts.filesFree) / Double(facts.files)
            if let limitPercent {
                return outcome(percent, shown: "\(MonitFormat.fixed(percent))%", limitShown: "\(MonitFormat.fixed(limitPercent))%")
            }
            let count = Double(metric == .inodeUsage ? used : facts.filesFree)
            return outcome(count, shown: MonitFormat.fixed(count, 0), limitShown: MonitFormat.fixed(limit, 0))
        default:
            return nil  // only the four above are tests of statvfs; `resourceOutcome` sends no other here
        }
    }

    /// `read|write rate` of a filesystem's device between two cycles, in bytes or operations per second;
    /// nil in the first cycle, or for a filesystem without a device (tmpfs), as monit skips it.
    static func diskRate(
        _ metric: ResourceMetric, _ op: ComparisonOperator, _ quantity: Quantity, now: DiskCounters?, before: DiskCounters?,
        seconds: Double
    ) -> Outcome? {
        guard let now, let before, seconds > 0, let perSecond = quantity.rateLimit else { return nil }
        let (limit, operations) = perSecond
        let reading = metric == .readBytes || metric == .readOperations || metric == .diskReadBytes
        let counter: (DiskCounters) -> UInt64 =
            switch (reading, operations) {
            case (true, false): { $0.readBytes }
            case (true, true): { $0.readOperations }
            case (false, false): { $0.writeBytes }
            case (false, true): { $0.writeOperations }
            }
        guard counter(now) >= counter(before) else { return nil }  // counters reset (device re-attached)
        return rate(reading ? "read" : "write", Double(counter(now) - counter(before)) / seconds, op, limit: limit, operations: operations)
    }

    /// monit's rate messages, for filesystems and processes alike.
    static func rate(_ direction: String, _ value: Double, _ op: ComparisonOperator, limit: Double, operations: Bool, physical: Bool = false) -> Outcome {
        let failed = op.compare(value, limit)
        let shown = operations ? "\(MonitFormat.fixed(value)) operations/s" : "\(MonitFormat.bytes(value))/s"
        let limitShown = operations ? "\(MonitFormat.fixed(limit, 0)) operations/s" : "\(MonitFormat.bytes(limit))/s"
        let subject = physical ? "physical \(direction) activity" : "\(direction) rate"
        return Outcome(
            failed: failed, kind: .resource,
            message: failed
                ? "\(subject) \(shown) matches resource limit [\(direction) \(op.rawValue) \(limitShown)]"
                : "\(subject) test succeeded [current \(direction) = \(shown)]")
    }

    /// `service time`: the device's time spent on reads and writes per operation between two cycles.
    static func serviceTime(_ op: ComparisonOperator, _ quantity: Quantity, now: DiskCounters?, before: DiskCounters?) -> Outcome? {
        guard let now, let before, case .seconds(let limitSeconds) = quantity,
            now.readMilliseconds + now.writeMilliseconds >= before.readMilliseconds + before.writeMilliseconds,
            now.readOperations + now.writeOperations >= before.readOperations + before.writeOperations
        else { return nil }
        let time = Double(now.readMilliseconds + now.writeMilliseconds - before.readMilliseconds - before.writeMilliseconds)
        let operations = Double(now.readOperations + now.writeOperations - before.readOperations - before.writeOperations)
        let value = operations > 0 ? time / operations : 0
        let limit = limitSeconds * 1000
        let failed = op.compare(value, limit)
        let shown = MonitFormat.milliseconds(value)
        return Outcome(
            failed: failed, kind: .resource,
            message: failed
                ? "service time \(shown)/operation matches resource limit [service time \(op.rawValue) \(MonitFormat.milliseconds(limit))/operation]"
                : "service time test succeeded [current service time = \(shown)/operation]")
    }

    /// `changed fsflags`: the mount's options differ from the last cycle's (a remount read-only, …).
    static func filesystemFlags(now: String, before: String?) -> Outcome? {
        guard let before else { return nil }
        if now != before {
            return Outcome(failed: true, kind: .fsflags, message: "filesystem flags changed from '\(before)' to '\(now)'", reporting: .changes)
        }
        return Outcome(failed: false, kind: .fsflags, message: "filesystem flags has not changed [current flags '\(now)']", reporting: .changes)
    }
}

extension Quantity {
    /// A rate limit per second and whether it counts operations; a bare size is per second and a bare
    /// number counts operations, as monit's grammar reads them.
    var rateLimit: (Double, operations: Bool)? {
        switch self {
        case .rate: return perSecond.map { ($0.value, $0.operations) }
        case .bytes(let bytes): return (bytes, false)
        case .count(let count): return (count, true)
        case .percent, .seconds: return nil
        }
    }
}
