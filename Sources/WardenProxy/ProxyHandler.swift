import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import WardenConfig
import WardenCore

/// What every connection of one proxy shares.
struct ProxyContext: Sendable {
    let settings: ProxySettings
    let sites: SiteTable
    let pool: UpstreamPool
    let availability: ServiceAvailability
    var metrics = ProxyMetrics(listenerNames: [])
    /// ACME challenges, redirects to HTTPS and `tls auto` certificates (see `FrontDoor`).
    var front = FrontDoor(httpsPort: nil)
    var scheme: String
    /// sendfile needs a plain socket: TLS (and HTTP/2 inside it) gets files read in pieces instead.
    var sendsFileRegions: Bool
    /// Opens new upstream connections.
    var connector: any UpstreamConnector = BootstrapConnector()
}

/// Numbers client connections for the error log (nginx's `*N`).
private let connectionNumbers = Atomic<UInt64>(0)

/// One client connection: routes each request to an upstream (streaming both ways, with
/// back-pressure), a directory, or a page of its own; holds requests while the app restarts;
/// turns into a byte tunnel when the upstream accepts a WebSocket upgrade.
///
/// Requests are decoded by `RequestDecoder` (by NIO's codec on HTTP/2); everything written (to the
/// client and to the upstream) is bytes, and upstream responses are framed by `ResponseFramer` and
/// passed through, so a proxied request costs one decode, not three decodes and two encodes.
/// Pipelined requests are queued here rather than by NIO's pipelining handler, which stops and
/// restarts reading the socket around every request (two `epoll_ctl` calls each).
final class ProxyHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = IOData

    enum State {
        case idle
        /// Waiting for the service or a connection (see `attempt`); the body parts that arrive
        /// meanwhile are kept (the head is `forwardedHead`).
        case pending(body: [ByteBuffer], ended: Bool)
        case forwarding(UpstreamHandler, requestEnded: Bool)
        /// Answered locally (static file, error page); the rest of the request body is dropped.
        case draining
        /// Upgraded: the pipeline is being handed to a `TunnelHandler`.
        case tunnel
    }

    private let shared: ProxyContext
    /// The idle upstream connections of this connection's event loop.
    private var pool: UpstreamPool.Local?
    private let number = connectionNumbers.add(1, ordering: .relaxed).newValue
    private var state = State.idle
    /// Held strongly and let go in `handlerRemoved` (the context holds this handler too): a weak
    /// reference would give the context a side table, which makes each of NIO's many retains and
    /// releases of it take the runtime's slow path.
    private var context: ChannelHandlerContext?
    private var clientAddress = "-"
    private var clientFields = ClientFields(client: "-", scheme: "http")
    // Unchecked: the only accesses that span calls are the view's own refresh and the queue's own
    // methods, which never reach back into this handler; the runtime check cost two per request.
    @exclusivity(unchecked) private var sites = SiteTable.View()

    // The request being answered (its head is let go once the response is out).
    private var request: RequestHead?
    private var entry: SiteTable.Entry?
    /// Where the request is passed (nil for a directory or a page of the proxy's own).
    private var target: SiteTable.Upstream?
    /// The instance the request went to, when `target` has several.
    private var picked: BackendSet.Target?
    /// The instance a valid sticky cookie of the request names (`balance sticky cookie`).
    private var pinnedPort: Int?
    private var keepAlive = true
    private var upgrade = false
    private var responseStatus = 0
    private var responseBytes = 0
    /// The head for the upstream: written once a connection is there, and kept so an idempotent
    /// request can be sent again on a new one.
    private var forwardedHead: ByteBuffer?
    /// The buffers of the last request's two heads, written to and sent by now: the next request
    /// writes its heads into them, so a kept-alive connection allocates none per request.
    private var spareUpstreamHead: ByteBuffer?
    private var spareResponseHead: ByteBuffer?
    /// The client's body was chunked; the decoder hands it over de-chunked, so it is chunked again
    /// upstream.
    private var chunkedBody = false
    /// The hold while the service comes back, and the resend of an idempotent request whose
    /// upstream died before its response was complete (see `heldResponse`).
    // Unchecked, as are `timeouts`, `compression` and `series`: their methods never reach back into
    // this handler, and the runtime checks cost about 70 instructions each per request.
    @exclusivity(unchecked) private var attempt = UpstreamAttempt()
    /// The response to an idempotent request, while it is read whole before any of it goes to the
    /// client: a small one with a known length (`wholeResponseBytes`), so that an upstream that dies
    /// in the middle of it is retried like one that died before its head.
    // Unchecked: appending to it reaches only NIO's buffer code; checked, every request paid for two
    // runtime checks (asking whether there is one) because of that append.
    @exclusivity(unchecked) private var heldResponse: (head: ResponseFramer.Head, body: ByteBuffer)?
    static let wholeResponseBytes = 65536
    /// The service's count this request is in, from when it is sent upstream until its response
    /// ends or fails: a planned stop waits for it (`ServiceAvailability.hold`).
    private var inFlight: ServiceTraffic?

    /// Pipelined request parts that arrived while a response was still going out.
    // Unchecked for the same reason as `sites`.
    @exclusivity(unchecked) private var queued = CircularBuffer<RequestPart>()
    private var processingQueue = false
    private var clientPaused = false
    private var upstreamNeedsFlush = false
    /// A static file being sent in pieces (see `ProxyContext.sendsFileRegions`).
    private var file: StaticFiles.FilePieces?
    /// The response body being compressed (`compress`), if it is.
    @exclusivity(unchecked) private var compression = ResponseCompression()

    // One timer per connection, re-armed lazily: most requests only move the deadline.
    @exclusivity(unchecked) private var timeouts: ConnectionTimeouts
    private var timer: Scheduled<Void>?

    // What the metrics count of the request (see `measure`).
    private var meter: ProxyMetrics.Local?
    @exclusivity(unchecked) private var series = ProxyMetrics.Slot()
    private var route: SiteTable.Route?
    private var requestStarted = NIODeadline.distantPast
    private var requestBodyBytes = 0

    /// The connection's event loop: its clock (`now`) times requests and timeouts, so a test's
    /// `EmbeddedEventLoop` can move it. Unowned: the loop outlives its channels, and counting
    /// references to it cost two atomic operations per read of the clock. The clock is read twice per
    /// request, as it starts and as it ends; what happens in between reuses those times.
    private unowned(unsafe) var loop: (any EventLoop)?

    init(shared: ProxyContext) {
        self.shared = shared
        timeouts = ConnectionTimeouts(settings: shared.settings)
    }

    private var now: NIODeadline { loop?.now ?? .now() }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        loop = context.eventLoop
        pool = shared.pool.local(on: context.eventLoop)
        meter = shared.metrics.local(on: context.eventLoop)
        if context.channel.isActive { connected(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        connected(context: context)
        context.fireChannelActive()
    }

    private func connected(context: ChannelHandlerContext) {
        clientAddress = context.channel.remoteAddress?.ipAddress ?? "-"
        clientFields = ClientFields(client: clientAddress, scheme: shared.scheme)
        setTimeout(.header, context: context)
    }

    /// A request part of an HTTP/2 stream, from NIO's codec.
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            do {
                receive(.head(try RequestHead.http2(head), complete: false), context: context)
            } catch {
                errorCaught(context: context, error: error)
            }
        case .body(let body):
            receive(.body(body), context: context)
        case .end:
            receive(.end, context: context)
        }
    }

    /// A request part, from an HTTP/2 stream or straight from the `RequestDecoder` in front (HTTP/1:
    /// a pipeline hop and a dynamic cast less per part).
    func receive(_ part: RequestPart, context: ChannelHandlerContext) {
        if case .tunnel = state { return }
        if !queued.isEmpty || (part.isHead && !isIdle) {
            queued.append(part)
            // A client pipelining faster than it is answered waits for its answers.
            if queued.count > 64 { setClientReading(false, context: context) }
            return
        }
        handle(part, context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if upstreamNeedsFlush, case .forwarding(let upstream, _) = state {
            upstreamNeedsFlush = false
            upstream.flush()
        }
        // The last handler: only a tunnel, added behind it during an upgrade, wants the event.
        if case .tunnel = state { context.fireChannelReadComplete() }
    }

    private var isIdle: Bool {
        if case .idle = state { return true }
        return false
    }

    private func handle(_ part: RequestPart, context: ChannelHandlerContext) {
        switch part {
        case .head(let request, let complete):
            start(request, complete: complete, context: context)
        case .body(let buffer):
            guard buffer.readableBytes > 0 else { return }
            requestBodyBytes += buffer.readableBytes
            if chunkedBody {
                var prefix = context.channel.allocator.buffer(capacity: 24)
                prefix.writeString(String(buffer.readableBytes, radix: 16))
                prefix.writeStaticString("\r\n")
                forward(prefix, end: false, context: context)
                forward(buffer, end: false, context: context)
                forward(Self.crlf, end: false, context: context)
            } else {
                forward(buffer, end: false, context: context)
            }
        case .end:
            forward(chunkedBody ? Self.lastChunk : Self.empty, end: true, context: context)
        }
    }

    private static let crlf = ByteBuffer(string: "\r\n")
    private static let lastChunk = ByteBuffer(string: "0\r\n\r\n")
    private static let empty = ByteBuffer()

    /// Starts the queued requests once the one before them is answered.
    private func processQueue(context: ChannelHandlerContext) {
        guard !processingQueue else { return }
        processingQueue = true
        defer { processingQueue = false }
        while let part = queued.first {
            if part.isHead, !isIdle { break }
            queued.removeFirst()
            handle(part, context: context)
        }
    }

    // MARK: - Requests

    private func start(_ head: RequestHead, complete: Bool, context: ChannelHandlerContext) {
        request = head
        upgrade = head.upgrade
        // After an upgrade request the decoder holds the bytes for the next protocol: a response
        // other than 101 ends the connection.
        keepAlive = head.keepAlive && !upgrade && !head.isCONNECT
        responseStatus = 0
        responseBytes = 0
        target = nil
        picked = nil
        pinnedPort = nil
        route = nil
        attempt.reset()
        requestBodyBytes = 0
        let now = self.now
        requestStarted = now
        setTimeout(.none, context: context)
        entry = sites.entry(forHost: head.host, in: shared.sites)
        if let problem = HeaderRules.reject(head, maximumBody: shared.settings.maximumBodyBytes) {
            keepAlive = false
            logError("info", "client sent an invalid request (\(problem.code) \(problem.reasonPhrase))")
            respond(status: problem, body: ProxyPages.page(Int(problem.code), problem.reasonPhrase, "warden"), context: context)
            return
        }
        if let answer = shared.front.answer(head, entry: entry, https: shared.scheme == "https") {
            respond(status: answer.status, body: answer.body, extraHeaders: answer.headers, context: context)
            return
        }
        guard let entry, let route = entry.route(for: head.path) else {
            respond(status: .notFound, body: ProxyPages.notFound, context: context)
            return
        }
        self.route = route
        switch route.target {
        case .directory(let directory):
            state = .draining
            let response = StaticFiles.response(for: head, prefix: route.prefix, root: directory, compression: entry.site.compression)
            responseStatus = Int(response.status.code)
            writeStatic(response, context: context)
        case .upstream(let upstream):
            target = upstream
            if case .stickyCookie(let name) = upstream.balance, let service = upstream.service, let cookies = head.field("cookie") {
                pinnedPort = shared.availability.stickyCookie.pinnedPort(cookieHeader: cookies, name: name, service: service)
            }
            if shared.availability.inMaintenance(entry.site.name) {
                maintenance(context: context)
                return
            }
            chunkedBody = head.framing == .chunked
            let idempotent: Bool
            switch head.framing {
            case .none, .length(0): idempotent = head.isGETOrHEAD
            default: idempotent = false
            }
            let uri = upstream.basePath.map { Self.upstreamURI(head.uri, prefix: route.prefix, base: $0) }
            forwardedHead = HeaderRules.upstreamHead(
                head, uri: uri, client: clientFields, reusing: spareUpstreamHead.take())
            attempt.begin(hold: entry.site.hold, idempotent: idempotent, now: now)
            state = .pending(body: [], ended: complete)
            connect(context: context, now: now)
        }
    }

    /// `pass /app to http://host/base/` sends `/app/x` as `/base/x`.
    static func upstreamURI(_ uri: String, prefix: String, base: String) -> String {
        guard uri.hasPrefix(prefix) else { return uri }
        let rest = uri.dropFirst(prefix.count)
        if base.hasSuffix("/"), rest.hasPrefix("/") { return base + rest.dropFirst() }
        if !base.hasSuffix("/"), !rest.isEmpty, !rest.hasPrefix("/"), !rest.hasPrefix("?") { return base + "/" + rest }
        return base + rest
    }

    private func forward(_ bytes: ByteBuffer, end isEnd: Bool, context: ChannelHandlerContext) {
        switch state {
        case .pending(var body, _):
            state = .idle  // keeps `body` uniquely referenced while it grows
            if bytes.readableBytes > 0 { body.append(bytes) }
            state = .pending(body: body, ended: isEnd)
        case .forwarding(let upstream, _):
            if bytes.readableBytes > 0 {
                upstream.write(bytes)
                upstreamNeedsFlush = true
            }
            if isEnd {
                state = .forwarding(upstream, requestEnded: true)
                setTimeout(.upstreamRead, context: context)
            } else if !upstream.isWritable {
                // Back-pressure on uploads: the client waits while the upstream's socket is full.
                setClientReading(false, context: context)
            }
        case .draining, .idle, .tunnel:
            break
        }
    }

    /// Connects (or reuses a pooled connection); while the service is down or refuses, retries until the hold ends.
    /// `now`: the time, when the caller has just read it.
    private func connect(context: ChannelHandlerContext, now: NIODeadline? = nil) {
        guard case .pending = state, let destination = target else { return }
        // The upstream's address, read from the shared route (not a copy of its URL per request).
        if let backends = destination.backends {
            picked = backends.pick(destination.balance, pinned: pinnedPort, client: clientAddress, isUp: shared.availability.isUp)
            guard picked != nil else { return waitForService(destination.service, context: context) }
        } else if let service = destination.service, !shared.availability.isUp(service) {
            return waitForService(service, context: context)
        }
        let (host, port) = picked.map { ($0.backend.host, $0.backend.port) } ?? (destination.url.host, destination.url.port)
        let tls = destination.tls
        if let upstream = pool?.acquire(host: host, port: port, tls: tls) {
            attach(upstream, pooled: true, context: context, now: now)
            return
        }
        // Waiting for a new connection: stop reading the client meanwhile (back-pressure).
        setClientReading(false, context: context)
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        shared.connector.connect(
            host: host, port: port, tls: tls, timeout: .seconds(Int64(shared.settings.connectTimeout)), pool: shared.pool, on: context.eventLoop
        ) { result in
            let handler = loopBound.value
            guard let context = handler.context else { return }
            switch result {
            case .success(let upstream): handler.attach(upstream, pooled: false, context: context)
            case .failure(let error): handler.connectFailed(error, context: context)
            }
        }
    }

    /// The service is down (or has no instance ready): the request waits while the hold lasts, unless
    /// the service's next start (a restart delay, when it keeps failing) comes after the hold ends.
    private func waitForService(_ service: String?, context: ChannelHandlerContext) {
        let action = attempt.serviceDown(now: now, secondsUntilStart: service.flatMap(shared.availability.secondsUntilStart))
        if case .maintenance(let seconds?) = action { return maintenance(retryAfter: seconds, context: context) }
        setClientReading(false, context: context)
        carryOut(action, context: context)
    }

    private func connectFailed(_ error: any Error, context: ChannelHandlerContext) {
        guard case .pending = state else { return }
        let (counts, action) = attempt.connectFailed(now: now, instance: picked != nil) {
            target?.service.map(shared.availability.isUp) ?? true
        }
        if counts { measure { $0.upstreamFailed(slot: $1, ProxyMetrics.kind(of: error)) } }
        switch action {
        case .anotherInstance:
            if let failed = picked.take() {
                shared.availability.unreachable(failed)
                logError("warn", "connect() failed (\(error)) while connecting to instance \(failed.backend.instance); trying another")
            }
        case .badGateway:
            logError("error", "connect() failed (\(error)) while connecting to upstream")
        default:
            break
        }
        carryOut(action, context: context)
    }

    /// What the `attempt` decided.
    private func carryOut(_ action: UpstreamAttempt.Action, context: ChannelHandlerContext) {
        switch action {
        case .retry(let delay):
            let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.eventLoop.assumeIsolated().scheduleTask(in: delay) {
                let handler = loopBound.value
                guard let context = handler.context else { return }
                handler.connect(context: context)
            }
        case .anotherInstance:
            connect(context: context)
        case .maintenance(let retryAfter):
            maintenance(retryAfter: retryAfter, context: context)
        case .badGateway:
            respond(status: .badGateway, body: ProxyPages.badGateway, context: context)
        case .close:
            context.close(promise: nil)
        }
    }

    private func attach(_ upstream: UpstreamHandler, pooled: Bool, context: ChannelHandlerContext, now: NIODeadline? = nil) {
        guard case .pending(let body, let ended) = state, let head = forwardedHead else {
            upstream.release(reusable: false)
            return
        }
        if let traffic = picked?.traffic ?? target?.traffic {
            // Counted before the check: a drain that holds the service either holds this request
            // or waits for it.
            traffic.enter()
            guard picked?.takesRequests(isUp: shared.availability.isUp) ?? shared.availability.isUp(traffic.service) else {
                traffic.leave()
                upstream.release(reusable: true)
                connect(context: context)
                return
            }
            inFlight = traffic
        }
        endHold()
        attempt.sent(pooled: pooled)
        upstream.owner = self
        state = .forwarding(upstream, requestEnded: ended)
        upstream.expectResponse(toHead: request?.isHEAD ?? false, dechunk: request?.version == .http1_0, headBuffer: spareResponseHead.take())
        if body.isEmpty {
            // One pass down the pipeline instead of two for the usual request without a body.
            upstream.writeAndFlush(head)
        } else {
            upstream.write(head)
            for part in body { upstream.write(part) }
            upstream.flush()
        }
        if ended { setTimeout(.upstreamRead, context: context, now: now) }
        if upstream.isWritable { setClientReading(true, context: context) }
    }

    /// Toggles reading from the client only when it changes (each change is an `epoll_ctl`).
    private func setClientReading(_ reading: Bool, context: ChannelHandlerContext) {
        guard clientPaused == reading else { return }
        clientPaused = !reading
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: reading)
        // An HTTP/2 stream does not start reading again by itself when autoRead comes back on.
        if reading { context.read() }
    }

    // MARK: - Responses from the upstream (called by UpstreamHandler on the same event loop)

    func upstreamInformational(_ bytes: ByteBuffer) {
        guard let context, let request, request.version != .http1_0 else { return }
        context.write(wrapOutboundOut(.byteBuffer(bytes)), promise: nil)
    }

    /// The response head, with the body bytes that came in the same read: a small body goes out in
    /// the same buffer as the head (one pipeline write, and one `write` instead of `writev`). The
    /// head is `inout` so its bytes, referenced only here, grow in place.
    func upstreamHead(_ head: inout ResponseFramer.Head, body: ByteBuffer?, upstream: UpstreamHandler) {
        guard let context, let version = request?.version else { return }
        // A response complete in this read (the usual small one) goes out at once; the read
        // timeout keeps running for one held back.
        if attempt.idempotent, case .length(let count) = head.framing, count > (body?.readableBytes ?? 0), count <= Self.wholeResponseBytes {
            var whole = context.channel.allocator.buffer(capacity: count)
            if let body { whole.writeImmutableBuffer(body) }
            heldResponse = (head, whole)
            return
        }
        if timeouts.kind == .upstreamRead { setTimeout(.none, context: context) }
        send(&head, body: body, version: version, upstream: upstream, context: context)
    }

    private func send(
        _ head: inout ResponseFramer.Head, body: ByteBuffer?, version: HTTPVersion, upstream: UpstreamHandler, context: ChannelHandlerContext
    ) {
        responseStatus = head.status
        if let settings = entry?.site.compression, let request {
            do {
                // An HTTP/1.0 client learns where a compressed body ends when the connection does.
                if try compression.start(&head.bytes, status: head.status, framing: head.framing, request: request, settings: settings),
                    version == .http1_0
                {
                    keepAlive = false
                }
            } catch {
                upstreamBroken(error)
                return
            }
        }
        let connection: StaticString?
        if head.status == 101 {
            guard upgrade else {
                upstreamBroken(ResponseFramer.Failure(description: "upstream switched protocols unasked"))
                return
            }
            connection = nil
        } else {
            // A body that ends with the upstream connection, or chunks a 1.0 client cannot read, ends this one too.
            if head.framing == .untilClose || (head.framing == .chunked && version == .http1_0) { keepAlive = false }
            connection = !keepAlive ? "Connection: close\r\n" : version == .http1_0 ? "Connection: keep-alive\r\n" : nil
        }
        if head.hasURLFields {
            let publicHost = request?.host ?? entry?.site.hosts.first { $0 != "*" } ?? "localhost"
            head.bytes = HeaderRules.reverseRewrite(
                head.bytes, upstreamHost: upstream.host, upstreamPort: upstream.port, publicBase: "\(shared.scheme)://\(publicHost)")
        }
        if let hsts = entry?.site.hsts, shared.scheme == "https" { head.bytes.writeHeaderField("Strict-Transport-Security", hsts.headerValue) }
        if let picked, picked.backend.port != pinnedPort, case .stickyCookie(let name) = target?.balance, let service = target?.service {
            head.bytes.writeString(shared.availability.stickyCookie.setCookieLine(name: name, service: service, port: picked.backend.port))
        }
        let small = body.flatMap { $0.readableBytes <= ResponseFramer.smallBodyBytes && !compression.isActive ? $0 : nil }
        // The end of the head and a small body in one write into the buffer.
        head.bytes.writeHead(capacity: 24 + 2 + (small?.readableBytes ?? 0)) { writer in
            if let connection { writer.appendLiteral(connection) }
            writer.appendLiteral("\r\n")
            small?.withUnsafeReadableBytes { writer.append($0) }
        }
        if let small {
            responseBytes += small.readableBytes
            context.write(wrapOutboundOut(.byteBuffer(head.bytes)), promise: nil)
        } else {
            context.write(wrapOutboundOut(.byteBuffer(head.bytes)), promise: nil)
            if let body { upstreamBody(body, upstream: upstream) }
        }
        spareResponseHead = head.bytes
    }

    func upstreamBody(_ buffer: ByteBuffer, upstream: UpstreamHandler) {
        guard let context else { return }
        if heldResponse != nil {
            heldResponse?.body.writeImmutableBuffer(buffer)
            return
        }
        writeBody(buffer, context: context)
        // Back-pressure: a slow client stops the reads from the upstream until it catches up.
        if !context.channel.isWritable {
            // Paused before the flush: a flush that drains the socket reports writability at once.
            upstream.pauseReading()
            context.flush()
        }
    }

    func flushClient() {
        guard let context else { return }
        if compression.isActive { writeCompressed(context: context) { try $0.flush(allocator: $1) } }
        context.flush()
    }

    /// Body bytes to the client, through the compressor when the response is compressed.
    private func writeBody(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        guard compression.isActive else {
            responseBytes += buffer.readableBytes
            context.write(wrapOutboundOut(.byteBuffer(buffer)), promise: nil)
            return
        }
        writeCompressed(context: context) { try $0.compress(buffer, allocator: $1) }
    }

    /// What the compressor gives, written; a zlib failure (out of memory) cuts the response.
    private func writeCompressed(
        context: ChannelHandlerContext, _ step: (inout ResponseCompression, ByteBufferAllocator) throws -> ByteBuffer?
    ) {
        do {
            guard let bytes = try step(&compression, context.channel.allocator) else { return }
            responseBytes += bytes.readableBytes
            context.write(wrapOutboundOut(.byteBuffer(bytes)), promise: nil)
        } catch {
            logError("error", "compression failed (\(error))")
            compression.abandon()
            context.close(promise: nil)
        }
    }

    /// The end of a compressed body: what zlib still holds, and the last chunk.
    private func finishCompression(context: ChannelHandlerContext) {
        if compression.isActive { writeCompressed(context: context) { try $0.finish(allocator: $1) } }
    }

    func upstreamWritable() {
        guard let context, case .forwarding(_, false) = state else { return }
        setClientReading(true, context: context)
    }

    func upstreamEnd(upstream: UpstreamHandler, reusable: Bool) {
        guard let context else { return }
        if heldResponse != nil, var held = heldResponse.take(), let version = request?.version {
            if timeouts.kind == .upstreamRead { setTimeout(.none, context: context) }
            send(&held.head, body: held.body, version: version, upstream: upstream, context: context)
        }
        finishCompression(context: context)
        let requestDone: Bool
        if case .forwarding(_, let ended) = state { requestDone = ended } else { requestDone = false }
        upstream.release(reusable: reusable && requestDone)
        finish(context: context)
    }

    func upstreamFailed() {
        guard let context else { return }
        leftUpstream()
        if timeouts.kind == .upstreamRead { setTimeout(.none, context: context) }
        let pooled = attempt.onPooledConnection
        // A pooled connection closed before it answered is the upstream's keep-alive ending, not an error.
        if !pooled || responseStatus != 0 { measure { $0.upstreamFailed(slot: $1, .reset) } }
        // A fresh connection reset before any response: the instance is in trouble (a pooled one may
        // just have been closed by the upstream's keep-alive timeout).
        if responseStatus == 0, !pooled, let picked { shared.availability.unreachable(picked) }
        // The upstream died before answering, or in the middle of a response held back (a crash,
        // or a pooled connection it had closed): an idempotent request is sent again, held while
        // the service comes back.
        var requestSent = false
        if case .forwarding(_, true) = state, forwardedHead != nil { requestSent = true }
        let action = attempt.upstreamFailed(now: now, responseStarted: responseStatus != 0, resendable: requestSent)
        switch action {
        case .retry:
            state = .pending(body: [], ended: true)
        case .badGateway:
            logError("error", "upstream prematurely closed connection while reading response header from upstream")
        default:
            logError("error", "upstream prematurely closed connection while reading upstream")
        }
        carryOut(action, context: context)
    }

    /// The upstream's certificate was refused (or its TLS settings could not be loaded): a 502, not
    /// a retry, since another connection would be refused the same way.
    func upstreamHandshakeFailed(_ reason: String) {
        guard let context else { return }
        leftUpstream()
        logError("error", "upstream SSL handshake failed: \(reason) while SSL handshaking to upstream")
        respond(status: .badGateway, body: ProxyPages.badGateway, context: context)
    }

    /// The upstream's response was malformed (its connection is already closed).
    func upstreamBroken(_ error: any Error) {
        guard let context else { return }
        leftUpstream()
        measure { $0.upstreamFailed(slot: $1, .malformed) }
        logError("error", "\(error) while reading response header from upstream")
        if responseStatus == 0 || !isForwarding {
            state = .draining
            respond(status: .badGateway, body: ProxyPages.badGateway, context: context)
        } else {
            context.close(promise: nil)
        }
    }

    private var isForwarding: Bool {
        if case .forwarding = state { return true }
        return false
    }

    /// After a 101 the connection is no longer HTTP: both pipelines become a byte tunnel. Bytes the
    /// upstream sent after its 101 go to the client first; bytes the client sent after its request
    /// come out of the request decoder when it is removed, into the tunnel.
    func upstreamSwitched(leftover: ByteBuffer, upstream: UpstreamHandler) {
        guard let context, let upstreamContext = upstream.context else { return }
        // A tunnel lives as long as its client wants: a planned stop does not wait for it.
        leftUpstream()
        state = .tunnel
        setTimeout(.none, context: context)
        countRequest()
        measure { meter, slot in
            meter.tunnelOpened(slot: slot)
            context.channel.closeFuture.assumeIsolated().whenComplete { _ in meter.tunnelClosed(slot: slot) }
        }
        logAccess()
        upstream.owner = nil
        if leftover.readableBytes > 0 { context.write(wrapOutboundOut(.byteBuffer(leftover)), promise: nil) }
        context.flush()
        let (clientSide, upstreamSide) = TunnelHandler.pair()
        let client = context.pipeline.syncOperations
        let server = upstreamContext.pipeline.syncOperations
        do {
            try server.addHandler(upstreamSide)
            server.removeHandler(upstream, promise: nil)
            try client.addHandler(clientSide)
            client.removeHandler(context: context, promise: nil)
            if let decoder = try? client.handler(type: RequestDecoder.self) {
                client.removeHandler(decoder, promise: nil)
            }
        } catch {
            context.close(promise: nil)
            upstreamContext.close(promise: nil)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            if case .forwarding(let upstream, _) = state { upstream.resumeReading() }
            if file != nil { pumpFile(context: context) }
            if timeouts.kind == .send { setTimeout(.none, context: context) }
        } else if timeouts.kind == .none {
            setTimeout(.send, context: context)
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        file.take()?.close()
        compression.abandon()
        if case .forwarding(let upstream, _) = state { upstream.release(reusable: false) }
        leftUpstream()
        endHold()
        // A response cut off (by the client, or an upstream that died in its middle) still counts.
        if request != nil, responseStatus != 0 { countRequest() }
        state = .idle
        queued.removeAll()
        context.fireChannelInactive()
    }

    /// A request the decoder (or NIO's HTTP/2 codec) cannot parse: 400 (431 for an oversized head)
    /// when no response is under way, and the connection closed either way; other errors just close it.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parseError = error as? HTTPParserError, isIdle, queued.isEmpty else {
            context.close(promise: nil)
            return
        }
        let status: HTTPResponseStatus = parseError == .headerOverflow ? .requestHeaderFieldsTooLarge : .badRequest
        request = nil
        entry = nil
        keepAlive = false
        respond(status: status, body: ProxyPages.page(Int(status.code), status.reasonPhrase, "warden"), context: context)
    }

    // MARK: - Timeouts

    private func setTimeout(_ kind: ConnectionTimeouts.Kind, context: ChannelHandlerContext, now: NIODeadline? = nil) {
        if let deadline = timeouts.set(kind, now: now ?? self.now) { arm(at: deadline, context: context) }
    }

    private func arm(at when: NIODeadline, context: ChannelHandlerContext) {
        timer?.cancel()
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: when) { loopBound.value.timerFired() }
    }

    private func timerFired() {
        timer = nil
        guard let context else { return }
        switch timeouts.fired(now: now) {
        case .nothing:
            break
        case .early(let deadline):
            arm(at: deadline, context: context)
        case .expired(.upstreamRead):
            guard case .forwarding(let upstream, _) = state, responseStatus == 0 else { return }
            logError("error", "upstream timed out (110: Connection timed out) while reading response header from upstream")
            measure { $0.upstreamFailed(slot: $1, .timeout) }
            upstream.release(reusable: false)
            respond(status: .gatewayTimeout, body: ProxyPages.gatewayTimeout, context: context)
        case .expired:
            context.close(promise: nil)
        }
    }

    // MARK: - Local answers

    private func maintenance(retryAfter: Int? = nil, context: ChannelHandlerContext) {
        guard let entry else { return }
        var headers = HTTPHeaders()
        headers.add(name: "Retry-After", value: String(max(1, retryAfter ?? entry.site.hold)))
        if let service = target?.service, !shared.availability.isUp(service) {
            logError("warn", "service \"\(service)\" is not running; answered with the maintenance page")
        }
        measure { $0.maintenanceAnswered(slot: $1) }
        respond(status: .serviceUnavailable, body: entry.maintenancePage ?? ProxyPages.defaultMaintenance, extraHeaders: headers, context: context)
    }

    func respond(status: HTTPResponseStatus, body: [UInt8], extraHeaders: HTTPHeaders = HTTPHeaders(), context: ChannelHandlerContext) {
        if case .forwarding(let upstream, _) = state { upstream.release(reusable: false) }
        if case .pending(_, let ended) = state, !ended { keepAlive = false }
        state = .draining
        var headers = extraHeaders
        headers.add(name: "Content-Type", value: "text/html; charset=utf-8")
        headers.add(name: "Content-Length", value: String(body.count))
        headers.add(name: "Server", value: "warden")
        if let hsts = entry?.site.hsts, shared.scheme == "https" { headers.add(name: "Strict-Transport-Security", value: hsts.headerValue) }
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        responseStatus = Int(status.code)
        responseBytes = body.count
        var bytes = context.channel.allocator.buffer(capacity: 256 + body.count)
        HeadEncoding.response(status, headers, into: &bytes)
        if request?.isHEAD != true { bytes.writeBytes(body) }
        context.write(wrapOutboundOut(.byteBuffer(bytes)), promise: nil)
        finish(context: context)
    }

    private func writeStatic(_ response: StaticFiles.Response, context: ChannelHandlerContext) {
        var headers = response.headers
        if let coding = response.coding, let request, let settings = entry?.site.compression {
            do {
                let size = if case .file(_, let range) = response.body { range.count } else { 0 }
                try compression.begin(coding, level: settings.level, expectedBytes: size, chunkedOutput: request.version != .http1_0)
            } catch {
                logError("error", "compression failed (\(error))")
                if case .file(let handle, _) = response.body { try? handle.close() }
                context.close(promise: nil)
                return
            }
            if request.version == .http1_0 { keepAlive = false }
        }
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        var head = context.channel.allocator.buffer(capacity: 512)
        HeadEncoding.response(response.status, headers, into: &head)
        let sending = StaticFiles.Sending(
            response.body, isHEAD: request?.isHEAD == true, fileRegions: shared.sendsFileRegions && !compression.isActive)
        switch sending {
        case .inline(let bytes):
            responseBytes = bytes.count
            head.writeBytes(bytes)
            context.write(wrapOutboundOut(.byteBuffer(head)), promise: nil)
        case .pieces(let handle, let range):
            responseBytes = 0  // counted as the pieces go out
            context.write(wrapOutboundOut(.byteBuffer(head)), promise: nil)
            file = StaticFiles.FilePieces(handle, range)
            pumpFile(context: context)
            return
        case .region(let handle, let range):
            responseBytes = range.count
            context.write(wrapOutboundOut(.byteBuffer(head)), promise: nil)
            let region = FileRegion(fileHandle: handle, readerIndex: range.lowerBound, endIndex: range.upperBound)
            context.write(wrapOutboundOut(.fileRegion(region))).assumeIsolated().whenComplete { _ in try? handle.close() }
        case .headOnly(let handle):
            try? handle?.close()
            context.write(wrapOutboundOut(.byteBuffer(head)), promise: nil)
        }
        finish(context: context)
    }

    /// Writes the next pieces of `file` while the client keeps up; the rest when it is writable again.
    private func pumpFile(context: ChannelHandlerContext) {
        guard var pieces = file else { return }
        while true {
            switch pieces.next(writable: context.channel.isWritable, allocator: context.channel.allocator) {
            case .piece(let piece):
                writeBody(piece, context: context)
            case .wait:
                file = pieces
                context.flush()
                return
            case .done:
                file = nil
                finishCompression(context: context)
                finish(context: context)
                return
            case .failed:
                file = nil
                context.close(promise: nil)
                return
            }
        }
    }

    /// Ends the response; the connection then waits for the next request, or closes.
    private func finish(context: ChannelHandlerContext) {
        compression.abandon()
        leftUpstream()
        let now = self.now
        endHold(now: now)
        countRequest(now: now)
        logAccess()
        request = nil
        spareUpstreamHead = forwardedHead.take()
        state = .idle
        if keepAlive {
            context.flush()
            setTimeout(.idle, context: context, now: now)
            setClientReading(true, context: context)
            processQueue(context: context)
        } else {
            queued.removeAll()
            let flushed = context.eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(wrapOutboundOut(.byteBuffer(ByteBuffer())), promise: flushed)
            flushed.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    /// The request is no longer waiting for its upstream: answered, failed or abandoned.
    private func leftUpstream() {
        inFlight.take()?.leave()
        if heldResponse != nil { heldResponse = nil }
    }

    // MARK: - Metrics

    /// Counts into this loop's metrics, in the request's series.
    @inline(__always)
    private func measure(_ count: (ProxyMetrics.Local, Int) -> Void) {
        guard let meter else { return }
        count(meter, series.index(in: meter, entry: entry, route: route, upstream: target, instance: picked))
    }

    private func countRequest(now: NIODeadline? = nil) {
        guard let request else { return }
        let nanoseconds = ((now ?? self.now) - requestStarted).nanoseconds
        measure {
            $0.requestEnded(
                slot: $1, method: request.method, status: responseStatus, nanoseconds: nanoseconds, requestBytes: requestBodyBytes,
                responseBytes: responseBytes, reused: attempt.onPooledConnection)
        }
    }

    /// A held request goes upstream at last, is answered, or is given up by its client.
    private func endHold(now: NIODeadline? = nil) {
        guard attempt.holdStarted != nil, let nanoseconds = attempt.endHold(now: now ?? self.now) else { return }
        measure { $0.held(slot: $1, nanoseconds: nanoseconds) }
    }

    // MARK: - Logs

    private func logAccess() {
        guard let log = entry?.accessLog, let request else { return }
        log.writeAccess(
            client: clientAddress, request: "\(request.method.rawValue) \(request.uri) HTTP/\(request.version.major).\(request.version.minor)",
            status: responseStatus, bytes: responseBytes, referer: request.field("referer"), agent: request.field("user-agent"))
    }

    private func logError(_ level: String, _ message: String) {
        guard let entry, let log = entry.errorLog else { return }
        var details = [("client", clientAddress), ("server", entry.site.hosts.first { $0 != "*" } ?? entry.site.name)]
        if let request {
            details.append(("request", "\"\(request.method.rawValue) \(request.uri) HTTP/\(request.version.major).\(request.version.minor)\""))
        }
        if let target { details.append(("upstream", "\"\(target.url)\"")) }
        if let host = request?.host { details.append(("host", "\"\(host)\"")) }
        log.writeError(level: level, connection: number, message: message, details: details)
    }
}

@available(*, unavailable)
extension ProxyHandler: Sendable {}

