import Dispatch
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A Zinc-style HTTP server: `ZnServer(port: 8080).logToStandardOutput()`, a delegate, `start()`.
///
/// HTTP/1.1 with keep-alive, a request body limit (413 above it), and a graceful `stop()` that
/// finishes the requests in flight.
public final class ZnServer: Sendable {
    public let port: Int
    public let bindAddress: String
    public let delegate: ZnDispatcherDelegate
    public let maximumBodySize: Int
    let log: ZnLog
    private let state = Mutex<State>(State())

    private struct State {
        var channel: (any Channel)?
        var boundPort: Int?
    }

    public init(port: Int, bindAddress: String = "127.0.0.1", delegate: ZnDispatcherDelegate = ZnDispatcherDelegate(), maximumBodySize: Int = 4 * 1024 * 1024) {
        self.port = port
        self.bindAddress = bindAddress
        self.delegate = delegate
        self.maximumBodySize = maximumBodySize
        self.log = ZnLog()
    }

    /// `ZnServer defaultOn: 8080`.
    public static func defaultOn(_ port: Int) -> ZnServer { ZnServer(port: port) }

    /// `logToStandardOutput`: Zinc's log lines on stdout.
    @discardableResult
    public func logToStandardOutput() -> Self {
        log.enable()
        return self
    }

    /// The port actually bound (differs from `port` when it was 0).
    public var boundPort: Int? { state.withLock { $0.boundPort } }

    /// Binds and starts serving; returns once the socket listens.
    public func start(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws {
        let serverLog = log
        serverLog.write("I", serverLog.nextID(), "Starting ZnManagingMultiThreadedServer HTTP port \(port)")
        serverLog.write("D", serverLog.nextID(), "Initializing server socket")
        let delegate = self.delegate
        let limit = maximumBodySize
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(NIOHTTPServerRequestAggregator(maxContentLength: limit))
                    try channel.pipeline.syncOperations.addHandler(ZnConnectionHandler(delegate: delegate, log: serverLog))
                }
            }
            .bind(host: bindAddress, port: port).get()
        state.withLock {
            $0.channel = channel
            $0.boundPort = channel.localAddress?.port
        }
    }

    /// Stops accepting connections, then waits (up to `grace`) for the requests in flight.
    public func stop(grace: Duration = .seconds(10)) async {
        let channel = state.withLock { $0.channel }
        try? await channel?.close()
        let deadline = ContinuousClock.now + grace
        while log.inFlight > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Runs until the listening socket is closed.
    public func waitUntilClosed() async {
        let channel = state.withLock { $0.channel }
        try? await channel?.closeFuture.get()
    }
}

/// Zinc's log: `2013-07-10 11:46:58 909356 I Read a ZnRequest(GET /)`; the six-digit field
/// identifies the connection, as Zinc's identifies the thread serving it.
final class ZnLog: Sendable {
    private let enabled = Atomic<Bool>(false)
    private let counter = Atomic<Int>(0)
    private let requests = Atomic<Int>(0)

    func enable() { enabled.store(true, ordering: .relaxed) }

    var inFlight: Int { requests.load(ordering: .relaxed) }
    func requestStarted() { requests.add(1, ordering: .relaxed) }
    func requestFinished() { requests.subtract(1, ordering: .relaxed) }

    /// A six-digit identifier, derived the way Zinc derives its from a hash (modulo 999999).
    func nextID() -> Int {
        let n = counter.add(1, ordering: .relaxed).newValue
        var hasher = Hasher()
        hasher.combine(n)
        hasher.combine(getpid())
        return Int(UInt(bitPattern: hasher.finalize()) % 999_999)
    }

    func write(_ level: String, _ id: Int, _ message: String) {
        guard enabled.load(ordering: .relaxed) else { return }
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        strftime(&buffer, buffer.count, "%Y-%m-%d %H:%M:%S", &parts)
        let stamp = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let idText = String(id)
        let line = "\(stamp) \(String(repeating: "0", count: max(0, 6 - idText.count)))\(idText) \(level) \(message)\n"
        var bytes = Array(line.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(1, $0.baseAddress, $0.count) }
    }
}

/// One connection: aggregated requests in, Zinc responses out, keep-alive as the client asks.
final class ZnConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = NIOHTTPServerRequestFull
    typealias OutboundOut = HTTPServerResponsePart

    private let delegate: ZnDispatcherDelegate
    private let log: ZnLog
    private let id: Int

    init(delegate: ZnDispatcherDelegate, log: ZnLog) {
        self.delegate = delegate
        self.log = log
        self.id = log.nextID()
    }

    func channelActive(context: ChannelHandlerContext) {
        log.write("D", id, "Executing request/response loop")
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let full = unwrapInboundIn(data)
        let started = ContinuousClock.now
        log.requestStarted()
        var body: [UInt8] = []
        if var buffer = full.body { body = buffer.readBytes(length: buffer.readableBytes) ?? [] }
        let request = ZnRequest(
            method: full.head.method.rawValue, uri: full.head.uri,
            headers: full.head.headers.map { ($0.name, $0.value) }, body: body)
        log.write("I", id, "Read a ZnRequest(\(request.method) \(request.uri))")
        let response = delegate.handleRequest(request)
        let elapsed = ContinuousClock.now - started
        let milliseconds = elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
        let size = response.body.isEmpty ? "" : " \(response.body.count)B"
        log.write("T", id, "\(request.method) \(request.uri) \(response.status)\(size) \(milliseconds)ms")

        var headers = HTTPHeaders()
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        if let contentType = response.contentType { headers.add(name: "Content-Type", value: contentType) }
        headers.add(name: "Content-Length", value: String(response.body.count))
        headers.add(name: "Server", value: "Zinc HTTP Components 1.0 (Swift)")
        let keepAlive = full.head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let head = HTTPResponseHead(
            version: full.head.version, status: HTTPResponseStatus(statusCode: response.status, reasonPhrase: response.reason),
            headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if !response.body.isEmpty, full.head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))), promise: nil)
        }
        let log = self.log
        let id = self.id
        let description = response.logDescription
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            log.write("I", id, "Wrote a \(description)")
            log.requestFinished()
        }
        if !keepAlive { context.close(promise: nil) }
    }
}

@available(*, unavailable)
extension ZnConnectionHandler: Sendable {}

extension ZnServer {
    /// Serves until SIGTERM or SIGINT, then stops gracefully (requests in flight finish).
    public func runUntilTerminated() async {
        await Self.waitForTerminationSignal()
        await stop()
    }

    static func waitForTerminationSignal() async {
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        let queue = DispatchQueue(label: "zn.signals")
        let sources = [SIGTERM, SIGINT].map { DispatchSource.makeSignalSource(signal: $0, queue: queue) }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumed = Mutex(false)
            for source in sources {
                source.setEventHandler { @Sendable in
                    guard resumed.withLock({ done in defer { done = true }; return !done }) else { return }
                    continuation.resume()
                }
                source.resume()
            }
        }
        for source in sources { source.cancel() }
    }
}
