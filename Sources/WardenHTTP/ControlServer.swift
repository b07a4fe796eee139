import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization
import WardenConfig
import WardenCore

#if canImport(Glibc)
import Glibc
#endif

/// monit's httpd: the dashboard, the status API and the actions the CLI sends, on a TCP port
/// and/or a unix socket. A client whose address the allow-list does not admit is closed before a
/// byte is read.
public final class ControlServer: ServiceLifecycle.Service, Sendable {
    let settings: HTTPDSettings
    let router: ControlRouter
    let logger: Logger
    /// `with ssl { pemfile: … }`: HTTPS, as monit has it.
    let tls: DashboardTLS?
    private let bound = Mutex<[any Channel]>([])
    /// Subscribed at creation, so the sites' events miss nothing.
    private let events: AsyncStream<Event>

    public init(
        settings: HTTPDSettings, supervisor: Supervisor, configuration: Configuration, logger: Logger, metrics: MetricsExporter,
        metricsOnly: Bool = false
    ) throws {
        self.events = supervisor.events.subscribe()
        self.settings = settings
        self.logger = logger
        self.tls = try settings.ssl.flatMap { try DashboardTLS($0) }
        let policy = AccessPolicy(rules: settings.allow)
        for entry in policy.unusableEntries { logger.warning("httpd: \(entry)") }
        self.router = ControlRouter(
            supervisor: supervisor, policy: policy, configuration: configuration, logger: logger, metrics: metrics, metricsOnly: metricsOnly)
    }

    /// The TCP port actually bound, once running.
    public var tcpPort: Int? { bound.withLock { $0.compactMap { $0.localAddress?.port }.first } }

    public func run() async throws {
        var channels: [NIOAsyncChannel<Connection, Never>] = []
        if let port = settings.port {
            let host = Self.bindAddress(settings.address)
            channels.append(try await bootstrap().bind(host: host, port: port) { self.initialize($0, unix: false) })
            logger.info("warden httpd listening on [\(host)]:\(port)")
        }
        if let path = settings.unixSocket {
            unlink(path)
            let previous = umask(0o177)  // the socket is created 0600
            defer { umask(previous) }
            channels.append(try await bootstrap().bind(unixDomainSocketPath: path) { self.initialize($0, unix: true) })
            chmod(path, 0o600)
            logger.info("warden httpd listening on unix socket \(path)")
        }
        bound.withLock { $0 = channels.map(\.channel) }
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                let (events, router) = (self.events, self.router)
                group.addTask {
                    for await event in events.cancelOnGracefulShutdown() {
                        await router.record(event)
                        router.history.record(event)
                        // The metrics listener shares the board: one server marks it.
                        if !router.metricsOnly { router.metrics.proxy.mark(event) }
                    }
                }
                if !self.router.metricsOnly { group.addTask { await self.feedHistory() } }
                for channel in channels {
                    group.addTask {
                        try? await channel.executeThenClose { inbound in
                            try await withThrowingDiscardingTaskGroup { connections in
                                for try await connection in inbound {
                                    guard let channel = connection.channel else { continue }
                                    connections.addTask { await self.serve(channel, client: connection.client) }
                                }
                            }
                        }
                    }
                }
            }
        } onGracefulShutdown: {
            for channel in self.bound.withLock({ $0 }) { channel.close(promise: nil) }
        }
        if let path = settings.unixSocket { unlink(path) }
    }

    /// Takes each check into the services' histories: the snapshots are read four times a cycle
    /// (at most every 250 ms), so a check is seen before the next one replaces it.
    private func feedHistory() async {
        let interval = Duration.milliseconds(max(250, router.history.cycleSeconds * 250))
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            router.history.observe(await router.supervisor.snapshots())
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }

    static func bindAddress(_ address: String?) -> String {
        guard let address else { return "0.0.0.0" }
        return address == "localhost" ? "127.0.0.1" : address
    }

    private func bootstrap() -> ServerBootstrap {
        ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    }

    /// A connection as accepted: who it is from (taken at accept time, while the socket is open), and
    /// its HTTP channel, or nil when the allow-list refused it.
    struct Connection: Sendable {
        let client: String
        let channel: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>?
    }

    private func initialize(_ channel: any Channel, unix: Bool) -> EventLoopFuture<Connection> {
        channel.eventLoop.makeCompletedFuture {
            let remote = channel.remoteAddress
            let client = unix ? "unix" : remote?.ipAddress ?? "unknown"
            if !unix {
                // Fails closed: a TCP peer whose address cannot be read is not admitted either.
                guard let address = remote?.addressBytes, router.policy.admits(address: address) else {
                    // Refused before any parsing: no HTTP decoder is ever added to this channel.
                    logger.error("HttpRequest: access denied -- client [\(client)]: host not allowed")
                    channel.close(promise: nil)
                    return Connection(client: client, channel: nil)
                }
            }
            if let tls, !unix {
                try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.context))
                if let clients = tls.clients {
                    try channel.pipeline.syncOperations.addHandler(ClientCertificateGate(clients: clients, client: client, logger: logger))
                }
            }
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
            return Connection(client: client, channel: try NIOAsyncChannel(wrappingChannelSynchronously: channel))
        }
    }

    /// One connection: requests one after another (keep-alive), each answered in full.
    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, client: String) async {
        try? await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            var body: [UInt8] = []
            for try await part in inbound {
                switch part {
                case .head(let requestHead):
                    head = requestHead
                    body = []
                case .body(var buffer):
                    guard body.count + buffer.readableBytes <= 65536 else {
                        try await write(ControlResponse.text(413, "Payload Too Large"), to: outbound, keepAlive: false, head: head)
                        return
                    }
                    body += buffer.readBytes(length: buffer.readableBytes) ?? []
                case .end:
                    guard let requestHead = head else { return }
                    let request = ControlRequest(head: requestHead, body: body, client: client)
                    let response = await router.handle(request)
                    try await write(response, to: outbound, keepAlive: requestHead.isKeepAlive, head: requestHead)
                    if !requestHead.isKeepAlive { return }
                    head = nil
                }
            }
        }
    }

    private func write(_ response: ControlResponse, to outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>, keepAlive: Bool, head: HTTPRequestHead?) async throws {
        var headers = HTTPHeaders()
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        headers.add(name: "Content-Length", value: String(response.body.count))
        headers.add(name: "X-Frame-Options", value: "SAMEORIGIN")
        headers.add(name: "Content-Security-Policy", value: "default-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'self'")
        headers.add(name: "X-Content-Type-Options", value: "nosniff")
        headers.add(name: "Cache-Control", value: "no-store")
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let responseHead = HTTPResponseHead(version: head?.version ?? .http1_1, status: .init(statusCode: response.status), headers: headers)
        try await outbound.write(.head(responseHead))
        if !response.body.isEmpty, head?.method != .HEAD {
            try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: response.body))))
        }
        try await outbound.write(.end(nil))
    }
}

extension SocketAddress {
    /// The raw address bytes (4 for IPv4, 16 for IPv6), nil for unix sockets.
    var addressBytes: [UInt8]? {
        ipAddress.flatMap(AccessPolicy.parseAddress)
    }
}

