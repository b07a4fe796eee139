import NIOCore

/// One request's way to its upstream: while the service is down or refuses connections, the request
/// is held (tried again every 25 ms) until the site's `hold` ends; an idempotent request whose
/// upstream dies before its response is complete is sent again. Decides only, from the times and
/// facts it is given; the `ProxyHandler` connects, answers and logs.
struct UpstreamAttempt {
    enum Action: Equatable {
        /// Connect again after the delay (the request waits meanwhile).
        case retry(after: TimeAmount)
        /// Connect again now: the instance tried could not be reached, another may be.
        case anotherInstance
        /// Answer with the site's maintenance page (503), `Retry-After` the seconds when given.
        case maintenance(retryAfter: Int?)
        case badGateway
        /// Part of the response is out: all that is left is to close the connection.
        case close
    }

    /// How often a held request looks for its service again.
    static let holdInterval = TimeAmount.milliseconds(25)
    /// How soon a request whose upstream died is sent again.
    static let resendDelay = TimeAmount.milliseconds(10)
    /// Resends after fresh connections died (those on pooled ones do not count: only as many as the
    /// pool held can fail that way).
    static let maximumResends = 3

    /// The site's `hold`, in seconds.
    private var hold = 0
    /// When the hold ends.
    private(set) var deadline = NIODeadline.distantPast
    /// When the request began to wait, while it waits (for the metrics).
    private(set) var holdStarted: NIODeadline?
    /// A GET or HEAD without a body: it may be sent again.
    private(set) var idempotent = false
    /// The request went out on a pooled connection: one the upstream may have closed meanwhile.
    private(set) var onPooledConnection = false
    private var resends = 0

    /// A new request to an upstream, held up to `hold` seconds from `now`.
    mutating func begin(hold: Int, idempotent: Bool, now: NIODeadline) {
        self.hold = hold
        self.idempotent = idempotent
        deadline = now + .seconds(Int64(hold))
        resends = 0
    }

    /// A request that is not going upstream (a file, a page of the proxy's own).
    mutating func reset() {
        onPooledConnection = false
    }

    /// The hold is over, or was never on: the time it lasted, for the metrics.
    mutating func endHold(now: NIODeadline) -> Int64? {
        holdStarted.take().map { (now - $0).nanoseconds }
    }

    /// The service is down, or has no instance ready. `secondsUntilStart`: when a delayed automatic
    /// start will bring it back, if one will.
    mutating func serviceDown(now: NIODeadline, secondsUntilStart: Int?) -> Action {
        // Its next start comes after the hold ends: the client is told when to come back.
        if let seconds = secondsUntilStart, now + .seconds(Int64(seconds)) > deadline { return .maintenance(retryAfter: seconds) }
        guard now < deadline else { return .maintenance(retryAfter: nil) }
        holding(since: now)
        return .retry(after: Self.holdInterval)
    }

    /// A new connection failed. `instance`: it was to one of the service's instances (nothing was
    /// sent, so any request may go to another). `counts`: the failure goes into the metrics (a
    /// refusal while the hold waits for the service is expected).
    mutating func connectFailed(now: NIODeadline, instance: Bool, serviceIsUp: () -> Bool) -> (counts: Bool, action: Action) {
        let counts = instance || hold == 0 || now >= deadline
        if instance { return (counts, .anotherInstance) }
        if hold > 0, now < deadline {
            holding(since: now)
            return (counts, .retry(after: Self.holdInterval))
        }
        return (counts, serviceIsUp() ? .badGateway : .maintenance(retryAfter: nil))
    }

    /// The request went out on a connection.
    mutating func sent(pooled: Bool) {
        onPooledConnection = pooled
    }

    /// The upstream's connection closed before the response was complete. `responseStarted`: some of
    /// it went to the client. `resendable`: the whole request went out and is kept. A request sent
    /// again is held up to the site's hold (a second at least) while the service comes back.
    mutating func upstreamFailed(now: NIODeadline, responseStarted: Bool, resendable: Bool) -> Action {
        if responseStarted { return .close }
        guard idempotent, resendable, resends < Self.maximumResends else { return .badGateway }
        if !onPooledConnection { resends += 1 }
        deadline = now + .seconds(Int64(max(hold, 1)))
        return .retry(after: Self.resendDelay)
    }

    private mutating func holding(since now: NIODeadline) {
        if holdStarted == nil { holdStarted = now }
    }
}
