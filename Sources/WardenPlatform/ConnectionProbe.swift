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
                .connectTimeout(TimeAmount(timeout))
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
        func failed(_ message: String) -> (ProbeResult, body: String) {
            (ProbeResult(succeeded: false, message: message, responseTime: .now - started, status: nil), "")
        }
        let cannotConnect = "cannot connect to [\(request.host)]:\(request.port)"
        var headers: HTTPHeaders = ["Host": request.hostHeader, "User-Agent": "warden", "Accept": "*/*"]
        if let authorization = request.basicAuthorization { headers.add(name: "Authorization", value: "Basic \(authorization)") }
        let response: HTTP1Response
        do {
            response = try await HTTP1Client(group: group).send(
                HTTP1Request(
                    endpoint: .tcp(host: request.host, port: request.port), path: request.path, headers: headers,
                    tls: request.tls ? try Self.tlsContext(request.tlsConfiguration) : nil, serverName: TLSOptions.serverName(for: request.host),
                    source: request.source, timeout: request.timeout, bodyLimit: request.bodyLimit, readPastLimit: true,
                    digest: request.bodyDigest))
        } catch let error as HTTP1ClientError {
            switch error {
            case .cannotConnect(let reason): return failed("\(cannotConnect) -- \(Self.describe(reason))")
            case .timedOut: return failed("HTTP: error receiving data -- timed out after \(request.timeout.components.seconds) s")
            // The handshake is part of connecting, as on the other protocols' path.
            case .broken(let reason?) where TLSFailure.isTLS(reason): return failed("\(cannotConnect) -- \(Self.describe(reason))")
            case .broken(let reason): return failed("HTTP: error receiving data -- \(reason.map(Self.describe) ?? "connection closed by the server")")
            case .bodyTooLarge: return failed("HTTP: error receiving data -- the body is over \(request.bodyLimit) bytes")
            }
        } catch {
            return failed("\(cannotConnect) -- \(Self.describe(error))")
        }
        if request.tls {
            do {
                try Self.checkCertificate(response.certificate, minimumDays: request.certificateMinimumDays, checksum: request.certificateChecksum)
            } catch let failure as ProtocolFailure {
                return failed(failure.message)
            } catch {
                return failed(Self.describe(error))
            }
        }
        return (
            ProbeResult(
                succeeded: true, message: "HTTP status \(response.status)", responseTime: .now - started, status: response.status,
                bodyDigest: response.digest),
            String(decoding: response.body, as: UTF8.self)
        )
    }

    /// A client context for `configuration`; without one it verifies nothing, as monit by default
    /// (`certificate valid` judges the dates).
    static func tlsContext(_ configuration: TLSConfiguration?) throws -> NIOSSLContext {
        var unverified = TLSConfiguration.makeClientConfiguration()
        unverified.certificateVerification = .none
        return try NIOSSLContext(configuration: configuration ?? unverified)
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

extension String {
    fileprivate func replacingUnderscores() -> String { String(map { $0 == "_" ? " " : $0 }) }
}
