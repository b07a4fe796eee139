import Foundation
import Testing
import WardenTestSupport

/// `warden reload` swaps the proxy's sites without closing a connection (issue 25).
@Suite("Proxy reload", .serialized)
struct ProxyReloadTests {
    func controlFile(upstreamPort: Int, accessLog: String, proxyPort: Int, in directory: TemporaryDirectory) -> String {
        """
        set daemon 1
        set pidfile \(directory.path)/warden.pid
        set proxy
            listen 127.0.0.1 port \(proxyPort)
        check site main default
            pass / to http://127.0.0.1:\(upstreamPort)/
            access log \(accessLog) combined
        """
    }

    /// Before the reload, site `main` passes to upstream A and logs to a.log; after it, to B and
    /// b.log. A request that A has received and holds when SIGHUP arrives is answered by A and
    /// logged in a.log; a keep-alive connection left idle across the reload carries its next
    /// request to B, on the same socket.
    @Test func aReloadLetsARequestInFlightFinishWithItsSiteAndKeepsIdleConnections() throws {
        let directory = try TemporaryDirectory()
        let old = try CountingUpstream(directory: directory)
        let new = try CountingUpstream(directory: directory)
        let (oldLog, newLog) = (directory.path + "/a.log", directory.path + "/b.log")
        let port = TestSupport.freePort()
        let rc = try directory.write("wardenrc", controlFile(upstreamPort: old.port, accessLog: oldLog, proxyPort: port, in: directory))
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        try #require(warden.waitForLog("proxy listening", timeout: 15), "\(warden.log)")

        let go = directory.path + "/go"
        let client = Background {
            try? TestSupport.run("/usr/bin/python3", ["-c", """
                import os, socket, threading, time
                def exchange(s, path):
                    s.sendall(("GET %s HTTP/1.1\\r\\nHost: main\\r\\n\\r\\n" % path).encode())
                    data = b""
                    while b"\\r\\n\\r\\n" not in data or len(data.split(b"\\r\\n\\r\\n", 1)[1]) < len(path):
                        chunk = s.recv(65536)
                        if not chunk: return "closed"
                        data += chunk
                    return data.split(b"\\r\\n")[0].decode() + " " + data.split(b"\\r\\n\\r\\n", 1)[1].decode()
                idle = socket.create_connection(("127.0.0.1", \(port)), timeout=30)
                first = exchange(idle, "/before")
                inflight = {}
                def hold():
                    s = socket.create_connection(("127.0.0.1", \(port)), timeout=30)
                    inflight["answer"] = exchange(s, "/hold/inflight")
                held = threading.Thread(target=hold); held.start()
                while not os.path.exists("\(go)"): time.sleep(0.01)
                after = exchange(idle, "/after")
                held.join()
                print(first); print(inflight["answer"]); print(after)
                """], timeout: 60).stdout
        }
        // Provably in flight: the old upstream has the request and has not answered.
        #expect(TestSupport.waitUntil(timeout: 10) { old.received("GET", "/hold/inflight") == 1 }, "\(old.events)")
        _ = try directory.write("wardenrc", controlFile(upstreamPort: new.port, accessLog: newLog, proxyPort: port, in: directory))
        warden.signal(SIGHUP)
        #expect(warden.waitForLog("reloaded", timeout: 10), "\(warden.log)")
        // The proxy has the new sites once a new connection reaches B.
        #expect(TestSupport.waitUntil(timeout: 10) { TestSupport.httpGet(port: port, path: "/probe")?.body == "/probe" && new.received("GET", "/probe") >= 1 })
        _ = FileManager.default.createFile(atPath: go, contents: nil)
        #expect(TestSupport.waitUntil(timeout: 10) { new.received("GET", "/after") == 1 }, "the idle connection's next request went to the new site: \(new.events)")
        old.release("inflight")
        let output = try #require(client.value(timeout: 30) ?? nil, "the client did not finish")
        #expect(output == "HTTP/1.1 200 OK /before\nHTTP/1.1 200 OK /hold/inflight\nHTTP/1.1 200 OK /after\n", "\(output)")
        #expect(old.received("GET", "/hold/inflight") == 1 && new.received("GET", "/hold/inflight") == 0, "answered by the old site's upstream, sent once")
        #expect(old.received("GET", "/after") == 0)
        let oldLines = (try? String(contentsOfFile: oldLog, encoding: .utf8)) ?? ""
        let newLines = (try? String(contentsOfFile: newLog, encoding: .utf8)) ?? ""
        #expect(oldLines.contains("\"GET /hold/inflight HTTP/1.1\" 200") && !newLines.contains("/hold/inflight"), "logged by its old site: \(oldLines) | \(newLines)")
        #expect(newLines.contains("\"GET /after HTTP/1.1\" 200"), "\(newLines)")
    }
}
