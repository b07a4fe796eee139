import Testing
import WardenConfig

@testable import WardenCore

@Suite("Certificates: expiry alerts")
struct CertificateWatchTests {
    let day = 86400.0

    func certificate(_ site: String, expiresIn days: Double, now: Double) -> SiteCertificate {
        SiteCertificate(site: site, issuer: "CN=Test CA", names: ["\(site).test"], notAfter: now + days * day, source: .file, path: "/etc/\(site).pem")
    }

    /// Under 14 days left: one alert per certificate, not one per cycle; a replaced file (a later
    /// expiry) is a new certificate; a certificate with time left raises nothing.
    @Test func oneAlertPerExpiringCertificate() {
        var watch = CertificateExpiryWatch()
        let now = 1_800_000_000.0
        let expiring = certificate("shop", expiresIn: 10, now: now)
        let fine = certificate("blog", expiresIn: 60, now: now)
        #expect(watch.check([expiring, fine], now: now).map(\.site) == ["shop"])
        #expect(watch.check([expiring, fine], now: now + 60).isEmpty)
        #expect(watch.check([expiring, fine], now: now + day).isEmpty)
        let renewedButStillShort = certificate("shop", expiresIn: 12, now: now)
        #expect(watch.check([renewedButStillShort, fine], now: now + day).map(\.site) == ["shop"])
        let renewed = certificate("shop", expiresIn: 90, now: now)
        #expect(watch.check([renewed, fine], now: now + day).isEmpty)
    }

    @Test func theEventNamesTheDaysAndTheFile() {
        let now = 1_800_000_000.0
        let event = CertificateExpiryWatch.event(certificate("shop", expiresIn: 9.5, now: now), now: now)
        #expect(event.service == "shop" && event.kind == .certificate && event.state == .failed && event.action == "alert")
        #expect(event.message.hasPrefix("certificate expires in 9 days ("))
        #expect(event.message.hasSuffix("and has not been replaced (/etc/shop.pem)"))
        let board = SiteCertificates()
        board.set(certificate("shop", expiresIn: 9.5, now: now))
        board.set(SiteCertificate(site: "auto", issuer: "CN=ACME", names: ["auto.test"], notAfter: now, source: .acme))
        board.keep([], of: .file)
        #expect(board.all.map(\.site) == ["auto"], "only the file certificates are forgotten")
    }
}
