import CWardenShims
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The only caller of waitpid(2) in the daemon: reaps every child (and, as a subreaper, every orphaned
/// descendant) the moment it exits, so no zombie lingers, and hands exit statuses to whoever waits.
/// Outside the daemon (a test process, where Foundation's Process waits for its own children) it
/// reaps only the programs `Spawner` started: taking another owner's child would hide its status.
public final class ChildReaper: Sendable {
    public static let shared = ChildReaper()

    private struct State {
        var waiters: [pid_t: [CheckedContinuation<Int32, Never>]] = [:]
        /// Statuses nobody has asked for yet (a program that exited before its waiter registered).
        var unclaimed: [pid_t: Int32] = [:]
        /// Every recent status, claimed or not, for those who only want to know how a process ended.
        var recent: [pid_t: Int32] = [:]
        var recentOrder: [pid_t] = []
        var started = false
        /// The daemon's mode: every child and orphan; otherwise only these.
        var reapsEveryChild = false
        var spawned: Set<pid_t> = []
    }

    private let state = Mutex(State())
    private let childAppeared = DispatchSemaphore(value: 0)

    /// Starts the reaping thread (once). `everyChild`: the daemon's mode, which also makes warden the
    /// reaper of orphaned descendants.
    public func start(everyChild: Bool = false) {
        if everyChild { _ = warden_set_child_subreaper() }
        let first = state.withLock { state -> Bool in
            defer { state.started = true }
            state.reapsEveryChild = state.reapsEveryChild || everyChild
            return !state.started
        }
        guard first else { return }
        Thread.start(name: "warden-reap") { [self] in loop() }
    }

    /// Tells the reaper a child of `Spawner`'s exists now, waking it if it had none.
    func childSpawned(_ pid: pid_t) {
        state.withLock { _ = $0.spawned.insert(pid) }
        childAppeared.signal()
    }

    /// Waits for a child to exit and returns its raw wait status.
    public func waitForExit(_ pid: pid_t) async -> Int32 {
        await withCheckedContinuation { continuation in
            let status = state.withLock { state -> Int32? in
                if let status = state.unclaimed.removeValue(forKey: pid) { return status }
                state.waiters[pid, default: []].append(continuation)
                return nil
            }
            if let status { continuation.resume(returning: status) }
        }
    }

    /// The exit status if the child has already exited and nobody collected it.
    public func takeStatus(_ pid: pid_t) -> Int32? {
        state.withLock { $0.unclaimed.removeValue(forKey: pid) }
    }

    /// How a recently reaped process ended, whoever collected its status: reading it takes nothing
    /// from a waiter.
    public func lastStatus(_ pid: pid_t) -> Int32? {
        state.withLock { $0.recent[pid] }
    }

    private func loop() {
        while true {
            if state.withLock({ $0.reapsEveryChild }) {
                var status: Int32 = 0
                let pid = waitpid(-1, &status, 0)
                if pid > 0 {
                    deliver(pid, status)
                } else if errno == ECHILD {
                    _ = childAppeared.wait(timeout: .now() + .seconds(1))
                }
            } else {
                reapSpawned()
            }
        }
    }

    /// Waits until some child has exited without reaping it (WNOWAIT), then reaps those of `Spawner`'s
    /// that have; a child of someone else's is left to its owner, who reaps it in a moment.
    private func reapSpawned() {
        var info = siginfo_t()
        guard waitid(P_ALL, 0, &info, WEXITED | WNOWAIT) == 0 else {
            if errno == ECHILD { _ = childAppeared.wait(timeout: .now() + .seconds(1)) }
            return
        }
        var reaped = false
        for pid in state.withLock({ $0.spawned }) {
            var status: Int32 = 0
            guard waitpid(pid, &status, WNOHANG) == pid else { continue }
            state.withLock { _ = $0.spawned.remove(pid) }
            deliver(pid, status)
            reaped = true
        }
        if !reaped { usleep(5_000) }
    }

    private func deliver(_ pid: pid_t, _ status: Int32) {
        let waiters = state.withLock { state -> [CheckedContinuation<Int32, Never>] in
            // Orphaned daemons are reaped too and never claimed: keep only recent statuses.
            state.recent[pid] = status
            state.recentOrder.append(pid)
            if state.recentOrder.count > 4096 {
                let old = state.recentOrder.removeFirst()
                state.recent.removeValue(forKey: old)
                state.unclaimed.removeValue(forKey: old)
            }
            if let waiters = state.waiters.removeValue(forKey: pid) { return waiters }
            state.unclaimed[pid] = status
            return []
        }
        for waiter in waiters { waiter.resume(returning: status) }
    }
}

/// Decodes a raw wait status.
public enum ExitStatus {
    /// The exit code, or -signal for a process killed by a signal.
    public static func code(_ status: Int32) -> Int32 {
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : -signal
    }

    public static func describe(_ status: Int32) -> String {
        let code = code(status)
        return code >= 0 ? "exit status \(code)" : "killed by signal \(-code)"
    }
}
