import NIOCore
import NIOSSL
import WardenConfig

/// The TLS side of one `https://` upstream: its client context, built once per upstream and set of
/// options (and kept by `SiteTable.load` across reloads that leave them unchanged, so the pool's
/// connections stay usable), and the name sent as SNI and looked for in the certificate. The pool
/// tells connections apart by this object, so a connection is only reused for the same settings.
final class UpstreamTLSClient: Sendable {
    struct Key: Hashable {
        let settings: UpstreamTLS
        let host: String
    }

    let key: Key
    private let context: Result<NIOSSLContext, LoadFailure>
    /// nil for an address without `sni`: NIOSSL then checks the address against the certificate's IP names.
    let serverName: String?

    struct LoadFailure: Error, CustomStringConvertible {
        let description: String
    }

    init(_ key: Key) {
        self.key = key
        serverName = key.settings.serverName ?? (Self.isAddress(key.host) ? nil : key.host)
        do {
            context = .success(try NIOSSLContext(configuration: Self.configuration(key.settings)))
        } catch {
            context = .failure(LoadFailure(description: "cannot load the upstream's TLS settings (\(error))"))
        }
    }

    static func configuration(_ settings: UpstreamTLS) throws -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.applicationProtocols = ["http/1.1"]
        if !settings.verify {
            configuration.certificateVerification = .none
        } else if let caFile = settings.caFile {
            configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
        }
        if let certificate = settings.certificate {
            configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
            configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: settings.key ?? certificate, format: .pem))
        }
        return configuration
    }

    /// The handler for a new connection; throws when the settings could not be loaded.
    func makeHandler() throws -> NIOSSLClientHandler {
        try NIOSSLClientHandler(context: context.get(), serverHostname: serverName)
    }

    private static func isAddress(_ host: String) -> Bool {
        host.contains(":") || host.allSatisfy { $0.isNumber || $0 == "." }
    }
}
