import NIOSSL

/// A refused TLS handshake in words for a log line or an alert: BoringSSL's error stack says only
/// that verification failed, so the likely causes are named beside it.
public enum TLSFailure {
    public static func describe(_ error: any Error) -> String {
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            return "certificate verify failed: the certificate is not for this host (\(extra))"
        }
        if case .handshakeFailed(let inner) = error as? NIOSSLError {
            let text = "\(inner)"
            if text.contains("CERTIFICATE_VERIFY_FAILED") {
                return "certificate verify failed: not signed by a trusted CA, expired or not yet valid (\(text))"
            }
            return "SSL handshake failed (\(text))"
        }
        return "SSL error (\(error))"
    }

    /// Whether `error` comes from TLS rather than from the connection or the protocol on top.
    public static func isTLS(_ error: any Error) -> Bool {
        error is NIOSSLError || error is NIOSSLExtraError || error is BoringSSLError
    }
}

/// monit's `version:` and `ciphers:` SSL options on a NIOSSL configuration, client or server.
public enum TLSOptions {
    /// The name a client sends (SNI) and checks the certificate for: only a name, since TLS forbids an
    /// address there (NIOSSL then checks the address instead).
    public static func serverName(for host: String) -> String? {
        host.contains(where: \.isLetter) && !host.contains(":") ? host : nil
    }

    /// `versions`: TLS 1.`lowerBound` to 1.`upperBound` (monit's `auto`, 1.2 to 1.3, when nil).
    public static func apply(versions: ClosedRange<Int>?, ciphers: String?, to configuration: inout TLSConfiguration) {
        let all: [TLSVersion] = [.tlsv1, .tlsv11, .tlsv12, .tlsv13]
        let range = versions ?? 2...3
        configuration.minimumTLSVersion = all[max(0, min(range.lowerBound, 3))]
        configuration.maximumTLSVersion = all[max(0, min(range.upperBound, 3))]
        if let ciphers { configuration.cipherSuites = ciphers }
    }
}
