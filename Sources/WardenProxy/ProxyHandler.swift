import NIOCore
import NIOHTTP1
import NIOPosix
import WardenConfig

#if canImport(Glibc)
import Glibc
#endif

/// What every connection of one proxy shares.
struct ProxyContext: Sendable {
    let settings: ProxySettings
    let router: SiteRouter
    let pool: UpstreamPool
    let availability: ServiceAvailability
    let accessLogs: [String: LogFile]
    let maintenancePages: [String: [UInt8]]
    var scheme: String
}

/// One client connection: routes each request to an upstream (streaming both ways, with
/// back-pressure), a directory, or a page of its own; holds requests while the app restarts.
///
/// Not handled here: HTTP parsing errors (NIO's `HTTPServerProtocolErrorHandler` answers 400 and
/// closes) and pipelining (NIO's `HTTPServerPipelineHandler` serializes requests).
final class ProxyHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    enum State {
        case idle
        /// Waiting for the service or a connection; request parts are kept meanwhile.
        case pending(deadline: NIODeadline, parts: [HTTPClientRequestPart], ended: Bool)
        case forwarding(UpstreamHandler, requestEnded: Bool)
        /// Answered locally (static file, error page); the rest of the request body is dropped.
        case draining
    }

    private let shared: ProxyContext
    private var state = State.idle
    private var request: HTTPRequestHead?
    private var route: (site: Site, upstream: HTTPURL, service: String?)?
    private var keepAlive = true
    private var responseStatus = 0
    private var responseBytes = 0
    private var clientAddress = "-"
    private var readTimeout: Scheduled<Void>?
    private weak var context: ChannelHandlerContext?
    /// The head sent upstream, kept so an idempotent request can be sent again on a new connection.
    private var forwardedHead: HTTPRequestHead?
    private var retries = 0

    init(shared: ProxyContext) {
        self.shared = shared
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        clientAddress = context.channel.remoteAddress?.ipAddress ?? "-"
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            start(head, context: context)
        case .body(let buffer):
            forward(.body(.byteBuffer(buffer)), context: context)
        case .end(let trailers):
            forward(.end(trailers), context: context)
        }
    }

    // MARK: - Requests

    private func start(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        request = head
        keepAlive = head.isKeepAlive
        responseStatus = 0
        responseBytes = 0
        route = nil
        if let problem = Self.reject(head, maximumBody: shared.settings.maximumBodyBytes) {
            keepAlive = false
            respond(status: problem, body: ProxyPages.page(Int(problem.code), problem.reasonPhrase, "warden"), context: context)
            return
        }
        guard let site = shared.router.site(forHost: head.headers.first(name: "Host")),
            let route = SiteRouter.route(in: site, path: Self.path(of: head.uri))
        else {
            respond(status: .notFound, body: ProxyPages.notFound, context: context)
            return
        }
        switch route.target {
        case .directory(let directory):
            state = .draining
            let response = StaticFiles.response(for: head, prefix: route.prefix, root: directory)
            responseStatus = Int(response.status.code)
            writeStatic(response, context: context)
        case .upstream(let url, let service):
            self.route = (site, url, service)
            if shared.availability.inMaintenance(site.name) {
                maintenance(site, context: context)
                return
            }
            let forwarded = Self.upstreamHead(head, client: clientAddress, scheme: shared.scheme)
            forwardedHead = forwarded
            retries = 0
            state = .pending(deadline: .now() + .seconds(Int64(site.hold)), parts: [.head(forwarded)], ended: false)
            connect(context: context)
        }
    }

    private func forward(_ part: HTTPClientRequestPart, context: ChannelHandlerContext) {
        let isEnd: Bool
        if case .end = part { isEnd = true } else { isEnd = false }
        switch state {
        case .pending(let deadline, var parts, _):
            parts.append(part)
            state = .pending(deadline: deadline, parts: parts, ended: isEnd)
        case .forwarding(let upstream, _):
            upstream.send(part, flush: true)
            if isEnd {
                state = .forwarding(upstream, requestEnded: true)
                armReadTimeout(context: context)
            }
        case .draining, .idle:
            break
        }
    }

    /// Connects (or reuses a pooled connection); while the service is down or refuses, retries until the hold ends.
    private func connect(context: ChannelHandlerContext) {
        guard case .pending(let deadline, _, _) = state, let route else { return }
        if let service = route.service, !shared.availability.isUp(service) {
            setClientReading(false, context: context)
            if NIODeadline.now() < deadline {
                retry(after: .milliseconds(25), context: context)
            } else {
                maintenance(route.site, context: context)
            }
            return
        }
        let host = route.upstream.host
        let port = route.upstream.port
        let pool = shared.pool
        if let channel = shared.pool.acquire(on: context.eventLoop, host: host, port: port),
            let upstream = try? channel.pipeline.syncOperations.handler(type: UpstreamHandler.self)
        {
            attach(upstream, context: context)
            return
        }
        // Waiting for a new connection: stop reading the client meanwhile (back-pressure).
        setClientReading(false, context: context)
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        ClientBootstrap(group: context.eventLoop)
            .connectTimeout(.seconds(Int64(shared.settings.connectTimeout)))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(UpstreamHandler(host: host, port: port, pool: pool))
                }
            }
            .connect(host: host, port: port)
            .assumeIsolated()
            .whenComplete { result in
                let handler = loopBound.value
                guard let context = handler.context else { return }
                switch result {
                case .success(let channel):
                    guard let upstream = try? channel.pipeline.syncOperations.handler(type: UpstreamHandler.self) else {
                        channel.close(promise: nil)
                        return
                    }
                    handler.attach(upstream, context: context)
                case .failure:
                    if case .pending(let deadline, _, _) = handler.state, route.site.hold > 0, NIODeadline.now() < deadline {
                        handler.retry(after: .milliseconds(25), context: context)
                    } else if route.service.map({ !handler.shared.availability.isUp($0) }) == true {
                        handler.maintenance(route.site, context: context)
                    } else {
                        handler.respond(status: .badGateway, body: ProxyPages.badGateway, context: context)
                    }
                }
            }
    }

    private func retry(after delay: TimeAmount, context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.assumeIsolated().scheduleTask(in: delay) {
            let handler = loopBound.value
            guard let context = handler.context else { return }
            handler.connect(context: context)
        }
    }

    private func attach(_ upstream: UpstreamHandler, context: ChannelHandlerContext) {
        guard case .pending(_, let parts, let ended) = state else {
            upstream.release(reusable: false)
            return
        }
        upstream.owner = self
        state = .forwarding(upstream, requestEnded: ended)
        for (index, part) in parts.enumerated() {
            upstream.send(part, flush: index == parts.count - 1)
        }
        if ended { armReadTimeout(context: context) }
        setClientReading(true, context: context)
    }

    private var clientPaused = false

    /// Toggles reading from the client only when it changes (an option set per request costs).
    private func setClientReading(_ reading: Bool, context: ChannelHandlerContext) {
        guard clientPaused == reading else { return }
        clientPaused = !reading
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: reading)
    }

    private func armReadTimeout(context: ChannelHandlerContext) {
        readTimeout?.cancel()
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        readTimeout = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(Int64(shared.settings.readTimeout))) {
            let handler = loopBound.value
            guard let context = handler.context, case .forwarding(let upstream, _) = handler.state, handler.responseStatus == 0 else { return }
            upstream.release(reusable: false)
            handler.respond(status: .gatewayTimeout, body: ProxyPages.gatewayTimeout, context: context)
        }
    }

    // MARK: - Responses from the upstream (called by UpstreamHandler on the same event loop)

    func upstreamHead(_ head: HTTPResponseHead) {
        guard let context else { return }
        readTimeout?.cancel()
        var headers = Self.withoutHopByHop(head.headers)
        if let route, let request {
            let publicHost = request.headers.first(name: "Host") ?? route.site.hosts.first ?? "localhost"
            for name in ["Location", "Content-Location", "Refresh"] {
                guard let value = headers.first(name: name) else { continue }
                headers.replaceOrAdd(name: name, value: Self.reverseRewrite(value, upstream: route.upstream, publicBase: "\(shared.scheme)://\(publicHost)"))
            }
        }
        if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
        responseStatus = Int(head.status.code)
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request?.version ?? .http1_1, status: head.status, headers: headers))), promise: nil)
    }

    func upstreamBody(_ buffer: ByteBuffer, upstream: UpstreamHandler) {
        guard let context else { return }
        responseBytes += buffer.readableBytes
        context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        // Back-pressure: a slow client stops the reads from the upstream until it catches up.
        if !context.channel.isWritable { upstream.pauseReading() }
    }

    func upstreamEnd(upstream: UpstreamHandler, reusable: Bool) {
        guard let context else { return }
        let requestDone: Bool
        if case .forwarding(_, let ended) = state { requestDone = ended } else { requestDone = false }
        upstream.release(reusable: reusable && requestDone)
        finish(context: context)
    }

    func upstreamFailed() {
        guard let context else { return }
        readTimeout?.cancel()
        // The upstream died before answering (a crash, or a pooled connection it had closed): an
        // idempotent request without a body is sent again, held while the service comes back.
        if responseStatus == 0, case .forwarding(_, true) = state, let head = forwardedHead, let route,
            head.method == .GET || head.method == .HEAD, retries < 3
        {
            retries += 1
            state = .pending(deadline: .now() + .seconds(Int64(max(route.site.hold, 1))), parts: [.head(head), .end(nil)], ended: true)
            retry(after: .milliseconds(10), context: context)
            return
        }
        if responseStatus == 0 {
            respond(status: .badGateway, body: ProxyPages.badGateway, context: context)
        } else {
            context.close(promise: nil)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, case .forwarding(let upstream, _) = state { upstream.resumeReading() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        readTimeout?.cancel()
        if case .forwarding(let upstream, _) = state { upstream.release(reusable: false) }
        state = .idle
        context.fireChannelInactive()
    }

    // MARK: - Local answers

    private func maintenance(_ site: Site, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Retry-After", value: String(max(1, site.hold)))
        let page = shared.maintenancePages[site.name] ?? ProxyPages.defaultMaintenance
        respond(status: .serviceUnavailable, body: page, extraHeaders: headers, context: context)
    }

    func respond(status: HTTPResponseStatus, body: [UInt8], extraHeaders: HTTPHeaders = HTTPHeaders(), context: ChannelHandlerContext) {
        readTimeout?.cancel()
        if case .forwarding(let upstream, _) = state { upstream.release(reusable: false) }
        if case .pending(_, _, let ended) = state, !ended { keepAlive = false }
        state = .draining
        var headers = extraHeaders
        headers.add(name: "Content-Type", value: "text/html; charset=utf-8")
        headers.add(name: "Content-Length", value: String(body.count))
        headers.add(name: "Server", value: "warden")
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        responseStatus = Int(status.code)
        responseBytes = body.count
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request?.version ?? .http1_1, status: status, headers: headers))), promise: nil)
        if request?.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        setClientReading(true, context: context)
        finish(context: context)
    }

    private func writeStatic(_ response: StaticFiles.Response, context: ChannelHandlerContext) {
        var headers = response.headers
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request?.version ?? .http1_1, status: response.status, headers: headers))), promise: nil)
        switch response.body {
        case .bytes(let bytes) where request?.method != .HEAD:
            responseBytes = bytes.count
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: bytes)))), promise: nil)
        case .file(let handle, let range) where request?.method != .HEAD:
            responseBytes = range.count
            let region = FileRegion(fileHandle: handle, readerIndex: range.lowerBound, endIndex: range.upperBound)
            context.write(wrapOutboundOut(.body(.fileRegion(region)))).assumeIsolated().whenComplete { _ in try? handle.close() }
            finish(context: context)
            return
        case .file(let handle, _):
            try? handle.close()
        default:
            break
        }
        finish(context: context)
    }

    private func finish(context: ChannelHandlerContext) {
        logAccess()
        let close = !keepAlive
        let promise: EventLoopPromise<Void>? = close ? context.eventLoop.makePromise() : nil
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: promise)
        if let promise {
            promise.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
        if case .draining = state { state = .idle } else if case .forwarding = state { state = .idle }
    }

    private func logAccess() {
        guard let request, let site = route?.site ?? shared.router.site(forHost: request.headers.first(name: "Host")),
            let log = shared.accessLogs[site.name]
        else { return }
        log.write(
            LogFile.combined(
                client: clientAddress, time: time(nil), request: "\(request.method.rawValue) \(request.uri) HTTP/\(request.version.major).\(request.version.minor)",
                status: responseStatus, bytes: responseBytes, referer: request.headers.first(name: "Referer"),
                agent: request.headers.first(name: "User-Agent")))
    }

    // MARK: - Header rules

    /// Requests that must not reach an upstream: smuggling attempts and oversized parts.
    static func reject(_ head: HTTPRequestHead, maximumBody: Int) -> HTTPResponseStatus? {
        if head.uri.utf8.count > 8192 { return .uriTooLong }
        if head.headers.count > 100 || head.headers.reduce(0, { $0 + $1.name.utf8.count + $1.value.utf8.count }) > 32768 {
            return .requestHeaderFieldsTooLarge
        }
        let lengths = head.headers[canonicalForm: "Content-Length"]
        let encodings = head.headers[canonicalForm: "Transfer-Encoding"]
        if lengths.count > 1 || (!lengths.isEmpty && !encodings.isEmpty) { return .badRequest }
        if !encodings.isEmpty, encodings.map({ $0.lowercased() }) != ["chunked"] { return .badRequest }
        if let length = lengths.first {
            guard let value = Int(length), value >= 0 else { return .badRequest }
            if value > maximumBody { return .payloadTooLarge }
        }
        for (name, value) in head.headers where name.contains(where: { $0 == "\r" || $0 == "\n" }) || value.contains(where: { $0 == "\r" || $0 == "\n" }) {
            return .badRequest
        }
        return nil
    }

    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
        "transfer-encoding", "upgrade", "proxy-connection",
    ]

    static func withoutHopByHop(_ headers: HTTPHeaders) -> HTTPHeaders {
        let named = Set(headers[canonicalForm: "Connection"].map { $0.lowercased() })
        var result = HTTPHeaders()
        for (name, value) in headers where !hopByHop.contains(name.lowercased()) && !named.contains(name.lowercased()) {
            result.add(name: name, value: value)
        }
        return result
    }

    /// The request as the upstream gets it: Host preserved, X-Forwarded-*, no hop-by-hop headers.
    static func upstreamHead(_ head: HTTPRequestHead, client: String, scheme: String) -> HTTPRequestHead {
        var headers = withoutHopByHop(head.headers)
        let forwardedFor = head.headers.first(name: "X-Forwarded-For").map { "\($0), \(client)" } ?? client
        headers.replaceOrAdd(name: "X-Forwarded-For", value: forwardedFor)
        headers.replaceOrAdd(name: "X-Real-IP", value: client)
        headers.replaceOrAdd(name: "X-Forwarded-Proto", value: scheme)
        if let host = head.headers.first(name: "Host") { headers.replaceOrAdd(name: "X-Forwarded-Host", value: host) }
        if head.headers.first(name: "Transfer-Encoding") != nil { headers.add(name: "Transfer-Encoding", value: "chunked") }
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: head.uri, headers: headers)
    }

    /// ProxyPassReverse: an absolute URL that points at the upstream points at the public host instead.
    static func reverseRewrite(_ value: String, upstream: HTTPURL, publicBase: String) -> String {
        let bases = ["http://\(upstream.host):\(upstream.port)", upstream.port == 80 ? "http://\(upstream.host)" : nil].compactMap { $0 }
        for base in bases {
            if let range = value.firstRange(of: base) {
                return String(value[..<range.lowerBound]) + publicBase + String(value[range.upperBound...])
            }
        }
        return value
    }

    static func path(of uri: String) -> String {
        String(uri.prefix { $0 != "?" })
    }
}

