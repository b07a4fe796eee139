import CWardenShims
import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals
import WardenConfig
import WardenCore
import WardenMail
import WardenProxy
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

/// The running daemon: loads the control file, daemonizes, and runs warden's services until SIGTERM.
public struct Daemon {
    public let controlFile: String
    public let foreground: Bool
    public let verbose: Bool
    /// The demo stops its services when it ends, so it leaves no process behind.
    public var stopServicesOnExit = false

    public init(controlFile: String, foreground: Bool, verbose: Bool) {
        self.controlFile = controlFile
        self.foreground = foreground
        self.verbose = verbose
    }

    /// The open files warden needs (nginx's `worker_rlimit_nofile`): two per proxied connection (the
    /// client and its upstream) and 64 for listeners, logs, pipes and checks. Without a proxy the limit
    /// stays as it is: start programs inherit it, and some close every descriptor up to it.
    static func wantedOpenFiles(maxConnections: Int?) -> rlim_t {
        guard let maxConnections else { return 0 }
        return rlim_t(max(0, maxConnections)) * 2 + 64
    }

    /// Raises the soft RLIMIT_NOFILE to `wanted`, capped at the hard limit; never lowers it. Says so in the
    /// log when it cannot get enough, so a proxy refusing connections at the runner's limit is explained.
    static func raiseOpenFileLimit(wanted: rlim_t, logger: Logger) {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
            logger.warning("cannot read the open files limit: \(String(cString: strerror(errno)))")
            return
        }
        guard limit.rlim_cur < wanted else { return }
        let target = min(wanted, limit.rlim_max)
        if target > limit.rlim_cur {
            var raised = limit
            raised.rlim_cur = target
            if setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &raised) != 0 {
                logger.warning("cannot raise the open files limit from \(limit.rlim_cur) to \(target): \(String(cString: strerror(errno)))")
                return
            }
        }
        if target < wanted {
            logger.warning("open files limited to \(target) (hard limit), 'max connections' needs \(wanted); raise it with ulimit -n or LimitNOFILE=")
        }
    }

    public static func defaultPIDFile() -> String {
        if getuid() == 0 { return "/run/warden.pid" }
        return (getenv("HOME").map { String(cString: $0) } ?? "/tmp") + "/.warden.pid"
    }

    /// What warden does before its services start: reads the control file, refuses a second daemon,
    /// daemonizes, takes the pid lock and sets up logging. Nil when warden must end with status 1
    /// (the reason is printed).
    ///
    /// Call it before the first `await`: daemonizing forks, and fork(2) copies only the calling
    /// thread, so the process must not have another yet. The concurrency runtime starts its threads
    /// when it is first given a job; until then an async `main` runs alone on the main thread.
    public func prepare() -> Prepared? {
        let result = ControlFile.load(controlFile)
        if !result.diagnostics.isEmpty { LogSink.writeAll(2, result.renderedDiagnostics()) }
        guard let configuration = result.configuration else { return nil }
        let pidPath = configuration.pidfile ?? Self.defaultPIDFile()
        if let running = PIDLock.runningPID(pidPath) {
            LogSink.writeAll(2, "warden: a warden daemon is already running with pid \(running) (pidfile '\(pidPath)')\n")
            return nil
        }
        let stayInForeground = foreground || configuration.initMode
        if !stayInForeground {
            LogSink.writeAll(
                1,
                "Starting warden \(Supervisor.version) daemon\(configuration.httpd.map { h in h.port.map { " with http interface at [\(h.address ?? "*")]:\($0)" } ?? "" } ?? "")\n")
            guard warden_daemonize() == 0 else {
                LogSink.writeAll(2, "warden: cannot daemonize: \(String(cString: strerror(errno)))\n")
                return nil
            }
        }
        let lock: PIDLock
        do {
            lock = try PIDLock(path: pidPath)
        } catch {
            LogSink.writeAll(2, "warden: \(error)\n")
            return nil
        }
        signal(SIGPIPE, SIG_IGN)  // a proxy worker that died must not kill the daemon through its pipe
        // A reload or log-rotation signal that arrives before the signal service listens must not
        // end warden (their default action): until then it is ignored (found by the reload storm).
        for number in [SIGHUP, SIGUSR1, SIGUSR2] { signal(number, SIG_IGN) }
        let sink = LogSink(target: configuration.log, verbose: verbose, toStandardError: stayInForeground && configuration.log == nil)
        let level: Logger.Level = verbose ? .debug : .info
        LoggingSystem.bootstrap { _ in MonitStyleLogHandler(sink: sink, logLevel: level) }
        let logger = Logger(label: "warden")
        Self.raiseOpenFileLimit(wanted: Self.wantedOpenFiles(maxConnections: configuration.proxy?.maximumConnections), logger: logger)
        // warden reaps every child and, as subreaper, every daemon its start programs leave behind.
        ChildReaper.shared.start(everyChild: true)
        return Prepared(daemon: self, configuration: configuration, lock: lock, sink: sink, logger: logger)
    }

    /// A daemon whose pid lock is taken and whose log is set up.
    public struct Prepared {
        let daemon: Daemon
        let configuration: Configuration
        let lock: PIDLock
        let sink: LogSink
        let logger: Logger

        /// Runs warden's services until a signal (or `warden quit`) ends them; the exit status.
        public func run() async -> Int32 {
            var status: Int32 = 0
            do {
                let options = WardenApp.Options(
                    controlFile: daemon.controlFile, logSink: sink, stopServicesOnExit: daemon.stopServicesOnExit)
                let app = try await WardenApp(configuration: configuration, options: options, logger: logger)
                do {
                    try await app.run()
                } catch {
                    logger.error("warden stopped: \(error)")
                    status = 1
                }
            } catch {
                logger.error("\(error)")
                status = 1
            }
            ServiceLogs.shared.flushAll()  // the services' last lines, still queued
            lock.release()
            return status
        }
    }
}

