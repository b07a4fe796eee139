import WardenConfig

/// The sliding window of one rule: the results of its last 64 cycles, and whether it is failing.
/// `for X times within Y cycles` fires when X of the last Y results failed; `for X cycles` is X of X.
public struct RuleState: Sendable, Codable, Hashable {
    public enum Transition: Sendable, Equatable { case none, failed, recovered }

    /// Bit 0 is the latest result; a set bit is a failure.
    public private(set) var history: UInt64 = 0
    public private(set) var failing = false

    public init() {}

    public mutating func record(failed: Bool, window: FailureWindow) -> Transition {
        history = (history << 1) | (failed ? 1 : 0)
        let cycles = min(max(window.cycles, 1), 64)
        let mask: UInt64 = cycles == 64 ? .max : (1 << UInt64(cycles)) - 1
        let failures = (history & mask).nonzeroBitCount
        if !failing, failures >= window.times {
            failing = true
            return .failed
        }
        if failing, !failed {
            failing = false
            history = 0
            return .recovered
        }
        return .none
    }

    public mutating func reset() {
        history = 0
        failing = false
    }
}

/// The cycles in which warden started a service, for `if N restarts within M cycles`.
public struct RestartHistory: Sendable, Codable, Hashable {
    public private(set) var cycles: [Int] = []
    public private(set) var total = 0

    public init() {}

    public mutating func record(cycle: Int) {
        cycles.append(cycle)
        total += 1
        if cycles.count > 128 { cycles.removeFirst(cycles.count - 128) }
    }

    /// Starts within the last `window` cycles, the current one included.
    public func count(within window: Int, now cycle: Int) -> Int {
        cycles.count { $0 > cycle - window }
    }

    /// How many distinct cycles the starts in the window span (monit prints that number).
    public func observedCycles(within window: Int, now cycle: Int) -> Int {
        guard let first = cycles.first(where: { $0 > cycle - window }) else { return 0 }
        return cycle - first + 1
    }

    public mutating func reset() { cycles = [] }
}
