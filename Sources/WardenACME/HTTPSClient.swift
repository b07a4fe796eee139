import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// The ACME client's way to the server: one HTTPS request per connection, the server's
/// certificate verified against the system's roots or the `trust` file of `set acme`.
public struct ACMEHTTPSClient: Sendable {
    let tls: NIOSSLContext
    let timeout: Duration
    public static let maximumBodyBytes = 1_048_576

    public init(trustFile: String?, timeout: Duration = .seconds(30)) throws {
        var configuration = TLSConfiguration.makeClientConfiguration()
        if let trustFile { configuration.trustRoots = .file(trustFile) }
        tls = try NIOSSLContext(configuration: configuration)
        self.timeout = timeout
    }

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    public func send(_ request: ACMERequest) async throws -> ACMEResponse {
        guard let target = Target(request.url) else { throw Failure(description: "not an https URL: '\(request.url)'") }
        let promise = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: ACMEResponse.self)
        let channel: any Channel
        do {
            channel = try await connect(target, promise: promise)
        } catch {
            promise.fail(error)
            throw error
        }
        var headers = HTTPHeaders([
            ("Host", target.hostHeader), ("User-Agent", "warden-acme"), ("Connection", "close"),
            ("Accept", "application/pem-certificate-chain, application/json"),
        ])
        if let body = request.body {
            headers.add(name: "Content-Type", value: "application/jose+json")
            headers.add(name: "Content-Length", value: String(body.count))
        }
        let head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: request.method.rawValue), uri: target.path, headers: headers)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body = request.body { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000)) {
            promise.fail(Failure(description: "no answer from \(target.host) within \(timeout)"))
            channel.close(promise: nil)
        }
        defer {
            timer.cancel()
            channel.close(promise: nil)
        }
        return try await promise.futureResult.get()
    }

    private func connect(_ target: Target, promise: EventLoopPromise<ACMEResponse>) async throws -> any Channel {
        let tls = self.tls
        return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // No SNI for an address: TLS forbids it, and NIOSSL then checks the address instead.
                    let name = target.host.contains(where: { $0 == ":" }) || target.host.allSatisfy({ $0.isNumber || $0 == "." }) ? nil : target.host
                    let operations = channel.pipeline.syncOperations
                    try operations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: name))
                    try operations.addHTTPClientHandlers()
                    try operations.addHandler(ResponseCollector(promise: promise))
                }
            }
            .connect(host: target.host, port: target.port).get()
    }

    struct Target {
        var host: String
        var port: Int
        var path: String
        var hostHeader: String

        init?(_ url: String) {
            guard url.lowercased().hasPrefix("https://") else { return nil }
            var rest = Substring(url.dropFirst(8))
            path = "/"
            if let slash = rest.firstIndex(of: "/") {
                path = String(rest[slash...])
                rest = rest[..<slash]
            }
            hostHeader = String(rest)
            port = 443
            if let colon = rest.lastIndex(of: ":"), !rest.hasSuffix("]"), let value = Int(rest[rest.index(after: colon)...]) {
                port = value
                rest = rest[..<colon]
            }
            host = String(rest.trimmingPrefix("[").prefix { $0 != "]" })
            guard !host.isEmpty else { return nil }
        }
    }
}

/// Gathers one response; what does not arrive in whole fails the promise.
private final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let promise: EventLoopPromise<ACMEResponse>
    private var head: HTTPResponseHead?
    private var body: [UInt8] = []

    init(promise: EventLoopPromise<ACMEResponse>) {
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body(let buffer):
            guard body.count + buffer.readableBytes <= ACMEHTTPSClient.maximumBodyBytes else {
                promise.fail(ACMEHTTPSClient.Failure(description: "answer over \(ACMEHTTPSClient.maximumBodyBytes) bytes"))
                context.close(promise: nil)
                return
            }
            body += buffer.readableBytesView
        case .end:
            guard let head else { return }
            var headers: [String: String] = [:]
            for (name, value) in head.headers where headers[name.lowercased()] == nil { headers[name.lowercased()] = value }
            promise.succeed(ACMEResponse(status: Int(head.status.code), headers: headers, body: body))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ACMEHTTPSClient.Failure(description: "the connection closed before a whole answer"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension ResponseCollector: Sendable {}
