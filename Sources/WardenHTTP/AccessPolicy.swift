import CWardenShims
import WardenConfig
import WardenCore
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

/// monit's `allow` rules, resolved once when the control file is loaded: who may connect
/// (hosts, networks) and who may log in (users, htpasswd files), and which users may only read.
public struct AccessPolicy: Sendable {
    struct Network: Sendable {
        var address: [UInt8]
        var prefix: Int
    }

    enum Secret: Sendable {
        case cleartext(String)
        case hashed(String)
    }

    struct User: Sendable {
        var secret: Secret
        var readOnly: Bool
    }

    var networks: [Network] = []
    var users: [String: User] = [:]
    /// htpasswd entries whose hash no method here can check (e.g. `{SHA}` from `htpasswd -s`): those
    /// users can never log in, so the server says so when it loads the file rather than only refusing.
    public private(set) var unusableEntries: [String] = []

    /// True when no host or network is listed: then monit admits every address (credentials still apply).
    var admitsAnyAddress: Bool { networks.isEmpty }
    public var requiresCredentials: Bool { !users.isEmpty }

    public init(rules: [AllowRule], readFile: (String) -> String? = AccessPolicy.readTextFile) {
        for rule in rules {
            switch rule {
            case .host(let name):
                for address in Self.resolve(name) { networks.append(Network(address: address, prefix: address.count * 8)) }
            case .network(let address, let prefix):
                if let bytes = Self.parseAddress(address) { networks.append(Network(address: bytes, prefix: prefix)) }
            case .user(let name, let password, let readOnly):
                users[name] = User(secret: .cleartext(password), readOnly: readOnly)
            case .htpasswd(let path, let hash, let only, let readOnly):
                guard let text = readFile(path) else { continue }
                for line in text.split(separator: "\n") {
                    let parts = line.split(separator: ":", maxSplits: 1).map(String.init)
                    guard parts.count == 2, only.isEmpty || only.contains(parts[0]) else { continue }
                    let secret: Secret = hash == .cleartext ? .cleartext(parts[1]) : .hashed(parts[1].trimmed)
                    if case .hashed(let stored) = secret, Self.hash("", like: stored).isEmpty {
                        unusableEntries.append(
                            "htpasswd file '\(path)': '\(parts[0])' has a hash warden cannot check (\(Self.scheme(of: stored))); "
                                + "use htpasswd -m (apr1), -B (bcrypt), -d (crypt), -5 or -2")
                    }
                    users[parts[0]] = User(secret: secret, readOnly: readOnly)
                }
            case .group:
                break  // PAM groups are not supported; the rule admits nobody.
            }
        }
    }

    public static func readTextFile(_ path: String) -> String? {
        guard let bytes = try? FileSystemReader().read(path) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Whether a client address may talk to the server at all (checked before reading a byte).
    public func admits(address: [UInt8]) -> Bool {
        if admitsAnyAddress { return true }
        let candidate = Self.unmapped(address)
        return networks.contains { network in
            guard network.address.count == candidate.count else { return false }
            return Self.matches(candidate, network.address, prefix: network.prefix)
        }
    }

    public enum Authentication: Equatable, Sendable {
        case granted(user: String?, readOnly: Bool)
        case denied
    }

    /// Checks `Authorization: Basic …`; every comparison takes the same time whatever matches.
    public func authenticate(authorization: String?) -> Authentication {
        guard requiresCredentials else { return .granted(user: nil, readOnly: false) }
        guard let authorization, authorization.lowercased().hasPrefix("basic "),
            let decoded = Base64.decode(String(authorization.dropFirst(6)).trimmed)
        else { return .denied }
        let text = String(decoding: decoded, as: UTF8.self)
        guard let colon = text.firstIndex(of: ":") else { return .denied }
        let name = String(text[..<colon])
        let password = String(text[text.index(after: colon)...])
        // An unknown user costs the same comparison as a known one.
        let user = users[name] ?? User(secret: .cleartext("\u{0}unknown-user-placeholder"), readOnly: true)
        let valid: Bool
        switch user.secret {
        case .cleartext(let expected):
            valid = Self.constantTimeEquals(Array(password.utf8), Array(expected.utf8))
        case .hashed(let stored):
            valid = Self.constantTimeEquals(Array(Self.hash(password, like: stored).utf8), Array(stored.utf8))
        }
        guard valid, users[name] != nil else { return .denied }
        return .granted(user: name, readOnly: user.readOnly)
    }

    static func hash(_ password: String, like stored: String) -> String {
        if stored.hasPrefix("$apr1$") {
            let salt = stored.dropFirst(6).prefix { $0 != "$" }
            return APR1.hash(password: password, salt: String(salt))
        }
        var out = [CChar](repeating: 0, count: 256)
        guard warden_crypt(password, stored, &out, Int32(out.count)) == 0 else { return "" }
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The scheme named at the start of a stored hash: `$2y$`, `{SHA}`, or "DES crypt" for none.
    static func scheme(of stored: String) -> String {
        if stored.hasPrefix("{"), let close = stored.firstIndex(of: "}") { return String(stored[...close]) }
        if stored.hasPrefix("$"), let close = stored.dropFirst().firstIndex(of: "$") { return String(stored[...close]) }
        return stored.count == 13 ? "DES crypt" : "unknown scheme"
    }

    /// Compares every byte of the longer input, so the time says nothing about where they differ.
    public static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(a.count == b.count ? 0 : 1)
        let length = max(a.count, b.count)
        for index in 0..<length {
            let x = index < a.count ? a[index] : 0
            let y = index < b.count ? b[index] : 0
            difference |= x ^ y
        }
        return difference == 0
    }

    static func matches(_ a: [UInt8], _ b: [UInt8], prefix: Int) -> Bool {
        var bits = prefix
        for index in 0..<a.count {
            if bits <= 0 { return true }
            let mask: UInt8 = bits >= 8 ? 0xff : ~(0xff >> UInt8(bits))
            if a[index] & mask != b[index] & mask { return false }
            bits -= 8
        }
        return true
    }

    /// `::ffff:127.0.0.1` is 127.0.0.1.
    static func unmapped(_ address: [UInt8]) -> [UInt8] {
        if address.count == 16, address.prefix(10).allSatisfy({ $0 == 0 }), address[10] == 0xff, address[11] == 0xff {
            return Array(address.suffix(4))
        }
        return address
    }

    static func parseAddress(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }

    /// Host names are resolved when the file is loaded, as monit does.
    static func resolve(_ name: String) -> [[UInt8]] {
        if let address = parseAddress(name) { return [address] }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, nil, &hints, &result) == 0 else { return [] }
        defer { freeaddrinfo(result) }
        var addresses: [[UInt8]] = []
        var cursor = result
        while let info = cursor {
            if info.pointee.ai_family == AF_INET {
                info.pointee.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                    var address = $0.pointee.sin_addr
                    addresses.append(withUnsafeBytes(of: &address) { Array($0) })
                }
            } else if info.pointee.ai_family == AF_INET6 {
                info.pointee.ai_addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    var address = $0.pointee.sin6_addr
                    addresses.append(withUnsafeBytes(of: &address) { Array($0) })
                }
            }
            cursor = info.pointee.ai_next
        }
        return Array(Set(addresses.map { $0 })).sorted { $0.count < $1.count }
    }
}
