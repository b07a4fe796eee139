import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

/// `set acme … storage DIR`: the account key and one file per site (its chain, then its key),
/// each written whole or not at all, readable by root only. One file per site, so a crash can
/// never pair a certificate with another one's key.
public struct CertificateStore: Sendable {
    public let directory: String

    public init(directory: String) throws {
        self.directory = directory
        try Self.makeDirectory(directory)
        try Self.makeDirectory(directory + "/certificates")
    }

    private static func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o700) != 0, errno != EEXIST { throw SystemError(message: "cannot create '\(path)': \(SystemError(errno: errno))") }
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { throw SystemError(message: "'\(path)' is not a directory") }
        // Keys live here: a directory left open by an earlier umask is closed again.
        if info.st_mode & 0o077 != 0, chmod(path, 0o700) != 0 { throw SystemError(message: "cannot chmod '\(path)': \(SystemError(errno: errno))") }
    }

    var accountKeyPath: String { directory + "/account.key" }

    /// The account key, created and kept at the first use: a new key would be a new account.
    public func accountKey() throws -> ACMEAccountKey {
        if let bytes = try? FileSystemReader().read(accountKeyPath) {
            return try ACMEAccountKey(pem: String(decoding: bytes, as: UTF8.self))
        }
        let key = ACMEAccountKey()
        try AtomicFile.write(Array(key.pem.utf8), to: accountKeyPath, mode: 0o600)
        return key
    }

    /// The file of a site: its name with anything but letters, digits, `.`, `-` and `_` replaced.
    public func path(forSite site: String) -> String {
        let safe = String(site.map { $0.isASCII && ($0.isLetter || $0.isNumber || "-_".contains($0)) ? $0 : "_" })
        return directory + "/certificates/" + safe + ".pem"
    }

    public func save(_ pair: CertificatePair, site: String) throws {
        var text = pair.chainPEM
        if !text.hasSuffix("\n") { text += "\n" }
        try AtomicFile.write(Array((text + pair.keyPEM).utf8), to: path(forSite: site), mode: 0o600)
    }

    /// The stored pair, or nil when there is none or it does not parse (then a new one is ordered).
    public func load(site: String) -> (pair: CertificatePair, info: CertificateInfo)? {
        guard let bytes = try? FileSystemReader().read(path(forSite: site)) else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        // The key follows the chain's last certificate.
        guard let lastCertificate = text.ranges(of: "-----END CERTIFICATE-----").last,
            let keyStart = text[lastCertificate.upperBound...].firstRange(of: "-----BEGIN")?.lowerBound
        else { return nil }
        let pair = CertificatePair(chainPEM: String(text[..<keyStart]), keyPEM: String(text[keyStart...]))
        guard let info = try? CertificateInfo(chainPEM: pair.chainPEM), (try? CertificateFactory.keyMatches(pair)) == true else { return nil }
        return (pair, info)
    }
}