@available(*, unavailable)
extension ProxyHandler: Sendable {}

/// One upstream connection: writes the request parts, hands the response to its owner, and goes back
/// to the pool when both sides agree to keep it alive.
final class UpstreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    let host: String
    let port: Int
    var owner: ProxyHandler?
    private var context: ChannelHandlerContext?
    private var keepAlive = true
    private let pool: UpstreamPool

    init(host: String, port: Int, pool: UpstreamPool) {
        self.host = host
        self.port = port
        self.pool = pool
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func send(_ part: HTTPClientRequestPart, flush: Bool) {
        guard let context else { return }
        if case .head(let head) = part { keepAlive = head.isKeepAlive }
        if flush {
            context.writeAndFlush(wrapOutboundOut(part), promise: nil)
        } else {
            context.write(wrapOutboundOut(part), promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            keepAlive = keepAlive && head.isKeepAlive
            owner?.upstreamHead(head)
        case .body(let buffer):
            owner?.upstreamBody(buffer, upstream: self)
        case .end:
            let owner = self.owner
            owner?.upstreamEnd(upstream: self, reusable: keepAlive)
        }
    }

    private var paused = false

    func pauseReading() {
        guard !paused else { return }
        paused = true
        try? context?.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
    }

    func resumeReading() {
        guard paused else { return }
        paused = false
        try? context?.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
    }

    /// Detaches from the client; returns to `pool` when reusable, else closes.
    func release(reusable: Bool) {
        owner = nil
        guard let context else { return }
        resumeReading()
        if reusable {
            pool.release(context.channel, host: host, port: port)
        } else {
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let owner = self.owner
        self.owner = nil
        owner?.upstreamFailed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension UpstreamHandler: Sendable {}
