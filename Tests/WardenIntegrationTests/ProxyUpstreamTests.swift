import Foundation
import Testing
import WardenTestSupport

/// What the proxy does to its upstream connections, counted at the upstream: pooling, back-pressure
/// toward a slow client, and which requests are sent again on a fresh connection (issue 25).
@Suite("Proxy upstream connections", .serialized)
struct ProxyUpstreamTests {
    func startWarden(upstreamPort: Int, in directory: TemporaryDirectory) throws -> (warden: WardenProcess, port: Int) {
        let port = TestSupport.freePort()
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set proxy
                listen 127.0.0.1 port \(port)
            check site main default
                pass / to http://127.0.0.1:\(upstreamPort)/
                error log \(directory.path)/error.log
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        try #require(warden.waitForLog("proxy listening", timeout: 15), "\(warden.log)")
        return (warden, port)
    }

    func python(_ script: String, timeout: Double = 120) throws -> [String] {
        let result = try TestSupport.run("/usr/bin/python3", ["-c", script], timeout: timeout)
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        return result.stdout.split(separator: "\n").map(String.init)
    }

    /// 1,000 requests on 4 keep-alive client connections: at most 4 are in flight at once, so a pool
    /// that reuses its connections opens at most 4 to the upstream (without a pool, 1,000).
    @Test func aThousandKeepAliveRequestsReuseAFewUpstreamConnections() throws {
        let directory = try TemporaryDirectory()
        let upstream = try CountingUpstream(directory: directory)
        let (warden, port) = try startWarden(upstreamPort: upstream.port, in: directory)
        defer { warden.stop() }
        let lines = try python(
            """
            import http.client, threading
            ok = []
            def client(number):
                conn = http.client.HTTPConnection("127.0.0.1", \(port), timeout=10)
                for i in range(250):
                    path = "/pool/%d/%d" % (number, i)
                    conn.request("GET", path)
                    r = conn.getresponse()
                    ok.append(r.status == 200 and r.read() == path.encode())
            threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
            for t in threads: t.start()
            for t in threads: t.join()
            print(len(ok), sum(ok))
            """)
        #expect(lines == ["1000 1000"], "every request answered with its own path")
        #expect(upstream.events.count { $0.hasPrefix("GET /pool/") } == 1000, "each sent once")
        #expect((1...4).contains(upstream.acceptedConnections), "\(upstream.acceptedConnections) upstream connections for 1,000 requests")
    }

    /// A client that reads a 300 MB body slowly (it sleeps between reads): the upstream is read only
    /// as fast as the client takes the bytes, so the download adds under 10 MB to warden's memory.
    @Test func aSlowReaderOfA300MBBodyAddsUnder10MBToWarden() throws {
        let directory = try TemporaryDirectory()
        let upstream = try EchoUpstream(directory: directory)
        let (warden, port) = try startWarden(upstreamPort: upstream.port, in: directory)
        defer { warden.stop() }
        func memory(_ field: String) throws -> Int {
            let status = try String(contentsOfFile: "/proc/\(warden.pid)/status", encoding: .utf8)
            return try #require(status.split(separator: "\n").first { $0.hasPrefix(field) }.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") })
        }
        // After a first request, so what every proxied request needs (event loops, buffers) is there.
        #expect(TestSupport.httpGet(port: port, path: "/big?n=1")?.status == 200)
        let before = try memory("VmRSS:")
        let lines = try python(
            """
            import socket, time
            s = socket.create_connection(("127.0.0.1", \(port)), timeout=30)
            s.sendall(b"GET /big?n=300 HTTP/1.1\\r\\nHost: main\\r\\n\\r\\n")
            buf = b""
            while b"\\r\\n\\r\\n" not in buf: buf += s.recv(65536)
            head, rest = buf.split(b"\\r\\n\\r\\n", 1)
            total = len(rest)
            while total < 300 << 20:
                data = s.recv(1 << 18)
                if not data: break
                total += len(data)
                time.sleep(0.004)
            print(head.split(b"\\r\\n")[0].decode(), total)
            """, timeout: 300)
        #expect(lines == ["HTTP/1.1 200 OK \(300 << 20)"])
        let peak = try memory("VmHWM:")
        print("warden RSS with a slow reader of 300 MB: \(before) kB before, peak \(peak) kB")
        #expect(peak - before < 10_000, "the body did not pile up in warden: \(before) kB before, peak \(peak) kB")
    }

    /// A chunked response is passed through as it is to an HTTP/1.1 client, and de-chunked for an
    /// HTTP/1.0 client (which cannot read chunks): its body ends with the connection.
    @Test func anHTTP10ClientGetsAChunkedBodyDechunked() throws {
        let directory = try TemporaryDirectory()
        let upstream = try CountingUpstream(directory: directory)
        let (warden, port) = try startWarden(upstreamPort: upstream.port, in: directory)
        defer { warden.stop() }
        let path = "/chunked/de-chunked-for-1.0"
        let (old, oldClosed) = try TestSupport.rawExchange(port: port, "GET \(path) HTTP/1.0\r\nHost: main\r\n\r\n")
        let parts = old.components(separatedBy: "\r\n\r\n")
        #expect(oldClosed && parts.count == 2, "\(old)")
        #expect(parts.first?.hasPrefix("HTTP/1.1 200 ") == true && parts.first?.lowercased().contains("transfer-encoding") == false, "\(old)")
        #expect(parts.last == path + "\n", "the bare body, then the end of the connection: \(old)")
        let (new, _) = try TestSupport.rawExchange(port: port, "GET \(path) HTTP/1.1\r\nHost: main\r\nConnection: close\r\n\r\n")
        #expect(new.lowercased().contains("transfer-encoding: chunked\r\n") && new.contains("\r\n3\r\n/ch\r\n"), "HTTP/1.1 gets the chunks: \(new)")
    }

    /// The upstream closes a kept-alive connection just as the proxy sends a request on it: a GET is
    /// sent again on a fresh connection and answered; a POST is not sent again (its effect may have
    /// happened) and gets 502.
    @Test func aRequestOnAConnectionTheUpstreamClosedIsResentOnlyIfItIsAGET() throws {
        let directory = try TemporaryDirectory()
        let upstream = try CountingUpstream(directory: directory)
        let (warden, port) = try startWarden(upstreamPort: upstream.port, in: directory)
        defer { warden.stop() }
        // One client connection: the pool is per event loop, and a connection stays on its loop.
        let lines = try python(
            """
            import http.client
            conn = http.client.HTTPConnection("127.0.0.1", \(port), timeout=10)
            for method, path in [("GET", "/first"), ("GET", "/stale-get"), ("POST", "/stale-post")]:
                conn.request(method, path, body=b"data" if method == "POST" else None)
                r = conn.getresponse()
                print(method, r.status, r.read()[:40].decode())
                if r.will_close: conn.close()
            """)
        #expect(lines.count == 3 && lines[0] == "GET 200 /first", "\(lines)")
        #expect(lines.dropFirst().first == "GET 200 /stale-get", "the GET was answered from a fresh connection: \(lines)")
        #expect(lines.last?.hasPrefix("POST 502 ") == true, "\(lines)")
        #expect(upstream.received("GET", "/stale-get") == 2, "sent on the closed connection, then on a new one: \(upstream.events)")
        #expect(upstream.received("POST", "/stale-post") == 1, "the POST was not sent twice: \(upstream.events)")
        #expect(upstream.acceptedConnections == 2, "\(upstream.events)")
    }
}
