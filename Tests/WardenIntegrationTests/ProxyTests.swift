import Foundation
import Testing
import WardenTestSupport

/// The proxy in the real binary, in front of real upstreams, and side by side with nginx.
@Suite("Reverse proxy", .serialized)
struct ProxyTests {
    struct Setup {
        let directory: TemporaryDirectory
        let upstream: EchoUpstream
        let port: Int
        let warden: WardenProcess
    }

    func start(extraSite: String = "", services: String = "", proxy: String = "", port: Int = TestSupport.freePort()) throws -> Setup {
        let directory = try TemporaryDirectory()
        let upstream = try EchoUpstream(directory: directory)
        try directory.write("public/hello.txt", "hello, static\n", mode: 0o644)
        try directory.write("public/index.html", "<h1>index</h1>\n", mode: 0o644)
        try directory.write("secret.txt", "top secret\n", mode: 0o644)
        symlink(directory.path + "/secret.txt", directory.path + "/public/escape.txt")
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set proxy
                listen 127.0.0.1 port \(port)
                timeout read 3 seconds
                timeout header 2 seconds
                max body 5 MB
                \(proxy)
            \(services)
            check site main with host "mydomain.com" alias "anothercooldomain.org"
                pass / to http://127.0.0.1:\(upstream.port)/
                serve /static from \(directory.path)/public
                access log \(directory.path)/access.log combined
            \(extraSite)
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        #expect(warden.waitForLog("proxy listening", timeout: 15), "\(warden.log)")
        return Setup(directory: directory, upstream: upstream, port: port, warden: warden)
    }

    func echo(_ port: Int, _ path: String, headers: [String: String] = ["Host": "mydomain.com"]) throws -> [String: Any] {
        let response = try #require(TestSupport.httpGet(port: port, path: path, headers: headers))
        return try #require(JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any])
    }

    @Test func forwardsWithPreservedHostAndForwardedHeaders() throws {
        let setup = try start()
        defer { setup.warden.stop() }
        let seen = try echo(setup.port, "/some/path?q=1", headers: ["Host": "mydomain.com", "Connection": "keep-alive, X-Secret", "X-Secret": "hop", "Proxy-Authorization": "x"])
        let headers = try #require(seen["headers"] as? [String: String])
        #expect(seen["path"] as? String == "/some/path?q=1")
        #expect(headers["host"] == "mydomain.com", "ProxyPreserveHost on")
        #expect(headers["x-forwarded-for"] == "127.0.0.1")
        #expect(headers["x-forwarded-proto"] == "http")
        #expect(headers["x-forwarded-host"] == "mydomain.com")
        #expect(headers["x-secret"] == nil, "headers named in Connection are hop-by-hop")
        #expect(headers["proxy-authorization"] == nil)
        // Response hop-by-hop headers are not passed back either.
        let raw = try #require(TestSupport.httpGet(port: setup.port, path: "/", headers: ["Host": "mydomain.com"]))
        #expect(raw.headers["keep-alive"] == nil)
        let referred = TestSupport.httpGet(
            port: setup.port, path: "/referred", headers: ["Host": "mydomain.com", "Referer": "http://ref.example/", "User-Agent": "agent/1.0"])
        #expect(referred?.status == 200)
        let log = try String(contentsOfFile: setup.directory.path + "/access.log", encoding: .utf8)
        #expect(log.contains("\"GET /some/path?q=1 HTTP/1.1\" 200"))
        #expect(log.contains("\"GET /referred HTTP/1.1\" 200"), "\(log)")
        #expect(log.contains("\"http://ref.example/\" \"agent/1.0\""), "combined format ends with the Referer and User-Agent: \(log)")
        #expect(log.range(of: #"^127\.0\.0\.1 - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "#, options: .regularExpression) != nil)
    }

    @Test func locationAndRefreshAreRewrittenToThePublicHost() throws {
        let setup = try start()
        defer { setup.warden.stop() }
        let response = try #require(TestSupport.httpGet(port: setup.port, path: "/redirect", headers: ["Host": "mydomain.com"]))
        #expect(response.status == 302)
        #expect(response.headers["location"] == "http://mydomain.com/landing")
        #expect(response.headers["refresh"] == "0; url=http://mydomain.com/x")
        let relative = try #require(TestSupport.httpGet(port: setup.port, path: "/relative", headers: ["Host": "mydomain.com"]))
        #expect(relative.headers["location"] == "image", "a relative Location is left alone, as Zinc sends it")
    }

