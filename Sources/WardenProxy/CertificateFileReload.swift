import Crypto
import NIOSSL
import WardenConfig
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

/// The certificate and key files of a `listen … ssl { certificate: C, key: K }` listener (K is C when
/// the key is in the same file). Listeners that name the same files share one certificate.
public struct CertificateFiles: Hashable, Sendable, Codable {
    public var certificate: String
    public var key: String

    public init(certificate: String, key: String) {
        self.certificate = certificate
        self.key = key
    }

    public init?(_ listen: ProxySettings.Listen) {
        guard let certificate = listen.certificate else { return nil }
        self.init(certificate: certificate, key: listen.key ?? certificate)
    }

    var paths: [String] { certificate == key ? [certificate] : [certificate, key] }
}

/// What stat(2) says of a file, following symbolic links (certbot's `live/` names are links it points
/// at new files): another device, inode, size or modification time is another file.
public struct FileStamp: Hashable, Sendable {
    public var device: UInt64
    public var inode: UInt64
    public var size: Int64
    /// Nanoseconds since 1970.
    public var modified: Int64

    public init(device: UInt64, inode: UInt64, size: Int64, modified: Int64) {
        self.device = device
        self.inode = inode
        self.size = size
        self.modified = modified
    }

    /// nil: the file is missing or cannot be looked at.
    public static func of(_ path: String) -> FileStamp? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return FileStamp(
            device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
            modified: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec))
    }
}

/// A certificate chain and its key as read from their files, checked the way the proxy will use them:
/// both parse, and the server context builds (BoringSSL refuses a key that is not the certificate's).
public struct CertificatePair: Sendable {
    public let chainPEM: [UInt8]
    public let keyPEM: [UInt8]
    /// SHA-256 over both files' bytes: the same bytes are the same pair, whoever read them.
    public let digest: [UInt8]
    /// The leaf's validity, in seconds since 1970.
    public let notBefore: Double
    public let notAfter: Double
    /// The leaf's serial number and SHA-256 fingerprint, in hex, for the log.
    public let serial: String
    public let fingerprint: String

    public struct Problem: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    public init(chainPEM: [UInt8], keyPEM: [UInt8]) throws(Problem) {
        let leaf: NIOSSLCertificate
        do {
            guard let first = try NIOSSLCertificate.fromPEMBytes(chainPEM).first else { throw Problem(description: "no certificate in it") }
            leaf = first
        } catch let problem as Problem {
            throw problem
        } catch {
            throw Problem(description: "the certificate does not parse (\(error))")
        }
        do {
            _ = try NIOSSLPrivateKey(bytes: keyPEM, format: .pem)
        } catch {
            throw Problem(description: "the key does not parse (\(error))")
        }
        do {
            _ = try TLSServerContext.context(chainPEM: chainPEM, keyPEM: keyPEM, protocols: TLSServerContext.http2AndHTTP1)
        } catch {
            throw Problem(description: "the key does not match the certificate (\(error))")
        }
        self.chainPEM = chainPEM
        self.keyPEM = keyPEM
        digest = Self.digest(chainPEM: chainPEM, keyPEM: keyPEM)
        notBefore = Double(leaf.notValidBefore)
        notAfter = Double(leaf.notValidAfter)
        serial = Self.hex(leaf.serialNumber)
        fingerprint = Self.hex((try? leaf.toDERBytes()).map { Array(SHA256.hash(data: $0)) } ?? [])
    }

    /// Reads and checks `files`.
    public static func read(_ files: CertificateFiles) throws(Problem) -> CertificatePair {
        let reader = FileSystemReader()
        let chain: [UInt8], key: [UInt8]
        do {
            chain = try reader.read(files.certificate)
            key = files.key == files.certificate ? chain : try reader.read(files.key)
        } catch {
            throw Problem(description: "cannot read the files (\(error))")
        }
        return try CertificatePair(chainPEM: chain, keyPEM: key)
    }

    static func digest(chainPEM: [UInt8], keyPEM: [UInt8]) -> [UInt8] {
        var hash = SHA256()
        hash.update(data: chainPEM)
        hash.update(data: keyPEM)
        return Array(hash.finalize())
    }

    private static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}

/// Whether a listener's certificate files hold a pair to serve in place of the current one: a renewal
/// by another tool (certbot) is served from the next handshake on, without a restart. Looked at once a
/// cycle (a stat of each file); read only when a file changed. A pair that does not hold together (a
/// key for another certificate, a file that does not parse, an expired certificate) keeps the current
/// one; moments after a change it may be a copy still under way, so it is reported only when the
/// files stay so for `settle` seconds.
public struct CertificateFileReload: Sendable {
    /// The files as read and checked (`CertificatePair`).
    public enum Reading: Sendable, Equatable {
        case pair(digest: [UInt8], notAfter: Double)
        case problem(String)
    }

