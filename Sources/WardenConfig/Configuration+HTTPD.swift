public struct HTTPDSettings: Sendable, Hashable {
    public var port: Int?
    public var address: String?
    public var unixSocket: String?
    public var allow: [AllowRule] = []
    public var ssl: SSLSettings?
    public init() {}
}

public struct SSLSettings: Sendable, Hashable {
    public var pemfile: String?
    public var clientPemfile: String?
    public var selfSigned: Bool = false
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
