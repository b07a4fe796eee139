import Foundation

/// An HTTP/1.1 upstream that records what the proxy does to it (Python sockets on 127.0.0.1, a
/// thread per connection): one line per accepted connection (`accept`) and per request received
/// (`GET /path`, `POST /path`) in `events`. It answers every request with its path as the body and
/// keeps the connection open, except a request for a path starting with `/stale` that arrives as the
/// second one on its connection: that one is read whole, then the connection is closed without an
/// answer, as an upstream closing an idle kept-alive connection just as the proxy reuses it. A
/// request for `/hold/NAME` is recorded at once and answered only after `release("NAME")`: it is
/// provably in flight meanwhile. A path starting with `/chunked` is answered with chunked encoding,
/// a chunk per 3 bytes of the path. With `tls`, it speaks HTTPS with that certificate and key
/// (`accept` is noted before the handshake, `sni NAME` during it, `handshake-failed` when one fails).
public final class CountingUpstream {
    public let port: Int
    public let process = Process()
    private let eventLog: String
    private let directory: String

    public init(directory: TemporaryDirectory, port: Int = TestSupport.freePort(), tls: (certificate: String, key: String)? = nil) throws {
        self.port = port
        eventLog = directory.path + "/upstream-\(port).events"
        self.directory = directory.path
        let script = try directory.write(
            "counting-upstream.py",
            """
            import socket, sys, threading
            import os, ssl, time
            port, log, folder = int(sys.argv[1]), sys.argv[2], sys.argv[3]
            tls = None
            if len(sys.argv) > 5:
                tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                tls.load_cert_chain(sys.argv[4], sys.argv[5])
                tls.sni_callback = lambda conn, name, context: note("sni %s" % name)
            lock = threading.Lock()
            def note(line):
                with lock:
                    with open(log, "a") as f: f.write(line + "\\n")
            def serve(conn):
                buf, served = b"", 0
                if tls:
                    try:
                        conn.settimeout(10)
                        conn = tls.wrap_socket(conn, server_side=True)
                        conn.settimeout(None)
                    except Exception as e:
                        note("handshake-failed")
                        conn.close()
                        return
                try:
                    while True:
                        while b"\\r\\n\\r\\n" not in buf:
                            data = conn.recv(65536)
                            if not data: return
                            buf += data
                        head, buf = buf.split(b"\\r\\n\\r\\n", 1)
                        lines = head.decode("latin-1").split("\\r\\n")
                        method, path = lines[0].split(" ")[:2]
                        length = 0
                        for line in lines[1:]:
                            name, _, value = line.partition(":")
                            if name.strip().lower() == "content-length": length = int(value.strip())
                        while len(buf) < length:
                            data = conn.recv(65536)
                            if not data: return
                            buf += data
                        buf = buf[length:]
                        note("%s %s" % (method, path))
                        served += 1
                        if path.startswith("/stale") and served == 2: return
                        if path.startswith("/hold/"):
                            gate = "%s/release-%d-%s" % (folder, port, path[6:])
                            while not os.path.exists(gate): time.sleep(0.01)
                        body = path.encode()
                        if path.startswith("/chunked"):
                            chunks = b"".join(b"%x\\r\\n%s\\r\\n" % (len(body[i:i + 3]), body[i:i + 3]) for i in range(0, len(body), 3))
                            conn.sendall(b"HTTP/1.1 200 OK\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n" + chunks + b"0\\r\\n\\r\\n")
                            continue
                        conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body)
                finally:
                    conn.close()
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port)); s.listen(128)
            open(log, "w").close()
            while True:
                conn, _ = s.accept()
                note("accept")
                threading.Thread(target=serve, args=(conn,), daemon=True).start()
            """, mode: 0o644)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [script, String(port), eventLog, directory.path] + (tls.map { [$0.certificate, $0.key] } ?? [])
        let errorLog = directory.path + "/upstream-\(port).err"
        _ = FileManager.default.createFile(atPath: errorLog, contents: nil)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errorLog))
        try process.run()
        let peer = process
        TestSupport.waitUntil(timeout: 10) { !peer.isRunning || TestSupport.portOpen(port) }
        guard peer.isRunning else {
            throw PeerStartError(
                peer: "counting upstream on port \(port)", exited: true, output: (try? String(contentsOfFile: errorLog, encoding: .utf8)) ?? "")
        }
        // The readiness probe's own connection is not the proxy's.
        TestSupport.waitUntil(timeout: 5) { events.contains("accept") && (tls == nil || events.contains("handshake-failed")) }
        try? "".write(toFile: eventLog, atomically: false, encoding: .utf8)
    }

    /// What happened so far, in order.
    public var events: [String] {
        ((try? String(contentsOfFile: eventLog, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    public var acceptedConnections: Int { events.count { $0 == "accept" } }

    /// How many times a request for `path` with `method` arrived.
    public func received(_ method: String, _ path: String) -> Int { events.count { $0 == "\(method) \(path)" } }

    /// Lets the upstream answer its `/hold/NAME` request.
    public func release(_ name: String) {
        _ = FileManager.default.createFile(atPath: "\(directory)/release-\(port)-\(name)", contents: nil)
    }

    public func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}
