import NIOCore
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
        /// until the supervisor reports on it again (it checks the instance at once when told:
        /// `ServiceAvailability.unreachable`).
        let failed = Atomic<Bool>(false)
        /// Requests a sticky cookie brought to it after a switch took it out of service, and when the
        /// last one came (uptime nanoseconds): its drain waits until its pinned clients go quiet.
        let pinnedRequests = Atomic<Int>(0)
        let lastPinned = Atomic<UInt64>(0)
        /// Its drain, once one began: while it lasts, pinned clients reach it whatever the supervisor
        /// says (it reports a stopping instance down); once over, none does.
        let drain = Atomic<DrainPhase>(.none)

        enum DrainPhase: UInt8, AtomicRepresentable {
            case none, pinnedOnly, over
        }

        /// Whether a request that picked it may go to it: a serving instance while the supervisor says
        /// it is up, a retiring one while its drain lets pinned clients in. Sequentially consistent,
        /// with the request's count before it (see `ServiceAvailability.finished`).
        func takesRequests(isUp: (String) -> Bool) -> Bool {
            switch drain.load(ordering: .sequentiallyConsistent) {
            case .none: isUp(backend.instance)
            case .pinnedOnly: true
            case .over: false
            }
        }

        init(backend: Backend, traffic: ServiceTraffic) {
            self.backend = backend
            self.traffic = traffic
        }
    }

    /// `serving`: where new clients go. `retiring`: instances a switch took out of service that still
    /// run; with `balance sticky cookie` the clients pinned to one keep going to it while it drains,
    /// so a session kept in its memory (Seaside's) is not cut by a deploy.
    private let targets = Mutex<(serving: [Target], retiring: [Target])>(([], []))
    private let cursor = Atomic<Int>(0)
    /// A site passes to it with `balance sticky cookie` (set when the sites are loaded, never cleared:
    /// a reload that drops it only makes a drain wait for pinned clients that no longer come).
    let keepsPins = Atomic<Bool>(false)

    func replace(_ backends: [Backend], traffic: (String) -> ServiceTraffic, isUp: (String) -> Bool) {
        targets.withLock { targets in
            let before = targets.serving
            targets.serving = backends.map { backend in
                if let known = before.first(where: { $0.backend == backend }) {
                    known.failed.store(false, ordering: .relaxed)
                    return known
                }
                return Target(backend: backend, traffic: traffic(backend.instance))
            }
            let dropped = before.filter { old in !targets.serving.contains { $0 === old } }
            // Kept while pinned clients may reach it and its port is not serving again.
            targets.retiring = (targets.retiring + dropped).filter { old in
                old.takesRequests(isUp: isUp) && !backends.contains { $0.port == old.backend.port }
            }
        }
    }

    /// The instance a switch took out of service that `instance` names, while it is still kept.
    func retiring(_ instance: String) -> Target? {
        targets.withLock { $0.retiring.first { $0.backend.instance == instance } }
    }

    /// The instance for a request, or nil when none may take it (the hold applies then).
    /// `pinned` is the port a sticky cookie names; `client` the address `sticky ip` hashes.
    func pick(_ balance: Site.Balance, pinned: Int?, client: String, isUp: (String) -> Bool) -> Target? {
        let (all, retiring) = targets.withLock { ($0.serving, $0.retiring) }
        // One rule for serving and retiring instances (a serving one's drain phase is always `none`).
        func usable(_ target: Target) -> Bool { !target.failed.load(ordering: .relaxed) && target.takesRequests(isUp: isUp) }
        if let pinned {
            if let target = all.first(where: { $0.backend.port == pinned }), usable(target) { return target }
            if let target = retiring.first(where: { $0.backend.port == pinned }), usable(target) {
                target.pinnedRequests.add(1, ordering: .relaxed)
                target.lastPinned.store(NIODeadline.now().uptimeNanoseconds, ordering: .relaxed)
                return target
            }
        }
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

/// A drain under way (`ServiceAvailability.beginDrain`), polled with `ServiceAvailability.finished`.
public struct Drain: Sendable {
    /// How long the clients pinned to a retiring instance must have sent nothing before it stops
    /// taking them: a session's next click within it still finds its instance.
    static let pinnedQuiet = TimeAmount.seconds(5)

    public let service: String
    let began: NIODeadline
    let deadline: NIODeadline
    let pinned: BackendSet.Target?
    let inFlightAtStart: Int
    /// The pinned instance's count of pinned requests when it began: those after it are the drain's.
    let pinnedAtStart: Int
}
