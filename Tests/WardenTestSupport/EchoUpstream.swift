import Foundation

/// An HTTP/1.1 upstream for proxy tests (Python's http.server on 127.0.0.1): echoes what it received
/// as JSON, redirects, streams large bodies, counts uploads, stalls on demand.
public final class EchoUpstream {
    public let port: Int
    public let process = Process()

    public init(port: Int = TestSupport.freePort(), directory: TemporaryDirectory) throws {
        self.port = port
        let script = try directory.write(
            "upstream.py",
            """
            import http.server, json, sys, time
            class H(http.server.BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"
                def log_message(self, *a): pass
                def reply(self, status, body, headers=()):
                    self.send_response(status)
                    for k, v in headers: self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command != "HEAD": self.wfile.write(body)
                def read_body(self):
                    if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                        total = 0
                        while True:
                            size = int(self.rfile.readline().strip().split(b";")[0], 16)
                            if size == 0:
                                self.rfile.readline(); return total
                            left = size
                            while left:
                                left -= len(self.rfile.read(min(left, 1 << 20)))
                            total += size; self.rfile.readline()
                    n = int(self.headers.get("Content-Length", 0)); total = 0
                    while total < n: total += len(self.rfile.read(min(n - total, 1 << 20)))
                    return total
                def handle_any(self):
                    received = self.read_body()
                    if self.path.startswith("/redirect"):
                        return self.reply(302, b"moved", [("Location", "http://127.0.0.1:%d/landing" % PORT), ("Refresh", "0; url=http://127.0.0.1:%d/x" % PORT)])
                    if self.path.startswith("/relative"):
                        return self.reply(302, b"moved", [("Location", "image")])
                    if self.path.startswith("/big"):
                        n = int(self.path.split("=")[1]); chunk = b"x" * (1 << 20)
                        self.send_response(200); self.send_header("Content-Length", str(n << 20)); self.end_headers()
                        for _ in range(n): self.wfile.write(chunk)
                        return
                    if self.path.startswith("/slow"):
                        time.sleep(float(self.path.split("=")[1]))
                    if self.path.startswith("/status"):
                        return self.reply(int(self.path.split("=")[1]), b"status")
                    body = json.dumps({"method": self.command, "path": self.path, "received": received,
                        "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
                    self.reply(200, body, [("Content-Type", "application/json"), ("Connection", "keep-alive"), ("Keep-Alive", "timeout=5")])
                do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any
            PORT = int(sys.argv[1])
            http.server.ThreadingHTTPServer.daemon_threads = True
            http.server.ThreadingHTTPServer(("127.0.0.1", PORT), H).serve_forever()
            """, mode: 0o644)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [script, String(port)]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        TestSupport.waitUntil(timeout: 10) { TestSupport.httpGet(port: port, path: "/ready") != nil }
    }

    public func stop() {
        if process.isRunning {
            // SIGKILL: the test runner may start children with SIGTERM ignored.
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}
