import Foundation
import Testing
import WardenTestSupport

/// The seed chapter end to end: its app, its scripts, monit's checks, the front server and mail.
@Suite("The chapter, end to end", .serialized)
struct ChapterTests {
    static var myapp: String { TestSupport.productsDirectory + "/myapp" }

    @Test func generatedScriptsPassShellcheckAndReallyRunTheApp() throws {
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        let generate = try TestSupport.run(
            TestSupport.wardenBinary,
            ["service", "generate", "myapp", "--exec", "\(Self.myapp) --port \(port)", "--dir", directory.path,
             "--pidfile", directory.path + "/myapp.pid", "--log", directory.path + "/myapp.log", "--port", String(port)])
        #expect(generate.status == 0, "\(generate.stderr)")
        let script = directory.path + "/myapp"
        if let shellcheck = TestSupport.peer("shellcheck") {
            let check = try TestSupport.run(shellcheck, [script, directory.path + "/myapp-run"])
            #expect(check.status == 0, "\(check.stdout)")
        } else {
            #expect(!TestSupport.isCI, "shellcheck is not installed (.ci/run installs it)")
        }
        #expect(try TestSupport.run(script, ["status"]).status == 3, "not running")
        #expect(try TestSupport.run(script, ["start"]).status == 0)
        #expect(TestSupport.waitUntil(timeout: 10) { TestSupport.httpGet(port: port, path: "/ping")?.body == "pong" })
        #expect(try TestSupport.run(script, ["status"]).status == 0, "running")
        let pid = try #require(TestSupport.readPID(directory.path + "/myapp.pid"))
        kill(pid, SIGKILL)
        #expect(TestSupport.waitUntil(timeout: 5) { !TestSupport.isAlive(pid) })
        #expect(try TestSupport.run(script, ["status"]).status == 1, "dead but the pidfile exists")
        #expect(try TestSupport.run(script, ["start"]).status == 0)
        #expect(TestSupport.waitUntil(timeout: 10) { TestSupport.httpGet(port: port, path: "/ping")?.body == "pong" })
        #expect(try TestSupport.run(script, ["stop"]).status == 0)
        #expect(try TestSupport.run(script, ["status"]).status == 3)
        let log = try String(contentsOfFile: directory.path + "/myapp.log", encoding: .utf8)
        #expect(log.contains("I Starting ZnManagingMultiThreadedServer HTTP port \(port)"))
        // The generated check block is valid warden (and monit) syntax.
        let block = try TestSupport.run(TestSupport.wardenBinary, ["-t", "-c", directory.path + "/myapp.wardenrc"])
        #expect(block.stdout.contains("Control file syntax OK"), "\(block.stderr)")
    }

    /// The unit `warden service generate` writes is one systemd itself accepts: `systemd-analyze verify`
    /// exits 0 and says nothing (a misspelt setting is only a warning there, so silence is the test).
    @Test(arguments: [nil, "www-data"] as [String?])
    func generatedSystemdUnitPassesSystemdAnalyzeVerify(user: String?) throws {
        guard let analyze = TestSupport.peer("systemd-analyze") else {
            #expect(!TestSupport.isCI, "systemd-analyze is not installed (.ci/run installs systemd)")
            return
        }
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        let generate = try TestSupport.run(
            TestSupport.wardenBinary,
            ["service", "generate", "myapp", "--exec", "\(Self.myapp) --port \(port)", "--dir", directory.path,
             "--pidfile", directory.path + "/myapp.pid", "--log", directory.path + "/myapp.log", "--port", String(port)]
                + (user.map { ["--user", $0] } ?? []))
        #expect(generate.status == 0, "\(generate.stderr)")
        let unit = directory.path + "/myapp.service"
        let text = try String(contentsOfFile: unit, encoding: .utf8)
        #expect(text.contains("ExecStart=\(Self.myapp) --port \(port)"))
        #expect(text.contains("User=www-data") == (user != nil))
        let verify = try TestSupport.run(analyze, ["verify", unit], timeout: 60)
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        #expect((verify.stdout + verify.stderr).isEmpty, "no warning: \(verify.stdout)\(verify.stderr)")
    }

    static let seed = TestSupport.packageRoot + "/Tests/WardenConfigTests/Corpus/seed"

    /// `warden import nginx|apache` run as the command on the chapter's two files: no directive left
    /// untranslated, and the output is a control file `warden -t` accepts.
    @Test(arguments: ["nginx", "apache"])
    func importedFrontServerConfigurationPassesWardenT(kind: String) throws {
        let directory = try TemporaryDirectory()
        let input = Self.seed + "/\(kind).conf"
        let imported = try TestSupport.run(TestSupport.wardenBinary, ["import", kind, input])
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(imported.stderr.isEmpty, "every directive translated: \(imported.stderr)")
        #expect(imported.stdout.contains("check site mydomain.com with host \"mydomain.com\""), "\(imported.stdout)")
        #expect(imported.stdout.contains("pass / to http://127.0.0.1:8080/"), "\(imported.stdout)")
        let output = try directory.write("\(kind).wardenrc", imported.stdout)
        let check = try TestSupport.run(TestSupport.wardenBinary, ["-t", "-c", output])
        #expect(check.status == 0, "\(check.stderr)\n\(imported.stdout)")
        #expect(check.stdout.contains("Control file syntax OK"))
        #expect(!check.stderr.contains("error"), "\(check.stderr)")
    }

