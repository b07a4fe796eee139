import CWardenShims
import Dispatch
import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals
import WardenConfig
import WardenCore
import WardenHTTP
import WardenMail
import WardenProxy
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

/// The running daemon: loads the control file, daemonizes, and runs the supervisor until SIGTERM.
struct Daemon {
    let controlFile: String
    let foreground: Bool
    let verbose: Bool
    /// The demo stops its services when it ends, so it leaves no process behind.
    var stopServicesOnExit = false

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

    static let gracefulShutdownBound = Duration.seconds(30)

    static func defaultPIDFile() -> String {
        if getuid() == 0 { return "/run/warden.pid" }
        return (getenv("HOME").map { String(cString: $0) } ?? "/tmp") + "/.warden.pid"
    }

    func run() throws -> Int32 {
        let result = ControlFile.load(controlFile)
        if !result.diagnostics.isEmpty { printError(result.renderedDiagnostics(), terminator: "") }
        guard let configuration = result.configuration else { return 1 }
        let pidPath = configuration.pidfile ?? Self.defaultPIDFile()
        if let running = PIDLock.runningPID(pidPath) {
            printError("warden: a warden daemon is already running with pid \(running) (pidfile '\(pidPath)')")
            return 1
        }
        let stayInForeground = foreground || configuration.initMode
        if !stayInForeground {
            printOut("Starting warden \(Supervisor.version) daemon\(configuration.httpd.map { h in h.port.map { " with http interface at [\(h.address ?? "*")]:\($0)" } ?? "" } ?? "")")
            guard warden_daemonize() == 0 else {
                printError("warden: cannot daemonize: \(String(cString: strerror(errno)))")
                return 1
            }
        }
        let lock: PIDLock
        do {
            lock = try PIDLock(path: pidPath)
        } catch {
            printError("warden: \(error)")
            return 1
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
        ChildReaper.shared.start()

        let status = Mutex<Int32>(0)
        let done = DispatchSemaphore(value: 0)
        Task {
            // The proxy comes first: the supervisor asks it to drain a service before a planned stop.
            var localProxy: ProxyServer?
            var worker: (control: WorkerProxyControl, input: Int32)?
            var traffic: ProxyTraffic?
            if let proxySettings = configuration.proxy {
                if proxySettings.user != nil, geteuid() == 0 {
                    // Bind as root, serve as the configured user: a worker process of its own, since the
                    // daemon must stay root to run start programs `as uid`. It reads what the daemon
                    // knows from a pipe on its standard input.
                    var fds: [Int32] = [-1, -1]
                    guard warden_pipe(&fds, 0) == 0 else {
                        logger.error("proxy worker: cannot create its pipe: \(String(cString: strerror(errno)))")
                        status.withLock { $0 = 1 }
                        done.signal()
                        return
                    }
                    let control = WorkerProxyControl(fd: fds[1])
                    worker = (control, fds[0])
                    traffic = ProxyTraffic(target: control)
                } else {
                    if let user = proxySettings.user {
                        logger.warning("proxy: 'user \(user)' needs warden to run as root; serving as uid \(geteuid())")
                    }
                    let availability = ServiceAvailability()
                    let proxy = ProxyServer(settings: proxySettings, sites: configuration.sites, availability: availability, logger: logger)
                    localProxy = proxy
                    traffic = ProxyTraffic(target: LocalProxyControl(availability: availability, proxy: proxy))
                }
            }
            let supervisor = Supervisor(configuration: configuration, logger: logger, traffic: traffic)
            traffic?.target.onUnreachableInstance { supervisor.instanceUnreachable($0) }
            var signals = SignalService(supervisor: supervisor, controlFile: controlFile, sink: sink, logger: logger)
            signals.stopServicesOnTermination = stopServicesOnExit
            // Decided before the service list takes its copy of `signals`.
            if let proxy = localProxy {
                signals.onReopenLogs = { proxy.reopenLogs() }
            } else if let worker {
                signals.onReopenLogs = { worker.control.send(.reopenLogs) }
            }
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
                .init(service: supervisor),
                .init(service: signals, successTerminationBehavior: .gracefullyShutdownGroup),
            ]
            if configuration.httpd != nil || configuration.metricsListener != nil {
                let proxyMetrics: (any ProxyMetricsSource)? = if let localProxy { localProxy } else { worker?.control }
                let metrics = MetricsFeed(supervisor: supervisor, interval: configuration.daemon.interval, proxy: proxyMetrics)
                services.append(.init(service: metrics))
                do {
                    if let listener = configuration.metricsListener {
                        services.append(
                            .init(
                                service: try ControlServer.metricsListener(
                                    listener, feed: metrics, supervisor: supervisor, configuration: configuration, logger: logger)))
                    }
                    if let httpd = configuration.httpd {
                        services.append(
                            .init(
                                service: try ControlServer(
                                    settings: httpd, supervisor: supervisor, configuration: configuration, logger: logger,
                                    metrics: metrics.exporter)))
                    }
                } catch {
                    logger.error("httpd: cannot load the TLS certificate: \(error)")
                    status.withLock { $0 = 1 }
                    done.signal()
                    return
                }
            }
            if !configuration.mailServers.isEmpty || !configuration.alerts.isEmpty || configuration.services.contains(where: { !$0.alerts.isEmpty }) {
                let alerts = AlertService(
                    configuration: configuration, hostName: Pages.hostName(), mailer: "warden \(Supervisor.version)", logger: logger)
                // First in the group, so it is shut down last and still mails warden's own "stopped" event.
                services.insert(.init(service: AlertFeed(supervisor: supervisor, alerts: alerts, interval: configuration.daemon.interval)), at: 0)
            }
            // `tls auto`: certificates are ordered here, as root, and only they reach the proxy.
            let certificates = configuration.acme != nil ? traffic.map { CertificateFeed(proxy: $0.target) } : nil
            if let certificates {
                services.append(
                    .init(service: ACMEService(supervisor: supervisor, feed: certificates, logger: logger, interval: ACMEService.interval(configuration))))
            }
            if configuration.proxy?.listens.contains(where: { $0.certificate != nil }) == true {
                services.append(.init(service: CertificateFileService(supervisor: supervisor, logger: logger, interval: ACMEService.interval(configuration), proxy: traffic?.target)))
            }
            let stickyKey = Self.stickyKey(configuration, logger: logger)
            if let worker, let traffic {
                services.append(
                    .init(
                        service: ProxyWorkerService(
                            controlFile: controlFile, input: worker.input, control: worker.control,
                            feed: ProxyFeed(supervisor: supervisor, traffic: traffic, stickyKey: stickyKey), certificates: certificates,
                            logger: logger)))
            }
            if let proxy = localProxy, let traffic {
                do {
                    try await proxy.bind()
                } catch {
                    logger.error("proxy: cannot listen: \(error)")
                    status.withLock { $0 = 1 }
                    done.signal()
                    return
                }
                services.append(.init(service: proxy))
                services.append(.init(service: ProxyFeed(supervisor: supervisor, traffic: traffic, stickyKey: stickyKey)))
            }
            var groupConfiguration = ServiceGroupConfiguration(
                services: services, gracefulShutdownSignals: stopServicesOnExit ? [] : [.sigterm, .sigint], logger: logger)
            // A stop that hangs (a mail server that never answers the last alert) is cancelled after
            // this; the alert stays in the event queue when one is set.
            groupConfiguration.maximumGracefulShutdownDuration = Self.gracefulShutdownBound
            let group = ServiceGroup(configuration: groupConfiguration)
            do {
                try await group.run()
            } catch {
                logger.error("warden stopped: \(error)")
                status.withLock { $0 = 1 }
            }
            done.signal()
        }
        done.wait()
        ServiceLogs.shared.flushAll()  // the services' last lines, still queued
        lock.release()
        return status.withLock { $0 }
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

/// The daemon's pidfile, locked with flock(2) so a second daemon on the same file is refused.
final class PIDLock {
    let path: String
    private let fd: Int32

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    init(path: String) throws {
        self.path = path
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw Failure(description: "cannot open pidfile '\(path)': \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let other = PIDFile.read(path).map { " with pid \($0)" } ?? ""
            close(fd)
            throw Failure(description: "a warden daemon is already running\(other) (pidfile '\(path)')")
        }
        _ = ftruncate(fd, 0)
        LogSink.writeAll(fd, "\(getpid())\n")
        fsync(fd)
    }

    /// The pid of a daemon holding the lock, or nil when none does.
    static func runningPID(_ path: String) -> pid_t? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil
        }
        return PIDFile.read(path) ?? -1
    }

    func release() {
        unlink(path)
        close(fd)
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
