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
    private let channels = Mutex<[any Channel]>([])
    private let logs: [LogFile]

    public init(settings: ProxySettings, sites: [Site], availability: ServiceAvailability, logger: Logger) {
        self.settings = settings
        self.logger = logger
        var accessLogs: [String: LogFile] = [:]
        var pages: [String: [UInt8]] = [:]
        for site in sites {
            if let path = site.accessLog { accessLogs[site.name] = LogFile(path: path) }
            if let path = site.maintenancePage, let bytes = try? FileSystemReader().read(path) { pages[site.name] = bytes }
        }
        logs = Array(accessLogs.values)
        shared = ProxyContext(
            settings: settings, router: SiteRouter(sites: sites), pool: UpstreamPool(), availability: availability,
            accessLogs: accessLogs, maintenancePages: pages, scheme: "http")
    }

    /// Ports actually bound, once listening (for tests that bind port 0).
    public var boundPorts: [Int] { channels.withLock { $0.compactMap { $0.localAddress?.port } } }

    /// Binds every listener (privileged ports need root; call before dropping privileges).
    public func bind() async throws {
        for listen in settings.listens {
            var shared = self.shared
            var tls: NIOSSLContext?
            if let certificate = listen.certificate {
                let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
                let key = try NIOSSLPrivateKey(file: listen.key ?? certificate, format: .pem)
                tls = try NIOSSLContext(configuration: .makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key)))
                shared.scheme = "https"
            }
            let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.backlog, value: 1024)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                .childChannelOption(.maxMessagesPerRead, value: 16)
                .childChannelInitializer { [shared, tls] channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(HeaderTimeoutHandler(header: shared.settings.headerTimeout, idle: shared.settings.idleTimeout))
                        try channel.pipeline.syncOperations.addHandler(ProxyHandler(shared: shared))
                    }
                }
                .bind(host: listen.address, port: listen.port).get()
            channels.withLock { $0.append(channel) }
            logger.info("proxy listening on \(tls == nil ? "http" : "https")://[\(listen.address)]:\(channel.localAddress?.port ?? listen.port)")
        }
    }

    public func reopenLogs() {
        for log in logs { log.reopen() }
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

/// Slowloris: a client that has not sent a complete request head within `header` seconds is
/// disconnected, and a kept-alive connection idle for `idle` seconds after a response is closed.
final class HeaderTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let header: Int64
    private let idle: Int64
    private var timer: Scheduled<Void>?

    init(header: Int, idle: Int) {
        self.header = Int64(header)
        self.idle = Int64(idle)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context: context, seconds: header) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context: context, seconds: header)
        context.fireChannelActive()
    }

    private func arm(context: ChannelHandlerContext, seconds: Int64) {
        timer?.cancel()
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(seconds)) {
            loopBound.value.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) {
            timer?.cancel()
            timer = nil
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { arm(context: context, seconds: idle) }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        context.fireChannelInactive()
    }
}

@available(*, unavailable)
extension HeaderTimeoutHandler: Sendable {}
