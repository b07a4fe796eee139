import Testing

@testable import WardenConfig

@Suite("Config: https upstreams and monit's ssl options")
struct TLSConfigTests {
    func parse(_ text: String) -> LoadResult { ControlFile.parse(text, path: "test.rc") }

    @Test func anHTTPSUpstreamVerifiesByDefault() throws {
        let result = parse(
            """
            set proxy listen 127.0.0.1 port 8080
            check site app default
                pass / to https://api.internal:8443/ for service api
            check process api matching "api"
                start program = "/bin/true"
            """)
        #expect(!result.diagnostics.hasErrors && result.diagnostics.warnings.isEmpty, "\(result.renderedDiagnostics())")
        let route = try #require(result.configuration?.sites.first?.routes.first)
        #expect(route.tls == UpstreamTLS())
        #expect(route.tls?.verify == true)
        guard case .upstream(let url, let service) = route.target else { Issue.record("not an upstream"); return }
        #expect(url.scheme == "https" && url.host == "api.internal" && url.port == 8443 && service == "api")
    }

    @Test func everyUpstreamOptionIsRead() throws {
        let result = parse(
            """
            check site app default
                pass / to https://10.0.0.5:8443/ ca /etc/warden/ca.pem sni api.internal
                    certificate /etc/warden/client.pem key /etc/warden/client.key
            """)
        #expect(!result.diagnostics.hasErrors, "\(result.renderedDiagnostics())")
        let tls = try #require(result.configuration?.sites.first?.routes.first?.tls)
        #expect(tls.verify && tls.caFile == "/etc/warden/ca.pem" && tls.serverName == "api.internal")
        #expect(tls.certificate == "/etc/warden/client.pem" && tls.key == "/etc/warden/client.key")
    }

    @Test func verifyOffIsAcceptedWithAWarningAtItsPlace() throws {
        let result = parse(
            """
            check site app default
                pass / to https://127.0.0.1:8443/ verify off
            """)
        #expect(!result.diagnostics.hasErrors)
        #expect(result.configuration?.sites.first?.routes.first?.tls?.verify == false)
        #expect(result.renderedDiagnostics().contains("test.rc:2:39: warning: 'verify off': the upstream's certificate is not checked"), "\(result.renderedDiagnostics())")
    }

    @Test func tlsOptionsOnAPlainUpstreamAreAnError() {
        let result = parse(
            """
            check site app default
                pass / to http://127.0.0.1:8080/ ca /etc/ca.pem
            """)
        #expect(result.renderedDiagnostics().contains("test.rc:2:38: error: 'ca' applies to an https:// upstream only"), "\(result.renderedDiagnostics())")
    }

    @Test func mailServerSSLOptionsMergeOverTheGlobalOnes() throws {
        let result = parse(
            """
            set ssl { verify: enable, cacertificatepath: /etc/ssl/certs }
            set mailserver smtp.a.test port 465 using ssl { cacertificatefile: /etc/warden/a-ca.pem, version: tlsv13 },
                smtp.b.test using tls
            """)
        #expect(!result.diagnostics.hasErrors, "\(result.renderedDiagnostics())")
        let servers = try #require(result.configuration?.mailServers)
        #expect(servers[0].ssl.verify == true && servers[0].ssl.caCertificateFile == "/etc/warden/a-ca.pem")
        #expect(servers[0].ssl.caCertificatePath == "/etc/ssl/certs" && servers[0].ssl.versions == .v1_3 ... .v1_3)
        #expect(servers[1].ssl.verify == true && servers[1].ssl.caCertificateFile == nil && servers[1].ssl.versions == nil)
    }

    @Test func versionLists() throws {
        #expect(try Parser.tlsVersions("auto").get() == .v1_2 ... .v1_3)
        #expect(try Parser.tlsVersions("auto -sslv3 -tlsv1 -tlsv11").get() == .v1_2 ... .v1_3)
        #expect(try Parser.tlsVersions("tlsv12").get() == .v1_2 ... .v1_2)
        #expect(try Parser.tlsVersions("auto -tlsv12").get() == .v1_3 ... .v1_3)
        #expect((try? Parser.tlsVersions("sslv3").get()) == nil)
        #expect((try? Parser.tlsVersions("tlsv1 tlsv13").get()) == nil, "a gap")
    }

    /// What warden cannot honour is refused where it is written, never dropped.
    @Test func optionsWithoutEffectAreRefused() {
        let cases = [
            "set mailserver smtp.test using ssl { selfsigned: allow }": "warden cannot apply 'selfsigned' here",
            "set mailserver smtp.test using ssl { pemfile: /etc/x.pem }": "warden cannot apply 'pemfile' here",
            "set ssl { clientpemfile: /etc/x.pem }": "warden cannot apply 'clientpemfile' here",
            "set ssl { verify: maybe }": "expected 'enable' or 'disable' for 'verify'",
            "set ssl { verfy: enable }": "unknown key 'verfy'",
            "set httpd port 2812 with ssl { pemfile: /etc/x.pem, cacertificatefile: /etc/ca.pem } allow localhost":
                "warden cannot apply 'cacertificatefile' here",
            "set httpd port 2812 with ssl { pemfile: /etc/x.pem, verify: enable } allow localhost": "'verify: enable' on the dashboard checks client certificates",
            "check host web address 127.0.0.1\n    if failed port 443 ssl options { pemkey: /etc/x.key } then alert": "warden cannot apply 'pemkey' here",
            "check host web address 127.0.0.1\n    if failed url http://web/ ssl options { verify: enable } then alert": "'ssl' needs an https URL",
        ]
        for (text, expected) in cases {
            let rendered = parse(text).renderedDiagnostics()
            #expect(rendered.contains("error: \(expected)"), "\(text)\n\(rendered)")
        }
    }

    /// `set ssl` is what a TLS port test's own options fall back to, as in monit.
    @Test func aPortTestTakesTheGlobalOptionsItDoesNotSet() throws {
        let result = parse(
            """
            set ssl { verify: enable, cacertificatefile: /etc/ca.pem }
            check host web address 127.0.0.1
                if failed port 443 ssl options { version: tlsv13 } then alert
            """)
        #expect(!result.diagnostics.hasErrors, "\(result.renderedDiagnostics())")
        let configuration = try #require(result.configuration)
        guard case .connection(let test) = try #require(configuration.services.first?.rules.first).condition else {
            Issue.record("not a connection test")
            return
        }
        let effective = test.ssl.merged(over: configuration.ssl)
        #expect(effective.verify == true && effective.caCertificateFile == "/etc/ca.pem" && effective.versions == .v1_3 ... .v1_3)
        let url = parse("check host web address 127.0.0.1\n    if failed url https://web/ ssl options { verify: enable } then alert")
        guard case .connection(let urlTest)? = url.configuration?.services.first?.rules.first?.condition else {
            Issue.record("not a URL test: \(url.renderedDiagnostics())")
            return
        }
        #expect(urlTest.ssl.verify == true)
    }

    @Test func dashboardClientCertificates() throws {
        let result = parse(
            """
            set httpd port 2812 with ssl { pemfile: /etc/warden/dash.pem, clientpemfile: /etc/warden/clients.pem, verify: enable }
                allow localhost
            """)
        #expect(!result.diagnostics.hasErrors, "\(result.renderedDiagnostics())")
        let ssl = try #require(result.configuration?.httpd?.ssl)
        #expect(ssl.pemfile == "/etc/warden/dash.pem" && ssl.clientPemfile == "/etc/warden/clients.pem" && ssl.verify == true)
    }
}
