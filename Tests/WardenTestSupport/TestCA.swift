import Foundation

#if canImport(Glibc)
import Glibc
#endif

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

    /// A certificate for `names` (DNS names, and IP addresses written as such), for servers and
    /// clients, valid from `fromDays` (negative: in the past) to `days` days from now: a negative
    /// `days` makes an expired one. Signed with `openssl ca`, the one of openssl 3.0's commands that
    /// takes explicit dates.
    public func issue(_ file: String, names: [String], days: Int = 30, fromDays: Int = -1) throws -> Issued {
        let base = directory.path + "/" + file
        let subjectAltNames = names.map { $0.allSatisfy { $0.isNumber || $0 == "." } ? "IP:\($0)" : "DNS:\($0)" }.joined(separator: ",")
        let database = directory.path + "/\(name)-ca.index"
        if !FileManager.default.fileExists(atPath: database) { _ = FileManager.default.createFile(atPath: database, contents: nil) }
        let configuration = try directory.write(
            "\(file).cnf",
            """
            [ca]
            default_ca = test
            [test]
            database = \(database)
            new_certs_dir = \(directory.path)
            rand_serial = yes
            default_md = sha256
            policy = anything
            unique_subject = no
            copy_extensions = none
            x509_extensions = leaf
            [anything]
            commonName = supplied
            [leaf]
            subjectAltName = \(subjectAltNames)
            basicConstraints = CA:FALSE
            extendedKeyUsage = serverAuth,clientAuth

            """)
        try Self.openssl([
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", base + ".key", "-out", base + ".csr",
            "-subj", "/CN=\(names.first ?? file)",
        ])
        try Self.openssl([
            "ca", "-batch", "-notext", "-config", configuration, "-cert", certificate, "-keyfile", key, "-in", base + ".csr", "-out", base + ".pem",
            "-startdate", Self.stamp(days: fromDays), "-enddate", Self.stamp(days: days),
        ])
        let pem = try directory.write(
            "\(file)-both.pem", try String(contentsOfFile: base + ".pem", encoding: .utf8) + String(contentsOfFile: base + ".key", encoding: .utf8))
        return Issued(certificate: base + ".pem", key: base + ".key", pem: pem)
    }

    /// `days` from now as openssl's `YYYYMMDDHHMMSSZ`.
    static func stamp(days: Int) -> String {
        var time = Glibc.time(nil) + days * 86400
        var parts = tm()
        gmtime_r(&time, &parts)
        return String(
            format: "%04d%02d%02d%02d%02d%02dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday), Int(parts.tm_hour),
            Int(parts.tm_min), Int(parts.tm_sec))
    }

    static func openssl(_ arguments: [String]) throws {
        let result = try TestSupport.run("/usr/bin/openssl", arguments)
        guard result.status == 0 else { throw PeerStartError(peer: "openssl \(arguments.first ?? "")", exited: true, output: result.stderr) }
    }
}
