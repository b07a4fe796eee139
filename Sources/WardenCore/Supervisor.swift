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

/// Keeps the services of a control file alive, as monit's validate/control loop does, with two
/// differences: each service is checked on its own (a slow start never holds up the others), and a
/// supervised process that dies is seen at once through its pidfd, not at the next cycle.
public actor Supervisor: ServiceLifecycle.Service {
    enum Trigger: Sendable {
        case tick
        case exited(pid_t)
        case check(String)
        case checkLater(String, Duration)
    }

    /// The shortest time between two automatic starts of one service.
    static let minimumRestartInterval = Duration.seconds(1)
    /// The longest a planned stop waits for the requests its app is serving.
    static let drainTimeout = Duration.seconds(30)

    nonisolated let logger: Logger
    public nonisolated let events: EventBus
    let stateStore: StateStore?
    let probe: ConnectionProbe
    let traffic: (any TrafficControl)?
    let hostName: String
    private nonisolated let triggers: AsyncStream<Trigger>
    private nonisolated let triggerContinuation: AsyncStream<Trigger>.Continuation
    private nonisolated let exitWatcher: ExitWatcher

    public private(set) var configuration: Configuration
    var services: [String: ServiceRuntime] = [:]
    /// Check and start order: dependencies before dependants.
    var order: [String] = []
    public private(set) var cycle = 0
    public nonisolated let startedAt = WallClock.now()
    private var stateDirty = false
    /// Sites of the proxy in planned maintenance: they answer with their maintenance page.
    public private(set) var maintenanceSites: Set<String> = []

    public init(
        configuration: Configuration, logger: Logger, events: EventBus = EventBus(), stateStore: StateStore? = nil,
        probe: ConnectionProbe = ConnectionProbe(), traffic: (any TrafficControl)? = nil
    ) {
        self.configuration = configuration
        self.logger = logger
        self.events = events
        self.stateStore = stateStore ?? configuration.statefile.map(StateStore.init(path:))
        self.probe = probe
        self.traffic = traffic
        self.hostName = HostName.current
        let (stream, continuation) = AsyncStream.makeStream(of: Trigger.self)
        self.triggers = stream
        self.triggerContinuation = continuation
        self.exitWatcher = ExitWatcher { pid in continuation.yield(.exited(pid)) }
    }

    // MARK: - Running

    public func run() async throws {
        ChildReaper.shared.start()
        install(configuration)
        restoreState()
        emit(Event(service: hostName, kind: .instance, state: .changed, message: "warden \(Self.version) started", action: "start"))
        logger.info("'\(hostName)' warden \(Self.version) started")
        if configuration.daemon.startDelay > 0 {
            try? await Task.sleep(for: .seconds(configuration.daemon.startDelay))
        }
        let continuation = triggerContinuation
        let interval = configuration.daemon.interval
        await withDiscardingTaskGroup { group in
            group.addTask {
                // The cycle clock. Cancelled on graceful shutdown like every poll timer.
                while !Task.isCancelled {
                    continuation.yield(.tick)
                    try? await Task.sleep(for: .seconds(interval))
                }
            }
            await withGracefulShutdownHandler {
                for await trigger in triggers {
                    if Task.isCancelled { break }
                    await handle(trigger, in: &group)
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

    private func handle(_ trigger: Trigger, in group: inout DiscardingTaskGroup) async {
        switch trigger {
        case .tick:
            cycle += 1
            // Each check runs on whichever pool thread is free, and glibc keeps what a cycle freed in
            // that thread's arena; handing it back keeps the daemon's resident size flat.
            ProcessTable.releaseFreeMemory()
            var onePass: [String] = []
            for name in order {
                guard var runtime = services[name] else { continue }
                if case .cycles(let every) = runtime.config.every {
                    if runtime.skipCycles > 0 {
                        runtime.skipCycles -= 1
                        services[name] = runtime
                        continue
                    }
                    runtime.skipCycles = every - 1
                    services[name] = runtime
                } else if case .cron(let spec) = runtime.config.every, !CronSchedule(spec).matchesCurrentMinute(cycleSeconds: configuration.daemon.interval) {
                    continue
                }
                if Self.checkMayWait(runtime.config) {
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
            for (name, runtime) in services where runtime.pid == pid {
                logger.debug("'\(name)' process \(pid) exited")
                group.addTask { await self.check(name, afterExitOf: pid) }
            }
        case .check(let name):
            group.addTask { await self.check(name) }
        case .checkLater(let name, let delay):
            group.addTask {
                try? await Task.sleep(for: delay)
                await self.check(name)
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

    nonisolated func checkLater(_ name: String, after delay: Duration) {
        triggerContinuation.yield(.checkLater(name, delay))
    }

    // MARK: - Configuration

    private func install(_ configuration: Configuration) {
        self.configuration = configuration
        for service in configuration.services {
            if var existing = services[service.name] {
                if existing.config != service {
                    existing.config = service
                    if existing.rules.count != service.rules.count {
                        existing.rules = Array(repeating: RuleState(), count: service.rules.count)
                    }
                }
                services[service.name] = existing
            } else {
                var runtime = ServiceRuntime(config: service)
                if service.mode == .manual { runtime.monitor = .notMonitored }
                services[service.name] = runtime
            }
        }
        order = Self.dependencyOrder(configuration.services)
    }

    /// Replaces the configuration with a new, valid one: services that disappeared stop being
    /// monitored, new ones start, unchanged ones keep their state and counters.
    public func reload(_ configuration: Configuration) {
        let newNames = Set(configuration.services.map(\.name))
        for (name, runtime) in services where !newNames.contains(name) {
            if let pid = runtime.pid { exitWatcher.unwatch(pid) }
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
        guard services[name] != nil else { throw SupervisorError("there is no service named \"\(name)\"") }
        logger.info("'\(name)' \(action.rawValue) on user request")
        switch action {
        case .monitor:
            update(name) {
                $0.monitor = .initializing
                $0.restarts.reset()
                for index in $0.rules.indices { $0.rules[index].reset() }
            }
            emit(name, .action, .changed, "monitor action done", action: "monitor")
            requestCheck(name)
        case .unmonitor:
            for dependant in dependants(of: name).reversed() { update(dependant) { $0.monitor = .notMonitored } }
            update(name) { $0.monitor = .notMonitored }
            emit(name, .action, .changed, "unmonitor action done", action: "unmonitor")
        case .start:
            for dependency in services[name]?.config.dependencies ?? [] where services[dependency]?.monitor == .notMonitored {
                try await perform(.start, on: dependency)
            }
            update(name) {
                $0.monitor = .initializing
                $0.restarts.reset()
            }
            await withBusy(name) { await self.startService(name, automatic: false) }
            emit(name, .action, .changed, "start action done", action: "start")
        case .stop:
            for dependant in dependants(of: name).reversed() {
                await withBusy(dependant) { await self.stopService(dependant) }
                update(dependant) { $0.monitor = .notMonitored }
            }
            await withBusy(name) { await self.stopService(name) }
            update(name) { $0.monitor = .notMonitored }
            emit(name, .action, .changed, "stop action done", action: "stop")
        case .restart:
            update(name) {
                $0.monitor = .initializing
                $0.restarts.reset()
            }
            await withBusy(name) { await self.restartService(name, automatic: false) }
            emit(name, .action, .changed, "restart action done", action: "restart")
        }
        stateDirty = true
    }

    /// Stops every service, dependants first (`warden quit --stop-services`).
    public func stopAll() async {
        for name in order.reversed() where services[name]?.monitor != .notMonitored {
            await withBusy(name) { await self.stopService(name) }
            update(name) { $0.monitor = .notMonitored }
        }
        saveState()
    }

    func withBusy(_ name: String, _ body: () async -> Void) async {
        // Wait for an action already under way (bounded: actions have timeouts).
        while services[name]?.busy == true {
            try? await Task.sleep(for: .milliseconds(20))
        }
        guard services[name] != nil else { return }
        update(name) { $0.busy = true }
        await body()
        update(name) { $0.busy = false }
    }

    // MARK: - Status

    public func snapshots() -> [ServiceSnapshot] {
        order.compactMap { services[$0].map(snapshot) }
    }

    public func snapshot(named name: String) -> ServiceSnapshot? {
        services[name].map(snapshot)
    }

    func snapshot(_ runtime: ServiceRuntime) -> ServiceSnapshot {
        let config = runtime.config
        return ServiceSnapshot(
            name: config.name, type: config.kind.displayName, monitType: config.kind.monitType,
            status: Self.statusWord(runtime), monitor: runtime.monitor, mode: config.mode.rawValue,
            pid: runtime.pid, uptimeSeconds: runtime.startedAt.map { WallClock.now() - $0 },
            restarts: runtime.restarts.total, failures: runtime.failures.keys.map(\.rawValue).sorted(),
            groups: config.groups, dependencies: config.dependencies, metrics: runtime.metrics,
            lastCheck: runtime.lastCheck, events: runtime.recentEvents, busy: runtime.busy,
            acceptsTraffic: runtime.pid != nil && runtime.failures[.nonexist] == nil && !runtime.stopping)
    }

    static func statusWord(_ runtime: ServiceRuntime) -> String {
        switch runtime.monitor {
        case .notMonitored: return "Not monitored"
        case .initializing where runtime.failures.isEmpty: return "Initializing"
        default: break
        }
        if runtime.failures.isEmpty { return runtime.busy ? "OK (action pending)" : "OK" }
        return runtime.failures.keys.sorted { $0.rawValue < $1.rawValue }.map { kind in
            Event(service: "", kind: kind, state: .failed, message: "", action: "").title
        }.joined(separator: " | ")
    }

    // MARK: - Events and state

    func update(_ name: String, _ change: (inout ServiceRuntime) -> Void) {
        guard var runtime = services[name] else { return }
        change(&runtime)
        services[name] = runtime
    }

    func emit(_ event: Event) {
        if services[event.service] != nil { update(event.service) { $0.remember(event) } }
        events.publish(event)
        stateDirty = true
    }

    func emit(_ name: String, _ kind: EventKind, _ state: Event.State, _ message: String, action: String) {
        emit(Event(service: name, kind: kind, state: state, message: message, action: action))
    }

    private func restoreState() {
        guard let stored = stateStore?.load() else { return }
        let rebooted = stored.bootTime != ProcessTable.bootTime
        cycle = stored.cycle
        let sites = Set(configuration.sites.map(\.name))
        maintenanceSites = (stored.maintenance ?? []).filter(sites.contains)
        for (name, saved) in stored.services {
            guard services[name] != nil else { continue }
            update(name) {
                $0.restarts = saved.restarts
                if !rebooted || configuration.onReboot == .laststate {
                    // Monitoring mode survives a restart of warden; `initializing` means "check again".
                    $0.monitor = saved.monitor == .notMonitored ? .notMonitored : .initializing
                } else if configuration.onReboot == .nostart {
                    $0.monitor = .notMonitored
                }
                if let event = saved.lastEvent { $0.remember(event) }
            }
        }
        logger.info("state restored from '\(stateStore?.path ?? "")'")
    }

    func saveState() {
        guard let stateStore else { return }
        var state = PersistentState()
        state.bootTime = ProcessTable.bootTime
        state.cycle = cycle
        state.maintenance = maintenanceSites
        for (name, runtime) in services {
            state.services[name] = .init(
                monitor: runtime.monitor, restarts: runtime.restarts, pid: runtime.pid,
                processStartTicks: runtime.processStartTicks, lastEvent: runtime.recentEvents.last)
        }
        do {
            try stateStore.save(state)
            stateDirty = false
        } catch {
            logger.error("cannot write the state file '\(stateStore.path)': \(error)")
        }
    }

    public static let version = "0.1.0"

    nonisolated func watch(_ pid: pid_t) {
        exitWatcher.watch(pid)
    }

    nonisolated func unwatch(_ pid: pid_t) {
        exitWatcher.unwatch(pid)
    }
}
