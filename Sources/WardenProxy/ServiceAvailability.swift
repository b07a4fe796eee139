import Crypto
import NIOCore
import Synchronization

/// Which services are up and which sites are in planned maintenance, fed by the supervisor.
/// Every request asks; nearly always every service is up and no site is in maintenance, which
/// two atomic counts answer without the lock or hashing a name.
public final class ServiceAvailability: Sendable {
    private let state = Mutex<(up: [String: Bool], maintenance: Set<String>)>(([:], []))
    private let servicesDown = Atomic<Int>(0)
    private let sitesInMaintenance = Atomic<Int>(0)
    /// One count per service ever named by a route or a drain (a handful), never removed: routes of
    /// every reload share it, so requests that started before a reload are counted too.
    private let trafficByService = Mutex<[String: ServiceTraffic]>([:])
    /// The instances of each service with `instances`, kept like the counts.
    private let backendsByService = Mutex<[String: BackendSet]>([:])

    /// The key of `balance sticky cookie`: the feed's (kept across restarts of warden), else this process's.
    private let stickyKey = Mutex(StickyCookie(key: SymmetricKey(size: .bits256)))

    var stickyCookie: StickyCookie { stickyKey.withLock { $0 } }

    public func setStickyKey(_ key: [UInt8]) {
        guard key.count == StickyCookie.keyBytes else { return }
        stickyKey.withLock { $0 = StickyCookie(key: SymmetricKey(data: key)) }
    }

    /// Told the name of an instance a request could not reach (once per failure, not per request).
    private let unreachableReport = Mutex<(@Sendable (String) -> Void)?>(nil)

    public init() {}

    public func onUnreachableInstance(_ report: @escaping @Sendable (String) -> Void) {
        unreachableReport.withLock { $0 = report }
    }

    /// Passive health: keeps new requests away from the instance and asks the supervisor to check it;
    /// the next report of the instances lets it in again (without it, once the check has passed).
    func unreachable(_ target: BackendSet.Target) {
        guard !target.failed.exchange(true, ordering: .relaxed) else { return }
        let report = unreachableReport.withLock { $0 }
        report?(target.backend.instance)
    }

    /// Services down until a delayed automatic start, with the seconds until it (read only for a
    /// service found down).
    private let delayedStarts = Mutex<[String: Int]>([:])

    public func setDelayedStarts(_ services: [String: Int]) {
        delayedStarts.withLock { $0 = services }
    }

    func secondsUntilStart(_ service: String) -> Int? {
        delayedStarts.withLock { $0[service] }
    }

    /// The instances `service`'s requests go to from now on.
    public func setBackends(_ service: String, _ backends: [Backend]) {
        self.backends(for: service).replace(backends, traffic: traffic(for:), isUp: isUp)
    }

    func backends(for service: String) -> BackendSet {
        backendsByService.withLock { table in
            if let known = table[service] { return known }
            let new = BackendSet()
            table[service] = new
            return new
        }
    }

    public func set(_ service: String, up: Bool) {
        state.withLock {
            $0.up[service] = up
            // Sequentially consistent, with `isUp` and `ServiceTraffic.enter`: see `hold`.
            servicesDown.store($0.up.values.count { !$0 }, ordering: .sequentiallyConsistent)
        }
    }

    /// Unknown services count as up: the proxy then just tries the upstream. (Inlined: the name
    /// is not even retained while every service is up.)
    @inline(__always)
    public func isUp(_ service: String) -> Bool {
        guard servicesDown.load(ordering: .sequentiallyConsistent) > 0 else { return true }
        return state.withLock { $0.up[service] ?? true }
    }

    /// Before a planned stop: new requests for `service` wait, as while it is down, until the
    /// supervisor reports it up again. A request counts itself in flight before it checks `isUp`,
    /// and this marks the service down before anyone reads the count: so a request is either held
    /// or seen by `requestsInFlight`, whatever the threads' timing.
    public func hold(_ service: String) {
        set(service, up: false)
    }

    /// Requests sent to `service`'s upstream whose response has not ended or failed yet.
    public func requestsInFlight(_ service: String) -> Int {
        traffic(for: service).count
    }

    /// Starts the drain before a planned stop of `service`. New requests for it are held at once, except
    /// for an instance a deploy's switch took out of service behind `balance sticky cookie`: its pinned
    /// clients keep reaching it until they have been quiet for `Drain.pinnedQuiet`, then it is held.
    public func beginDrain(_ service: String, timeout: TimeAmount, now: NIODeadline = .now()) -> Drain {
        let pinned = backendsByService.withLock { table in
            table.values.lazy.filter { $0.keepsPins.load(ordering: .relaxed) }.compactMap { $0.retiring(service) }.first
        }
        if let pinned { pinned.drain.store(.pinnedOnly, ordering: .relaxed) } else { hold(service) }
        return Drain(
            service: service, began: now, deadline: now + timeout, pinned: pinned, inFlightAtStart: requestsInFlight(service),
            pinnedAtStart: pinned?.pinnedRequests.load(ordering: .relaxed) ?? 0)
    }

    /// The requests the drain saw through once it is over (a pinned instance's clients quiet, then
    /// none in flight), or at its deadline; nil while it lasts.
    public func finished(_ drain: Drain, now: NIODeadline = .now()) -> Int? {
        if let pinned = drain.pinned, pinned.drain.load(ordering: .sequentiallyConsistent) == .pinnedOnly {
            // Quiet since the drain began at least: a client's next click may still be coming.
            let last = max(drain.began, .uptimeNanoseconds(pinned.lastPinned.load(ordering: .relaxed)))
            guard now - last >= Drain.pinnedQuiet || now >= drain.deadline else { return nil }
            // Closed before the count is read, as `hold` does: a request is either turned away by
            // `takesRequests` or counted below.
            pinned.drain.store(.over, ordering: .sequentiallyConsistent)
            hold(drain.service)
        }
        guard requestsInFlight(drain.service) == 0 || now >= drain.deadline else { return nil }
        let pinnedRequests = drain.pinned.map { $0.pinnedRequests.load(ordering: .relaxed) } ?? 0
        return drain.inFlightAtStart + pinnedRequests - drain.pinnedAtStart
    }

    func traffic(for service: String) -> ServiceTraffic {
        trafficByService.withLock { table in
            if let known = table[service] { return known }
            let new = ServiceTraffic(service: service)
            table[service] = new
            return new
        }
    }

    /// The sites in planned maintenance (`warden maintenance on SITE`): they answer with their
    /// maintenance page at once.
    public func setMaintenance(_ sites: Set<String>) {
        state.withLock {
            $0.maintenance = sites
            sitesInMaintenance.store(sites.count, ordering: .releasing)
        }
    }

    @inline(__always)
    public func inMaintenance(_ site: String) -> Bool {
        guard sitesInMaintenance.load(ordering: .acquiring) > 0 else { return false }
        return state.withLock { $0.maintenance.contains(site) }
    }
}

/// The requests of one service in flight, counted by the proxy handlers while they wait for its
/// response: two atomic operations per request.
final class ServiceTraffic: Sendable {
    let service: String
    private let inFlight = Atomic<Int>(0)

    init(service: String) { self.service = service }

    /// Sequentially consistent: ordered before the `isUp` check that follows it (see `hold`).
    func enter() { inFlight.add(1, ordering: .sequentiallyConsistent) }

    func leave() { inFlight.subtract(1, ordering: .relaxed) }

    var count: Int { inFlight.load(ordering: .sequentiallyConsistent) }
}
