#if canImport(Glibc)
import Glibc
#endif

/// A five-field cron specification (`minute hour day-of-month month day-of-week`) for `every "…"`,
/// checked when the control file is read: a field out of its range is an error of `-t`, not a
/// schedule that never runs.
public struct CronSchedule: Sendable, Hashable {
    /// The specification as written.
    public let spec: String
    /// The allowed values of each field; nil means "any".
    private let fields: [Set<Int>?]

    private static let fieldNames = ["minute", "hour", "day of the month", "month", "day of the week"]
    private static let ranges = [0...59, 0...23, 1...31, 1...12, 0...7]

    /// Parses `spec`; the error says which field is wrong and why.
    public init(_ spec: String) throws(CronSchedule.Problem) {
        let parts = spec.split(whereSeparator: \.isWhitespace)
        guard parts.count == 5 else {
            throw Problem(description: "a cron specification has 5 fields (minute hour day month weekday), found \(parts.count)")
        }
        var fields: [Set<Int>?] = []
        for (index, part) in parts.enumerated() {
            guard let values = Self.parse(part, range: Self.ranges[index]) else {
                let range = Self.ranges[index]
                throw Problem(description: "invalid cron field '\(part)' for the \(Self.fieldNames[index]) (\(range.lowerBound)-\(range.upperBound))")
            }
            fields.append(values)
        }
        self.spec = spec
        self.fields = fields
    }

    public struct Problem: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// nil when the field is malformed; a set of nil means "any".
    private static func parse(_ field: Substring, range: ClosedRange<Int>) -> Set<Int>?? {
        if field == "*" { return .some(nil) }
        var values = Set<Int>()
        for item in field.split(separator: ",", omittingEmptySubsequences: false) {
            let stepParts = item.split(separator: "/", omittingEmptySubsequences: false)
            guard stepParts.count <= 2 else { return nil }
            var step = 1
            if stepParts.count == 2 {
                guard let value = Int(stepParts[1]), value >= 1 else { return nil }
                step = value
            }
            let span: ClosedRange<Int>
            if stepParts[0] == "*" {
                span = range
            } else if let dash = stepParts[0].firstIndex(of: "-") {
                guard let low = Int(stepParts[0][..<dash]), let high = Int(stepParts[0][stepParts[0].index(after: dash)...]), low <= high
                else { return nil }
                span = low...high
            } else if let value = Int(stepParts[0]) {
                span = value...value
            } else {
                return nil
            }
            guard range.contains(span.lowerBound), range.contains(span.upperBound) else { return nil }
            values.formUnion(stride(from: span.lowerBound, through: span.upperBound, by: step))
        }
        if range.upperBound == 7, values.contains(7) { values.insert(0) }
        return .some(values)
    }

    /// Whether `now` (seconds since the epoch) falls in a minute the schedule names, in local time.
    /// With cycles shorter than a minute, only the cycle that starts in the first `cycleSeconds` of it
    /// counts, so a minute runs the check once.
    public func matches(_ now: Double, cycleSeconds: Int) -> Bool {
        var time = time_t(now)
        var parts = tm()
        localtime_r(&time, &parts)
        guard Int(parts.tm_sec) < max(1, cycleSeconds) else { return false }
        let values = [Int(parts.tm_min), Int(parts.tm_hour), Int(parts.tm_mday), Int(parts.tm_mon) + 1, Int(parts.tm_wday)]
        for (value, allowed) in zip(values, fields) {
            if let allowed, !allowed.contains(value) { return false }
        }
        return true
    }
}
