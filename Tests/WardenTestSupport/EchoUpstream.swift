import Foundation

/// An HTTP/1.1 upstream for proxy tests (Python's http.server on 127.0.0.1): echoes what it received
/// as JSON, redirects, streams large bodies, counts uploads, stalls on demand, echoes WebSocket frames.
/// `/body?n=BYTES&type=TYPE` answers a JSON array of about BYTES bytes (the same for the same n), as
/// `Content-Length` or (`&chunked=1`) in chunks of up to 5,000 bytes written one by one, gzipped
/// beforehand with `&gzip=1`, with `&header=Name:Value` lines added; it answers a `Range` with 206.
public final class EchoUpstream {
    public let port: Int
    public let process = Process()

    public init(port: Int = TestSupport.freePort(), directory: TemporaryDirectory) throws {
        self.port = port
        let script = try directory.write(
            "upstream.py",
            """
            import base64, gzip, hashlib, http.server, json, sys, time, urllib.parse
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
                def websocket(self):
                    # The handshake and a greeting frame in one write: the proxy must pass on bytes that follow the 101.
                    key = self.headers["Sec-WebSocket-Key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
                    accept = base64.b64encode(hashlib.sha1(key.encode()).digest()).decode()
                    self.wfile.write(("HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
                        "Sec-WebSocket-Accept: %s\\r\\n\\r\\n" % accept).encode() + b"\\x81\\x05hello")
                    while True:
                        head = self.rfile.read(2)
                        if len(head) < 2: break
                        opcode, n = head[0] & 0x0f, head[1] & 0x7f
                        if n == 126: n = int.from_bytes(self.rfile.read(2), "big")
                        mask = self.rfile.read(4) if head[1] & 0x80 else b"\\0\\0\\0\\0"
                        data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
                        if opcode == 8:
                            self.wfile.write(b"\\x88\\x00"); break
                        self.wfile.write(bytes([0x80 | opcode, len(data)]) + data)
                    self.close_connection = True
                def body(self):
                    q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                    n = int(q.get("n", ["0"])[0])
                    items = [b'{"id": %d, "name": "item %d", "tags": ["warden", "proxy"], "ok": true}' % (i, i * 7919 % 1000) for i in range(n // 72 + 1)]
                    data = b"[" + b",\\n".join(items) + b"]" if n else b""
                    headers = [("Content-Type", q.get("type", ["application/json"])[0])] + [tuple(h.split(":", 1)) for h in q.get("header", [])]
                    if "gzip" in q:
                        data = gzip.compress(data, mtime=0); headers.append(("Content-Encoding", "gzip"))
                    status, wanted = 200, self.headers.get("Range", "")
                    if wanted.startswith("bytes=") and data:
                        first, _, last = wanted[6:].partition("-")
                        first, last = int(first), min(int(last or len(data) - 1), len(data) - 1)
                        headers.append(("Content-Range", "bytes %d-%d/%d" % (first, last, len(data))))
                        status, data = 206, data[first:last + 1]
                    self.send_response(status)
                    for k, v in headers: self.send_header(k, v)
                    if "chunked" not in q:
                        self.send_header("Content-Length", str(len(data))); self.end_headers()
                        if self.command != "HEAD": self.wfile.write(data)
                        return
                    self.send_header("Transfer-Encoding", "chunked"); self.end_headers()
                    if self.command == "HEAD": return
                    for i in range(0, len(data), 5000):
                        piece = data[i:i + 5000]
                        self.wfile.write(b"%x\\r\\n%s\\r\\n" % (len(piece), piece)); self.wfile.flush()
                    self.wfile.write(b"0\\r\\n\\r\\n")
                def handle_any(self):
                    if self.headers.get("Upgrade", "").lower() == "websocket":
                        return self.websocket()
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
                    if self.path.startswith("/body"):
                        return self.body()
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
        let errorLog = directory.path + "/upstream-\(port).err"
        _ = FileManager.default.createFile(atPath: errorLog, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: errorLog))
        process.standardOutput = FileHandle.nullDevice
        process.standardError = handle
        try process.run()
        let peer = self.process
        // Answering, or exited (a syntax error, a port in use): either ends the wait at once.
        TestSupport.waitUntil(timeout: 10) { !peer.isRunning || TestSupport.portOpen(port) }
        guard peer.isRunning, TestSupport.httpGet(port: port, path: "/ready") != nil else {
            let exited = !peer.isRunning
            stop()
            throw PeerStartError(
                peer: "echo upstream on port \(port)", exited: exited,
                output: (try? String(contentsOfFile: errorLog, encoding: .utf8)) ?? "")
        }
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
