import WardenConfig
import WardenPlatform

/// `check file`: checksums, changes of timestamp and size, and the lines a log file gained.
extension ConditionEvaluator {
    /// The digest a checksum rule computes: the one it names, else the one its expected value's length
    /// says, else MD5 (monit's default).
    static func hashKind(named name: String?, expected: String?) -> HashKind {
        if let name, let kind = HashKind(rawValue: name) { return kind }
        return expected?.count == 40 ? .sha1 : .md5
    }

    /// `if failed checksum [expect HASH]`: the file must keep the expected digest, or without one the
    /// digest it had when warden first saw it.
    static func checksum(_ current: String, expected: String) -> Outcome {
        if current.lowercased() != expected.lowercased() {
            return Outcome(failed: true, kind: .checksum, message: "checksum failed, expected \(expected) got \(current)")
        }
        return Outcome(failed: false, kind: .checksum, message: "checksum is valid")
    }

    /// `if changed checksum`: nil the first time (nothing to compare with).
    static func changedChecksum(_ current: String, before: String?) -> Outcome? {
        guard let before else { return nil }
        if current != before { return Outcome(failed: true, kind: .checksum, message: "checksum changed to \(current)", reporting: .changes) }
        return Outcome(failed: false, kind: .checksum, message: "checksum has not changed", reporting: .changes)
    }

    /// `if changed timestamp`: the later of the modification and change times, as monit watches it.
    static func changedTimestamp(path: String, facts: FileFacts, before: WallClock.Time?) -> Outcome? {
        let now = max(facts.modified, facts.statusChanged)
        guard let before else { return nil }
        if now != before {
            return Outcome(
                failed: true, kind: .timestamp,
                message: "timestamp for \(path) changed from \(MonitFormat.date(before)) to \(MonitFormat.date(now))", reporting: .changes)
        }
        return Outcome(failed: false, kind: .timestamp, message: "timestamp was not changed for \(path)", reporting: .changes)
    }

    static func changedSize(path: String, size: Int64, before: Int64?) -> Outcome? {
        guard let before else { return nil }
        if size != before {
            return Outcome(failed: true, kind: .size, message: "size for \(path) changed to \(MonitFormat.bytes(Double(size)))", reporting: .changes)
        }
        return Outcome(failed: false, kind: .size, message: "size has not changed [current size = \(MonitFormat.bytes(Double(size)))]", reporting: .changes)
    }

    /// `if content =|!= "REGEX"` over the lines appended since the last cycle: a line an `ignore content`
    /// skips is not tested; the event names every line that matched (`=`) or did not (`!=`), up to
    /// `limit` bytes, as monit's "content match".
    static func content(
        _ op: ComparisonOperator, _ pattern: String, lines: [String], ignored: [Comparison<String>], limit: Int
    ) -> Outcome {
        var matched = ""
        for line in lines {
            if ignored.contains(where: { RegexSearch.matches($0.value, in: line) == ($0.op == .equal) }) { continue }
            guard RegexSearch.matches(pattern, in: line) == (op == .equal), matched.utf8.count < limit else { continue }
            matched += line + "\n"
            if matched.utf8.count >= limit { matched += "...\n" }
        }
        if matched.isEmpty { return Outcome(failed: false, kind: .content, message: "content doesn't match", reporting: .matches) }
        return Outcome(failed: true, kind: .content, message: "content match:\n\(matched)", reporting: .matches)
    }
}
