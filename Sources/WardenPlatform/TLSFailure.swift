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
