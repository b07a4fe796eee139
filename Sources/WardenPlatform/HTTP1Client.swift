import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One HTTP/1.1 request on a connection of its own, closed after the answer. The connection probe,
/// the CLI's control client, webhook posts and the ACME client all ask this of a server; they differ
/// only in what they send, trust and keep.
public struct HTTP1Request: Sendable {
    public enum Endpoint: Sendable, Hashable {
        case tcp(host: String, port: Int)
        case unix(String)
    }

    public var endpoint: Endpoint
    public var method: HTTPMethod
    /// Path and query.
    public var path: String
    /// The caller's headers (Host first); `Content-Length` and `Connection: close` are added.
    public var headers: HTTPHeaders
    public var body: [UInt8]?
    /// TLS from the first byte with this context, naming `serverName` (nil for an address: TLS forbids it).
    public var tls: NIOSSLContext?
    public var serverName: String?
    /// The numeric local address to connect from.
    public var source: String?
    /// Covers the connection and the whole answer.
    public var timeout: Duration
    /// The body bytes kept; beyond them the answer fails (`bodyTooLarge`) unless `readPastLimit`, which
    /// reads on so that `digest` covers the whole body.
    public var bodyLimit: Int
    public var readPastLimit: Bool
    public var digest: HashKind?

    public init(
        endpoint: Endpoint, method: HTTPMethod = .GET, path: String, headers: HTTPHeaders = [:], body: [UInt8]? = nil,
        tls: NIOSSLContext? = nil, serverName: String? = nil, source: String? = nil, timeout: Duration, bodyLimit: Int,
        readPastLimit: Bool = false, digest: HashKind? = nil
    ) {
        self.endpoint = endpoint
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.tls = tls
        self.serverName = serverName
        self.source = source
        self.timeout = timeout
        self.bodyLimit = bodyLimit
        self.readPastLimit = readPastLimit
        self.digest = digest
    }
}

public struct HTTP1Response: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    /// Up to the request's `bodyLimit` bytes.
    public var body: [UInt8]
    /// The server's TLS certificate, read when the answer's head arrived.
    public var certificate: NIOSSLCertificate?
    /// The whole body's digest in lowercase hex, when the request asked for one.
    public var digest: String?
}

public enum HTTP1ClientError: Error {
    /// No connection (or the local address could not be taken); the socket's or TLS's error.
    case cannotConnect(any Error)
    /// No whole answer within the request's timeout.
    case timedOut
    /// Connected, then the connection failed (TLS, a reset) or closed before the whole answer.
    case broken((any Error)?)
    case bodyTooLarge(limit: Int)
}

public struct HTTP1Client: Sendable {
    private let chosenGroup: (any EventLoopGroup)?

    /// Without a group, NIO's shared one.
    public init(group: (any EventLoopGroup)? = nil) {
        chosenGroup = group
    }

    public func send(_ request: HTTP1Request) async throws(HTTP1ClientError) -> HTTP1Response {
        let group = chosenGroup ?? MultiThreadedEventLoopGroup.singleton
        let eventLoop = group.next()
        let promise = eventLoop.makePromise(of: HTTP1Response.self)
        let channel: any Channel
        do {
            let bootstrap = try ClientBootstrap.outgoing(group: eventLoop, timeout: request.timeout, source: request.source).channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let operations = channel.pipeline.syncOperations
                    if let tls = request.tls {
                        try operations.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: request.serverName))
                    }
                    try operations.addHTTPClientHandlers()
                    try operations.addHandler(HTTP1ResponseCollector(request: request, promise: promise))
                }
            }
            switch request.endpoint {
            case .tcp(let host, let port): channel = try await bootstrap.connect(host: host, port: port).get()
            case .unix(let path): channel = try await bootstrap.connect(unixDomainSocketPath: path).get()
            }
        } catch {
            promise.fail(error)
            throw .cannotConnect(error)
        }
        let timer = channel.eventLoop.scheduleTask(in: TimeAmount(request.timeout)) {
            promise.fail(HTTP1ClientError.timedOut)
            channel.close(promise: nil)
        }
        defer {
            timer.cancel()
            channel.close(promise: nil)
        }
        var headers = request.headers
        headers.replaceOrAdd(name: "Connection", value: "close")
        if let body = request.body { headers.replaceOrAdd(name: "Content-Length", value: String(body.count)) }
        let head = HTTPRequestHead(version: .http1_1, method: request.method, uri: request.path, headers: headers)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body = request.body { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        do {
            return try await promise.futureResult.get()
        } catch let error as HTTP1ClientError {
            throw error
        } catch {
            throw .broken(error)
        }
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        self = .nanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }
}

extension ClientBootstrap {
    /// A client connection that takes at most `timeout` to connect, going out from the numeric local
    /// address `source` when one is given (monit's `address`).
    static func outgoing(group: any EventLoopGroup, timeout: Duration, source: String?) throws -> ClientBootstrap {
        let bootstrap = ClientBootstrap(group: group).connectTimeout(TimeAmount(timeout))
        guard let source else { return bootstrap }
        return bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0))
    }
}

/// Gathers one answer; one that does not arrive whole fails the promise.
private final class HTTP1ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let request: HTTP1Request
    private let promise: EventLoopPromise<HTTP1Response>
    private var response = HTTP1Response(status: 0, headers: [:], body: [])
    private var digester: Digester?

    init(request: HTTP1Request, promise: EventLoopPromise<HTTP1Response>) {
        self.request = request
        self.promise = promise
        digester = request.digest.map(Digester.init)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            response.status = Int(head.status.code)
            response.headers = head.headers
            // Read now: the TLS handler leaves the pipeline when the server closes after its answer.
            if let tls = try? context.pipeline.syncOperations.handler(type: NIOSSLHandler.self) {
                response.certificate = tls.peerCertificate
            }
        case .body(let buffer):
            buffer.withUnsafeReadableBytes { digester?.update($0) }
            let room = request.bodyLimit - response.body.count
            if buffer.readableBytes > room, !request.readPastLimit {
                promise.fail(HTTP1ClientError.bodyTooLarge(limit: request.bodyLimit))
                context.close(promise: nil)
                return
            }
            response.body += buffer.readableBytesView.prefix(max(0, room))
        case .end:
            response.digest = digester?.hex
            promise.succeed(response)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(HTTP1ClientError.broken(nil))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(HTTP1ClientError.broken(error))
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension HTTP1ResponseCollector: Sendable {}
