import Foundation
import Testing
import WardenTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// An HTTP receiver run with /usr/bin/python3 on 127.0.0.1: stores each POST's body as one line of
/// `store` and answers 200 (with TLS when given a certificate).
final class WebhookReceiver {
    let port: Int
    let store: String
    let peer: Peer

    init(directory: TemporaryDirectory, port: Int = TestSupport.freePort(), name: String = "hook", tls: (cert: String, key: String)? = nil) throws {
        self.port = port
        store = directory.path + "/\(name).jsonl"
        let script = try directory.write(
            "\(name).py",
            """
            import http.server, json, ssl, sys
            store = sys.argv[2]
            class H(http.server.BaseHTTPRequestHandler):
                def do_POST(self):
                    body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                    with open(store, "a") as f:
                        f.write(json.dumps(json.loads(body)) + "\\n")
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                def log_message(self, *a): pass
            s = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
            if len(sys.argv) > 3:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(sys.argv[3], sys.argv[4])
                s.socket = context.wrap_socket(s.socket, server_side=True)
            s.serve_forever()
            """)
        var arguments = [script, String(port), store]
        if let tls { arguments += [tls.cert, tls.key] }
        peer = try Peer("/usr/bin/python3", arguments, log: directory.path + "/\(name).log")
        guard TestSupport.waitUntil(timeout: 10, { TestSupport.portOpen(port) }) else {
            throw NotReady(output: peer.output)
        }
    }

    /// Every document received so far, in order.
    var documents: [[String: Any]] {
        let text = (try? String(contentsOfFile: store, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    func stop() { peer.stop() }

    struct NotReady: Error, CustomStringConvertible {
        let output: String
        var description: String { "the webhook receiver did not listen in time; its output:\n\(output)" }
    }
}

/// `set alert webhook`: events posted as JSON through the persistent event queue.
@Suite("Alerts: webhooks", .serialized)
struct WebhookTests {
    func controlFile(_ directory: TemporaryDirectory, _ app: TestApp, hook: String) throws -> String {
        try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set statefile \(directory.path)/state
            set eventqueue basedir \(directory.path)/queue
            \(hook)
            check process app with pidfile \(app.pidfile)
              start program = "\(app.startScript)"
              stop program = "\(app.stopScript)"
              restart delay 1 second to 60 seconds reset after 1 second
            """)
    }

    func queuedPosts(_ directory: TemporaryDirectory) -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory.path + "/queue")) ?? []).filter { $0.hasSuffix(".post") }.count
    }

    /// The receiver is down while warden starts and while it restarts: the alerts wait on disk. Once it
    /// is up, each is posted exactly once (ids unique), and a killed app arrives as its own event.
    @Test func alertsWaitForADownReceiverAcrossARestartAndArriveOnce() throws {
        let directory = try TemporaryDirectory()
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        let port = TestSupport.freePort()
        let rc = try controlFile(directory, app, hook: "set alert webhook \"http://127.0.0.1:\(port)/hook\"")
        var warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log1")
        #expect(TestSupport.waitUntil(timeout: 20) { queuedPosts(directory) >= 1 && warden.log.contains("cannot post to webhook") }, "\(warden.log)")
        warden.stop()
        let queuedAcrossRestart = queuedPosts(directory)
        #expect(queuedAcrossRestart >= 2, "warden's start and stop both wait on disk")
        warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log2")
        defer { warden.stop() }
        #expect(TestSupport.waitUntil(timeout: 20) { warden.log.contains("cannot post to webhook") }, "\(warden.log)")
        let receiver = try WebhookReceiver(directory: directory, port: port)
        defer { receiver.stop() }
        #expect(TestSupport.waitUntil(timeout: 30) { queuedPosts(directory) == 0 && receiver.documents.count >= queuedAcrossRestart + 1 }, "\(warden.log)")
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing })
        kill(try #require(app.pid), SIGKILL)
        #expect(TestSupport.waitUntil(timeout: 20) { receiver.documents.contains { $0["event"] as? String == "Does not exist" } }, "\(warden.log)")
        let documents = receiver.documents
        let ids = documents.compactMap { $0["id"] as? String }
        #expect(ids.count == documents.count && Set(ids).count == ids.count, "each alert posted once: \(ids)")
        let instances = documents.filter { $0["kind"] as? String == "instance" }
        #expect(instances.count >= 3, "start, stop (first run) and start (second run), all delivered: \(instances)")
        let down = try #require(documents.first { $0["event"] as? String == "Does not exist" })
        #expect(down["service"] as? String == "app")
        #expect(down["state"] as? String == "failed")
        #expect(down["action"] as? String == "restart")
        #expect(down["message"] as? String == "process is not running")
        #expect((down["host"] as? String)?.isEmpty == false)
        #expect((down["time"] as? String)?.hasSuffix("Z") == true)
    }

    /// An https webhook is verified against the system's trust store: a self-signed receiver gets nothing
    /// and the alert stays queued.
    @Test func httpsReceiverWithAnUntrustedCertificateGetsNothing() throws {
        let directory = try TemporaryDirectory()
        let tls = try TestSupport.selfSignedCertificate(in: directory)
        let receiver = try WebhookReceiver(directory: directory, tls: (tls.cert, tls.key))
        defer { receiver.stop() }
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        let rc = try controlFile(directory, app, hook: "set alert webhook \"https://127.0.0.1:\(receiver.port)/hook\"")
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(TestSupport.waitUntil(timeout: 20) { warden.log.contains("cannot post to webhook") }, "\(warden.log)")
        #expect(warden.log.contains("CERTIFICATE_VERIFY_FAILED") || warden.log.contains("certificate"), "\(warden.log)")
        #expect(receiver.documents.isEmpty)
        #expect(queuedPosts(directory) >= 1)
    }

    /// A per-service webhook gets that service's events its filter admits; the global one gets all.
    @Test func perServiceWebhookGetsItsServiceOnly() throws {
        let directory = try TemporaryDirectory()
        let global = try WebhookReceiver(directory: directory, name: "global")
        defer { global.stop() }
        let own = try WebhookReceiver(directory: directory, name: "own")
        defer { own.stop() }
        let execOnly = try WebhookReceiver(directory: directory, name: "exec-only")
        defer { execOnly.stop() }
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        let rc = try controlFile(directory, app, hook: "set alert webhook \"http://127.0.0.1:\(global.port)/all\"")
        try String(contentsOfFile: rc, encoding: .utf8)
            .appending(
                """

                  alert webhook "http://127.0.0.1:\(own.port)/app" only on { nonexist }
                  alert webhook "http://127.0.0.1:\(execOnly.port)/app" only on { exec }

                """
            )
            .write(toFile: rc, atomically: false, encoding: .utf8)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing })
        kill(try #require(app.pid), SIGKILL)
        #expect(TestSupport.waitUntil(timeout: 20) { own.documents.count >= 2 && global.documents.count >= 3 }, "\(warden.log)")
        #expect(own.documents.allSatisfy { $0["service"] as? String == "app" && $0["kind"] as? String == "nonexist" }, "\(own.documents)")
        #expect(global.documents.contains { $0["kind"] as? String == "instance" }, "warden's own events go to the global webhook")
        #expect(execOnly.documents.isEmpty, "its filter admits none of the events: \(execOnly.documents)")
    }
}
