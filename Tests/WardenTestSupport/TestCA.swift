import Foundation

/// A certificate authority of a test's own, made with `openssl` in its directory: certificates it
/// signs for any names, and the CA certificate to trust them with.
public struct TestCA {
    public let directory: TemporaryDirectory
    public let name: String
    /// The CA's certificate (PEM), what `ca FILE` or `cacertificatefile` is given.
    public let certificate: String
    private let key: String

    public init(_ name: String, in directory: TemporaryDirectory) throws {
        self.directory = directory
        self.name = name
        certificate = directory.path + "/\(name)-ca.pem"
        key = directory.path + "/\(name)-ca.key"
        try Self.openssl([
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", certificate,
            "-days", "30", "-subj", "/CN=\(name) test CA",
        ])
    }

    public struct Issued {
        public let certificate: String
        public let key: String
        /// Certificate and key in one file (monit's `pemfile`).
        public let pem: String
    }

    /// A certificate for `names` (DNS names, and IP addresses written as such), valid for `days`
    /// days from now, for servers and clients.
    public func issue(_ file: String, names: [String], days: Int = 30) throws -> Issued {
        let base = directory.path + "/" + file
        let subjectAltNames = names.map { $0.allSatisfy { $0.isNumber || $0 == "." } ? "IP:\($0)" : "DNS:\($0)" }.joined(separator: ",")
        let extensions = try directory.write(
            "\(file).ext",
            "subjectAltName=\(subjectAltNames)\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n")
        try Self.openssl([
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", base + ".key", "-out", base + ".csr",
            "-subj", "/CN=\(names.first ?? file)",
        ])
        try Self.openssl([
            "x509", "-req", "-in", base + ".csr", "-CA", certificate, "-CAkey", key, "-CAcreateserial", "-out", base + ".pem",
            "-days", String(days), "-extfile", extensions,
        ])
        let pem = try directory.write(
            "\(file)-both.pem", try String(contentsOfFile: base + ".pem", encoding: .utf8) + String(contentsOfFile: base + ".key", encoding: .utf8))
        return Issued(certificate: base + ".pem", key: base + ".key", pem: pem)
    }

    static func openssl(_ arguments: [String]) throws {
        let result = try TestSupport.run("/usr/bin/openssl", arguments)
        guard result.status == 0 else { throw PeerStartError(peer: "openssl \(arguments.first ?? "")", exited: true, output: result.stderr) }
    }
}
