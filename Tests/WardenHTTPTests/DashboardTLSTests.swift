import NIOSSL
import Testing
import WardenConfig
import WardenTestSupport
@testable import WardenHTTP

@Suite("Dashboard TLS: monit's clientpemfile")
struct DashboardTLSTests {
    /// A client certificate must be listed (not only signed by a listed CA), and a self-signed one
    /// needs `selfsigned: allow`, as monit decides.
    @Test func listedCertificatesOnlyAndSelfSignedOnRequest() throws {
        let directory = try TemporaryDirectory()
        let ca = try TestCA("dash", in: directory)
        let alice = try NIOSSLCertificate.fromPEMFile(try ca.issue("alice", names: ["alice.test"]).certificate)
        let bob = try NIOSSLCertificate.fromPEMFile(try ca.issue("bob", names: ["bob.test"]).certificate)
        let selfSigned = try NIOSSLCertificate.fromPEMFile(ca.certificate)
        let strict = ClientCertificates(listed: selfSigned + alice, allowSelfSigned: false)
        #expect(strict.refusal(of: alice[0]) == nil)
        #expect(strict.refusal(of: bob[0]) == "the client certificate is not listed in 'clientpemfile'")
        #expect(strict.refusal(of: selfSigned[0]) == "self-signed client certificates need 'selfsigned: allow'")
        #expect(ClientCertificates(listed: selfSigned, allowSelfSigned: true).refusal(of: selfSigned[0]) == nil)
    }

    @Test func clientPemfileAsksForAndChecksClientCertificates() throws {
        let directory = try TemporaryDirectory()
        let ca = try TestCA("dash", in: directory)
        var ssl = SSLSettings()
        ssl.pemfile = try ca.issue("server", names: ["127.0.0.1"]).pem
        #expect(try DashboardTLS(ssl)?.clients == nil)
        ssl.clientPemfile = ca.certificate
        #expect(try DashboardTLS(ssl)?.clients?.listed == NIOSSLCertificate.fromPEMFile(ca.certificate))
        #expect(try DashboardTLS(SSLSettings()) == nil, "'ssl enable' without a certificate serves no HTTPS, as before")
    }
}