    /// The chapter's Apache VirtualHost (the importer's input) is valid Apache: the real `apache2ctl -t`
    /// with the modules it needs (proxy, proxy_http; access_compat for its 2.2-style `Order`/`Allow`),
    /// from a ServerRoot of the test's own, so nothing under /etc is read or touched.
    @Test func chaptersApacheVirtualHostPassesApache2ctlT() throws {
        guard let apache2ctl = TestSupport.peer("apache2ctl") else {
            #expect(!TestSupport.isCI, "apache2ctl is not installed (.ci/run installs apache2)")
            return
        }
        let directory = try TemporaryDirectory()
        let root = directory.path
        for sub in ["run", "lock", "log"] { try FileManager.default.createDirectory(atPath: root + "/" + sub, withIntermediateDirectories: true) }
        // apache2ctl reads APACHE_CONFDIR/envvars and passes `-d APACHE_CONFDIR` to apache2.
        try directory.write(
            "envvars",
            """
            export APACHE_RUN_USER=www-data
            export APACHE_RUN_GROUP=www-data
            export APACHE_PID_FILE=\(root)/run/apache2.pid
            export APACHE_RUN_DIR=\(root)/run
            export APACHE_LOCK_DIR=\(root)/lock
            export APACHE_LOG_DIR=\(root)/log
            export LANG=C

            """)
        let modules = "/usr/lib/apache2/modules"
        func configuration(_ names: [String]) throws {
            try directory.write(
                "apache2.conf",
                """
                ServerName localhost
                PidFile \(root)/run/apache2.pid
                Mutex file:\(root)/lock default
                ErrorLog \(root)/log/error.log
                Listen 127.0.0.1:\(TestSupport.freePort())
                LoadModule mpm_event_module \(modules)/mod_mpm_event.so
                LoadModule authz_core_module \(modules)/mod_authz_core.so
                LoadModule authz_host_module \(modules)/mod_authz_host.so
                \(names.map { "LoadModule \($0)_module \(modules)/mod_\($0).so" }.joined(separator: "\n"))
                Include \(Self.seed)/apache.conf

                """)
        }
        let environment = ["APACHE_CONFDIR": root, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        try configuration(["access_compat", "proxy", "proxy_http"])
        let check = try TestSupport.run(apache2ctl, ["-t"], environment: environment, timeout: 30)
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        #expect(check.stderr.contains("Syntax OK") || check.stdout.contains("Syntax OK"), "\(check.stdout)\(check.stderr)")
        // The control: without mod_proxy the same file is refused, so the check reads the VirtualHost.
        try configuration(["access_compat"])
        let refused = try TestSupport.run(apache2ctl, ["-t"], environment: environment, timeout: 30)
        #expect(refused.status != 0, "\(refused.stdout)\(refused.stderr)")
        #expect((refused.stdout + refused.stderr).contains("ProxyPreserveHost"), "\(refused.stdout)\(refused.stderr)")
    }

    @Test func walkTheChapter() throws {
        let directory = try TemporaryDirectory()
        let appPort = TestSupport.freePort()
        let proxyPort = TestSupport.freePort()
        let httpdPort = TestSupport.freePort()
        let smtp: SMTPSink? = SMTPSink.available ? try SMTPSink(directory: directory) : nil
        #expect(smtp != nil || !TestSupport.isCI, "python3-aiosmtpd is not installed (.ci/run installs it)")
        let rc = try directory.write(
            "monitrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set httpd port \(httpdPort) and
            use address localhost # only accept connection from localhost
            allow localhost # allow localhost to connect to the server
            allow admin:monit # require user 'admin' with pass 'monit'
            set mailserver 127.0.0.1 port \(smtp?.port ?? 1)

            set proxy
                listen 127.0.0.1 port \(proxyPort)

            alert me@example.com
            check process myapp with pidfile \(directory.path)/myapp.pid
            start program = "/bin/sh -c 'while [ -e \(directory.path)/gate ]; do sleep 0.05; done; exec \(Self.myapp) --port \(appPort) --pidfile \(directory.path)/myapp.pid'"
            stop program = "/bin/sh -c 'kill $(cat \(directory.path)/myapp.pid)'"
            if failed (url http://localhost:\(appPort)/ping
            and content == "pong"
            and timeout 10 seconds)
            then restart
            if 5 restarts within 5 cycles
            then timeout

            check site myapp with host "mydomain.com"
                pass / to http://127.0.0.1:\(appPort)/ for service myapp
                maintenance page \(directory.path)/maintenance.html hold 10 seconds
            """)
        try directory.write("maintenance.html", "<h1>back soon</h1>\n", mode: 0o644)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer {
            // warden quits as monit does, leaving the app running: the test ends it by its pid.
            warden.stop()
            if let pid = TestSupport.readPID(directory.path + "/myapp.pid") { kill(pid, SIGKILL) }
        }
        let host = ["Host": "mydomain.com"]
        #expect(TestSupport.waitUntil(timeout: 20) { TestSupport.httpGet(port: proxyPort, path: "/ping", headers: host)?.body == "pong" }, "\(warden.log)")
        let root = try #require(TestSupport.httpGet(port: proxyPort, path: "/", headers: host))
        #expect(root.status == 302)
        #expect(root.headers["location"] == "image")
        let page = try #require(TestSupport.httpGet(port: proxyPort, path: "/image", headers: host))
        #expect(page.status == 200)
        #expect(page.headers["content-type"] == "text/html;charset=utf-8")
        #expect(page.body.contains("<img src=\"image?raw=true\""))
        let png = try TestSupport.run("/usr/bin/curl", ["-s", "-H", "Host: mydomain.com", "http://127.0.0.1:\(proxyPort)/image?raw=true", "-o", directory.path + "/image.png", "-w", "%{content_type}"])
        #expect(png.stdout == "image/png")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: directory.path + "/image.png"))
        #expect(Array(bytes.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        // The app's stdout (captured by warden, shown with -v) has Zinc's lines.
        #expect(TestSupport.waitUntil(timeout: 5) { warden.log.contains("I Read a ZnRequest(GET /image)") })
        #expect(warden.log.contains("T GET / 302 16B"))
        #expect(warden.log.contains("I Wrote a ZnResponse(302 Found text/plain;charset=utf-8 16B)"))
        // The warning about the chapter's `alert` line, and the alert bound to myapp.
        #expect(warden.log.contains("warden binds it to 'myapp'"))
        // kill -9: restarted, and a request sent during the restart is held and then served. The start
        // program waits at a gate until the request is seen waiting, so the app cannot be back first.
        usleep(1_200_000)
        let pid = try #require(TestSupport.readPID(directory.path + "/myapp.pid"))
        _ = FileManager.default.createFile(atPath: directory.path + "/gate", contents: nil)
        kill(pid, SIGKILL)
        let request = Background { TestSupport.httpGet(port: proxyPort, path: "/ping", timeout: 20, headers: host) }
        #expect(request.value(timeout: 1.5) == nil, "no answer while the app is down: the request is held")
        unlink(directory.path + "/gate")
        let held = try #require(request.value(timeout: 20) ?? nil)
        #expect(held.status == 200)
        #expect(held.body == "pong")
        #expect(TestSupport.readPID(directory.path + "/myapp.pid") != pid)
        // The dashboard shows one restart.
        let status = try TestSupport.run(TestSupport.wardenBinary, ["-c", rc, "status", "--json"])
        let document = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        let myapp = (document?["services"] as? [[String: Any]])?.first { $0["name"] as? String == "myapp" }
        #expect(myapp?["restarts"] as? Int == 2, "the first start and one restart")
        let dashboard = try TestSupport.run("/usr/bin/curl", ["-s", "-u", "admin:monit", "http://127.0.0.1:\(httpdPort)/"])
        #expect(dashboard.stdout.contains("id=\"service-myapp\""))
        // The alert mail reached the SMTP server.
        if let smtp {
            #expect(TestSupport.waitUntil(timeout: 15) { smtp.mails.contains { $0.subject.contains("Does not exist myapp") && $0.to == ["me@example.com"] } }, "\(warden.log)")
        }
    }

    @Test func demoStartsEverythingAndCtrlCLeavesNothingBehind() throws {
        let proxy = TestSupport.freePort()
        let dashboard = TestSupport.freePort()
        // The demo runs two instances and keeps two ports for a deploy.
        let app = try #require(InstanceTests.freePortRange(4)).lowerBound
        let demo = Process()
        demo.executableURL = URL(fileURLWithPath: TestSupport.wardenBinary)
        demo.arguments = ["demo", "--proxy-port", String(proxy), "--dashboard-port", String(dashboard), "--app-port", String(app)]
        let output = Pipe()
        demo.standardOutput = output
        demo.standardError = FileHandle.nullDevice
        try demo.run()
        #expect(TestSupport.waitUntil(timeout: 20) { TestSupport.httpGet(port: proxy, path: "/ping")?.body == "pong" })
        #expect(TestSupport.waitUntil(timeout: 20) { [app, app + 1].allSatisfy { TestSupport.httpGet(port: $0, path: "/ping")?.body == "pong" } }, "two instances")
        #expect(TestSupport.httpGet(port: dashboard, path: "/")?.status == 401, "the dashboard wants the generated password")
        kill(demo.processIdentifier, SIGINT)
        #expect(TestSupport.waitUntil(timeout: 20) { !demo.isRunning })
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(text.contains("password "))
        #expect(text.contains("http://127.0.0.1:\(proxy)/"))
        #expect([app, app + 1].allSatisfy { TestSupport.processes(containing: "--port \($0) ").isEmpty }, "no myapp left behind")
    }
}
