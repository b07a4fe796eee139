import Logging
import ServiceLifecycle
import WardenConfig
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

/// What a user (CLI, dashboard) can ask of a service.
public enum UserAction: String, Sendable, Codable, CaseIterable {
    case start, stop, restart, monitor, unmonitor
}

public struct SupervisorError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The supervisor on the system's clock, processes and network: the daemon's.
public typealias Supervisor = ServiceSupervisor<ContinuousClock>

/// Keeps the services of a control file alive, as monit's validate/control loop does, with two
/// differences: each service is checked on its own (a slow start never holds up the others), and a
/// supervised process that dies is seen at once through its pidfd, not at the next cycle.
///
/// The decisions are each service's `ServiceStateMachine`; this actor measures (through its
/// inspector and prober), feeds what it measured in, and carries out the actions that come back
/// (through its spawner), on its clock.
public actor ServiceSupervisor<C: Clock>: ServiceLifecycle.Service where C.Duration == Duration {
    typealias Machine = ServiceStateMachine<C.Instant>

    enum Trigger: Sendable {
        case tick
        case exited(pid_t)
        case check(String)
        /// With the pid whose exit is to be looked at, when it was seen while the service was busy.
        case checkLater(String, Duration, exited: pid_t?)
        case unreachable(String)
    }

    nonisolated let logger: Logger
    public nonisolated let events: EventBus
    /// The TLS sites' certificates, for the status (see `SiteCertificates`).
    public nonisolated let certificates = SiteCertificates()
    let stateStore: StateStore?
    let clock: C
    let spawner: any ProcessSpawner
    let inspector: any ProcessInspector
    let prober: any ConnectionProber
    let traffic: (any TrafficControl)?
    let hostName: String
    private nonisolated let triggers: AsyncStream<Trigger>
    private nonisolated let triggerContinuation: AsyncStream<Trigger>.Continuation
    nonisolated let exitWatcher: any ExitWatching

    public private(set) var configuration: Configuration
    var services: [String: Machine] = [:]
    /// Check and start order: dependencies before dependants.
    var order: [String] = []
    public private(set) var cycle = 0
    public nonisolated let startedAt = WallClock.now()
    var stateDirty = false
    /// Services with an action under way, and who waits for its end.
    private var actionWaiters: [String: [CheckedContinuation<Void, Never>]] = [:]
    /// Sites of the proxy in planned maintenance: they answer with their maintenance page.
    public private(set) var maintenanceSites: Set<String> = []
    /// The services with `instances`, by name: the ports their serving generation runs on.
    var instancePorts: [String: [Int]] = [:]
    /// Services with a deploy under way, and the last deploy's progress of each.
    var deploying: Set<String> = []
    var deployRecords: [String: DeployRecord] = [:]
    /// The requests each stopped service's drain saw through, until a deploy reports them.
    var drainedRequests: [String: Int] = [:]
    /// What the proxy was last told of each service's traffic (see `reportTraffic`).
    private var trafficReported: [String: Bool] = [:]

    public init(
        configuration: Configuration, logger: Logger, clock: C, events: EventBus = EventBus(), stateStore: StateStore? = nil,
        spawner: any ProcessSpawner = SystemSpawner(), inspector: any ProcessInspector = SystemInspector(),
        prober: any ConnectionProber = ConnectionProbe(), traffic: (any TrafficControl)? = nil
    ) {
        self.configuration = configuration
        self.logger = logger
        self.clock = clock
        self.events = events
        self.stateStore = stateStore ?? configuration.statefile.map(StateStore.init(path:))
        self.spawner = spawner
        self.inspector = inspector
        self.prober = prober
        self.traffic = traffic
        self.hostName = HostName.current
        let (stream, continuation) = AsyncStream.makeStream(of: Trigger.self)
        self.triggers = stream
        self.triggerContinuation = continuation
        self.exitWatcher = inspector.makeExitWatcher { pid in continuation.yield(.exited(pid)) }
    }

    // MARK: - Running

    public func run() async throws {
        let stored = stateStore?.load()
        instancePorts = stored?.instancePorts ?? [:]
        install(configuration)
        if let stored { restore(stored) }
        emit(Event(service: hostName, kind: .instance, state: .changed, message: "warden \(Self.version) started", action: "start"))
        logger.info("'\(hostName)' warden \(Self.version) started")
        if configuration.daemon.startDelay > 0 {
            try? await clock.sleep(for: .seconds(configuration.daemon.startDelay))
        }
        let continuation = triggerContinuation
        let interval = Duration.seconds(configuration.daemon.interval)
        let clock = self.clock
        await withDiscardingTaskGroup { group in
            group.addTask {
                // The cycle clock. Cancelled on graceful shutdown like every poll timer.
                while !Task.isCancelled {
                    continuation.yield(.tick)
                    try? await clock.sleep(for: interval)
                }
            }
            await withGracefulShutdownHandler {
                for await trigger in triggers {
                    if Task.isCancelled { break }
                    handle(trigger, in: &group)
                }
            } onGracefulShutdown: {
                continuation.finish()
            }
            group.cancelAll()
        }
        saveState()
        emit(Event(service: hostName, kind: .instance, state: .changed, message: "warden \(Self.version) stopped", action: "stop"))
        logger.info("'\(hostName)' warden \(Self.version) stopped")
        events.finish()
    }

    private func handle(_ trigger: Trigger, in group: inout DiscardingTaskGroup) {
        switch trigger {
        case .tick:
            cycle += 1
            // Each check runs on whichever pool thread is free, and glibc keeps what a cycle freed in
            // that thread's arena; handing it back keeps the daemon's resident size flat.
            ProcessTable.releaseFreeMemory()
            let now = WallClock.now()
            var onePass: [String] = []
            for name in order {
                guard services[name]?.isDue(cronMatches: { $0.matches(now, cycleSeconds: configuration.daemon.interval) }) == true,
                    let config = services[name]?.config
                else { continue }
                if Self.checkMayWait(config) {
                    group.addTask { await self.check(name) }
                } else {
                    onePass.append(name)
                }
            }
            if !onePass.isEmpty {
                group.addTask { [onePass] in
                    for name in onePass { await self.check(name, inOnePass: true) }
                }
            }
            if stateDirty { saveState() }
        case .exited(let pid):
            for (name, machine) in services where machine.pid == pid {
                logger.debug("'\(name)' process \(pid) exited")
                group.addTask { await self.check(name, afterExitOf: pid) }
                group.addTask { await self.recordExit(of: pid, service: name) }
            }
        case .check(let name):
            group.addTask { await self.check(name) }
        case .unreachable(let name):
            guard services[name]?.isReady == true else { break }
            logger.info("'\(name)' could not be reached by the proxy; checking it now")
            services[name]?.suspect = true
            instanceReadinessChanged(name)
            group.addTask { await self.check(name) }
        case .checkLater(let name, let delay, let exited):
            let clock = self.clock
            group.addTask {
                try? await clock.sleep(for: delay)
                await self.check(name, afterExitOf: exited)
            }
        }
    }

    /// Whether a check of this service can wait long: a program to run, a connection to test, a start,
    /// stop or restart to perform. Those run in a task each, so one slow service never delays the
    /// others; the rest of a cycle is checked in one pass (one task for 200 healthy services, not 200).
    static func checkMayWait(_ service: WardenConfig.Service) -> Bool {
        switch service.kind {
        case .program, .host:
            return true
        case .process, .file, .fifo, .directory, .filesystem, .system, .network:
            return service.rules.contains { rule in
                if case .connection = rule.condition { return true }
                return rule.action.waits || rule.recoveryAction?.waits == true
            }
        }
    }

    /// Asks for an immediate check of a service outside the cycle.
    nonisolated func requestCheck(_ name: String) {
        triggerContinuation.yield(.check(name))
    }

    nonisolated func checkLater(_ name: String, after delay: Duration, exited: pid_t? = nil) {
        triggerContinuation.yield(.checkLater(name, delay, exited: exited))
    }

    /// The proxy could not reach an instance (passive health): it gets no traffic until it is checked,
    /// which happens now rather than at its next cycle.
    public nonisolated func instanceUnreachable(_ name: String) {
        triggerContinuation.yield(.unreachable(name))
    }

    // MARK: - Configuration

    private func install(_ configuration: Configuration) {
        self.configuration = configuration
        let supervised = expandInstances(configuration.services)
        for service in supervised {
            if services[service.name] != nil {
                services[service.name]?.reconfigure(service)
            } else {
                services[service.name] = Machine(config: service)
            }
        }
        order = Self.dependencyOrder(supervised)
    }

    /// Replaces the configuration with a new, valid one: services that disappeared stop being
    /// monitored, new ones start, unchanged ones keep their state and counters.
    public func reload(_ configuration: Configuration) {
        let newNames = Set(expandInstances(configuration.services).map(\.name))
        for (name, machine) in services where !newNames.contains(name) {
            if let pid = machine.pid { exitWatcher.unwatch(pid) }
            services[name] = nil
            logger.info("'\(name)' removed from the configuration, no longer monitored")
        }
        install(configuration)
        maintenanceSites.formIntersection(configuration.sites.map(\.name))
        emit(Event(service: hostName, kind: .instance, state: .changed, message: "warden reloaded", action: "reload"))
        logger.info("'\(hostName)' warden reloaded")
        stateDirty = true
        triggerContinuation.yield(.tick)
    }

    /// `warden maintenance on|off SITE`: planned work on a site; survives a restart of warden.
    public func setMaintenance(_ site: String, _ on: Bool) throws {
        guard configuration.sites.contains(where: { $0.name == site }) else { throw SupervisorError("there is no site named \"\(site)\"") }
        guard maintenanceSites.contains(site) != on else { return }
        if on { maintenanceSites.insert(site) } else { maintenanceSites.remove(site) }
        logger.info("'\(site)' maintenance \(on ? "on" : "off")")
        emit(Event(service: site, kind: .action, state: .changed, message: "maintenance \(on ? "on" : "off")", action: "maintenance"))
        stateDirty = true
    }

    static func dependencyOrder(_ services: [WardenConfig.Service]) -> [String] {
        let byName = Dictionary(services.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var visited = Set<String>()
        var order: [String] = []
        func visit(_ name: String) {
            guard !visited.contains(name), let service = byName[name] else { return }
            visited.insert(name)
            service.dependencies.forEach(visit)
            order.append(name)
        }
        services.map(\.name).forEach(visit)
        return order
    }

    /// Services that depend on `name`, directly or not, dependants last.
    func dependants(of name: String) -> [String] {
        var result: [String] = []
        var frontier = [name]
        while let current = frontier.popLast() {
            for candidate in order where services[candidate]?.config.dependencies.contains(current) == true {
                if !result.contains(candidate) {
                    result.append(candidate)
                    frontier.append(candidate)
                }
            }
        }
        return order.filter(result.contains)
    }

    // MARK: - User actions

    /// Runs an action asked for by a user; returns once it is done.
    public func perform(_ action: UserAction, on name: String) async throws {
        if instancePorts[name] != nil { return try await performOnInstances(action, of: name) }
        guard services[name] != nil else { throw SupervisorError("there is no service named \"\(name)\"") }
        logger.info("'\(name)' \(action.rawValue) on user request")
        switch action {
        case .monitor:
            services[name]?.monitorAgain(resetRules: true)
            emit(name, .action, .changed, "monitor action done", action: "monitor")
            requestCheck(name)
        case .unmonitor:
            for dependant in dependants(of: name).reversed() { services[dependant]?.monitor = .notMonitored }
            services[name]?.monitor = .notMonitored
            emit(name, .action, .changed, "unmonitor action done", action: "unmonitor")
        case .start:
            for dependency in services[name]?.config.dependencies ?? [] where services[dependency]?.monitor == .notMonitored {
                try await perform(.start, on: dependency)
            }
            services[name]?.monitorAgain(resetRules: false)
            await withBusy(name) { await self.startService(name, automatic: false) }
            emit(name, .action, .changed, "start action done", action: "start")
        case .stop:
            for dependant in dependants(of: name).reversed() {
                await withBusy(dependant) { await self.stopService(dependant) }
                services[dependant]?.monitor = .notMonitored
            }
            await withBusy(name) { await self.stopService(name) }
            services[name]?.monitor = .notMonitored
            emit(name, .action, .changed, "stop action done", action: "stop")
        case .restart:
            services[name]?.monitorAgain(resetRules: false)
            await withBusy(name) { await self.restartService(name, automatic: false) }
            emit(name, .action, .changed, "restart action done", action: "restart")
        }
        stateDirty = true
    }

    /// Stops every service, dependants first (`warden quit --stop-services`).
    public func stopAll() async {
        for name in order.reversed() where services[name]?.monitor != .notMonitored {
            await withBusy(name) { await self.stopService(name) }
            services[name]?.monitor = .notMonitored
        }
        saveState()
    }

    /// Runs `body` as the service's one action under way, after any action already under way ends.
    func withBusy(_ name: String, _ body: () async -> Void) async {
        while services[name]?.busy == true {
            await withCheckedContinuation { actionWaiters[name, default: []].append($0) }
        }
        guard services[name] != nil else { return }
        services[name]?.busy = true
        await body()
        endBusy(name)
    }

    func endBusy(_ name: String) {
        services[name]?.busy = false
        for waiter in actionWaiters.removeValue(forKey: name) ?? [] { waiter.resume() }
    }

    /// Tells the proxy when a service starts or stops accepting traffic.
    func reportTraffic(_ name: String) {
        guard let up = services[name]?.acceptsTraffic, trafficReported[name] != up else { return }
        trafficReported[name] = up
        traffic?.serviceUp(name, up)
    }

    // MARK: - Status

    public func snapshots() -> [ServiceSnapshot] {
        let now = WallClock.now()
        let clockNow = clock.now
        return order.compactMap { services[$0]?.snapshot(now: now, clock: clockNow) }
    }

    public func snapshot(named name: String) -> ServiceSnapshot? {
        services[name]?.snapshot(now: WallClock.now(), clock: clock.now)
    }

    // MARK: - Events and state

    func emit(_ event: Event) {
        services[event.service]?.remember(event)
        // A service with instances is no service of its own: its deploy's events are its instances'.
        for name in instanceNames(of: event.service) { services[name]?.remember(event) }
        events.publish(event)
        stateDirty = true
    }

    func emit(_ name: String, _ kind: EventKind, _ state: Event.State, _ message: String, action: String) {
        emit(Event(service: name, kind: kind, state: state, message: message, action: action))
    }

    private func restore(_ stored: PersistentState) {
        let rebooted = stored.bootTime != inspector.bootTime
        cycle = stored.cycle
        let sites = Set(configuration.sites.map(\.name))
        maintenanceSites = (stored.maintenance ?? []).filter(sites.contains)
        for (name, saved) in stored.services {
            services[name]?.restore(saved, rebooted: rebooted, onReboot: configuration.onReboot)
        }
        logger.info("state restored from '\(stateStore?.path ?? "")'")
    }

    func saveState() {
        guard let stateStore else { return }
        var state = PersistentState()
        state.bootTime = inspector.bootTime
        state.cycle = cycle
        state.maintenance = maintenanceSites
        state.instancePorts = instancePorts.isEmpty ? nil : instancePorts
        for (name, machine) in services { state.services[name] = machine.persistent }
        do {
            try stateStore.save(state)
            stateDirty = false
        } catch {
            logger.error("cannot write the state file '\(stateStore.path)': \(error)")
        }
    }

    public static var version: String { "0.1.0" }
}

extension ServiceSupervisor where C == ContinuousClock {
    public init(
        configuration: Configuration, logger: Logger, events: EventBus = EventBus(), stateStore: StateStore? = nil,
        traffic: (any TrafficControl)? = nil
    ) {
        self.init(configuration: configuration, logger: logger, clock: ContinuousClock(), events: events, stateStore: stateStore, traffic: traffic)
    }
}
