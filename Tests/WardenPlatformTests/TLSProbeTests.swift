import Foundation
import Testing
import WardenConfig
import WardenPlatform
import WardenTestSupport

/// The TLS protocols (smtps, imaps, pops, https) against real servers holding an openssl-made certificate
/// valid for 30 days, and `certificate valid > N days` judged on it.
@Suite("TLS protocol tests against real servers", .serialized)
struct TLSProbeTests {
    let suite = ProtocolProbeTests()

    func certificate(_ directory: TemporaryDirectory, days: Int = 30) throws -> (cert: String, key: String) {
        let cert = directory.path + "/cert.pem"
        let key = directory.path + "/key.pem"
        let made = try TestSupport.run(
            "/usr/bin/openssl",
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "\(days)", "-subj", "/CN=127.0.0.1"])
        #expect(made.status == 0, "\(made.stderr)")
        return (cert, key)
    }

    @Test func smtps() async throws {
        guard let python = TestSupport.server("/usr/bin/python3"), SMTPSink.available else {
            if TestSupport.isCI { Issue.record("aiosmtpd is missing") }
            return
        }
        let directory = try TemporaryDirectory()
        let tls = try certificate(directory)
        let port = TestSupport.freePort()
        let server = try Peer(
            python, ["-m", "aiosmtpd", "-n", "-l", "127.0.0.1:\(port)", "--smtpscert", tls.cert, "--smtpskey", tls.key],
            log: directory.path + "/smtpd.log")
        #expect(await Probe.untilPassing("smtps", port: port).succeeded, "\(server.output)")
        // Plain SMTP on a TLS port is refused by the handshake, not mistaken for a greeting.
        #expect(!(await Probe.check("smtp", port: port)).succeeded)
        try await suite.exercise("smtps", port: port, server: server, directory: directory, garbage: "cannot connect to [127.0.0.1]:\(port) -- SSL handshake failed -- wrong version number")
    }

    @Test func imapsAndPops() async throws {
        let directory = try TemporaryDirectory()
        let tls = try certificate(directory)
        let (imaps, pops) = (TestSupport.freePort(), TestSupport.freePort())
        guard
            let server = try suite.dovecot(
                directory, imap: TestSupport.freePort(), pop: TestSupport.freePort(), imaps: imaps, pops: pops, certificate: tls)
        else { return }
        #expect(await Probe.untilPassing("pops", port: pops).succeeded, "\(server.output)")
        let valid = await Probe.check("imaps", port: imaps, certificateMinimumDays: 10)
        #expect(valid.succeeded, "\(valid.message)")
        let expiring = await Probe.check("imaps", port: imaps, certificateMinimumDays: 60)
        #expect(!expiring.succeeded)
        #expect(expiring.message.hasPrefix("SSL: certificate expires in "), "\(expiring.message)")
        #expect(expiring.message.hasSuffix(" days, valid > 60 days required"), "\(expiring.message)")
        try await suite.exercise("imaps", port: imaps, server: server, directory: directory, garbage: "cannot connect to [127.0.0.1]:\(imaps) -- SSL handshake failed -- wrong version number")
    }

    @Test func httpsCertificateValidity() async throws {
        guard let python = TestSupport.server("/usr/bin/python3") else { return }
        let directory = try TemporaryDirectory()
        let tls = try certificate(directory)
        let port = TestSupport.freePort()
        let script = try directory.write(
            "https.py",
            """
            import http.server, ssl, sys
            class Handler(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
            server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(sys.argv[2], sys.argv[3])
            server.socket = context.wrap_socket(server.socket, server_side=True)
            server.serve_forever()

            """)
        let server = try Peer(python, [script, "\(port)", tls.cert, tls.key], log: directory.path + "/https.log")
        defer { server.stop() }
        func get(days: Int?, checksum: CertificateChecksum? = nil) async -> (ProbeResult, body: String) {
            await ConnectionProbe().http(
                HTTPProbeRequest(
                    host: "127.0.0.1", port: port, path: "/", hostHeader: "127.0.0.1", timeout: .seconds(3), bodyLimit: 1024, tls: true,
                    certificateMinimumDays: days, certificateChecksum: checksum))
        }
        #expect(TestSupport.waitUntil(timeout: 10) { TestSupport.portOpen(port) })
        let (valid, body) = await get(days: 10)
        #expect(valid.succeeded && valid.status == 200 && body == "ok", "\(valid.message) \(server.output)")
        let (expiring, _) = await get(days: 60)
        #expect(!expiring.succeeded)
        #expect(expiring.message.hasPrefix("SSL: certificate expires in "), "\(expiring.message)")
        #expect(expiring.message.hasSuffix(" days, valid > 60 days required"), "\(expiring.message)")

        // `certificate checksum`: the fingerprints openssl prints for the certificate, as monit's manual says to take them.
        for kind in [HashKind.sha1, .md5] {
            let printed = try TestSupport.run("/usr/bin/openssl", ["x509", "-noout", "-fingerprint", "-\(kind.rawValue)", "-in", tls.cert])
            let fingerprint = try #require(printed.stdout.split(separator: "=").last).trimmingCharacters(in: .whitespacesAndNewlines)
            let (matching, _) = await get(days: nil, checksum: CertificateChecksum(kind: nil, expected: fingerprint))
            #expect(matching.succeeded, "\(kind) \(fingerprint): \(matching.message)")
            let wrong = String(repeating: "0", count: kind == .sha1 ? 40 : 32)
            let (other, _) = await get(days: nil, checksum: CertificateChecksum(kind: kind, expected: wrong))
            #expect(!other.succeeded && other.message.hasPrefix("SSL: server certificate checksum failed -- \(kind.rawValue.uppercased()) is "), "\(other.message)")
        }
    }
}
