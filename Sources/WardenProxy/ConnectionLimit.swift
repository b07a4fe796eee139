import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Counts client connections against `max connections`.
final class ConnectionLimit: Sendable {
    let maximum: Int
    private let open = Atomic<Int>(0)
    private let lastComplaint = Atomic<Int>(0)

    init(maximum: Int) { self.maximum = maximum }

    /// Takes a slot, or returns false when all are in use.
    func acquire() -> Bool {
        if open.add(1, ordering: .relaxed).newValue <= maximum { return true }
        open.subtract(1, ordering: .relaxed)
        return false
    }

    func release() { open.subtract(1, ordering: .relaxed) }

    /// True at most once a second, so a flood does not flood the log as well.
    func shouldComplain() -> Bool {
        let now = time(nil)
        return lastComplaint.exchange(now, ordering: .relaxed) != now
    }
}
