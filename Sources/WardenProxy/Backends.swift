import Synchronization
import WardenConfig

/// The instances a service's requests go to now, replaced whole by the daemon's feed (a deploy's
/// switch is one replacement): a request that began before keeps the instance it took.
final class BackendSet: Sendable {
    /// One instance, as requests use it.
    final class Target: Sendable {
        let backend: Backend
        /// The instance's requests in flight: a drain before it stops waits for them.
        let traffic: ServiceTraffic
        /// A connect failure, or a reset before any byte of a response, keeps new requests away from it
        /// until the supervisor reports on it again (the feed does each second and after every event).
        let failed = Atomic<Bool>(false)

        init(backend: Backend, traffic: ServiceTraffic) {
            self.backend = backend
            self.traffic = traffic
        }
    }

    private let targets = Mutex<[Target]>([])
    private let cursor = Atomic<Int>(0)

    func replace(_ backends: [Backend], traffic: (String) -> ServiceTraffic) {
        targets.withLock { targets in
            targets = backends.map { backend in
                if let known = targets.first(where: { $0.backend == backend }) {
                    known.failed.store(false, ordering: .relaxed)
                    return known
                }
                return Target(backend: backend, traffic: traffic(backend.instance))
            }
        }
    }

    /// The instance for a request, or nil when none may take it (the hold applies then).
    /// `pinned` is the port a sticky cookie names; `client` the address `sticky ip` hashes.
    func pick(_ balance: Site.Balance, pinned: Int?, client: String, isUp: (String) -> Bool) -> Target? {
        let all = targets.withLock { $0 }
        func usable(_ target: Target) -> Bool { !target.failed.load(ordering: .relaxed) && isUp(target.backend.instance) }
        if let pinned, let target = all.first(where: { $0.backend.port == pinned }), usable(target) { return target }
        let candidates = all.filter(usable)
        guard !candidates.isEmpty else { return nil }
        switch balance {
        case .roundRobin, .stickyCookie:
            return candidates[cursor.add(1, ordering: .relaxed).oldValue.magnitude.remainder(candidates.count)]
        case .leastConnections:
            // Ties go round: an idle service's requests spread instead of all going to the first.
            let start = cursor.add(1, ordering: .relaxed).oldValue.magnitude.remainder(candidates.count)
            let rotated = candidates[start...] + candidates[..<start]
            return rotated.min { $0.traffic.count < $1.traffic.count }
        case .stickyIP:
            return candidates[Self.hash(client).remainder(candidates.count)]
        }
    }

    /// FNV-1a: the same client address lands on the same instance in every worker and after a restart.
    static func hash(_ text: String) -> UInt64 {
        text.utf8.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }
}

extension UInt {
    fileprivate func remainder(_ count: Int) -> Int { Int(self % UInt(count)) }
}

extension UInt64 {
    fileprivate func remainder(_ count: Int) -> Int { Int(self % UInt64(count)) }
}
