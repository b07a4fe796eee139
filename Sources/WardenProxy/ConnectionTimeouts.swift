import NIOCore
import WardenConfig

/// The timeouts of one client connection, of which one runs at a time: the client's request head
/// (`header`), a kept-alive connection's wait for its next request (`idle`), the upstream's response
/// head (`upstreamRead`) and a client that does not read what it is sent (`send`).
///
/// Decides only, from the times it is given: the `ProxyHandler` keeps the one scheduled task and
/// arms it when this says. A new timeout usually ends later than the one before, so most requests
/// only move the deadline and the task, when it fires early, is armed again for the rest.
/// The upstream's connect timeout is not here: the connection attempt has its own (`UpstreamConnector`).
struct ConnectionTimeouts {
    enum Kind {
        case none, header, idle, upstreamRead, send
    }

    enum Expiry: Equatable {
        /// No timeout is running any more.
        case nothing
        /// The running one ends later than the task fired: arm it again for then.
        case early(NIODeadline)
        case expired(Kind)
    }

    private let header: TimeAmount
    private let idle: TimeAmount
    private let upstreamRead: TimeAmount
    private let send: TimeAmount

    private(set) var kind = Kind.none
    private var deadline = NIODeadline.distantFuture
    /// When the armed task fires (`distantFuture` while none is armed).
    private var taskFiresAt = NIODeadline.distantFuture

    init(settings: ProxySettings) {
        header = .seconds(Int64(settings.headerTimeout))
        idle = .seconds(Int64(settings.idleTimeout))
        upstreamRead = .seconds(Int64(settings.readTimeout))
        send = .seconds(Int64(settings.sendTimeout))
    }

    /// Starts `kind` (`none` stops the running one; the clock is not read then). Returns when the task
    /// must be armed: only when the new deadline comes before the armed task fires.
    mutating func set(_ kind: Kind, now: @autoclosure () -> NIODeadline) -> NIODeadline? {
        self.kind = kind
        let length: TimeAmount
        switch kind {
        case .none:
            deadline = .distantFuture
            return nil
        case .header: length = header
        case .idle: length = idle
        case .upstreamRead: length = upstreamRead
        case .send: length = send
        }
        deadline = now() + length
        guard deadline < taskFiresAt else { return nil }
        taskFiresAt = deadline
        return deadline
    }

    /// The task fired at `now`.
    mutating func fired(now: NIODeadline) -> Expiry {
        taskFiresAt = .distantFuture
        guard kind != .none else { return .nothing }
        if now < deadline {
            taskFiresAt = deadline
            return .early(deadline)
        }
        let expired = kind
        kind = .none
        deadline = .distantFuture
        return .expired(expired)
    }
}