/// SIGHUP re-reads the control file (keeping the running configuration when it is invalid), SIGUSR1
/// re-opens the log file, SIGUSR2 stops every service and then warden (`warden quit --stop-services`).
struct SignalService: ServiceLifecycle.Service {
    let supervisor: Supervisor
    let controlFile: String
    let sink: LogSink
    let logger: Logger
    var onReopenLogs: @Sendable () -> Void = {}
    var stopServicesOnTermination = false

    func run() async throws {
        let trapped: [UnixSignal] = stopServicesOnTermination ? [.sighup, .sigusr1, .sigusr2, .sigint, .sigterm] : [.sighup, .sigusr1, .sigusr2]
        let signals = await UnixSignalsSequence(trapping: trapped)
        for await signal in signals.cancelOnGracefulShutdown() {
            switch signal {
            case .sighup:
                logger.info("reinitializing warden -- control file '\(controlFile)'")
                let result = ControlFile.load(controlFile)
                guard let configuration = result.configuration else {
                    for diagnostic in result.diagnostics where diagnostic.severity == .error {
                        logger.error("\(diagnostic.location.map { "\($0): " } ?? "")\(diagnostic.message)")
                    }
                    logger.error("control file '\(controlFile)' is invalid; keeping the running configuration")
                    continue
                }
                await supervisor.reload(configuration)
            case .sigusr1:
                sink.reopen()
                ServiceLogs.shared.reopenAll()
                onReopenLogs()
                logger.info("log files re-opened")
            case .sigusr2, .sigint, .sigterm:
                logger.info("stopping all services before quitting")
                await supervisor.stopAll()
                return
            default:
                break
            }
        }
    }
}

extension Daemon {
    /// `balance sticky cookie`'s key, kept beside the state file so that clients keep their instance
    /// across a restart of warden (nil without a state file: each start makes its own).
    static func stickyKey(_ configuration: Configuration, logger: Logger) -> [UInt8]? {
        guard configuration.proxy != nil, let statefile = configuration.statefile else { return nil }
        do {
            return try StickyCookie.loadKey(path: statefile + ".sticky-key")
        } catch {
            logger.error("cannot keep the sticky cookie key beside '\(statefile)': \(error); sticky clients are pinned again after a restart")
            return nil
        }
    }
}

/// Where the proxy feed delivers: the proxy in this process, or a worker process through a pipe.
protocol ProxyControl: Sendable {
    func send(_ message: ProxyFeedMessage)
    /// Begins a drain (`ServiceAvailability.beginDrain`); returns when it is over, or after `timeout`,
    /// with the requests it saw through.
    func drain(_ name: String, timeout: Duration) async -> Int
    /// Who to tell when a request could not reach an instance.
    func onUnreachableInstance(_ report: @escaping @Sendable (String) -> Void)
}

/// The proxy in the daemon's own process.
struct LocalProxyControl: ProxyControl {
    let availability: ServiceAvailability
    let proxy: ProxyServer

    func send(_ message: ProxyFeedMessage) { proxy.apply(message) }

    func onUnreachableInstance(_ report: @escaping @Sendable (String) -> Void) {
        availability.onUnreachableInstance(report)
    }

    func drain(_ name: String, timeout: Duration) async -> Int {
        guard let drain = proxy.apply(.drain(name, milliseconds: Int(timeout / .milliseconds(1)))) else { return 0 }
        // Polled: a count the requests notify no one of costs them nothing more.
        while !Task.isCancelled {
            if let requests = availability.finished(drain) { return requests }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return 0
    }
}

/// The supervisor's way to the front proxy (`TrafficControl`), and the feed's way to report which
/// services accept traffic. A report read before a direct change (a drain, a switch) is dropped
/// rather than sent after it: it could say "up" for a service a drain has just marked stopping and
/// lift the hold, or send a deploy's old instances back.
final class ProxyTraffic: TrafficControl {
    let target: any ProxyControl
    /// Changes the supervisor made itself (drains, switches, a service's traffic): a report read
    /// before one of them is stale.
    private let directChanges = Mutex(0)

    init(target: any ProxyControl) {
        self.target = target
    }

