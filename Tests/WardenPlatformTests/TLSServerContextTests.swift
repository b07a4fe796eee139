import NIOSSL
import Testing
import WardenPlatform
import WardenTestSupport

/// One TLS server configuration for the dashboard and the proxy (issue 23).
@Suite("TLS server context")
struct TLSServerContextTests {
    @Test func tls12And13WithForwardSecretSuitesUnlessMonitsOptionsSayOtherwise() throws {
        let directory = try TemporaryDirectory()
        let issued = try TestCA("server", in: directory).issue("site", names: ["app.test"])
        let chain = try NIOSSLCertificate.fromPEMFile(issued.certificate)
        let key = try NIOSSLPrivateKey(file: issued.key, format: .pem)
        let proxy = TLSServerContext.configuration(chain: chain, key: key, protocols: TLSServerContext.http2AndHTTP1)
        #expect(proxy.minimumTLSVersion == .tlsv12 && proxy.maximumTLSVersion == .tlsv13)
        #expect(proxy.applicationProtocols == ["h2", "http/1.1"])
        #expect(proxy.cipherSuites.split(separator: ":").allSatisfy { $0.hasPrefix("ECDHE-") })
        #expect(try NIOSSLContext(configuration: proxy).configuration.cipherSuites == TLSServerContext.cipherSuites)
        let dashboard = TLSServerContext.configuration(chain: chain, key: key, protocols: TLSServerContext.http1, versions: 3...3, ciphers: "ECDHE-ECDSA-AES256-GCM-SHA384")
        #expect(dashboard.minimumTLSVersion == .tlsv13 && dashboard.cipherSuites == "ECDHE-ECDSA-AES256-GCM-SHA384")
    }
}