    public enum Action: Sendable, Equatable {
        case none
        /// A file changed: read and check the pair, then `decide`.
        case read
        /// Serve the pair just read. `first`: the first look, at the pair the proxy loaded at start
        /// (sent anyway, in case the files changed between the two reads; the proxy ignores the same bytes).
        case serve(first: Bool)
        /// The current pair stays; say why, once for this state of the files.
        case refuse(String)
        /// Look again after this many seconds: the pair did not hold together just after a change.
        case wait(Double)
    }

    public static let settle = 2.0

    private var stamps: [FileStamp?]?
    private var served: [UInt8]?
    private enum Trouble: Sendable {
        case pending(reason: String, since: Double)
        case reported
    }
    private var trouble: Trouble?

    public init() {}

    /// At each look, with the files' stamps (nil: missing).
    public mutating func look(_ stamps: [FileStamp?], now: Double) -> Action {
        if stamps != self.stamps {
            self.stamps = stamps
            trouble = nil
            return .read
        }
        guard case .pending(let reason, let since) = trouble else { return .none }
        guard now >= since + Self.settle else { return .wait(since + Self.settle - now) }
        trouble = .reported
        return .refuse(reason)
    }

    /// After `.read`, with what the files hold.
    public mutating func decide(_ reading: Reading, now: Double) -> Action {
        let reason: String
        switch reading {
        case .pair(let digest, _) where digest == served:
            trouble = nil
            return .none
        case .pair(let digest, let notAfter) where notAfter > now || served == nil:
            // At the first look, what the proxy loaded at start: an expired one is the expiry alert's business.
            let first = served == nil
            served = digest
            trouble = nil
            return .serve(first: first)
        case .pair(_, let notAfter):
            reason = "the certificate expired on \(TimeFormat.string(notAfter, "%Y-%m-%d %H:%M:%S"))"
        case .problem(let problem):
            reason = problem
        }
        trouble = .pending(reason: reason, since: now)
        return .wait(Self.settle)
    }
}

/// The certificate files of every `listen … ssl` listener, followed: at each look, what to tell the
/// proxy (the pair to serve, on the same feed as `tls auto` certificates) and what to report.
public struct CertificateFileFollower: Sendable {
    public struct Outcome: Sendable {
        public var files: CertificateFiles
        /// For the proxy: `ProxyFeedMessage.listenerCertificate`.
        public var message: ProxyFeedMessage?
        /// What to log and publish as an event of the sites served: a reload (`succeeded`: true) or a refusal.
        public var report: (succeeded: Bool, text: String)?
    }

    private var reloads: [CertificateFiles: CertificateFileReload] = [:]
    private var served: [CertificateFiles: [UInt8]] = [:]

    public init() {}

    /// The chain last sent to the proxy for these files: what the status shows, since the files may
    /// hold a pair that was refused.
    public func servedChain(_ files: CertificateFiles) -> [UInt8]? {
        served[files]
    }

    /// Looks at the files of `listens`; returns what to do, and how soon to look again (nil: at the next cycle).
    public mutating func look(_ listens: [ProxySettings.Listen], now: Double) -> (outcomes: [Outcome], again: Double?) {
        var outcomes: [Outcome] = []
        var again: Double?
        var next: [CertificateFiles: CertificateFileReload] = [:]
        for files in listens.compactMap(CertificateFiles.init) where next[files] == nil {
            var reload = reloads[files] ?? CertificateFileReload()
            var action = reload.look(files.paths.map(FileStamp.of), now: now)
            var pair: CertificatePair?
            if action == .read {
                let reading: CertificateFileReload.Reading
                do {
                    let read = try CertificatePair.read(files)
                    pair = read
                    reading = .pair(digest: read.digest, notAfter: read.notAfter)
                } catch {
                    reading = .problem(error.description)
                }
                action = reload.decide(reading, now: now)
            }
            next[files] = reload
            switch action {
            case .none, .read:
                break
            case .serve(let first):
                guard let pair else { break }
                served[files] = pair.chainPEM
                let message = ProxyFeedMessage.listenerCertificate(
                    files, chainPEM: String(decoding: pair.chainPEM, as: UTF8.self), keyPEM: String(decoding: pair.keyPEM, as: UTF8.self))
                let text =
                    "certificate reloaded from '\(files.certificate)': serial \(pair.serial), SHA-256 \(pair.fingerprint), expires \(TimeFormat.string(pair.notAfter, "%Y-%m-%d %H:%M:%S"))"
                outcomes.append(Outcome(files: files, message: message, report: first ? nil : (true, text)))
            case .refuse(let reason):
                let text = "certificate files '\(files.paths.joined(separator: "', '"))' changed but are not served: \(reason); the certificate loaded before is served"
                outcomes.append(Outcome(files: files, message: nil, report: (false, text)))
            case .wait(let seconds):
                again = min(again ?? seconds, seconds)
            }
        }
        reloads = next
        served = served.filter { next[$0.key] != nil }
        return (outcomes, again)
    }
}
