import Prometheus
import WardenCore
import WardenPlatform

/// Each TLS site's certificate in the status text, on the dashboard and in `/metrics`.
extension Pages {
    /// The dashboard's table of certificates; empty without TLS sites.
    static func certificates(_ certificates: [SiteCertificate], now: Double) -> String {
        guard !certificates.isEmpty else { return "" }
        let rows = certificates.map { certificate in
            let days = certificate.daysLeft(now: now)
            return """
                <tr id="certificate-\(escape(certificate.site))"><td>\(escape(certificate.site))</td>\
                <td>\(escape(certificate.names.joined(separator: " ")))</td><td>\(escape(certificate.issuer))</td>\
                <td class="\(days < 14 ? "fail" : "ok")">\(TimeFormat.http(certificate.notAfter)) (\(days) days)</td>\
                <td>\(certificate.source.rawValue)</td></tr>
                """
        }
        return """
            <div class="wrap"><table><thead><tr><th>Site</th><th>Certificate names</th><th>Issuer</th><th>Expires</th>\
            <th>Source</th></tr></thead><tbody>\(rows.joined())</tbody></table></div>
            """
    }
}

extension TextStatus {
    /// The lines `warden status` prints under a site for its certificate.
    static func certificateLines(_ certificate: SiteCertificate?, now: Double) -> [(String, String)] {
        guard let certificate else { return [] }
        return [
            ("certificate names", certificate.names.joined(separator: " ")),
            ("certificate issuer", certificate.issuer),
            ("certificate expires", "\(TimeFormat.http(certificate.notAfter)) (\(certificate.daysLeft(now: now)) days left)"),
            ("certificate source", certificate.source == .file ? "file \(certificate.path ?? "")" : "ACME"),
        ]
    }
}

extension MetricsExporter {
    /// `warden_certificate_expiry_timestamp_seconds{site}`: when each TLS site's certificate expires.
    func observe(certificates: [SiteCertificate]) {
        for certificate in certificates {
            registry.makeGauge(
                descriptor: Self.described(
                    "warden_certificate_expiry_timestamp_seconds", "When the TLS certificate each site serves expires, in seconds since 1970"),
                labels: [("site", certificate.site)]
            ).set(to: certificate.notAfter)
        }
    }
}