    @Test func staticFilesWithConditionalAndRangeRequestsAndNoTraversal() throws {
        let setup = try start()
        defer { setup.warden.stop() }
        let file = try #require(TestSupport.httpGet(port: setup.port, path: "/static/hello.txt"))
        #expect(file.status == 200)
        #expect(file.body == "hello, static\n")
        #expect(file.headers["content-type"] == "text/plain; charset=utf-8")
        let etag = try #require(file.headers["etag"])
        #expect(TestSupport.httpGet(port: setup.port, path: "/static/hello.txt", headers: ["If-None-Match": etag])?.status == 304)
        let range = try #require(TestSupport.httpGet(port: setup.port, path: "/static/hello.txt", headers: ["Range": "bytes=0-4"]))
        #expect(range.status == 206)
        #expect(range.body == "hello")
        #expect(range.headers["content-range"] == "bytes 0-4/14")
        #expect(TestSupport.httpGet(port: setup.port, path: "/static/hello.txt", headers: ["Range": "bytes=100-"])?.status == 416)
        #expect(TestSupport.httpGet(port: setup.port, path: "/static/")?.body == "<h1>index</h1>\n")
        for attack in ["/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/..%2fsecret.txt", "/static/%2E%2E%2Fsecret.txt", "/static/escape.txt", "/static/hello.txt%00"] {
            let response = try TestSupport.run("/usr/bin/curl", ["-s", "--path-as-is", "-o", "-", "-w", "\n%{http_code}", "http://127.0.0.1:\(setup.port)\(attack)"])
            #expect(!response.stdout.contains("top secret"), "\(attack)")
            #expect(response.stdout.hasSuffix("\n404"), "\(attack) → \(response.stdout)")
        }
    }

    @Test func largeBodiesStreamInBothDirectionsWithBoundedMemory() throws {
        let setup = try start(extraSite: "")
        defer { setup.warden.stop() }
        let download = try TestSupport.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", "http://127.0.0.1:\(setup.port)/big?n=300"], timeout: 120)
        #expect(download.stdout == "200 314572800")
        let upload = setup.directory.path + "/upload.bin"
        _ = try TestSupport.run("/usr/bin/truncate", ["-s", "4M", upload])
        let response = try TestSupport.run("/usr/bin/curl", ["-s", "-H", "Host: mydomain.com", "--data-binary", "@\(upload)", "http://127.0.0.1:\(setup.port)/upload"], timeout: 60)
        #expect(response.stdout.contains("\"received\": 4194304"), "\(response.stdout)")
        let chunked = try TestSupport.run("/usr/bin/curl", ["-s", "-H", "Transfer-Encoding: chunked", "--data-binary", "@\(upload)", "http://127.0.0.1:\(setup.port)/upload"], timeout: 60)
        #expect(chunked.stdout.contains("\"received\": 4194304"), "\(chunked.stdout)")
        let status = try String(contentsOfFile: "/proc/\(setup.warden.pid)/status", encoding: .utf8)
        let peak = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        print("warden peak RSS after a 300 MB download: \(peak) kB")
        #expect(peak < 150_000, "300 MB went through without sitting in memory")
        let tooBig = setup.directory.path + "/big.bin"
        _ = try TestSupport.run("/usr/bin/truncate", ["-s", "6M", tooBig])
        let refused = try TestSupport.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", "@\(tooBig)", "http://127.0.0.1:\(setup.port)/upload"], timeout: 60)
        #expect(refused.stdout == "413")
    }

    /// A client that sends a request and reads nothing is disconnected once the response has not
    /// moved for `timeout send` (2 s here), rather than holding its connection and upstream for ever.
    @Test func aClientThatDoesNotReadIsDisconnectedAfterTheSendTimeout() throws {
        let setup = try start(proxy: "timeout send 2 seconds")
        defer { setup.warden.stop() }
        let result = try TestSupport.run("/usr/bin/python3", ["-c", """
            import socket, time
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.connect(("127.0.0.1", \(setup.port)))
            s.sendall(b"GET /big?n=300 HTTP/1.1\\r\\nHost: mydomain.com\\r\\n\\r\\n")
            time.sleep(5)  # the client under test: it does not read
            s.settimeout(20)
            total, how = 0, "still open"
            try:
                while True:
                    data = s.recv(1 << 20)
                    if not data:
                        how = "closed"; break
                    total += len(data)
            except ConnectionResetError:
                how = "closed"
            except socket.timeout:
                pass
            print(how, total)
            """], timeout: 60)
        let words = result.stdout.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(words.first == "closed", "\(result.stdout) \(result.stderr)")
        #expect(words.count == 2 && (Int(words[1]) ?? .max) < 300 << 20, "the connection ended before the body: \(result.stdout)")
    }

