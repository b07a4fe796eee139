#if canImport(Glibc)
import Glibc
#endif

/// Seconds since the Unix epoch, from the real-time clock (events and state outlive the process).
public enum WallClock {
    public typealias Time = Double

    public static func now() -> Time { read(CLOCK_REALTIME) }

    /// The clock file modification times come from, a few milliseconds behind `now()`.
    public static func coarseNow() -> Time { read(CLOCK_REALTIME_COARSE) }

    private static func read(_ clock: clockid_t) -> Time {
        var spec = timespec()
        clock_gettime(clock, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }
}
