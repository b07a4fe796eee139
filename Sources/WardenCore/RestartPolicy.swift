import WardenConfig

/// When warden may start a service on its own: automatic starts are spaced (an app that dies at once
/// cannot make warden fork in a tight loop) and `if N restarts within M cycles then …` limits them.
/// Pure decisions: the caller passes the time and the cycle and carries out what comes back.
enum RestartPolicy {
    /// How long to wait before the next automatic start may happen; nil when it may happen now.
    static func crashLoopDelay<Instant: InstantProtocol>(
        lastAutomaticStart: Instant?, now: Instant, minimumInterval: Instant.Duration
    ) -> Instant.Duration? {
        guard let last = lastAutomaticStart else { return nil }
        let elapsed = last.duration(to: now)
        guard elapsed < minimumInterval else { return nil }
        return minimumInterval - elapsed
    }

    /// A restart limit that fired, with monit's message for it.
    struct FiredLimit: Equatable {
        var limit: RestartLimit
        var message: String
        /// An `alert` limit only tells; any other action ends automatic starts (the service is unmonitored).
        var stopsStarts: Bool { limit.action != .alert }
    }

    /// The limits that fire now, in the order written, up to and including the first that stops starts.
    static func firedLimits(_ limits: [RestartLimit], restarts: RestartHistory, cycle: Int) -> [FiredLimit] {
        var fired: [FiredLimit] = []
        for limit in limits {
            let count = restarts.count(within: limit.cycles, now: cycle)
            guard count >= limit.restarts else { continue }
            let observed = restarts.observedCycles(within: limit.cycles, now: cycle)
            let message = "service restarted \(count) times within \(observed) cycle(s) - \(limit.action == .alert ? "alert" : "unmonitor")"
            let entry = FiredLimit(limit: limit, message: message)
            fired.append(entry)
            if entry.stopsStarts { break }
        }
        return fired
    }
}