    func drain(_ service: String, timeout: Duration) async -> Int {
        directChanges.withLock { $0 += 1 }
        return await target.drain(service, timeout: timeout)
    }

    func route(_ service: String, to instances: [InstanceIdentity]) {
        let backends = instances.map(Self.backend)
        // Ready, as the supervisor just found: a port's earlier instance may have been held when it stopped.
        sendNow(backends.map { .serviceUp($0.instance, up: true) } + [.backends(service, backends)])
    }

    func serviceUp(_ service: String, _ up: Bool) {
        sendNow([.serviceUp(service, up: up)])
    }

    private func sendNow(_ messages: [ProxyFeedMessage]) {
        directChanges.withLock { changes in
            changes += 1
            for message in messages { target.send(message) }
        }
    }

    static func backend(_ instance: InstanceIdentity) -> Backend {
        Backend(instance: WardenConfig.Service.instanceName(instance.group, port: instance.port), host: "127.0.0.1", port: instance.port)
    }

    /// A mark to take before reading the services' states, for `report`.
    var mark: Int { directChanges.withLock { $0 } }

    /// Sends the states unless a drain or a switch began since `mark` (the next refresh sends them again).
    func report(
        _ states: [(name: String, up: Bool)], instances: [String: [InstanceIdentity]], delayedStarts: [String: Int], readAfter mark: Int
    ) {
        directChanges.withLock { changes in
            guard changes == mark else { return }
            for state in states { target.send(.serviceUp(state.name, up: state.up)) }
            for (service, ready) in instances { target.send(.backends(service, ready.map(Self.backend))) }
            target.send(.delayedStarts(delayedStarts))
        }
    }
}

/// Tells the proxy which services are up, which sites are in maintenance and, after a reload, the
/// new sites: at start, on every event, and once a second. Sites and maintenance go out when they
/// change (or after `resend`, for a new worker).
final class ProxyFeed: ServiceLifecycle.Service, Sendable {
    let supervisor: Supervisor
    let traffic: ProxyTraffic
    let events: AsyncStream<Event>
    let stickyKey: [UInt8]?
    private let sent = Mutex<(sites: [Site]?, maintenance: Set<String>?, stickyKey: Bool)>((nil, nil, false))

    init(supervisor: Supervisor, traffic: ProxyTraffic, stickyKey: [UInt8]?) {
        self.supervisor = supervisor
        self.traffic = traffic
        self.stickyKey = stickyKey
        self.events = supervisor.events.subscribe()
    }

    func resend() {
        sent.withLock { $0 = (nil, nil, false) }
    }

    func run() async throws {
        let events = self.events
        await refresh()
        await withDiscardingTaskGroup { group in
            group.addTask {
                for await _ in events.cancelOnGracefulShutdown() { await self.refresh() }
            }
            group.addTask {
                while !Task.isCancelled, !Task.isShuttingDownGracefully {
                    try? await Task.sleep(for: .seconds(1))
                    await self.refresh()
                }
            }
        }
    }

    private func refresh() async {
        let mark = traffic.mark
        traffic.report(
            await supervisor.snapshots().map { ($0.name, $0.acceptsTraffic) }, instances: await supervisor.trafficTargets(),
            delayedStarts: await supervisor.delayedStarts(), readAfter: mark)
        let maintenance = await supervisor.maintenanceSites
        let sites = await supervisor.configuration.sites
        let (newSites, newMaintenance, newKey) = sent.withLock { sent -> (Bool, Bool, Bool) in
            defer { sent = (sites, maintenance, true) }
            return (sent.sites != sites, sent.maintenance != maintenance, !sent.stickyKey)
        }
        if newKey, let stickyKey { traffic.target.send(.stickyKey(Base64.encode(stickyKey))) }
        if newSites { traffic.target.send(.sites(sites)) }
        if newMaintenance { traffic.target.send(.maintenance(maintenance.sorted())) }
    }
}

/// Turns the supervisor's events into alert mails, and gives the alert service its cycle ticks.
struct AlertFeed: ServiceLifecycle.Service {
    let alerts: AlertService
    let interval: Int
    /// Subscribed at creation, so warden's own "started" event is not missed.
    let events: AsyncStream<Event>

    init(supervisor: Supervisor, alerts: AlertService, interval: Int) {
        self.alerts = alerts
        self.interval = interval
        self.events = supervisor.events.subscribe()
    }

    func run() async throws {
        let events = self.events
        await withDiscardingTaskGroup { group in
            group.addTask {
                // Runs until the supervisor finishes the stream, after its last event.
                for await event in events {
                    let state: AlertEvent.State = switch event.state {
                    case .failed: .failed
                    case .succeeded: .succeeded
                    case .changed: .changed
                    }
                    await alerts.handle(
                        AlertEvent(
                            service: event.service, kind: event.kind, state: state, title: event.title, message: event.message,
                            action: event.action, date: event.date))
                }
            }
            group.addTask {
                while !Task.isCancelled, !Task.isShuttingDownGracefully {
                    try? await Task.sleep(for: .seconds(interval))
                    await alerts.tick()
                }
            }
        }
    }
}