    @Test func upstreamDownIs502AndSlowUpstreamIs504() throws {
        let setup = try start()
        defer { setup.warden.stop() }
        let slow = try TestSupport.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(setup.port)/slow=6"], timeout: 30)
        #expect(slow.stdout == "504")
        setup.upstream.stop()
        let down = try #require(TestSupport.httpGet(port: setup.port, path: "/"))
        #expect(down.status == 502)
        #expect(down.body.contains("502 Bad Gateway"))
    }

    @Test func smugglingAndOversizedRequestsAreRefused() throws {
        let setup = try start()
        defer { setup.warden.stop() }
        let cases: [(String, String, Int)] = [
            ("CL.TE", "POST / HTTP/1.1\r\nHost: mydomain.com\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", 400),
            ("TE.CL", "POST / HTTP/1.1\r\nHost: mydomain.com\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n1\r\nG\r\n0\r\n\r\n", 400),
            ("duplicate CL", "POST / HTTP/1.1\r\nHost: mydomain.com\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nAB", 400),
            ("obfuscated TE", "POST / HTTP/1.1\r\nHost: mydomain.com\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
            ("header injection", "GET / HTTP/1.1\r\nHost: mydomain.com\r\nX-A: a\rX-B: b\r\n\r\n", 400),
            ("long URI", "GET /\(String(repeating: "a", count: 9000)) HTTP/1.1\r\nHost: mydomain.com\r\n\r\n", 414),
            ("many headers", "GET / HTTP/1.1\r\nHost: mydomain.com\r\n" + (0..<150).map { "X-\($0): v\r\n" }.joined() + "\r\n", 431),
        ]
        for (name, raw, status) in cases {
            let (response, closed) = try TestSupport.rawExchange(port: setup.port, raw)
            let first = response.split(separator: "\r\n").first.map(String.init) ?? ""
            #expect(first.hasPrefix("HTTP/1.1 \(status) "), "\(name): \(first)")
            #expect(closed, "\(name): the connection is closed")
            #expect(response.components(separatedBy: "HTTP/1.1").count - 1 == 1, "\(name): exactly one response, nothing smuggled")
        }
        #expect(TestSupport.httpGet(port: setup.port, path: "/")?.status == 200, "still serving")
    }

    @Test func slowlorisConnectionsDoNotStarveANormalClient() throws {
        let setup = try start()
        defer { setup.warden.stop() }
        let script = """
            import socket, time, urllib.request
            idle = []
            for i in range(1000):
                s = socket.create_connection(("127.0.0.1", \(setup.port)))
                s.sendall(b"GET / HTTP/1.1\\r\\nHost: mydomain.com\\r\\nX-Slow: ")
                idle.append(s)
            ok = 0
            for i in range(20):
                with urllib.request.urlopen("http://127.0.0.1:\(setup.port)/", timeout=5) as r:
                    ok += r.status == 200
            # Closed by warden after the 2 s header timeout: each waited for, all within 15 s.
            deadline = time.time() + 15
            closed = 0
            for s in idle:
                s.settimeout(max(0.01, deadline - time.time()))
                try:
                    closed += s.recv(1) == b""
                except Exception:
                    pass
            print(ok, closed)
            """
        let result = try TestSupport.run("/usr/bin/python3", ["-c", script], timeout: 60)
        let numbers = result.stdout.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        #expect(numbers.first == 20, "a normal client is served while 1,000 slow ones hang: \(result.stdout) \(result.stderr)")
        #expect(numbers.last == 1000, "slow clients are disconnected after the header timeout")
    }

    @Test func requestsAreHeldWhileASupervisedAppRestarts() throws {
        let directory = try TemporaryDirectory()
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        try directory.write("maintenance.html", "<h1>back soon</h1>\n", mode: 0o644)
        let setup = try start(
            extraSite: """
                check site app with host "app.local"
                    pass / to http://127.0.0.1:\(app.port)/ for service app
                    maintenance page \(directory.path)/maintenance.html hold 8 seconds
                """,
            services: """
                check process app with pidfile \(app.pidfile)
                    start program = "\(app.startScript)"
                    stop program = "\(app.stopScript)"
                """)
        defer { setup.warden.stop() }
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing })
        // Clients opening a connection per request through the proxy while the app is killed twice,
        // each kill once the app is back from the one before: every request answered 200.
        let load = try KeepAliveLoad(port: setup.port, host: "app.local", connections: 4, path: "/ping", reconnect: true, in: directory)
        try #require(load.waitForProgress(20), "the load is flowing")
        for round in 1...2 {
            let victim = try #require(app.pid)
            kill(victim, SIGKILL)
            #expect(TestSupport.waitUntil(timeout: 20) { app.pid != victim && app.isServing }, "restart \(round): \(setup.warden.log)")
            #expect(load.waitForProgress(20), "the load goes on after restart \(round)")
        }
        let summary = try #require(load.finish())
        #expect(summary.socketErrors == 0 && summary.bad == 0 && summary.requests >= 60, "every request during two restarts was served: \(summary)")
        #expect(app.starts == 3, "one start, then one per kill")
    }

    /// A service stopped by its operator stays down: a request waits the site's `hold`, then gets
    /// 503, the maintenance page's bytes as they are in the file, and `Retry-After`.
    @Test func afterTheHoldARequestForAStoppedServiceGetsTheMaintenancePage() throws {
        let directory = try TemporaryDirectory()
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        let page = "<!DOCTYPE html>\n<title>Maintenance</title>\n<h1>back soon \u{2014} caf\u{e9}</h1>\n"
        try directory.write("maintenance.html", page, mode: 0o644)
        let setup = try start(
            extraSite: """
                check site app with host "app.local"
                    pass / to http://127.0.0.1:\(app.port)/ for service app
                    maintenance page \(directory.path)/maintenance.html hold 2 seconds
                """,
            services: """
                set httpd port \(TestSupport.freePort()) and use address 127.0.0.1
                    allow 127.0.0.1
                check process app with pidfile \(app.pidfile)
                    start program = "\(app.startScript)"
                    stop program = "\(app.stopScript)"
                """)
        defer { setup.warden.stop() }
        #expect(TestSupport.waitUntil(timeout: 20) { TestSupport.httpGet(port: setup.port, path: "/ping", headers: ["Host": "app.local"])?.body == "pong" })
        let stop = try TestSupport.run(TestSupport.wardenBinary, ["-c", setup.warden.controlFile, "stop", "app"])
        #expect(stop.status == 0, "\(stop.stdout) \(stop.stderr)")
        #expect(TestSupport.waitUntil(timeout: 20) { app.instances == 0 }, "\(setup.warden.log)")
        let asked = Date()
        let answer = try #require(TestSupport.httpGet(port: setup.port, path: "/ping", timeout: 10, headers: ["Host": "app.local"]))
        let waited = Date().timeIntervalSince(asked)
        #expect(answer.status == 503)
        #expect(answer.body == page, "the maintenance page's exact bytes")
        #expect(answer.headers["retry-after"] == "2")
        #expect(answer.headers["content-length"] == String(page.utf8.count))
        #expect(waited >= 1.9 && waited < 8, "held for the 2 s hold first: \(waited) s")
    }

    @Test func sideBySideWithNginxOnTheChaptersConfiguration() throws {
        guard let nginx = TestSupport.peer("nginx", candidates: ["/usr/sbin/nginx"]) else {
            #expect(!TestSupport.isCI, "nginx is not installed (.ci/run installs it)")
            return
        }
        let setup = try start()
        defer { setup.warden.stop() }
        let nginxPort = TestSupport.freePort()
        let conf = try setup.directory.write(
            "nginx.conf",
            """
            daemon off;
            worker_processes 1;
            pid \(setup.directory.path)/nginx.pid;
            error_log \(setup.directory.path)/nginx-error.log;
            events { worker_connections 256; }
            http {
                access_log off;
                server {
                    listen 127.0.0.1:\(nginxPort);
                    server_name mydomain.com;
                    location / {
                        proxy_set_header Host $host;
                        proxy_pass http://127.0.0.1:\(setup.upstream.port);
                    }
                }
            }
            """, mode: 0o644)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: nginx)
        server.arguments = ["-c", conf, "-p", setup.directory.path]
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer {
            kill(server.processIdentifier, SIGQUIT)
            server.waitUntilExit()
        }
        #expect(TestSupport.waitUntil(timeout: 10) { TestSupport.httpGet(port: nginxPort, path: "/") != nil })
        for path in ["/", "/a/b?c=d", "/status=404", "/status=500", "/status=204", "/redirect", "/relative"] {
            let viaNginx = try #require(TestSupport.httpGet(port: nginxPort, path: path, headers: ["Host": "mydomain.com"]))
            let viaWarden = try #require(TestSupport.httpGet(port: setup.port, path: path, headers: ["Host": "mydomain.com"]))
            #expect(viaNginx.status == viaWarden.status, "\(path)")
            if viaNginx.status == 200 {
                let nginxSeen = try #require(JSONSerialization.jsonObject(with: Data(viaNginx.body.utf8)) as? [String: Any])
                let wardenSeen = try #require(JSONSerialization.jsonObject(with: Data(viaWarden.body.utf8)) as? [String: Any])
                #expect(nginxSeen["path"] as? String == wardenSeen["path"] as? String)
                let nginxHeaders = nginxSeen["headers"] as? [String: String] ?? [:]
                let wardenHeaders = wardenSeen["headers"] as? [String: String] ?? [:]
                #expect(nginxHeaders["host"] == wardenHeaders["host"], "the upstream sees the same Host")
                #expect(nginxHeaders["user-agent"] == wardenHeaders["user-agent"])
            }
        }
    }

    @Test func tlsListenerTerminatesHTTPSAndSpeaksHTTP2ByALPN() throws {
        let directory = try TemporaryDirectory()
        let upstream = try EchoUpstream(directory: directory)
        let tls = try TestSupport.selfSignedCertificate(in: directory)
        try directory.write("public/file.txt", String(repeating: "static over h2\n", count: 10_000), mode: 0o644)
        let port = TestSupport.freePort()
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set proxy
                listen 127.0.0.1 port \(port) with ssl { certificate: \(tls.cert), key: \(tls.key) }
            check site main default
                pass / to http://127.0.0.1:\(upstream.port)/
                serve /static from \(directory.path)/public
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(warden.waitForLog("proxy listening on https://", timeout: 15), "\(warden.log)")
        let base = "https://127.0.0.1:\(port)"
        // HTTP/2 by ALPN: proxied GET, a POST with a body, a redirect's Location, a static file, HEAD; HTTP/1.1 still offered.
        let h2 = try TestSupport.run("/usr/bin/curl", ["-s", "-k", "--http2", "-w", "\n%{http_version}", "-H", "Host: secure.example", base + "/over-h2?x=1"])
        #expect(h2.stdout.hasSuffix("\n2"), "negotiated HTTP/2: \(h2.stdout) \(h2.stderr)")
        let h2line = try #require(h2.stdout.split(separator: "\n").first, "curl printed nothing: \(h2.stderr)")
        let h2seen = try #require(JSONSerialization.jsonObject(with: Data(h2line.utf8)) as? [String: Any])
        #expect(h2seen["path"] as? String == "/over-h2?x=1")
        #expect((h2seen["headers"] as? [String: String])?["host"] == "secure.example", "the :authority arrives as Host")
        let post = try TestSupport.run("/usr/bin/curl", ["-s", "-k", "--http2", "--data-binary", String(repeating: "a", count: 100_000), base + "/upload"])
        #expect(post.stdout.contains("\"received\": 100000"), "\(post.stdout)")
        let file = try TestSupport.run("/usr/bin/curl", ["-s", "-k", "--http2", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{http_version}", base + "/static/file.txt"])
        #expect(file.stdout == "200 150000 2")
        let head = try TestSupport.run("/usr/bin/curl", ["-s", "-k", "--http2", "-I", base + "/static/file.txt"])
        #expect(head.stdout.hasPrefix("HTTP/2 200") && head.stdout.lowercased().contains("content-length: 150000"), "\(head.stdout)")
        let http1 = try TestSupport.run("/usr/bin/curl", ["-s", "-k", "--http1.1", "-o", "/dev/null", "-w", "%{http_version}", base + "/static/file.txt"])
        #expect(http1.stdout == "1.1")
        let result = try TestSupport.run("/usr/bin/curl", ["-s", "-k", "-H", "Host: secure.example", "https://127.0.0.1:\(port)/hello"])
        let seen = try #require(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let headers = try #require(seen["headers"] as? [String: String])
        #expect(headers["x-forwarded-proto"] == "https")
        #expect(headers["host"] == "secure.example")
    }

    @Test func proxyDropsRootAfterBindingAndStillHoldsDuringRestarts() throws {
        let directory = try TemporaryDirectory()
        chmod(directory.path, 0o755)
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        let port = TestSupport.freePort()
        let httpdPort = TestSupport.freePort()
        let gate = directory.path + "/gate"
        let gatedStart = try directory.write("gated-start.sh", "#!/bin/sh\nwhile [ -e \(gate) ]; do sleep 0.05; done\nexec \(app.startScript)\n", mode: 0o755)
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set httpd port \(httpdPort) and use address 127.0.0.1
                allow 127.0.0.1
            set proxy
                listen 127.0.0.1 port \(port)
                user nobody group nogroup
            check process app with pidfile \(app.pidfile)
                start program = "\(gatedStart)"
                stop program = "\(app.stopScript)"
            check site app default
                pass / to http://127.0.0.1:\(app.port)/ for service app
                maintenance page \(directory.path)/maintenance.html hold 20 seconds
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing })
        guard getuid() == 0 else {
            #expect(warden.waitForLog("needs warden to run as root", timeout: 10))
            warden.stop()
            return
        }
        #expect(warden.waitForLog("proxy worker running as nobody", timeout: 15), "\(warden.log)")
        let line = try #require(warden.log.split(separator: "\n").first { $0.contains("proxy worker running as nobody") })
        let workerPID = try #require(line.firstMatch(of: /with pid (\d+)/).flatMap { pid_t($0.1) })
        let status = try String(contentsOfFile: "/proc/\(workerPID)/status", encoding: .utf8)
        #expect(status.contains("Uid:\t65534\t65534\t65534\t65534"), "every uid of the worker is nobody's")
        #expect(status.contains("Gid:\t65534\t65534\t65534\t65534"))
        #expect(TestSupport.waitUntil(timeout: 10) { TestSupport.httpGet(port: port, path: "/ping")?.body == "pong" })
        // The app is kept down (its start program waits at a gate) until a request is known to
        // wait in the worker; it is answered once the app is back.
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        kill(try #require(app.pid), SIGKILL)
        let sent = directory.path + "/sent"
        let held = Background {
            try? TestSupport.run("/usr/bin/python3", ["-c", """
                import socket
                s = socket.create_connection(("127.0.0.1", \(port)), timeout=30)
                s.sendall(b"GET /ping HTTP/1.1\\r\\nHost: app\\r\\nConnection: close\\r\\n\\r\\n")
                open("\(sent)", "w").close()
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk: break
                    data += chunk
                print(data.split(b"\\r\\n")[0].decode(), data.split(b"\\r\\n\\r\\n", 1)[-1].decode())
                """], timeout: 40).stdout
        }
        #expect(TestSupport.waitUntil(timeout: 10) { FileManager.default.fileExists(atPath: sent) })
        #expect(held.value(timeout: 1) == nil, "no answer while the app is down: the request is held")
        #expect(!app.isServing)
        unlink(gate)
        let answer = held.value(timeout: 30)
        #expect(answer == .some(.some("HTTP/1.1 200 OK pong\n")), "the worker learns of the restart through its pipe and holds the request")

        // Maintenance and reloaded sites reach the unprivileged worker through its pipe too.
        #expect(try TestSupport.run(TestSupport.wardenBinary, ["-c", rc, "maintenance", "on", "app"]).status == 0)
        #expect(TestSupport.waitUntil(timeout: 5) { TestSupport.httpGet(port: port, path: "/ping")?.status == 503 })
        #expect(try TestSupport.run(TestSupport.wardenBinary, ["-c", rc, "maintenance", "off", "app"]).status == 0)
        #expect(TestSupport.waitUntil(timeout: 5) { TestSupport.httpGet(port: port, path: "/ping")?.status == 200 })
        try directory.write("public/added.txt", "added by a reload\n", mode: 0o644)
        chmod(directory.path + "/public", 0o755)
        var text = try String(contentsOfFile: rc, encoding: .utf8)
        text += "\ncheck site added with host \"added.example\"\n    serve / from \(directory.path)/public\n"
        _ = try directory.write("wardenrc", text)
        warden.signal(SIGHUP)
        #expect(TestSupport.waitUntil(timeout: 10) {
            TestSupport.httpGet(port: port, path: "/added.txt", headers: ["Host": "added.example"])?.body == "added by a reload\n"
        })
        #expect(TestSupport.isAlive(workerPID), "a reload keeps the same worker, so its connections stay")
        warden.stop()
        #expect(TestSupport.waitUntil(timeout: 10) { !TestSupport.isAlive(workerPID) }, "the worker ends with the daemon")
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let setup = try start()
        defer { setup.warden.stop() }
        let requests = ["/first", "/static/hello.txt", "/nosuchfile-in-static", "/third"].enumerated().map { index, path in
            "GET \(path == "/nosuchfile-in-static" ? "/static/missing.txt" : path) HTTP/1.1\r\nHost: mydomain.com\r\n\(index == 3 ? "Connection: close\r\n" : "")\r\n"
        }
        let (response, closed) = try TestSupport.rawExchange(port: setup.port, requests.joined())
        let statuses = response.components(separatedBy: "HTTP/1.1 ").dropFirst().map { String($0.prefix(3)) }
        #expect(statuses == ["200", "200", "404", "200"], "\(response)")
        let first = try #require(response.range(of: "\"/first\""))
        let hello = try #require(response.range(of: "hello, static"))
        let third = try #require(response.range(of: "\"/third\""))
        #expect(first.lowerBound < hello.lowerBound && hello.lowerBound < third.lowerBound, "answers in request order")
        #expect(closed, "Connection: close on the last one closes the connection")
    }

    @Test func webSocketUpgradesAreTunnelledBothWays() throws {
        let setup = try start()
        defer { setup.warden.stop() }
        let script = """
            import base64, os, socket
            s = socket.create_connection(("127.0.0.1", \(setup.port))); s.settimeout(5)
            key = base64.b64encode(os.urandom(16)).decode()
            s.sendall(("GET /ws HTTP/1.1\\r\\nHost: mydomain.com\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
                "Sec-WebSocket-Key: %s\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n" % key).encode())
            buf = b""
            while b"\\r\\n\\r\\n" not in buf: buf += s.recv(4096)
            head, rest = buf.split(b"\\r\\n\\r\\n", 1)
            while len(rest) < 7: rest += s.recv(4096)
            payload = b"ping over the proxy"; mask = os.urandom(4)
            s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
            echo = b""
            while len(echo) < 2 + len(payload): echo += s.recv(4096)
            print(head.split(b"\\r\\n")[0].decode()); print(rest[2:7].decode()); print(echo[2:].decode())
            print("upgrade" in head.decode().lower())
            """
        let result = try TestSupport.run("/usr/bin/python3", ["-c", script], timeout: 30)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines == ["HTTP/1.1 101 Switching Protocols", "hello", "ping over the proxy", "True"], "\(result.stdout) \(result.stderr)")
        #expect(TestSupport.httpGet(port: setup.port, path: "/", headers: ["Host": "mydomain.com"])?.status == 200, "still serving HTTP")
    }

    @Test func maintenanceFromTheCLISurvivesARestartAndReloadsSwapSitesWithoutDroppingRequests() throws {
        let httpdPort = TestSupport.freePort()
        let control = """
            set httpd port \(httpdPort) and use address 127.0.0.1
                allow 127.0.0.1
            set statefile STATEFILE
            """
        var setup = try start(services: control.replacingOccurrences(of: "STATEFILE", with: "/tmp/warden-maintenance-\(getpid()).state"))
        defer {
            setup.warden.stop()
            unlink("/tmp/warden-maintenance-\(getpid()).state")
        }
        let cli = { (arguments: [String]) in try TestSupport.run(TestSupport.wardenBinary, ["-c", setup.warden.controlFile] + arguments) }
        let on = try cli(["maintenance", "on", "main"])
        #expect(on.status == 0, "\(on.stdout) \(on.stderr)")
        let during = try #require(TestSupport.httpGet(port: setup.port, path: "/", headers: ["Host": "mydomain.com"]))
        #expect(during.status == 503)
        #expect(during.headers["retry-after"] != nil)
        #expect(try cli(["maintenance", "on", "nosuchsite"]).status == 1)
        #expect(try cli(["maintenance", "sideways", "main"]).status != 0)

        // The setting is kept in the state file across a restart of warden.
        setup.warden.stop()
        setup = try start(services: control.replacingOccurrences(of: "STATEFILE", with: "/tmp/warden-maintenance-\(getpid()).state"), port: setup.port)
        #expect(TestSupport.waitUntil(timeout: 5) { TestSupport.httpGet(port: setup.port, path: "/", headers: ["Host": "mydomain.com"])?.status == 503 })
        #expect(try cli(["maintenance", "off", "main"]).status == 0)
        #expect(TestSupport.waitUntil(timeout: 5) { TestSupport.httpGet(port: setup.port, path: "/", headers: ["Host": "mydomain.com"])?.status == 200 })

        // A reload adds a site while a slow request is in flight: the request completes, the new site answers.
        let before = TestSupport.httpGet(port: setup.port, path: "/hello.txt", headers: ["Host": "other.example"])
        #expect(before?.body.contains("hello, static") != true)
        let port = setup.port
        let slow = Background { TestSupport.httpGet(port: port, path: "/slow=2", timeout: 10, headers: ["Host": "mydomain.com"])?.status }
        var text = try String(contentsOfFile: setup.warden.controlFile, encoding: .utf8)
        text += "\ncheck site other with host \"other.example\"\n    serve / from \(setup.directory.path)/public\n"
        _ = try setup.directory.write("wardenrc", text)
        setup.warden.signal(SIGHUP)
        #expect(setup.warden.waitForLog("reloaded", timeout: 10))
        #expect(TestSupport.waitUntil(timeout: 5) {
            TestSupport.httpGet(port: setup.port, path: "/hello.txt", headers: ["Host": "other.example"])?.body.contains("hello, static") == true
        })
        #expect(slow.value(timeout: 10) == .some(200), "the request in flight during the reload completed")
    }

    @Test func errorLogAndConnectionLimit() throws {
        let setup = try start(
            extraSite: """
                check site broken with host "broken.example"
                    pass / to http://127.0.0.1:\(TestSupport.freePort())/
                    error log \(FileManager.default.temporaryDirectory.path)/warden-error-\(getpid()).log
                """,
            proxy: "max connections 5")
        let errorLog = FileManager.default.temporaryDirectory.path + "/warden-error-\(getpid()).log"
        defer {
            setup.warden.stop()
            unlink(errorLog)
        }
        #expect(TestSupport.httpGet(port: setup.port, path: "/x?y=1", headers: ["Host": "broken.example"])?.status == 502)
        let log = (try? String(contentsOfFile: errorLog, encoding: .utf8)) ?? ""
        #expect(log.contains("[error]") && log.contains("while connecting to upstream"), "\(log)")
        #expect(log.contains("client: 127.0.0.1") && log.contains("request: \"GET /x?y=1 HTTP/1.1\"") && log.contains("host: \"broken.example\""), "\(log)")
        var mode = stat()
        stat(errorLog, &mode)
        #expect(mode.st_mode & 0o007 == 0, "the error log is not world-readable")

        // Five connections, each answered once (so warden has surely counted it), fill the limit:
        // a sixth is closed at once, and so is each of a flood of them for 2.5 s, which is logged at
        // most once a second. Once the five are closed, a new one is served (tried until the closes
        // have reached warden).
        let script = """
            import socket, time
            def ask(s, close=False):
                s.sendall(b"GET / HTTP/1.1\\r\\nHost: mydomain.com\\r\\n" + (b"Connection: close\\r\\n" if close else b"") + b"\\r\\n")
                return s.recv(12)
            def refused():
                extra = socket.create_connection(("127.0.0.1", \(setup.port))); extra.settimeout(3)
                try:
                    return ask(extra) == b""
                except ConnectionResetError:
                    return True
                finally:
                    extra.close()
            held = [socket.create_connection(("127.0.0.1", \(setup.port)), timeout=5) for _ in range(5)]
            filled = all(ask(s) == b"HTTP/1.1 200" for s in held)
            first = refused()
            began, flood = time.time(), 0
            while time.time() < began + 2.5:
                flood += refused()
                time.sleep(0.02)
            seconds = time.time() - began
            for s in held: s.close()
            served, deadline = False, time.time() + 10
            while not served and time.time() < deadline:
                again = socket.create_connection(("127.0.0.1", \(setup.port))); again.settimeout(3)
                try:
                    served = ask(again, close=True) == b"HTTP/1.1 200"
                except OSError:
                    pass
                again.close()
            print(filled, first, served, flood, seconds)
            """
        let before = setup.warden.log.components(separatedBy: "(max connections)").count - 1
        let result = try TestSupport.run("/usr/bin/python3", ["-c", script], timeout: 60)
        let words = result.stdout.split(separator: "\n").last?.split(separator: " ").map(String.init) ?? []
        #expect(words.prefix(3) == ["True", "True", "True"], "limit filled, a sixth refused, served after the five closed: \(result.stdout) \(result.stderr)")
        let flood = words.count == 5 ? Int(words[3]) ?? 0 : 0
        let seconds = words.count == 5 ? Double(words[4]) ?? 0 : 0
        #expect(flood >= 20, "the flood was refused: \(result.stdout)")
        #expect(setup.warden.waitForLog("max connections", timeout: 5), "the refusal is logged")
        let complaints = setup.warden.log.components(separatedBy: "(max connections)").count - 1 - before
        #expect(complaints >= 2 && complaints <= Int(seconds) + 3, "\(flood) refusals in \(seconds) s (after the first) logged \(complaints) times: once a second at most")
    }
}
