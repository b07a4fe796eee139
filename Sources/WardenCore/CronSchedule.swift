#if canImport(Glibc)
import Glibc
#endif

/// A five-field cron specification (`minute hour day-of-month month day-of-week`) for `every "…"`.
struct CronSchedule {
    private let fields: [Set<Int>?]

    init(_ spec: String) {
        let ranges = [0...59, 0...23, 1...31, 1...12, 0...7]
        let parts = spec.split(whereSeparator: \.isWhitespace)
        fields = zip(parts, ranges).map { part, range in Self.parse(String(part), range: range) }
    }

    /// nil means "any".
    private static func parse(_ field: String, range: ClosedRange<Int>) -> Set<Int>? {
        if field == "*" { return nil }
        var values = Set<Int>()
        for item in field.split(separator: ",") {
            let stepParts = item.split(separator: "/")
            let step = stepParts.count > 1 ? Int(stepParts[1]) ?? 1 : 1
            let span: ClosedRange<Int>
            if stepParts[0] == "*" {
                span = range
            } else if let dash = stepParts[0].firstIndex(of: "-"),
                let low = Int(stepParts[0][..<dash]), let high = Int(stepParts[0][stepParts[0].index(after: dash)...]), low <= high
            {
                span = low...high
            } else if let value = Int(stepParts[0]) {
                span = value...value
            } else {
                continue
            }
            values.formUnion(stride(from: span.lowerBound, through: span.upperBound, by: max(1, step)))
        }
        if range.upperBound == 7, values.contains(7) { values.insert(0) }
        return values
    }

    /// True when the current local time falls in a matching minute and this cycle is the first of that minute.
    /// Whether `now` (seconds since the epoch) falls in a minute the schedule names.
    func matches(_ now: WallClock.Time, cycleSeconds: Int) -> Bool {
        var now = time_t(now)
        var parts = tm()
        localtime_r(&now, &parts)
        // With cycles shorter than a minute, only the cycle that starts in the first `cycleSeconds` of it runs.
        guard Int(parts.tm_sec) < max(1, cycleSeconds) else { return false }
        let values = [Int(parts.tm_min), Int(parts.tm_hour), Int(parts.tm_mday), Int(parts.tm_mon) + 1, Int(parts.tm_wday)]
        for (value, allowed) in zip(values, fields) {
            if let allowed, !allowed.contains(value) { return false }
        }
        return fields.count == 5
    }
}
