import NIOCore
import NIOHTTP1
import NIOPosix

/// What one connection test saw.
public struct ProbeResult: Sendable, Equatable {
    public var succeeded: Bool
    /// Why it failed, in monit's words where it has them.
    public var message: String
    public var responseTime: Duration
    public var status: Int?

    public init(succeeded: Bool, message: String, responseTime: Duration, status: Int? = nil) {
        self.succeeded = succeeded
        self.message = message
        self.responseTime = responseTime
        self.status = status
    }
}

/// An HTTP request to make for `if failed url …` / `protocol http`.
public struct HTTPProbeRequest: Sendable {
    public var host: String
    public var port: Int
    public var path: String
    public var hostHeader: String
    public var basicAuthorization: String?
    public var timeout: Duration
    public var bodyLimit: Int

    public init(host: String, port: Int, path: String, hostHeader: String, basicAuthorization: String? = nil, timeout: Duration, bodyLimit: Int) {
        self.host = host
        self.port = port
        self.path = path
        self.hostHeader = hostHeader
        self.basicAuthorization = basicAuthorization
        self.timeout = timeout
        self.bodyLimit = bodyLimit
    }
}

/// Connection tests on SwiftNIO: a plain TCP/unix connect, or an HTTP/1.1 GET whose status and body
/// the caller judges. The timeout covers connect and read, as in monit.
public struct ConnectionProbe: Sendable {
    private let chosenGroup: (any EventLoopGroup)?

    /// Without a group, NIO's shared one, started on the first test: a daemon whose checks make no
    /// connections never starts its threads.
    public init(group: (any EventLoopGroup)? = nil) {
        chosenGroup = group
    }

    private var group: any EventLoopGroup { chosenGroup ?? MultiThreadedEventLoopGroup.singleton }

    public func connect(host: String, port: Int, timeout: Duration) async -> ProbeResult {
        let started = ContinuousClock.now
        do {
            let channel = try await ClientBootstrap(group: group)
                .connectTimeout(Self.timeAmount(timeout))
                .connect(host: host, port: port).get()
            try? await channel.close()
            return ProbeResult(succeeded: true, message: "connection succeeded", responseTime: .now - started, status: nil)
        } catch {
            return ProbeResult(
                succeeded: false, message: "cannot connect to [\(host)]:\(port) -- \(Self.describe(error))",
                responseTime: .now - started, status: nil)
        }
    }

    public func connect(unixSocket path: String, timeout: Duration) async -> ProbeResult {
        let started = ContinuousClock.now
        do {
            let channel = try await ClientBootstrap(group: group).connect(unixDomainSocketPath: path).get()
            try? await channel.close()
            return ProbeResult(succeeded: true, message: "connection succeeded", responseTime: .now - started, status: nil)
        } catch {
            return ProbeResult(
                succeeded: false, message: "cannot connect to unix socket \(path) -- \(Self.describe(error))",
                responseTime: .now - started, status: nil)
        }
    }

    /// Sends `GET path` and returns the status and up to `bodyLimit` bytes of body.
    public func http(_ request: HTTPProbeRequest) async -> (ProbeResult, body: String) {
        let started = ContinuousClock.now
        let promise = group.next().makePromise(of: (Int, [UInt8]).self)
        let timeout = Self.timeAmount(request.timeout)
        do {
            let channel = try await ClientBootstrap(group: group)
                .connectTimeout(timeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(
                            HTTPProbeHandler(request: request, promise: promise))
                    }
                }
                .connect(host: request.host, port: request.port).get()
            let deadline = channel.eventLoop.scheduleTask(in: timeout) {
                promise.fail(ProbeTimeout())
            }
            defer {
                deadline.cancel()
                channel.close(promise: nil)
            }
            let (status, body) = try await promise.futureResult.get()
            let text = String(decoding: body, as: UTF8.self)
            return (ProbeResult(succeeded: true, message: "HTTP status \(status)", responseTime: .now - started, status: status), text)
        } catch {
            promise.fail(error)
            let message: String
            if error is ProbeTimeout {
                message = "HTTP: error receiving data -- timed out after \(request.timeout.components.seconds) s"
            } else {
                message = "cannot connect to [\(request.host)]:\(request.port) -- \(Self.describe(error))"
            }
            return (ProbeResult(succeeded: false, message: message, responseTime: .now - started, status: nil), "")
        }
    }

    static func timeAmount(_ duration: Duration) -> TimeAmount {
        .nanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }

    static func describe(_ error: any Error) -> String {
        if let io = error as? IOError { return io.description }
        if error is ChannelError { return "\(error)" }
        return "\(error)"
    }
}

struct ProbeTimeout: Error {}

/// Writes one GET and collects the response head and a bounded body.
final class HTTPProbeHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let request: HTTPProbeRequest
    private let promise: EventLoopPromise<(Int, [UInt8])>
    private var status = 0
    private var body: [UInt8] = []

    init(request: HTTPProbeRequest, promise: EventLoopPromise<(Int, [UInt8])>) {
        self.request = request
        self.promise = promise
    }

    func channelActive(context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: request.hostHeader)
        headers.add(name: "User-Agent", value: "warden")
        headers.add(name: "Accept", value: "*/*")
        headers.add(name: "Connection", value: "close")
        if let authorization = request.basicAuthorization {
            headers.add(name: "Authorization", value: "Basic \(authorization)")
        }
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: request.path, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
        case .body(var buffer):
            let room = request.bodyLimit - body.count
            if room > 0, let bytes = buffer.readBytes(length: min(room, buffer.readableBytes)) {
                body.append(contentsOf: bytes)
            }
        case .end:
            promise.succeed((status, body))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ChannelError.eof)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension HTTPProbeHandler: Sendable {}
