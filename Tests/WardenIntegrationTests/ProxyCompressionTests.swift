import Foundation
import Testing
import WardenTestSupport

/// `compress` through the real binary: bodies from a real upstream (the echo upstream's `/body`)
/// and from a served directory, decoded by curl and by Python's gzip and zlib, byte for byte.
@Suite("Proxy compression", .serialized)
struct ProxyCompressionTests {
    struct Setup {
        let warden: WardenProcess
        let upstream: EchoUpstream
        let port: Int
        let directory: TemporaryDirectory
    }

    func start() throws -> Setup {
        let directory = try TemporaryDirectory()
        let upstream = try EchoUpstream(directory: directory)
        let port = TestSupport.freePort()
        let files = directory.path + "/static"
        try FileManager.default.createDirectory(atPath: files, withIntermediateDirectories: true)
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set proxy
                listen 127.0.0.1 port \(port)
            check site main default
                pass / to http://127.0.0.1:\(upstream.port)/
                serve /static from \(files)
                compress gzip deflate min-size 1 kB
                access log \(directory.path)/access.log
                error log \(directory.path)/error.log
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        try #require(warden.waitForLog("proxy listening", timeout: 15), "\(warden.log)")
        return Setup(warden: warden, upstream: upstream, port: port, directory: directory)
    }

    /// Runs a Python script (Debian's) with `PORT` set, and returns its lines.
    func python(_ script: String, port: Int) throws -> [String] {
        let result = try TestSupport.run("/usr/bin/python3", ["-c", "PORT = \(port)\n" + script], timeout: 60)
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        return result.stdout.split(separator: "\n").map(String.init)
    }

    /// What each request gets: status, the fields that matter, the raw body's length, and whether
    /// its decoding (by its Content-Encoding) equals that of the same GET without Accept-Encoding.
    static let client = """
        import gzip, http.client, sys, zlib
        def fetch(method, path, headers):
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=20)
            conn.request(method, path, headers=headers)
            r = conn.getresponse()
            body = r.read()
            conn.close()
            return r, body
        def decode(r, body):
            coding = r.getheader("Content-Encoding")
            return gzip.decompress(body) if coding == "gzip" else zlib.decompress(body) if coding == "deflate" else body
        def show(method, path, **headers):
            r, body = fetch(method, path, headers)
            same = decode(r, body) == decode(*fetch("GET", path, {})) if method == "GET" else body == b""
            coding = r.getheader("Content-Encoding")
            print("%s %s status=%d encoding=%s vary=%s length=%s chunked=%s etag=%s raw=%d same=%s" % (method, path, r.status, coding or "-",
                r.getheader("Vary") or "-", r.getheader("Content-Length") or "-", r.getheader("Transfer-Encoding") == "chunked",
                r.getheader("ETag") or "-", len(body), same))

        """

