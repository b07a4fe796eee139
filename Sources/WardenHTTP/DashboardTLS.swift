import Logging
import NIOCore
import NIOSSL
import NIOTLS
import SwiftASN1
import WardenConfig
import WardenPlatform
import X509

/// The dashboard's TLS: its certificate (monit's `pemfile`, or `pemchain` and `pemkey`) and, with
/// `clientpemfile`, the client certificates it requires (mutual TLS).
struct DashboardTLS: Sendable {
    let context: NIOSSLContext
    /// nil: no client certificate is asked for.
    let clients: ClientCertificates?

    /// nil for `ssl` without a certificate (`ssl enable` alone), as before: no HTTPS.
    init?(_ ssl: SSLSettings) throws {
        guard let chainFile = ssl.pemchain ?? ssl.pemfile else { return nil }
        var configuration = TLSServerContext.configuration(
            chain: try NIOSSLCertificate.fromPEMFile(chainFile), key: try NIOSSLPrivateKey(file: ssl.pemkey ?? chainFile, format: .pem),
            protocols: TLSServerContext.http1, versions: ssl.tlsMinorVersions, ciphers: ssl.ciphers)
        if let file = ssl.clientPemfile {
            let listed = try NIOSSLCertificate.fromPEMFile(file)
            // BoringSSL checks the chain against the file and requires a certificate; the gate then
            // checks that the one presented is listed, as monit does.
            configuration.certificateVerification = .noHostnameVerification
            configuration.trustRoots = .certificates(listed)
            configuration.sendCANameList = true
            clients = ClientCertificates(listed: listed, allowSelfSigned: ssl.selfSigned == true)
        } else {
            clients = nil
        }
        context = try NIOSSLContext(configuration: configuration)
    }
}

/// monit's `clientpemfile`: a client must present one of the certificates listed in it (its chain
/// already checked against the file by BoringSSL), and a self-signed one only with `selfsigned: allow`.
struct ClientCertificates: Sendable {
    let listed: [NIOSSLCertificate]
    let allowSelfSigned: Bool

    /// Why `certificate` is refused, or nil.
    func refusal(of certificate: NIOSSLCertificate) -> String? {
        guard listed.contains(certificate) else { return "the client certificate is not listed in 'clientpemfile'" }
        guard !allowSelfSigned else { return nil }
        guard let parsed = try? Certificate(derEncoded: certificate.toDERBytes()) else { return "the client certificate cannot be read" }
        return parsed.issuer == parsed.subject ? "self-signed client certificates need 'selfsigned: allow'" : nil
    }
}

/// Behind the TLS handler of a dashboard connection with `clientpemfile`: nothing goes up the
/// pipeline until the client's certificate is admitted; a refused client is closed. Handles no
/// other event.
final class ClientCertificateGate: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let clients: ClientCertificates
    private let client: String
    private let logger: Logger
    private var admitted = false

    init(clients: ClientCertificates, client: String, logger: Logger) {
        self.clients = clients
        self.client = client
        self.logger = logger
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            let certificate = try? context.pipeline.syncOperations.nioSSL_peerCertificate()
            let refusal = certificate.map(clients.refusal) ?? "the client presented no certificate"
            if let refusal {
                logger.error("HttpRequest: access denied -- client [\(client)]: \(refusal)")
                context.close(promise: nil)
                return
            }
            admitted = true
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard admitted else { return }
        context.fireChannelRead(data)
    }
}

@available(*, unavailable)
extension ClientCertificateGate: Sendable {}
