import NIOSSL
import WardenConfig
import WardenPlatform

extension SSLSettings {
    /// How warden connects as a TLS client (to a mail server, or for a port test), from monit's ssl
    /// options. monit verifies no certificate unless told to (`verify: enable`); warden does the same,
    /// since self-signed relays and local services are common. With it, the system's CAs are trusted
    /// unless `cacertificatefile`/`cacertificatepath` name others, and the certificate must be for the host.
    public func clientTLSConfiguration() throws -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        if verify == true {
            let roots = [caCertificateFile, caCertificatePath].compactMap { $0 }
            if let first = roots.first {
                configuration.trustRoots = .file(first)
                configuration.additionalTrustRoots = roots.dropFirst().map { .file($0) }
            }
        } else {
            configuration.certificateVerification = .none
        }
        TLSOptions.apply(versions: tlsMinorVersions, ciphers: ciphers, to: &configuration)
        if let pem = clientPemfile {
            configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(pem).map { .certificate($0) }
            configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: pem, format: .pem))
        }
        return configuration
    }
}
