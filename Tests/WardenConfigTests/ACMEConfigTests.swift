import Testing

@testable import WardenConfig

@Suite("Config: set acme, tls auto, redirect to https, hsts")
struct ACMEConfigTests {
    func parse(_ text: String) -> LoadResult { ControlFile.parse(text, path: "test.rc") }

    static let site = """
        check site app with host "App.test" alias "www.app.test"
            pass / to http://127.0.0.1:8080/
        """

    @Test func everyOptionIsRead() throws {
        let result = parse(
            """
            set acme directory "https://ca.test/dir" email "ops@app.test" storage /var/lib/warden/acme
                trust "/etc/warden/ca.pem" renew before 30 days challenge tls-alpn-01 key rsa
            set proxy
                listen 127.0.0.1 port 80
                listen 127.0.0.1 port 443 tls auto
            \(Self.site)
                redirect to https
                hsts max-age 1 year include subdomains
            """)
        #expect(!result.diagnostics.hasErrors, "\(result.renderedDiagnostics())")
        let configuration = try #require(result.configuration)
        let acme = try #require(configuration.acme)
        #expect(acme.directory == "https://ca.test/dir" && acme.email == "ops@app.test" && acme.storage == "/var/lib/warden/acme")
        #expect(acme.trust == "/etc/warden/ca.pem" && acme.renewBefore == 30 * 86400 && acme.challenge == .tlsALPN01 && acme.keyType == .rsa)
        #expect(configuration.proxy?.listens.map(\.automaticTLS) == [false, true])
        #expect(configuration.proxy?.listens[1].isTLS == true)
        let site = try #require(configuration.sites.first)
        #expect(site.redirectToHTTPS)
        #expect(site.hsts == Site.HSTS(maxAge: 31_536_000, includeSubdomains: true))
        #expect(site.hsts?.headerValue == "max-age=31536000; includeSubDomains")
        #expect(site.certificateNames == ["app.test", "www.app.test"])
    }

    @Test func hstsAgesInSecondsAndDays() throws {
        for (text, seconds) in [("max-age 600", 600), ("max-age 2 days", 172_800), ("max-age 6 months", 15_552_000)] {
            let result = parse("set proxy listen port 443 tls auto\nset acme directory https://ca.test/dir storage /a\n\(Self.site)\n    hsts \(text)")
            #expect(result.configuration?.sites.first?.hsts == Site.HSTS(maxAge: seconds, includeSubdomains: false), "\(result.renderedDiagnostics())")
        }
    }

    @Test func tlsAutoWithoutSetACMEIsAnErrorAtItsListenLine() {
        let result = parse("set proxy\n    listen 127.0.0.1 port 443 tls auto\n\(Self.site)")
        #expect(result.renderedDiagnostics().contains("test.rc:2:31: error: 'tls auto' needs 'set acme'"), "\(result.renderedDiagnostics())")
    }

    @Test func mistakesAreReportedWithTheirPlace() {
        let cases: [(String, String)] = [
            ("set acme directory \"http://ca.test/dir\" storage /a", "test.rc:1:20: error: the ACME directory must be an https:// URL"),
            ("set acme directory \"https://ca.test/dir\"", "error: expected 'storage /PATH' in 'set acme'"),
            ("set acme storage /a", "error: expected 'directory \"https://…\"' in 'set acme'"),
            ("set acme directory https://ca.test/d storage acme", "error: the ACME storage directory must be an absolute path"),
            ("set acme directory https://ca.test/d storage /a challenge dns-01", "test.rc:1:59: error: expected one of 'http-01', 'tls-alpn-01' after 'challenge'"),
            ("set acme directory https://ca.test/d storage /a email nobody", "error: expected an email address, found 'nobody'"),
            ("set acme directory https://ca.test/d storage /a challenge http-01\nset proxy listen port 443 tls auto\n\(Self.site)",
             "test.rc:1:5: error: 'challenge http-01' needs a listener without TLS (port 80) to answer on"),
            ("set proxy listen port 80\n\(Self.site)\n    redirect to https", "error: site 'app' redirects to HTTPS or sends HSTS, but the proxy has no TLS listener"),
            ("set proxy listen port 443 tls auto\nset acme directory https://ca.test/d storage /a\n\(Self.site)\n    hsts max-age forever", "test.rc:5:18: error:"),
        ]
        for (text, expected) in cases {
            #expect(parse(text).renderedDiagnostics().contains(expected), "\(text)\n\(parse(text).renderedDiagnostics())")
        }
    }

    @Test func warnsAboutWhatWouldGetNoCertificate() {
        let unused = parse("set acme directory https://ca.test/d storage /a\nset proxy listen port 80\n\(Self.site)")
        #expect(unused.renderedDiagnostics().contains("warning: 'set acme' without a 'listen … tls auto'"))
        let nameless = parse("set acme directory https://ca.test/d storage /a\nset proxy listen port 443 tls auto\ncheck site any with default\n    pass / to http://127.0.0.1:1/")
        #expect(nameless.renderedDiagnostics().contains("warning: site 'any' has no host name"))
    }
}
