import Foundation
import Testing
import WardenTestSupport

/// The real daemon's httpd, its CLI, and the dashboard in a real browser.
@Suite("Control server, CLI and dashboard", .serialized)
struct ControlServerTests {
    struct Setup {
        let directory: TemporaryDirectory
        let app: TestApp
        let port: Int
        let controlFile: String
        let warden: WardenProcess
    }

    func start(allow: String = "allow localhost allow admin:s3cret allow guest:guest read-only") throws -> Setup {
        let directory = try TemporaryDirectory()
        let app = try TestApp(in: directory)
        let port = TestSupport.freePort()
        try directory.write("htpasswd", "alice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\n")
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set httpd port \(port) and use address 127.0.0.1
                \(allow)
            check process app with pidfile \(app.pidfile)
              start program = "\(app.startScript)"
              stop program = "\(app.stopScript)"
              group web
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing }, "\(warden.log)")
        #expect(warden.waitForLog("httpd listening", timeout: 10))
        return Setup(directory: directory, app: app, port: port, controlFile: rc, warden: warden)
    }

    func curl(_ port: Int, _ path: String, user: String? = nil, method: String = "GET", form: String? = nil, headers: [String] = []) throws -> (status: Int, body: String) {
        var arguments = ["-s", "-m", "10", "-o", "-", "-w", "\n%{http_code}", "-X", method]
        if let user { arguments += ["-u", user] }
        if let form { arguments += ["-d", form] }
        for header in headers { arguments += ["-H", header] }
        let result = try TestSupport.run("/usr/bin/curl", arguments + ["http://127.0.0.1:\(port)\(path)"])
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    @Test func authenticationAndAuthorizationMatrix() throws {
        let setup = try start(allow: "allow localhost allow admin:s3cret allow guest:guest read-only allow md5 \(try TemporaryDirectory().path)/none")
        defer {
            setup.warden.stop()
            setup.app.killAll()
        }
        let port = setup.port
        for path in ["/", "/app", "/_status?format=xml", "/_status?format=json", "/_summary", "/metrics"] {
            #expect(try curl(port, path).status == 401, "\(path) without credentials")
            #expect(try curl(port, path, user: "admin:Tr0ub4dor-guess").status == 401, "\(path) with a wrong password")
            #expect(try curl(port, path, user: "nobody:s3cret").status == 401, "\(path) with an unknown user")
            #expect(try curl(port, path, user: "admin:s3cret").status == 200, "\(path) as admin")
            #expect(try curl(port, path, user: "guest:guest").status == 200, "\(path) read-only may read")
        }
        // Every state-changing route, for every identity that may not change anything.
        let changes: [(path: String, form: String)] = [
            ("/_doaction", "action=stop&service=app"), ("/app", "action=stop"), ("/_maintenance", "site=app&action=on"),
        ]
        for (path, form) in changes {
            for (user, expected) in [(nil, 401), ("admin:Tr0ub4dor-guess", 401), ("nobody:s3cret", 401), ("guest:guest", 403)] as [(String?, Int)] {
                let answer = try curl(port, path, user: user, method: "POST", form: form, headers: ["X-Requested-By: warden-cli"])
                #expect(answer.status == expected, "POST \(path) as \(user ?? "anonymous")")
                #expect(!answer.body.contains("s3cret") && !answer.body.contains("Tr0ub4dor"), "no credential in an error page")
            }
            #expect(try curl(port, path, user: "admin:s3cret", method: "POST", form: form).status == 403, "POST \(path) without the CSRF token")
            #expect(try curl(port, path, user: "admin:s3cret", method: "PUT", form: form).status == 405, "PUT \(path): Method Not Allowed")
        }
        #expect(try curl(port, "/", user: nil, method: "HEAD").status == 401)
        let unauthorized = try TestSupport.run("/usr/bin/curl", ["-s", "-i", "http://127.0.0.1:\(port)/"])
        #expect(unauthorized.stdout.contains("WWW-Authenticate: Basic realm=\"warden\""))
        // Actions: POST only, with the CSRF token, never for read-only users.
        let before = try #require(setup.app.pid)
        #expect(try curl(port, "/app", user: "admin:s3cret", method: "POST", form: "action=restart").status == 403, "no CSRF token")
        #expect(try curl(port, "/app", user: "admin:s3cret", method: "POST", form: "action=restart&securitytoken=forged").status == 403)
        #expect(try curl(port, "/_doaction", user: "guest:guest", method: "POST", form: "action=stop&service=app", headers: ["X-Requested-By: warden-cli"]).status == 403)
        #expect(try curl(port, "/app?action=stop", user: "admin:s3cret").status == 200, "a GET changes nothing")
        usleep(1_500_000)
        #expect(setup.app.pid == before && setup.app.isServing, "no refused request changed anything")
        // No password in the log.
        for secret in ["s3cret", "Tr0ub4dor-guess", "YWRtaW46czNjcmV0", "guest:guest", "Z3Vlc3Q6Z3Vlc3Q="] {
            #expect(!setup.warden.log.contains(secret), "no credential in the log, plain or base64")
        }
        #expect(setup.warden.log.contains("HttpRequest: access denied"))
    }

    @Test func addressOutsideTheAllowListIsRefusedBeforeParsing() throws {
        let setup = try start(allow: "allow 10.0.0.0/8")
        defer {
            setup.warden.stop()
            setup.app.killAll()
        }
        let before = try #require(setup.app.pid)
        for (method, path) in [
            ("GET", "/"), ("HEAD", "/"), ("GET", "/app"), ("GET", "/_status?format=xml"), ("GET", "/_status?format=json"), ("GET", "/_summary"),
            ("GET", "/metrics"), ("POST", "/_doaction"), ("POST", "/app"), ("POST", "/_maintenance"),
        ] {
            let result = try TestSupport.run(
                "/usr/bin/curl",
                ["-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", "-X", method, "-u", "admin:s3cret", "-H", "X-Requested-By: warden-cli",
                 "-d", "action=stop&service=app&site=app", "http://127.0.0.1:\(setup.port)\(path)"])
            #expect(result.stdout == "000", "\(method) \(path): connection closed without an HTTP answer, credentials or not")
        }
        usleep(1_500_000)
        #expect(setup.app.pid == before && setup.app.isServing, "nothing changed")
        #expect(setup.warden.log.contains("host not allowed"))
    }

    @Test func malformedRequestsGet400AndAClosedConnection() throws {
        let setup = try start()
        defer {
            setup.warden.stop()
            setup.app.killAll()
        }
        for garbage in ["GARBAGE\r\n\r\n", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "GET /\u{1} HTTP/9.9\r\n\r\n"] {
            let (response, closed) = try TestSupport.rawExchange(port: setup.port, garbage)
            #expect(response.hasPrefix("HTTP/1.1 400"), "\(garbage.debugDescription) → \(response)")
            #expect(closed, "\(garbage.debugDescription): the connection is closed")
        }
        #expect(try curl(setup.port, "/", user: "admin:s3cret").status == 200, "still serving")
    }

    @Test func cliDrivesTheDaemon() throws {
        let setup = try start()
        defer {
            setup.warden.stop()
            setup.app.killAll()
        }
        let warden = TestSupport.wardenBinary
        let rc = setup.controlFile
        let summary = try TestSupport.run(warden, ["-c", rc, "summary"])
        #expect(summary.status == 0)
        #expect(summary.stdout.contains(" app "))
        let json = try TestSupport.run(warden, ["-c", rc, "status", "--json"])
        let document = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let services = try #require(document?["services"] as? [[String: Any]])
        #expect(services.first?["name"] as? String == "app")
        #expect(services.first?["status"] as? String == "OK")
        let before = try #require(setup.app.pid)
        #expect(try TestSupport.run(warden, ["-c", rc, "restart", "app"]).status == 0)
        #expect(TestSupport.waitUntil(timeout: 15) { setup.app.pid != before && setup.app.isServing })
        // monit's order, the group before the action.
        #expect(try TestSupport.run(warden, ["-c", rc, "-g", "web", "unmonitor"]).status == 0)
        #expect(TestSupport.waitUntil(timeout: 5) { (try? TestSupport.run(warden, ["-c", rc, "summary"]).stdout.contains("Not monitored")) == true })
        #expect(try TestSupport.run(warden, ["-c", rc, "monitor", "all"]).status == 0)
        #expect(try TestSupport.run(warden, ["-c", rc, "stop", "app"]).status == 0)
        #expect(TestSupport.waitUntil(timeout: 15) { setup.app.instances == 0 })
        #expect(try TestSupport.run(warden, ["-c", rc, "start", "app"]).status == 0)
        #expect(TestSupport.waitUntil(timeout: 15) { setup.app.isServing })
        let missing = try TestSupport.run(warden, ["-c", rc, "restart", "nosuch"])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("There is no service named \"nosuch\""))
        let status = try TestSupport.run(warden, ["-c", rc, "status", "app"])
        #expect(status.stdout.contains("Process 'app'"))
        // Prometheus exposition from swift-metrics: gauges per service, counters of restarts and events.
        let metrics = try curl(setup.port, "/metrics", user: "admin:s3cret")
        #expect(metrics.body.contains("# TYPE warden_service_up gauge"))
        #expect(metrics.body.contains("warden_service_up{"))
        #expect(metrics.body.contains("service=\"app\""))
        #expect(metrics.body.range(of: #"warden_service_restarts_total\{[^}]*service="app"[^}]*\} [1-9]"#, options: .regularExpression) != nil, "\(metrics.body)")
        #expect(metrics.body.range(of: #"warden_events_total\{[^}]*event="nonexist"[^}]*\} [1-9]"#, options: .regularExpression) != nil)
        setup.warden.stop()
        let down = try TestSupport.run(warden, ["-c", rc, "summary"])
        #expect(down.status == 2)
        #expect(down.stderr.contains("is it running?"))
    }

    /// The browser logs in itself (it answers the Basic challenge through DevTools), shows the dashboard,
    /// opens the service page and presses its Restart button; the app is restarted.
    @Test func dashboardInARealBrowser() throws {
        guard Browser.chromium != nil, Browser.driverAvailable else {
            #expect(!TestSupport.isCI, "chromium or python3-websocket is not installed (.ci/run installs them)")
            return
        }
        let setup = try start(allow: "allow admin:s3cret")
        defer {
            setup.warden.stop()
            setup.app.killAll()
        }
        let output = TestSupport.packageRoot + "/.build/test-output"
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        let screenshot = output + "/dashboard.png"
        try? FileManager.default.removeItem(atPath: screenshot)
        let before = try #require(setup.app.pid)
        let session = try Browser.session(
            port: setup.port, user: "admin", password: "s3cret",
            steps: [.dom, .screenshot(screenshot), .navigate("/app"), .click("button[value=restart]"), .dom])
        #expect(session.error == nil, "\(session.error ?? "") \(session.output.suffix(500))")
        // DevTools reports the 401 as a challenge the browser answered, then the page's 200.
        #expect(session.authChallenges >= 1, "the browser answered the 401 challenge itself")
        let base = "http://127.0.0.1:\(setup.port)"
        #expect(session.responses.first == "200 \(base)/", "\(session.responses)")
        let dashboard = try #require(session.doms.first)
        #expect(dashboard.contains("id=\"service-app\""), "\(dashboard.prefix(500))")
        #expect(dashboard.contains("data-status=\"OK\""))
        #expect(FileManager.default.fileExists(atPath: screenshot))
        #expect(session.clicks == ["clicked"], "the restart button is on the service page")
        // The form's POST, then the GET its 303 redirects to, whose page the last step read.
        let post = try #require(session.requests.firstIndex(of: "POST \(base)/app"), "the browser posted the form: \(session.requests)")
        #expect(session.requests[(post + 1)...].contains("GET \(base)/app"), "\(session.requests)")
        #expect(session.doms.count == 2)
        #expect(session.doms.last?.contains("value=\"restart\"") == true, "back on the service page")
        #expect(TestSupport.waitUntil(timeout: 15) { setup.app.pid != before && setup.app.isServing }, "\(setup.warden.log)")
        #expect(setup.warden.log.contains("'app' restart requested by admin"), "\(setup.warden.log)")
        #expect(setup.warden.process.isRunning, "warden survives the restart (a CPU sample across the pid change once crashed the page)")
    }

    /// Files written by Apache's own `htpasswd` (apache2-utils): `$apr1$` (-m), bcrypt (-B) and
    /// crypt (-d) log in with their password and are refused (401) with another; a `{SHA}` entry
    /// (-s), which warden cannot check, is named in the log when the file is loaded.
    @Test func htpasswdFilesFromApachesHtpasswd() throws {
        guard let htpasswd = TestSupport.peer("htpasswd") else {
            #expect(!TestSupport.isCI, "htpasswd is not installed (.ci/run installs apache2-utils)")
            return
        }
        let files = try TemporaryDirectory()
        let md5 = files.path + "/md5.htpasswd"
        let crypt = files.path + "/crypt.htpasswd"
        for arguments in [
            ["-c", "-b", "-m", md5, "alice", "apr1-Secret"], ["-b", "-B", md5, "bob", "bcrypt-Secret"], ["-b", "-s", md5, "dave", "sha-Secret"],
            ["-c", "-b", "-d", crypt, "carol", "crypt-pw"],
        ] {
            let result = try TestSupport.run(htpasswd, arguments)
            #expect(result.status == 0, "htpasswd \(arguments): \(result.stderr)")
        }
        let written = try String(contentsOfFile: md5, encoding: .utf8) + String(contentsOfFile: crypt, encoding: .utf8)
        #expect(written.contains("alice:$apr1$") && written.contains("bob:$2y$") && written.contains("dave:{SHA}"), "\(written)")
        #expect(written.range(of: #"carol:[./0-9A-Za-z]{13}\n"#, options: .regularExpression) != nil, "DES crypt: \(written)")
        let setup = try start(allow: "allow md5 \(md5) allow crypt \(crypt)")
        defer {
            setup.warden.stop()
            setup.app.killAll()
        }
        for (user, password) in [("alice", "apr1-Secret"), ("bob", "bcrypt-Secret"), ("carol", "crypt-pw")] {
            #expect(try curl(setup.port, "/", user: "\(user):\(password)").status == 200, "\(user) logs in")
            // Changed within the first 8 characters: DES crypt reads no further (Apache's too).
            #expect(try curl(setup.port, "/", user: "\(user):x\(password)").status == 401, "\(user) with a wrong password")
            #expect(try curl(setup.port, "/", user: "\(user):").status == 401, "\(user) with an empty password")
        }
        #expect(try curl(setup.port, "/", user: "alice:bcrypt-Secret").status == 401, "another user's password")
        #expect(try curl(setup.port, "/", user: "dave:sha-Secret").status == 401, "{SHA} is not accepted")
        #expect(
            setup.warden.log.contains("htpasswd file '\(md5)': 'dave' has a hash warden cannot check"),
            "the unusable entry is named when the file is read: \(setup.warden.log)")
        for secret in ["apr1-Secret", "bcrypt-Secret", "crypt-pw", "sha-Secret"] {
            #expect(!setup.warden.log.contains(secret), "no password in the log")
        }
    }

    /// `/_status?format=xml` has the elements monit 5.33 writes, in monit's order, for a process with a
    /// URL test and for the system (observed: ../shared/reference/monit-5.33/samples/status-sample.xml,
    /// from the same control file). Values differ; names and order must not.
    @Test func xmlStatusHasMonitsElementsInMonitsOrder() throws {
        let reference = "/work/shared/reference/monit-5.33/samples/status-sample.xml"
        let fallback = TestSupport.packageRoot + "/../shared/reference/monit-5.33/samples/status-sample.xml"
        guard let observed = [reference, fallback].lazy.compactMap({ try? String(contentsOfFile: $0, encoding: .isoLatin1) }).first else {
            #expect(!TestSupport.isCI, "the observed monit XML is missing")
            return
        }
        let directory = try TemporaryDirectory()
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        let port = TestSupport.freePort()
        // The control file of the observation, on this test's ports and paths.
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set statefile \(directory.path)/state
            set httpd port \(port) and use address localhost allow localhost allow admin:monit
            check process app with pidfile \(app.pidfile)
              start program = "\(app.startScript)"
              stop program = "\(app.stopScript)"
              if failed url http://127.0.0.1:\(app.port)/ping and content == "pong" timeout 2 seconds then restart
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing }, "\(warden.log)")
        #expect(warden.waitForLog("httpd listening", timeout: 10))
        // Past a cycle or two, so the process has been measured, as in the observation.
        usleep(2_500_000)
        let xml = try curl(port, "/_status?format=xml", user: "admin:monit")
        #expect(xml.status == 200)
        #expect(xml.body.hasPrefix("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><monit>"), "\(xml.body.prefix(80))")
        // Element paths in document order, per top-level part (server, platform, each service by type).
        let skeleton = """
            import sys, json, xml.etree.ElementTree as ET
            root = ET.fromstring(sys.stdin.buffer.read())
            def walk(e, prefix, out):
                for c in e:
                    out.append(prefix + c.tag)
                    walk(c, prefix + c.tag + "/", out)
            parts = {}
            order = []
            for c in root:
                key = c.tag + (("[type=" + c.get("type") + "]") if c.get("type") else "")
                order.append(key)
                out = []
                walk(c, "", out)
                parts.setdefault(key, out)
            print(json.dumps({"order": order, "parts": parts}))
            """
        func parse(_ text: String) throws -> (order: [String], parts: [String: [String]]) {
            let result = try TestSupport.run("/usr/bin/python3", ["-c", skeleton], input: text)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stderr)")
            return (object["order"] as? [String] ?? [], object["parts"] as? [String: [String]] ?? [:])
        }
        let monit = try parse(observed)
        let ours = try parse(xml.body)
        #expect(ours.order == monit.order, "top level: warden \(ours.order) monit \(monit.order)")
        for (part, elements) in monit.parts.sorted(by: { $0.key < $1.key }) {
            let mine = ours.parts[part] ?? []
            #expect(mine == elements, "\(part): missing \(elements.filter { !mine.contains($0) }), extra \(mine.filter { !elements.contains($0) }); warden \(mine)")
        }
    }

    @Test func dashboardOverHTTPSAndTheCLIThroughIt() throws {
        let directory = try TemporaryDirectory()
        let tls = try TestSupport.selfSignedCertificate(in: directory)
        let port = TestSupport.freePort()
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set httpd port \(port) and use address 127.0.0.1
                with ssl { pemfile: \(tls.pem) }
                allow admin:s3cret
            check host loopback with address 127.0.0.1
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(warden.waitForLog("httpd listening", timeout: 15), "\(warden.log)")
        let secure = try TestSupport.run("/usr/bin/curl", ["-s", "-k", "-u", "admin:s3cret", "-o", "/dev/null", "-w", "%{http_code} %{scheme}", "https://127.0.0.1:\(port)/"])
        #expect(secure.stdout.lowercased() == "200 https")
        let plain = try TestSupport.run("/usr/bin/curl", ["-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(port)/"])
        #expect(plain.stdout != "200", "plain HTTP is not served on the HTTPS port")
        let summary = try TestSupport.run(TestSupport.wardenBinary, ["-c", rc, "summary"])
        #expect(summary.status == 0, "\(summary.stderr)")
        #expect(summary.stdout.contains("loopback"))
    }

    /// `ssl { clientpemfile: … }` (monit's client-certificate authentication): a client must present a
    /// certificate listed in the file, signed by a CA in it; curl without one, or with one signed by
    /// another CA, is refused during the handshake, and with a listed one it gets the dashboard.
    @Test func dashboardRequiresAListedClientCertificate() throws {
        let directory = try TemporaryDirectory()
        let ca = try TestCA("clients", in: directory)
        let server = try ca.issue("dashboard", names: ["127.0.0.1"])
        let client = try ca.issue("alice", names: ["alice.test"])
        let unlisted = try ca.issue("bob", names: ["bob.test"])
        let stranger = try TestCA("stranger", in: directory).issue("mallory", names: ["mallory.test"])
        let listed = try directory.write(
            "clients.pem", try String(contentsOfFile: ca.certificate, encoding: .utf8) + String(contentsOfFile: client.certificate, encoding: .utf8))
        let port = TestSupport.freePort()
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set httpd port \(port) and use address 127.0.0.1
                with ssl { pemfile: \(server.pem), clientpemfile: \(listed), verify: enable }
                allow 127.0.0.1
            check host loopback with address 127.0.0.1
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(warden.waitForLog("httpd listening", timeout: 15), "\(warden.log)")
        func curl(_ identity: TestCA.Issued?) throws -> String {
            let certificate = identity.map { ["--cert", $0.certificate, "--key", $0.key] } ?? []
            return try TestSupport.run(
                "/usr/bin/curl", ["-s", "-m", "5", "--cacert", ca.certificate, "-o", "/dev/null", "-w", "%{http_code}"] + certificate + ["https://127.0.0.1:\(port)/"]
            ).stdout
        }
        #expect(try curl(client) == "200")
        #expect(try curl(nil) != "200", "no client certificate")
        #expect(try curl(stranger) != "200", "a certificate of another CA")
        #expect(try curl(unlisted) != "200", "signed by the CA, but not listed")
        #expect(warden.log.contains("not listed in 'clientpemfile'"), "\(warden.log)")
    }
}
