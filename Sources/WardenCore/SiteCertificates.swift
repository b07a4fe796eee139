import Synchronization
import WardenConfig
import WardenPlatform

/// A TLS site's certificate as the status, the dashboard and `/metrics` show it.
public struct SiteCertificate: Sendable, Hashable, Codable {
    public enum Source: String, Sendable, Hashable, Codable {
        /// `listen … ssl { certificate: FILE }`: read from the file.
        case file
        /// `tls auto`: obtained over ACME.
        case acme
    }

    public var site: String
    public var issuer: String
    public var names: [String]
    /// Seconds since 1970.
    public var notAfter: Double
    public var source: Source
    /// The certificate file (`file` source).
    public var path: String?

    public init(site: String, issuer: String, names: [String], notAfter: Double, source: Source, path: String? = nil) {
        self.site = site
        self.issuer = issuer
        self.names = names
        self.notAfter = notAfter
        self.source = source
        self.path = path
    }

    /// Whole days until it expires (negative once it has).
    public func daysLeft(now: Double) -> Int { Int(((notAfter - now) / 86400).rounded(.down)) }
}

/// The certificates of the TLS sites, as last read from their files or obtained over ACME; written
/// by those who get them, read by the status. A small lock: read per status request, written a few
/// times a cycle.
public final class SiteCertificates: Sendable {
    private let table = Mutex<[String: SiteCertificate]>([:])

    public init() {}

    public func set(_ certificate: SiteCertificate) { table.withLock { $0[certificate.site] = certificate } }

    /// Forgets the sites of `source` not in `sites` (removed by a reload, or no longer served so).
    public func keep(_ sites: Set<String>, of source: SiteCertificate.Source) {
        table.withLock { $0 = $0.filter { $0.value.source != source || sites.contains($0.key) } }
    }

    public func certificate(of site: String) -> SiteCertificate? { table.withLock { $0[site] } }

    /// Every site's, in site order.
    public var all: [SiteCertificate] { table.withLock { $0.values.sorted { $0.site < $1.site } } }
}

/// Which certificates read from files are about to expire: one alert per certificate under
/// `warning` left, not one per cycle; a replaced file (a later `notAfter`) is a new certificate.
/// ACME's certificates are watched by their renewal scheduler, which knows when a renewal succeeded.
public struct CertificateExpiryWatch: Sendable {
    public static let warning = 14.0 * 86400
    /// The `notAfter` already warned about, per site.
    private var warned: [String: Double] = [:]

    public init() {}

    /// The certificates to raise the alert for now.
    public mutating func check(_ certificates: [SiteCertificate], now: Double) -> [SiteCertificate] {
        var due: [SiteCertificate] = []
        var next: [String: Double] = [:]
        for certificate in certificates {
            if certificate.notAfter - now < Self.warning {
                if warned[certificate.site] != certificate.notAfter { due.append(certificate) }
                next[certificate.site] = certificate.notAfter
            }
        }
        warned = next
        return due
    }

    /// The alert's event.
    public static func event(_ certificate: SiteCertificate, now: Double) -> Event {
        let days = certificate.daysLeft(now: now)
        let when = TimeFormat.string(certificate.notAfter, "%Y-%m-%d %H:%M:%S")
        let text = days < 0 ? "certificate expired on \(when)" : "certificate expires in \(days) days (\(when))"
        return Event(
            service: certificate.site, kind: .certificate, state: .failed,
            message: "\(text) and has not been replaced\(certificate.path.map { " (\($0))" } ?? "")", action: "alert")
    }
}
