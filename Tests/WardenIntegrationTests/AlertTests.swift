import Foundation
import Testing
import WardenTestSupport

/// Alert mails from the real daemon to a real SMTP server (aiosmtpd), with a supervised process killed.
@Suite("Alerts over real SMTP", .serialized)
struct AlertTests {
    func requireSMTP() -> Bool {
        if SMTPSink.available { return true }
        #expect(!TestSupport.isCI, "python3-aiosmtpd is not installed (.ci/run installs it)")
        return false
    }

    func controlFile(_ directory: TemporaryDirectory, _ app: TestApp, mail: String, serviceExtra: String = "") throws -> String {
        try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set statefile \(directory.path)/state
            \(mail)
            check process app with pidfile \(app.pidfile)
              start program = "\(app.startScript)"
              stop program = "\(app.stopScript)"
              \(serviceExtra)
            """)
    }

    @Test func killedAppSendsMonitsMailToTheRightRecipients() throws {
        guard requireSMTP() else { return }
        let directory = try TemporaryDirectory()
        let smtp = try SMTPSink(directory: directory)
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        // monit's alerts come with monit's restart limit: one per crash and one per return.
        let rc = try controlFile(
            directory, app,
            mail: """
                set mailserver 127.0.0.1 port \(smtp.port)
                set alert ops@example.com
                set alert boss@example.com only on { timeout }
                set alert dev@example.com
                """,
            serviceExtra: """
                alert me@example.com only on { nonexist }
                  noalert dev@example.com
                if 5 restarts within 5 cycles then timeout
                """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing })
        usleep(1_200_000)
        kill(try #require(app.pid), SIGKILL)
        #expect(TestSupport.waitUntil(timeout: 20) { smtp.mails.contains { $0.subject.contains("Exists app") } && smtp.mails.count >= 3 }, "\(warden.log)")
        let down = try #require(smtp.mails.first { $0.subject == "warden alert --  Does not exist app" && $0.to.contains("ops@example.com") }, "\(smtp.mails.map(\.subject))")
        #expect(down.from.hasPrefix("warden@"))
        #expect(down.header("From")?.hasPrefix("warden@") == true)
        #expect(down.header("Message-Id")?.hasPrefix("<") == true)
        #expect(down.header("Date") != nil)
        #expect(down.header("Content-Type") == "text/plain; charset=utf-8")
        #expect(down.data.contains("Does not exist Service app"))
        #expect(down.data.contains("\tAction:      restart"))
        #expect(down.data.contains("\tDescription: process is not running"))
        let recipients = Set(smtp.mails.filter { $0.subject.contains("Does not exist app") }.flatMap(\.to))
        #expect(recipients == ["ops@example.com", "me@example.com"], "boss only on timeout, dev excluded by noalert")
        let instance = smtp.mails.first { $0.subject.contains("Monit instance changed") }
        #expect(instance != nil, "warden's own start is an instance event")
    }

    @Test func authenticationPlainAndLoginAndStartTLS() throws {
        guard requireSMTP() else { return }
        let directory = try TemporaryDirectory()
        let cert = directory.path + "/cert.pem"
        let key = directory.path + "/key.pem"
        let openssl = try TestSupport.run("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1"])
        #expect(openssl.status == 0, "\(openssl.stderr)")
        var plain = SMTPSink.Options()
        plain.authUser = "mailer"
        plain.authPassword = "p4ss"
        let plainServer = try SMTPSink(directory: directory, options: plain)
        var login = plain
        login.excludePlain = true
        let loginServer = try SMTPSink(directory: directory, options: login)
        var tls = SMTPSink.Options()
        tls.startTLSCertificate = (cert, key)
        tls.requireTLS = true
        let tlsServer = try SMTPSink(directory: directory, options: tls)
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        for (server, extra) in [(plainServer, "username \"mailer\" password \"p4ss\""), (loginServer, "username \"mailer\" password \"p4ss\""), (tlsServer, "using tls")] {
            let rc = try controlFile(directory, app, mail: "set mailserver 127.0.0.1 port \(server.port) \(extra)\nset alert ops@example.com")
            let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log-\(server.port)")
            #expect(TestSupport.waitUntil(timeout: 20) { !server.mails.isEmpty }, "\(warden.log)")
            warden.stop()
            app.killAll()
        }
        #expect(plainServer.authAttempts.first == "PLAIN ok")
        #expect(loginServer.authAttempts.first == "LOGIN ok")
        #expect(tlsServer.mails.first?.tls == true, "the mail went over STARTTLS")
    }

    /// `using ssl`: implicit TLS (SMTPS) from the first byte, to aiosmtpd wrapped in TLS with a
    /// certificate made by openssl. warden, like monit by default, verifies no mail server certificate,
    /// so the self-signed one is accepted; the server side records that the connection was TLS.
    @Test func implicitTLSDeliversToAnSMTPSServer() throws {
        guard requireSMTP() else { return }
        let directory = try TemporaryDirectory()
        let tls = try TestSupport.selfSignedCertificate(in: directory)
        var options = SMTPSink.Options()
        options.implicitTLSCertificate = (tls.cert, tls.key)
        let smtp = try SMTPSink(directory: directory, options: options)
        // The server speaks only TLS: a TLS client gets the greeting, so a plain one could not deliver.
        let greeting = try TestSupport.run(
            "/usr/bin/python3",
            ["-c", "import smtplib, ssl, sys\ns = smtplib.SMTP_SSL('127.0.0.1', int(sys.argv[1]), context=ssl._create_unverified_context(), timeout=10)\nprint(s.noop()[0])\ns.quit()", String(smtp.port)],
            timeout: 20)
        #expect(greeting.stdout.hasPrefix("250"), "a TLS client is greeted and answered: \(greeting.stdout) \(greeting.stderr)")
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        let rc = try controlFile(directory, app, mail: "set mailserver 127.0.0.1 port \(smtp.port) using ssl\nset alert ops@example.com")
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(TestSupport.waitUntil(timeout: 20) { smtp.mails.contains { $0.subject.contains("Monit instance changed") } }, "\(warden.log)")
        let mail = try #require(smtp.mails.first)
        #expect(mail.tls, "delivered inside TLS")
        #expect(mail.to == ["ops@example.com"])
        #expect(!warden.log.contains("cannot deliver"), "\(warden.log)")
    }

    /// `warden maintenance on SITE` is an event: it is in `warden status --json`, and its alert mail
    /// reaches the SMTP server; `off` likewise.
    @Test func maintenanceChangeIsAnEventAndAMail() throws {
        guard requireSMTP() else { return }
        let directory = try TemporaryDirectory()
        let smtp = try SMTPSink(directory: directory)
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        let httpd = TestSupport.freePort()
        let proxy = TestSupport.freePort()
        let rc = try controlFile(
            directory, app,
            mail: """
                set httpd port \(httpd) and use address 127.0.0.1
                    allow 127.0.0.1
                set mailserver 127.0.0.1 port \(smtp.port)
                set alert ops@example.com
                set proxy
                    listen 127.0.0.1 port \(proxy)
                check site www default
                    pass / to http://127.0.0.1:\(app.port)/ for service app
                """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing }, "\(warden.log)")
        #expect(warden.waitForLog("httpd listening", timeout: 10))
        #expect(TestSupport.waitUntil(timeout: 10) { TestSupport.httpGet(port: proxy, path: "/ping")?.body == "pong" })
        let on = try TestSupport.run(TestSupport.wardenBinary, ["-c", rc, "maintenance", "on", "www"])
        #expect(on.status == 0, "\(on.stderr)")
        #expect(TestSupport.waitUntil(timeout: 5) { TestSupport.httpGet(port: proxy, path: "/ping")?.status == 503 }, "the change took effect")
        #expect(
            TestSupport.waitUntil(timeout: 15) { smtp.mails.contains { $0.subject.contains("Action done www") && $0.data.contains("maintenance on") } },
            "the mail: \(smtp.mails.map(\.subject)) \(warden.log)")
        let mail = try #require(smtp.mails.first { $0.subject.contains("Action done www") })
        #expect(mail.to == ["ops@example.com"])
        let json = try TestSupport.run(TestSupport.wardenBinary, ["-c", rc, "status", "--json"])
        #expect(json.status == 0, "\(json.stderr)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let events = ((document["services"] as? [[String: Any]]) ?? []).flatMap { ($0["events"] as? [[String: Any]]) ?? [] }
            + ((document["sites"] as? [[String: Any]]) ?? []).flatMap { ($0["events"] as? [[String: Any]]) ?? [] }
        #expect(events.contains { $0["service"] as? String == "www" && $0["message"] as? String == "maintenance on" }, "the event is in the status: \(json.stdout.prefix(2000))")
        let site = ((document["sites"] as? [[String: Any]]) ?? []).first { $0["name"] as? String == "www" }
        #expect(site?["maintenance"] as? Bool == true)
        let text = try TestSupport.run(TestSupport.wardenBinary, ["-c", rc, "status", "www"])
        #expect(text.status == 0 && text.stdout.contains("Site 'www'") && text.stdout.contains("Action done: maintenance on"), "\(text.stdout)\(text.stderr)")
        #expect(try TestSupport.run(TestSupport.wardenBinary, ["-c", rc, "maintenance", "off", "www"]).status == 0)
        #expect(TestSupport.waitUntil(timeout: 15) { smtp.mails.contains { $0.data.contains("maintenance off") } }, "\(smtp.mails.map(\.subject))")
    }

    @Test func failoverToTheSecondServer() throws {
        guard requireSMTP() else { return }
        let directory = try TemporaryDirectory()
        let second = try SMTPSink(directory: directory)
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        let dead = TestSupport.freePort()
        let rc = try controlFile(directory, app, mail: "set mailserver 127.0.0.1 port \(dead), 127.0.0.1 port \(second.port)\nset alert ops@example.com")
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(TestSupport.waitUntil(timeout: 20) { !second.mails.isEmpty }, "\(warden.log)")
        #expect(warden.log.contains("cannot deliver via [127.0.0.1]:\(dead)"))
    }

    @Test func outageQueuesAlertsThatSurviveKill9AndAreDeliveredExactlyOnce() throws {
        guard requireSMTP() else { return }
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        let queue = directory.path + "/events"
        // monit's restart limit, so monit's alerts: one per crash.
        let rc = try controlFile(
            directory, app, mail: "set mailserver 127.0.0.1 port \(port) with timeout 2 seconds\nset eventqueue basedir \(queue) slots 100\nset alert ops@example.com",
            serviceExtra: "if 5 restarts within 5 cycles then timeout")
        let first = try WardenProcess(controlFile: rc, logPath: directory.path + "/log1")
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing })
        usleep(1_200_000)
        kill(try #require(app.pid), SIGKILL)
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing })
        let queued = { (try? FileManager.default.contentsOfDirectory(atPath: queue).filter { $0.hasSuffix(".mail") }) ?? [] }
        #expect(TestSupport.waitUntil(timeout: 10) { queued().count >= 3 }, "\(first.log)")
        first.kill9()
        let before = queued()
        let queuedIDs = try before.map { name -> String in
            let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: queue + "/" + name))) as? [String: Any]
            return "<\(object?["messageID"] as? String ?? "")>"
        }
        var info = stat()
        stat(queue + "/" + (try #require(before.first, "no queued mail")), &info)
        #expect(info.st_mode & 0o777 == 0o600)
        let second = try WardenProcess(controlFile: rc, logPath: directory.path + "/log2")
        defer { second.stop() }
        usleep(1_500_000)
        let smtp = try SMTPSink(directory: directory, port: port)
        #expect(TestSupport.waitUntil(timeout: 20) { queued().isEmpty }, "\(second.log)")
        usleep(2_000_000)
        let subjects = smtp.mails.map(\.subject)
        let ids = smtp.mails.compactMap { $0.header("Message-Id") }
        #expect(Set(ids).count == ids.count, "no alert twice: \(subjects)")
        for id in queuedIDs {
            #expect(ids.filter { $0 == id }.count == 1, "queued alert \(id) delivered exactly once")
        }
        #expect(subjects.filter { $0.contains("Does not exist app") }.count == 2, "the first start and the kill")
    }

    @Test func remindersRecoveryMailAndExecEnvironment() throws {
        guard requireSMTP() else { return }
        let directory = try TemporaryDirectory()
        let smtp = try SMTPSink(directory: directory)
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        let marker = directory.path + "/exec.env"
        let script = try directory.write("on-fail.sh", "#!/bin/sh\nenv | grep -E '^(WARDEN|MONIT)_' | sort > \(marker)\n", mode: 0o755)
        let port = TestSupport.freePort()
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set mailserver 127.0.0.1 port \(smtp.port)
            set alert ops@example.com with reminder on 2 cycles
            check host web with address 127.0.0.1
              if failed port \(port) then exec "\(script)"
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(TestSupport.waitUntil(timeout: 20) { smtp.mails.filter { $0.subject.contains("Connection failed web") }.count >= 2 }, "\(warden.log)")
        #expect(TestSupport.waitUntil(timeout: 10) { FileManager.default.fileExists(atPath: marker) })
        let environment = try String(contentsOfFile: marker, encoding: .utf8)
        #expect(environment.contains("WARDEN_SERVICE=web"))
        #expect(environment.contains("MONIT_SERVICE=web"))
        #expect(environment.contains("WARDEN_EVENT=Connection failed"))
        #expect(environment.contains("WARDEN_DESCRIPTION=failed protocol test"))
        // Recovery: something listens now; one "Connection succeeded" mail, and the reminders stop.
        let listener = Process()
        listener.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        listener.arguments = ["-c", "import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('127.0.0.1',\(port)));s.listen(50)\nwhile True: s.accept()[0].close()"]
        try listener.run()
        defer { kill(listener.processIdentifier, SIGKILL) }
        #expect(TestSupport.waitUntil(timeout: 15) { smtp.mails.contains { $0.subject.contains("Connection succeeded web") } }, "\(warden.log)")
        let failedCount = smtp.mails.filter { $0.subject.contains("Connection failed web") }.count
        usleep(3_000_000)
        #expect(smtp.mails.filter { $0.subject.contains("Connection failed web") }.count == failedCount, "no reminder after recovery")
        #expect(smtp.mails.filter { $0.subject.contains("Connection succeeded web") }.count == 1, "\(warden.log)")
    }
}
