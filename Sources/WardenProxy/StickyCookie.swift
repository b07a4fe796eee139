import Crypto
import WardenPlatform

/// `balance sticky cookie NAME`: the cookie names the client's instance by its port, with an HMAC
/// so that a client cannot choose an instance by writing the cookie itself. The key is kept beside
/// the state file (`StickyCookie.loadKey`), so a restart of warden keeps every client on its instance;
/// without a state file it is made when the proxy starts.
public struct StickyCookie: Sendable {
    private let key: SymmetricKey

    init(key: SymmetricKey) { self.key = key }

    /// The key of `path`, made and written (mode 0600) when there is none yet or it is not a key.
    public static func loadKey(path: String) throws -> [UInt8] {
        if let stored = try? FileSystemReader().read(path), stored.count == keyBytes { return stored }
        let key = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        try AtomicFile.write(key, to: path, mode: 0o600)
        return key
    }

    static let keyBytes = 32

    /// `PORT.MAC`, the MAC over the service and the port.
    func value(service: String, port: Int) -> String {
        "\(port).\(mac(service: service, port: port))"
    }

    /// The port a valid cookie `name` in a `Cookie` header pins the client to.
    func pinnedPort(cookieHeader: String, name: String, service: String) -> Int? {
        for pair in cookieHeader.split(separator: ";") {
            let trimmed = pair.drop { $0 == " " }
            guard trimmed.hasPrefix(name), trimmed.dropFirst(name.count).first == "=" else { continue }
            let value = trimmed.dropFirst(name.count + 1)
            guard let dot = value.firstIndex(of: "."), let port = Int(value[..<dot]) else { return nil }
            let given = Array(value[value.index(after: dot)...].utf8)
            let expected = Array(mac(service: service, port: port).utf8)
            // Constant time: how much of a forged MAC matched must not show in the time taken.
            guard given.count == expected.count, zip(given, expected).reduce(0, { $0 | ($1.0 ^ $1.1) }) == 0 else { return nil }
            return port
        }
        return nil
    }

    /// The header line for a response that pins the client to `port`.
    func setCookieLine(name: String, service: String, port: Int) -> String {
        "Set-Cookie: \(name)=\(value(service: service, port: port)); Path=/; HttpOnly; SameSite=Lax\r\n"
    }

    private func mac(service: String, port: Int) -> String {
        let code = HMAC<SHA256>.authenticationCode(for: Array("\(service)|\(port)".utf8), using: key)
        return Hex.string(code.prefix(16))
    }
}
