import Foundation
import Testing
import WardenPlatform
import WardenTestSupport

/// `protocol http username "u" password "p" checksum HASH` against a server that demands Basic
/// authentication: the credentials are sent, and the whole body is digested, past the body limit.
@Suite("HTTP probe options")
struct HTTPProbeTests {
    static let server = """
        import http.server, sys
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                good = self.headers.get("Authorization") == "Basic dTpw"
                body = b"hello warden body\\n" if good else b"no\\n"
                self.send_response(200 if good else 401)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            def log_message(self, *args): pass
        http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
        """

    @Test func basicAuthenticationAndBodyDigest() async throws {
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        let peer = try Peer("/usr/bin/python3", ["-c", Self.server, "\(port)"], log: directory.path + "/server.log")
        defer { peer.stop() }
        func get(_ credentials: String) async -> ProbeResult {
            var result = ProbeResult(succeeded: false, message: "not tried", responseTime: .zero)
            for _ in 0..<50 {
                result = await ConnectionProbe().http(
                    HTTPProbeRequest(
                        host: "127.0.0.1", port: port, path: "/page", hostHeader: "127.0.0.1", basicAuthorization: credentials,
                        timeout: .seconds(2), bodyLimit: 4, bodyDigest: .md5)).0
                if result.succeeded { break }
                try? await Task.sleep(for: .milliseconds(100))
            }
            return result
        }
        let allowed = await get(Base64.encode(Array("u:p".utf8)))
        #expect(allowed.status == 200, "\(allowed.message)")
        // md5 of "hello warden body\n", all 18 bytes though only 4 are kept for content tests.
        #expect(allowed.bodyDigest == "564d953e1b2b49330c71f6d7635cb9e8")
        let refused = await get(Base64.encode(Array("u:wrong".utf8)))
        #expect(refused.status == 401)
    }
}
