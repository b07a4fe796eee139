import NIOSSL
import Testing

@testable import WardenConfig
import WardenCore
@testable import WardenMail

@Suite("Mail: ssl options")
struct MailTLSConfigTests {
    /// monit's default: a mail server's certificate is not checked; TLS 1.2 and 1.3.
    @Test func nothingIsVerifiedUnlessAsked() throws {
        let configuration = try SSLSettings().clientTLSConfiguration()
        #expect(configuration.certificateVerification == .none)
        #expect(configuration.minimumTLSVersion == .tlsv12 && configuration.maximumTLSVersion == .tlsv13)
    }

    @Test func verifyEnableChecksAgainstTheGivenCAs() throws {
        var ssl = SSLSettings()
        ssl.verify = true
        #expect(try ssl.clientTLSConfiguration().certificateVerification == .fullVerification)
        #expect(try ssl.clientTLSConfiguration().trustRoots == .default)
        ssl.caCertificateFile = "/etc/warden/ca.pem"
        ssl.caCertificatePath = "/etc/warden/cas"
        ssl.versions = .v1_3 ... .v1_3
        let configuration = try ssl.clientTLSConfiguration()
        #expect(configuration.trustRoots == .file("/etc/warden/ca.pem"))
        #expect(configuration.additionalTrustRoots == [.file("/etc/warden/cas")])
        #expect(configuration.minimumTLSVersion == .tlsv13)
    }
}
