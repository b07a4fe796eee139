public struct HTTPDSettings: Sendable, Hashable {
    public var port: Int?
    public var address: String?
    public var unixSocket: String?
    public var allow: [AllowRule] = []
    public var ssl: SSLSettings?
    public init() {}
}

/// monit's SSL options (`set ssl {…}`, `using ssl {…}` of a mail server, `set httpd … ssl {…}`), those
/// warden applies; the parser refuses the others where they would change nothing (`Parser.sslOptions`).
/// Unset (nil) options take the global `set ssl` value (`merged(over:)`).
public struct SSLSettings: Sendable, Hashable {
    /// The dashboard's certificate and key, in one file or as a chain and a key.
    public var pemfile: String?
    public var pemchain: String?
    public var pemkey: String?
    /// The dashboard: clients must present one of these certificates (the file holds their CAs too).
    /// A mail server: the certificate and key warden presents.
    public var clientPemfile: String?
    /// A client's check of the server's certificate (monit's default: off).
    public var verify: Bool?
    /// `selfsigned: allow`: the dashboard accepts a self-signed client certificate listed in `clientPemfile`.
    public var selfSigned: Bool?
    /// The CAs to verify with instead of the system's.
    public var caCertificateFile: String?
    public var caCertificatePath: String?
    /// TLS versions, lowest and highest allowed (1.2...1.3 unless `version:` says otherwise).
    public var versions: ClosedRange<TLSVersion>?
    /// OpenSSL's cipher list for TLS 1.2 and below.
    public var ciphers: String?

    /// The raw value is the minor version: TLS 1.0 to 1.3.
    public enum TLSVersion: Int, Sendable, Hashable, Comparable {
        case v1_0, v1_1, v1_2, v1_3
        public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    }

    public init() {}

    /// `versions` as minor numbers of TLS 1.x (0 to 3), as the TLS libraries take them.
    public var tlsMinorVersions: ClosedRange<Int>? { versions.map { $0.lowerBound.rawValue...$0.upperBound.rawValue } }

    /// These options, with the unset ones taken from `global`.
    public func merged(over global: SSLSettings) -> SSLSettings {
        var merged = self
        merged.verify = verify ?? global.verify
        merged.caCertificateFile = caCertificateFile ?? global.caCertificateFile
        merged.caCertificatePath = caCertificatePath ?? global.caCertificatePath
        merged.versions = versions ?? global.versions
        merged.ciphers = ciphers ?? global.ciphers
        return merged
    }
}

public enum AllowRule: Sendable, Hashable {
    /// A host name (resolved when the daemon loads the file) or an address.
    case host(String)
    /// `NET/MASK` or `NET/BITS`.
    case network(address: String, prefix: Int)
    case user(name: String, password: String, readOnly: Bool)
    case htpasswd(path: String, hash: PasswordHash, users: [String], readOnly: Bool)
    /// `allow @group` (PAM groups).
    case group(String, readOnly: Bool)

    public enum PasswordHash: String, Sendable, Hashable { case cleartext, md5, crypt }

    public var holdsCredentials: Bool {
        if case .user = self { return true }
        return false
    }
}