    func field(_ line: String?, _ name: String) -> String? {
        line?.split(separator: " ").first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) }
    }

    @Test func aJSONBodyRoundTripsThroughGzipAndDeflate() throws {
        let setup = try start()
        defer { setup.warden.stop() }
        let lines = try python(
            Self.client + """
                show("GET", "/body?n=100000", **{"Accept-Encoding": "gzip, deflate, br"})
                show("GET", "/body?n=100000&chunked=1", **{"Accept-Encoding": "gzip"})
                show("GET", "/body?n=100000&header=ETag:%22v1%22", **{"Accept-Encoding": "deflate;q=1, gzip;q=0.5"})
                show("GET", "/body?n=5000&type=text/html;charset=utf-8", **{"Accept-Encoding": "*"})
                """, port: setup.port)
        try #require(lines.count == 4, "\(lines)")
        for line in lines {
            #expect(field(line, "same") == "True" && field(line, "status") == "200", "\(line)")
            #expect(field(line, "vary") == "Accept-Encoding" && field(line, "chunked") == "True" && field(line, "length") == "-", "\(line)")
        }
        #expect(lines.map { field($0, "encoding") } == ["gzip", "gzip", "deflate", "gzip"], "\(lines)")
        let raw = lines.prefix(2).compactMap { field($0, "raw").flatMap(Int.init) }
        #expect(raw.count == 2 && raw.allSatisfy { $0 < 20_000 }, "100 KB of JSON goes out in under 20 KB: \(lines)")
        #expect(field(lines[2], "etag") == "W/\"v1\"", "a strong ETag is weakened: \(lines[2])")

        // curl decodes it too, and says what came over the wire.
        let body = setup.directory.path + "/curl.body"
        let curl = try TestSupport.run(
            "/usr/bin/curl", ["-sS", "--compressed", "-o", body, "-w", "%{size_download} %{http_code}", "http://127.0.0.1:\(setup.port)/body?n=100000&chunked=1"])
        #expect(curl.status == 0, "\(curl.stderr)")
        let plain = try TestSupport.run("/usr/bin/curl", ["-sS", "http://127.0.0.1:\(setup.port)/body?n=100000&chunked=1"])
        #expect(try String(contentsOfFile: body, encoding: .utf8) == plain.stdout && plain.stdout.utf8.count > 100_000)
        let wire = Int(curl.stdout.split(separator: " ").first ?? "") ?? .max
        #expect(wire < 20_000 && curl.stdout.hasSuffix(" 200"), "curl downloaded \(curl.stdout) bytes")
    }

    @Test func anHTTP10ClientGetsACompressedBodyThatEndsWithTheConnection() throws {
        let setup = try start()
        defer { setup.warden.stop() }
        let lines = try python(
            """
            import gzip, socket
            s = socket.create_connection(("127.0.0.1", PORT), timeout=20)
            s.sendall(b"GET /body?n=50000&chunked=1 HTTP/1.0\\r\\nAccept-Encoding: gzip\\r\\n\\r\\n")
            data = b""
            while True:
                piece = s.recv(65536)
                if not piece: break
                data += piece
            head, body = data.split(b"\\r\\n\\r\\n", 1)
            head = head.decode().lower()
            print("content-encoding: gzip" in head, "transfer-encoding" in head, "connection: close" in head, len(gzip.decompress(body)))
            """, port: setup.port)
        let plain = try #require(TestSupport.httpGet(port: setup.port, path: "/body?n=50000", timeout: 10))
        #expect(lines == ["True False True \(plain.body.utf8.count)"], "\(lines)")
    }

    @Test func whatIsNeverCompressed() throws {
        let setup = try start()
        defer { setup.warden.stop() }
        let gzipAccepted = #"**{"Accept-Encoding": "gzip"}"#
        let lines = try python(
            Self.client + """
                show("GET", "/body?n=100000&type=image/png", \(gzipAccepted))
                show("GET", "/body?n=100000&gzip=1", \(gzipAccepted))
                show("GET", "/body?n=100000", **{"Accept-Encoding": "gzip", "Range": "bytes=0-9999"})
                show("GET", "/body?n=100000")
                show("GET", "/body?n=100000", **{"Accept-Encoding": "gzip;q=0, identity"})
                show("GET", "/body?n=500", \(gzipAccepted))
                show("HEAD", "/body?n=100000", \(gzipAccepted))
                show("GET", "/body?n=100000&header=Cache-Control:no-transform", \(gzipAccepted))
                show("GET", "/body?n=100000&type=text/event-stream", \(gzipAccepted))
                """, port: setup.port)
        try #require(lines.count == 9, "\(lines)")
        for line in lines {
            let alreadyGzipped = line.contains("gzip=1")
            #expect(field(line, "encoding") == (alreadyGzipped ? "gzip" : "-"), "\(line)")
            #expect(field(line, "chunked") == "False" && field(line, "length") != "-", "the upstream's length is kept: \(line)")
        }
        #expect(field(lines[1], "same") == "True", "the upstream's gzip passed once, as it was: \(lines[1])")
        #expect(field(lines[2], "status") == "206" && field(lines[2], "raw") == "10000", "\(lines[2])")
        #expect(field(lines[3], "vary") == "Accept-Encoding" && field(lines[4], "vary") == "Accept-Encoding", "\(lines)")
        #expect(field(lines[5], "vary") == "-" && field(lines[6], "raw") == "0", "\(lines)")
    }

    @Test func aPrecompressedFileIsSentAsItIsAndOthersAreCompressedOnTheWay() throws {
        let setup = try start()
        defer { setup.warden.stop() }
        let files = setup.directory.path + "/static"
        // app.js.gz holds different text from app.js: what arrives shows which file was sent.
        let made = try python(
            """
            import gzip
            open("\(files)/app.js", "w").write("console.log('plain');\\n" * 200)
            open("\(files)/app.js.gz", "wb").write(gzip.compress(b"console.log('precompressed');\\n" * 200, mtime=0))
            open("\(files)/data.json", "w").write('{"n": 1, "text": "warden"},\\n' * 4000)
            open("\(files)/logo.png", "wb").write(bytes(range(256)) * 400)
            print("ok")
            """, port: setup.port)
        #expect(made == ["ok"])
        let lines = try python(
            Self.client + """
                import gzip
                r, body = fetch("GET", "/static/app.js", {"Accept-Encoding": "gzip"})
                print(r.status, r.getheader("Content-Encoding"), r.getheader("Content-Type"), r.getheader("Vary"),
                    body == open("\(files)/app.js.gz", "rb").read(), gzip.decompress(body)[:28])
                show("GET", "/static/app.js")
                show("GET", "/static/data.json", **{"Accept-Encoding": "gzip"})
                show("GET", "/static/logo.png", **{"Accept-Encoding": "gzip"})
                r, body = fetch("GET", "/static/data.json", {"Accept-Encoding": "gzip"})
                r, body = fetch("GET", "/static/data.json", {"Accept-Encoding": "gzip", "If-None-Match": r.getheader("ETag")})
                print(r.status, len(body))
                """, port: setup.port)
        try #require(lines.count == 5, "\(lines)")
        #expect(lines.first == "200 gzip application/javascript Accept-Encoding True b\"console.log('precompressed')\"", "\(lines)")
        #expect(field(lines[1], "encoding") == "-" && field(lines[1], "same") == "True" && field(lines[1], "raw") == "4400", "\(lines)")
        #expect(field(lines[2], "encoding") == "gzip" && field(lines[2], "same") == "True" && field(lines[2], "chunked") == "True", "\(lines)")
        #expect(field(lines[2], "etag")?.hasPrefix("W/") == true && (Int(field(lines[2], "raw") ?? "") ?? .max) < 10_000, "\(lines)")
        #expect(field(lines[3], "encoding") == "-" && field(lines[3], "raw") == "102400", "\(lines)")
        #expect(lines.last == "304 0", "the weak ETag of the compressed copy matches: \(lines)")
    }
}
