import NIOSSL

/// The server side of TLS for every listener warden has, the dashboard's and the proxy's: protocol
/// versions, TLS 1.2 suites, ALPN and session resumption are decided here once.
///
/// - Versions: TLS 1.2 and 1.3 (Mozilla's "intermediate"); the dashboard's monit `version:` option
///   may widen or narrow them.
/// - TLS 1.2 suites: ECDHE only (forward secrecy), AES-GCM and ChaCha20-Poly1305, for ECDSA and RSA
///   keys alike; TLS 1.3's three are BoringSSL's and not configurable. monit's `ciphers:` replaces them.
/// - Resumption: BoringSSL's defaults, kept on purpose: stateless session tickets (TLS 1.2 and 1.3)
///   under keys each context makes and rotates itself, and its in-memory session cache for TLS 1.2
///   clients without tickets. A resumed handshake skips the certificate's signature, the costly part
///   of a new connection (BENCHMARKS.md, "HTTPS"). A new certificate is a new context, so tickets
///   issued under the old one lead to one full handshake.
public enum TLSServerContext {
    /// What an HTTP listener offers by ALPN: HTTP/2 first, as browsers prefer it.
    public static let http2AndHTTP1 = ["h2", "http/1.1"]
    public static let http1 = ["http/1.1"]

    public static let cipherSuites = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")

    /// The configuration for `chain` and `key`; `versions` (TLS 1.`lowerBound` to 1.`upperBound`) and
    /// `ciphers` are monit's options where a listener has them.
    public static func configuration(
        chain: [NIOSSLCertificate], key: NIOSSLPrivateKey, protocols: [String], versions: ClosedRange<Int>? = nil, ciphers: String? = nil
    ) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        TLSOptions.apply(versions: versions, ciphers: ciphers ?? cipherSuites, to: &configuration)
        configuration.applicationProtocols = protocols
        return configuration
    }

    /// A context for a certificate chain and its key in PEM. Throws when either does not parse, or
    /// when the key is not the certificate's (BoringSSL checks the pair as the context takes it).
    public static func context(chainPEM: [UInt8], keyPEM: [UInt8], protocols: [String]) throws -> NIOSSLContext {
        let chain = try NIOSSLCertificate.fromPEMBytes(chainPEM)
        guard !chain.isEmpty else { throw NoCertificate() }
        let key = try NIOSSLPrivateKey(bytes: keyPEM, format: .pem)
        return try NIOSSLContext(configuration: configuration(chain: chain, key: key, protocols: protocols))
    }

    struct NoCertificate: Error, CustomStringConvertible {
        var description: String { "no certificate in the PEM data" }
    }
}
