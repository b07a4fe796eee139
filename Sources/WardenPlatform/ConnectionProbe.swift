import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

#if canImport(Glibc)
import Glibc
#endif

/// What one connection test saw.
public struct ProbeResult: Sendable, Equatable {
    public var succeeded: Bool
    /// Why it failed, in monit's words where it has them.
    public var message: String
    public var responseTime: Duration
    public var status: Int?
    /// The HTTP body's digest in lowercase hex, when the request asked for one.
    public var bodyDigest: String?

    public init(succeeded: Bool, message: String, responseTime: Duration, status: Int? = nil, bodyDigest: String? = nil) {
        self.succeeded = succeeded
        self.message = message
        self.responseTime = responseTime
        self.status = status
        self.bodyDigest = bodyDigest
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
    /// HTTPS, with `tlsConfiguration` (nil: the certificate is not verified, as monit by default).
    public var tls: Bool
    public var tlsConfiguration: TLSConfiguration?
    /// `address A`: the numeric local address to connect from.
    public var source: String?
    /// `certificate valid > N days`.
    public var certificateMinimumDays: Int?
    /// `certificate checksum [md5|sha1] HASH`.
    public var certificateChecksum: CertificateChecksum?
    /// `checksum HASH`: the digest of the body (all of it, beyond `bodyLimit`) to return.
    public var bodyDigest: HashKind?

    public init(
        host: String, port: Int, path: String, hostHeader: String, basicAuthorization: String? = nil, timeout: Duration, bodyLimit: Int,
        tls: Bool = false, certificateMinimumDays: Int? = nil, certificateChecksum: CertificateChecksum? = nil, bodyDigest: HashKind? = nil,
        tlsConfiguration: TLSConfiguration? = nil, source: String? = nil
    ) {
        self.tlsConfiguration = tlsConfiguration
        self.source = source
        self.certificateChecksum = certificateChecksum
        self.host = host
        self.port = port
        self.path = path
        self.hostHeader = hostHeader
        self.basicAuthorization = basicAuthorization
        self.timeout = timeout
        self.bodyLimit = bodyLimit
        self.tls = tls
        self.certificateMinimumDays = certificateMinimumDays
        self.bodyDigest = bodyDigest
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

    var group: any EventLoopGroup { chosenGroup ?? MultiThreadedEventLoopGroup.singleton }

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
        let promise = group.next().makePromise(of: HTTPProbeHandler.Response.self)
        let timeout = Self.timeAmount(request.timeout)
        do {
            let context = try request.tls ? Self.tlsContext(request.tlsConfiguration) : nil
            let channel = try await bootstrap(timeout: request.timeout, source: request.source)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let context {
                            try channel.pipeline.syncOperations.addHandler(
                                try NIOSSLClientHandler(context: context, serverHostname: Self.serverName(request.host)))
                        }
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
            let response = try await promise.futureResult.get()
            if request.tls {
                try Self.checkCertificate(response.certificate, minimumDays: request.certificateMinimumDays, checksum: request.certificateChecksum)
            }
            let text = String(decoding: response.body, as: UTF8.self)
            return (
                ProbeResult(
                    succeeded: true, message: "HTTP status \(response.status)", responseTime: .now - started, status: response.status,
                    bodyDigest: response.digest?.hex),
                text
            )
        } catch let failure as ProtocolFailure {
            return (ProbeResult(succeeded: false, message: failure.message, responseTime: .now - started, status: nil), "")
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

    /// A client context for `configuration`; without one it verifies nothing, as monit by default
    /// (`certificate valid` judges the dates).
    static func tlsContext(_ configuration: TLSConfiguration?) throws -> NIOSSLContext {
        var unverified = TLSConfiguration.makeClientConfiguration()
        unverified.certificateVerification = .none
        return try NIOSSLContext(configuration: configuration ?? unverified)
    }

    /// A TCP client bootstrap with the test's timeout, going out from `source` when the test names one.
    func bootstrap(timeout: Duration, source: String?) throws -> ClientBootstrap {
        let bootstrap = ClientBootstrap(group: group).connectTimeout(Self.timeAmount(timeout))
        guard let source else { return bootstrap }
        return bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0))
    }

    /// SNI only for a name: TLS forbids an address there.
    static func serverName(_ host: String?) -> String? {
        guard let host, host.contains(where: \.isLetter), !host.contains(":") else { return nil }
        return host
    }

    static func timeAmount(_ duration: Duration) -> TimeAmount {
        .nanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }

    /// The system's words for a socket error ("Connection refused"), as monit reports them.
    static func describe(_ error: any Error) -> String {
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)) }
        if let failed = error as? NIOConnectionError, let first = failed.connectionErrors.first?.error {
            return describe(first)
        }
        if error is NIOSSLExtraError { return TLSFailure.describe(error) }
        if let tls = error as? NIOSSLError {
            // BoringSSL's "error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER at …" as
            // OpenSSL words it for monit: "wrong version number".
            let (context, text): (String, String)
            switch tls {
            case .handshakeFailed(let reason): (context, text) = ("SSL handshake failed", "\(reason)")
            default: (context, text) = ("SSL error", "\(tls)")
            }
            guard let marker = text.firstRange(of: "OPENSSL_internal:") else { return "\(context) -- \(text)" }
            let code = text[marker.upperBound...].prefix { $0 != " " && $0 != "]" }
            return "\(context) -- \(code.lowercased().replacingUnderscores())"
        }
        return "\(error)"
    }
}

struct ProbeTimeout: Error {}

/// Writes one GET and collects the response head and a bounded body.
final class HTTPProbeHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    struct Response {
        var status: Int
        var body: [UInt8]
        /// The server's TLS certificate.
        var certificate: NIOSSLCertificate?
        /// The whole body's digest, when the request asked for one.
        var digest: Digester?
    }

    private let request: HTTPProbeRequest
    private let promise: EventLoopPromise<Response>
    private var response: Response

    init(request: HTTPProbeRequest, promise: EventLoopPromise<Response>) {
        self.request = request
        self.promise = promise
        response = Response(status: 0, body: [], digest: request.bodyDigest.map(Digester.init))
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
            response.status = Int(head.status.code)
            // Read now: the TLS handler leaves the pipeline when the server closes after its answer.
            if let tls = try? context.pipeline.syncOperations.handler(type: NIOSSLHandler.self) {
                response.certificate = tls.peerCertificate
            }
        case .body(var buffer):
            buffer.withUnsafeReadableBytes { response.digest?.update($0) }
            let room = request.bodyLimit - response.body.count
            if room > 0, let bytes = buffer.readBytes(length: min(room, buffer.readableBytes)) {
                response.body.append(contentsOf: bytes)
            }
        case .end:
            promise.succeed(response)
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

extension String {
    fileprivate func replacingUnderscores() -> String { String(map { $0 == "_" ? " " : $0 }) }
}
