import Synchronization

/// Fans events out to every subscriber; a slow subscriber loses the oldest events, never blocks warden.
public final class EventBus: Sendable {
    private let subscribers = Mutex<[Int: AsyncStream<Event>.Continuation]>([:])
    private let nextID = Mutex(0)

    public init() {}

    public func publish(_ event: Event) {
        for continuation in subscribers.withLock({ Array($0.values) }) {
            continuation.yield(event)
        }
    }

    /// A stream of every event published from now on.
    public func subscribe(bufferingNewest limit: Int = 1024) -> AsyncStream<Event> {
        let id = nextID.withLock { id -> Int in
            id += 1
            return id
        }
        let (stream, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(limit))
        continuation.onTermination = { [weak self] _ in
            _ = self?.subscribers.withLock { $0.removeValue(forKey: id) }
        }
        subscribers.withLock { $0[id] = continuation }
        return stream
    }

    public func finish() {
        for continuation in subscribers.withLock({ Array($0.values) }) { continuation.finish() }
    }
}

#if canImport(Glibc)
import Glibc
#endif
