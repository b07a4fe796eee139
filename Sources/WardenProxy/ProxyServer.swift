import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization
import WardenConfig
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

/// The reverse proxy in front of the apps: `set proxy` listeners and `check site` virtual hosts.
public final class ProxyServer: ServiceLifecycle.Service, Sendable {
    let settings: ProxySettings
    let shared: ProxyContext
    let logger: Logger
    /// ACME challenges, `redirect to https`, and the certificates of `tls auto` listeners.
    public let front: FrontDoor
    private let channels = Mutex<[any Channel]>([])
    private let limit: ConnectionLimit

    /// One event loop per CPU warden may use: under `taskset -c 0` one thread, as nginx's one worker.
    static let eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: ProcessTable.usableCPUCount)

    public init(settings: ProxySettings, sites: [Site], availability: ServiceAvailability, logger: Logger) {
        self.settings = settings
        self.logger = logger
        limit = ConnectionLimit(maximum: settings.maximumConnections)
        front = FrontDoor(httpsPort: settings.listens.first(where: \.isTLS)?.port)
        shared = ProxyContext(
            settings: settings, sites: SiteTable(sites: sites, availability: availability), pool: UpstreamPool(), availability: availability,
            metrics: ProxyMetrics(listenerNames: settings.listens.map(\.metricsName)), front: front, scheme: "http", sendsFileRegions: true)
    }

    /// Ports actually bound, once listening (for tests that bind port 0).
    public var boundPorts: [Int] { channels.withLock { $0.compactMap { $0.localAddress?.port } } }

    /// A reload: new requests see the new sites; requests in flight finish with the old ones.
    /// Listeners and `set proxy` settings need a restart of warden.
    public func update(sites: [Site]) {
        shared.sites.load(sites)
    }

    /// Binds every listener (privileged ports need root; call before dropping privileges).
    public func bind() async throws {
        for (index, listen) in settings.listens.enumerated() {
            var shared = self.shared
            let tls = try CertificateFiles(listen).map(front.listenerCertificate)
            if listen.isTLS {
                shared.scheme = "https"
                shared.sendsFileRegions = false
            }
            let limit = self.limit
            let logger = self.logger
            let channel = try await ServerBootstrap(group: Self.eventLoops)
                .serverChannelOption(.backlog, value: 1024)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                .childChannelOption(.maxMessagesPerRead, value: 16)
                .childChannelInitializer { [shared, tls] channel in
                    // Over `max connections`, a new connection is closed at once: the ones being served keep their share.
                    guard limit.acquire() else {
                        if limit.shouldComplain() { logger.error("proxy: \(limit.maximum) connections open (max connections); refusing new ones") }
                        return channel.close()
                    }
                    channel.closeFuture.whenComplete { _ in limit.release() }
                    let metrics = shared.metrics.local(on: channel.eventLoop)
                    metrics.connectionOpened(listener: index)
                    channel.closeFuture.assumeIsolated().whenComplete { _ in metrics.connectionClosed(listener: index) }
                    if listen.automaticTLS {
                        // The certificate is chosen per handshake (by SNI), so a renewal needs no restart.
                        return channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(
                                CertificateSelector(front: shared.front, timeout: .seconds(Int64(shared.settings.headerTimeout))) { channel in
                                    do {
                                        try TLSHandshakeCounter.add(to: channel, metrics: shared.metrics, listener: index)
                                    } catch {
                                        return channel.eventLoop.makeFailedFuture(error)
                                    }
                                    return Self.configureNegotiated(channel, shared: shared)
                                })
                        }
                    }
                    guard let tls else { return channel.eventLoop.makeCompletedFuture { try Self.configureHTTP1(channel, shared: shared) } }
                    do {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.context))
                        try TLSHandshakeCounter.add(to: channel, metrics: shared.metrics, listener: index)
                    } catch {
                        return channel.eventLoop.makeFailedFuture(error)
                    }
                    return Self.configureNegotiated(channel, shared: shared)
                }
                .bind(host: listen.address, port: listen.port).get()
            channels.withLock { $0.append(channel) }
            logger.info("proxy listening on \(listen.isTLS ? "https" : "http")://[\(listen.address)]:\(channel.localAddress?.port ?? listen.port)")
        }
    }

    public func reopenLogs() {
        shared.sites.reopenLogs()
    }

    public func run() async throws {
        if channels.withLock({ $0.isEmpty }) { try await bind() }
        await withGracefulShutdownHandler {
            for channel in channels.withLock({ $0 }) { try? await channel.closeFuture.get() }
        } onGracefulShutdown: {
            for channel in self.channels.withLock({ $0 }) { channel.close(promise: nil) }
        }
    }
}
