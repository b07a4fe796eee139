import CWardenShims
import Logging
import ServiceLifecycle
import UnixSignals
import WardenConfig
import WardenCore
import WardenHTTP
import WardenMail
import WardenPlatform
import WardenProxy

#if canImport(Glibc)
import Glibc
#endif

/// warden's services for one configuration, in one service group: the supervisor, the proxy (in
/// this process, or a worker process that serves as `set proxy … user`), the signal handling, what
/// feeds the proxy and the alerts, the certificate services and the control server.
///
/// The process-wide part of the daemon (the pid lock, daemonizing, logging, the child reaper) is
/// `Daemon`'s; this is what runs inside it, and what a test can start on its own.
public struct WardenApp: ServiceLifecycle.Service {
    /// How long a graceful shutdown may take before the group cancels what is left: a stop that
    /// hangs (a mail server that never answers the last alert) must not keep warden from ending; the
    /// alert stays in the event queue when one is set.
    public static let maximumGracefulShutdownDuration = Duration.seconds(30)

    public struct Options: Sendable {
        /// Read again on SIGHUP; a proxy worker reads its settings from it.
        public var controlFile: String
        /// The daemon's log, re-opened on SIGUSR1.
        public var logSink: LogSink
        /// SIGINT and SIGTERM stop every service before warden ends (the demo), instead of leaving them running.
        public var stopServicesOnExit: Bool
        /// The signals that end the group gracefully, leaving the services running (unless `stopServicesOnExit`).
        public var gracefulShutdownSignals: [UnixSignal]

        public init(
            controlFile: String, logSink: LogSink, stopServicesOnExit: Bool = false, gracefulShutdownSignals: [UnixSignal] = [.sigterm, .sigint]
        ) {
            self.controlFile = controlFile
            self.logSink = logSink
            self.stopServicesOnExit = stopServicesOnExit
            self.gracefulShutdownSignals = gracefulShutdownSignals
        }
    }

    /// Why the services could not be set up; warden ends with status 1 and logs it.
    public struct StartFailure: Error, CustomStringConvertible {
        public let description: String
    }

    public let supervisor: Supervisor
    private let group: ServiceGroup

    /// Builds the services, opening what must be open before they run: the proxy worker's pipe, the
    /// dashboard's TLS certificate and the proxy's listeners (so a port in use is a `StartFailure`).
    public init(configuration: Configuration, options: Options, logger: Logger) async throws {
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
                    throw StartFailure(description: "proxy worker: cannot create its pipe: \(String(cString: strerror(errno)))")
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
        var signals = SignalService(supervisor: supervisor, controlFile: options.controlFile, sink: options.logSink, logger: logger)
        signals.stopServicesOnTermination = options.stopServicesOnExit
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
                throw StartFailure(description: "httpd: cannot load the TLS certificate: \(error)")
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
            services.append(
                .init(
                    service: CertificateFileService(
                        supervisor: supervisor, logger: logger, interval: ACMEService.interval(configuration), proxy: traffic?.target)))
        }
        let stickyKey = Daemon.stickyKey(configuration, logger: logger)
        if let worker, let traffic {
            services.append(
                .init(
                    service: ProxyWorkerService(
                        controlFile: options.controlFile, input: worker.input, control: worker.control,
                        feed: ProxyFeed(supervisor: supervisor, traffic: traffic, stickyKey: stickyKey), certificates: certificates,
                        logger: logger)))
        }
        if let proxy = localProxy, let traffic {
            do {
                try await proxy.bind()
            } catch {
                throw StartFailure(description: "proxy: cannot listen: \(error)")
            }
            services.append(.init(service: proxy))
            services.append(.init(service: ProxyFeed(supervisor: supervisor, traffic: traffic, stickyKey: stickyKey)))
        }
        var groupConfiguration = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: options.stopServicesOnExit ? [] : options.gracefulShutdownSignals, logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = Self.maximumGracefulShutdownDuration
        self.supervisor = supervisor
        self.group = ServiceGroup(configuration: groupConfiguration)
    }

    /// Runs the services until a signal ends them, or until the service group warden runs in (a
    /// test's, a program's that embeds warden) shuts down gracefully, which the group passes on to
    /// warden's services, bounded by `maximumGracefulShutdownDuration`.
    public func run() async throws {
        try await group.run()
    }
}
