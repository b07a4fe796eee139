import Foundation
import Testing
import WardenTestSupport

/// A service run as several instances behind the proxy (issue 26): a crash, a deploy and a rolling
/// restart under a bounded keep-alive load lose no request; a deploy whose release never comes up
/// leaves the old generation serving, fails, and mails why.
@Suite("Instances and deploys", .serialized)
struct InstanceTests {
    struct Setup {
        let port: Int
        let dashboard: Int
        let ports: ClosedRange<Int>
        let warden: WardenProcess
        let errorLog: String

        func warden(_ arguments: String...) throws -> TestSupport.ProcessResult {
            try TestSupport.run(TestSupport.wardenBinary, ["-c", warden.controlFile] + arguments)
        }
    }

    /// Three instances of `app` on six ports, a site passing to them, an alert address when `smtp` is given.
    /// With `hold` 0 a moment without a ready instance shows as a 503 (the maintenance page) at once.
    func start(
        _ app: ProxiedApp, in directory: TemporaryDirectory, smtp: SMTPSink? = nil, instances: Int = 3, deployTimeout: Int = 20, hold: Int = 20,
        balance: String = "round-robin", drainTimeout: Int = 30
    ) throws -> Setup {
        let port = TestSupport.freePort()
        let dashboard = TestSupport.freePort()
        let ports = try #require(Self.freePortRange(2 * instances))
        try directory.write("maintenance.html", "<h1>back soon</h1>\n", mode: 0o644)
        let mail = smtp.map { "set mailserver 127.0.0.1 port \($0.port)\nset alert ops@example.com" } ?? ""
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set statefile \(directory.path)/warden.state
            set httpd port \(dashboard) and use address 127.0.0.1
                allow 127.0.0.1
            \(mail)
            set proxy
                listen 127.0.0.1 port \(port)
            check process app with pidfile \(app.pidfile)
                instances \(instances) ports \(ports.lowerBound)-\(ports.upperBound)
                start program = "\(app.startScript) $PORT"
                stop program = "\(app.stopScript) $PORT"
                if failed url http://127.0.0.1:$PORT/ready timeout 2 seconds then restart
                deploy timeout \(deployTimeout) seconds
                drain timeout \(drainTimeout) seconds
            check site app default
                pass / to service app
                balance \(balance)
                maintenance page \(directory.path)/maintenance.html hold \(hold) seconds
                error log \(directory.path)/error.log
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        try #require(warden.waitForLog("proxy listening", timeout: 15), "\(warden.log)")
        let first = Array(ports.prefix(instances))
        try #require(
            TestSupport.waitUntil(timeout: 20) { first.allSatisfy { TestSupport.httpGet(port: $0, path: "/ready")?.status == 200 } },
            "the instances did not start: \(warden.log)")
        try #require(TestSupport.waitUntil(timeout: 10) { TestSupport.httpGet(port: port, path: "/first")?.status == 200 }, "\(warden.log)")
        return Setup(port: port, dashboard: dashboard, ports: ports, warden: warden, errorLog: directory.path + "/error.log")
    }

    /// Six consecutive ports nothing listens on, in a range the kernel does not hand out for outgoing connections.
    static func freePortRange(_ count: Int) -> ClosedRange<Int>? {
        for _ in 0..<50 {
            let low = Int.random(in: 20000...30000)
            let range = low...(low + count - 1)
            if range.allSatisfy({ !TestSupport.portOpen($0) }) { return range }
        }
        return nil
    }

    func errorLog(_ setup: Setup) -> String {
        (try? String(contentsOfFile: setup.errorLog, encoding: .utf8)) ?? ""
    }

    /// Instances that answer on the first three ports, or the last three.
    func serving(_ app: ProxiedApp, _ ports: some Sequence<Int>) -> Bool {
        ports.allSatisfy { port in app.pid(port: port).map(TestSupport.isAlive) == true }
    }

    /// kill -9 of one instance, three times, under eight keep-alive clients: the requests it was
    /// serving are sent again (GETs), and new ones go to the two others while it comes back.
    @Test func killingOneOfThreeInstancesLosesNoRequest() throws {
        let directory = try TemporaryDirectory()
        let app = try ProxiedApp(in: directory, delay: 0.005, gap: 0.02, instances: true)
        defer { app.killAll() }
        let setup = try start(app, in: directory, hold: 0)
        defer { setup.warden.stop() }
        let load = try KeepAliveLoad(port: setup.port, connections: 8, maximumSeconds: 120, in: directory)
        try #require(load.waitForProgress(50), "the load is flowing")
        let victimPort = setup.ports.lowerBound + 1
        for round in 1...3 {
            let victim = try #require(app.pid(port: victimPort))
            kill(victim, SIGKILL)
            #expect(
                TestSupport.waitUntil(timeout: 20) { app.pid(port: victimPort).map { $0 != victim && TestSupport.isAlive($0) } == true },
                "kill \(round): \(setup.warden.log)")
            #expect(load.waitForProgress(100), "the load goes on after kill \(round)")
        }
        let summary = try #require(load.finish())
        print("3 kills of one of 3 instances under load: \(summary)")
        #expect(summary.socketErrors == 0 && summary.bad == 0, "\(summary)\n\(errorLog(setup))")
        #expect(summary.requests >= 300, "\(summary)")
    }

    /// Five deploys in a row while eight keep-alive clients send GETs and POSTs (a POST is never sent
    /// twice, so a cut shows), with no hold (a moment without a ready instance would be a 503): every
    /// request is answered, and each deploy moves the instances to the other half of the port range.
    @Test func fiveDeploysUnderLoadLoseNoRequest() throws {
        let directory = try TemporaryDirectory()
        let app = try ProxiedApp(in: directory, delay: 0.02, instances: true)
        defer { app.killAll() }
        let setup = try start(app, in: directory, hold: 0)
        defer { setup.warden.stop() }
        let load = try KeepAliveLoad(port: setup.port, connections: 8, post: true, maximumSeconds: 120, in: directory)
        try #require(load.waitForProgress(50), "the load is flowing")
        let halves = [Array(setup.ports.prefix(3)), Array(setup.ports.suffix(3))]
        for round in 1...5 {
            let deploy = try setup.warden("deploy", "app")
            #expect(deploy.status == 0, "deploy \(round): \(deploy.stdout) \(deploy.stderr)")
            #expect(deploy.stdout.contains("app: switched to") && deploy.stdout.contains("app: done in"), "\(deploy.stdout)")
            let (now, before) = (halves[round % 2], halves[(round + 1) % 2])
            #expect(serving(app, now), "deploy \(round) runs on \(now): \(setup.warden.log)")
            #expect(TestSupport.waitUntil(timeout: 10) { before.allSatisfy { app.pid(port: $0).map(TestSupport.isAlive) != true } }, "the old generation stopped")
            #expect(load.waitForProgress(40), "the load goes on after deploy \(round)")
        }
        let summary = try #require(load.finish())
        print("5 deploys of 3 instances under load: \(summary)")
        #expect(summary.socketErrors == 0 && summary.bad == 0, "\(summary)\n\(errorLog(setup))")
        #expect(summary.requests >= 250, "\(summary)")
        #expect(app.starts == 18, "three instances, then three per deploy")
    }

    /// A release that never listens: the deploy waits its timeout, stops the new generation, exits 1
    /// saying which instance was not ready, and mails it; the old generation served throughout.
    @Test func aDeployThatNeverBecomesReadyKeepsTheOldGeneration() throws {
        let directory = try TemporaryDirectory()
        let smtp = try SMTPSink(directory: directory)
        defer { smtp.stop() }
        let app = try ProxiedApp(in: directory, delay: 0.01, instances: true)
        defer { app.killAll() }
        let setup = try start(app, in: directory, smtp: smtp, deployTimeout: 3)
        defer { setup.warden.stop() }
        let old = setup.ports.prefix(3).compactMap { app.pid(port: $0) }
        let load = try KeepAliveLoad(port: setup.port, connections: 4, post: true, maximumSeconds: 60, in: directory)
        try #require(load.waitForProgress(50), "the load is flowing")
        _ = try directory.write("app.broken", "")
        let deploy = try setup.warden("deploy", "app")
        #expect(deploy.status == 1, "\(deploy.stdout) \(deploy.stderr)")
        #expect(deploy.stdout.contains("failed: not ready within 3 s") && deploy.stdout.contains("app@\(setup.ports.upperBound - 2)"), "\(deploy.stdout)")
        #expect(load.waitForProgress(40), "the load goes on")
        let summary = try #require(load.finish())
        print("a failed deploy under load: \(summary)")
        #expect(summary.socketErrors == 0 && summary.bad == 0, "\(summary)\n\(errorLog(setup))")
        #expect(setup.ports.prefix(3).compactMap { app.pid(port: $0) } == old, "the old generation was left alone")
        #expect(TestSupport.waitUntil(timeout: 10) { setup.ports.suffix(3).allSatisfy { app.pid(port: $0).map(TestSupport.isAlive) != true } }, "the new generation was stopped: \(setup.warden.log)")
        #expect(
            TestSupport.waitUntil(timeout: 20) { smtp.mails.contains { $0.data.contains("deploy failed") } },
            "\(smtp.mails.map(\.subject)) \(setup.warden.log)")
    }

    /// `warden restart` of a service with instances restarts one at a time, each after the one before
    /// is ready again: under load, with two instances that take half a second to listen and no hold
    /// (a moment without a ready instance would be a 503), nothing is lost, and each has a new process.
    @Test func aRestartGoesOneInstanceAtATime() throws {
        let directory = try TemporaryDirectory()
        let app = try ProxiedApp(in: directory, delay: 0.02, startDelay: 0.5, instances: true)
        defer { app.killAll() }
        let setup = try start(app, in: directory, instances: 2, hold: 0)
        defer { setup.warden.stop() }
        let before = setup.ports.prefix(2).compactMap { app.pid(port: $0) }
        let load = try KeepAliveLoad(port: setup.port, connections: 8, post: true, maximumSeconds: 120, in: directory)
        try #require(load.waitForProgress(50), "the load is flowing")
        let restart = try setup.warden("restart", "app")
        #expect(restart.status == 0, "\(restart.stdout) \(restart.stderr)")
        #expect(
            TestSupport.waitUntil(timeout: 30) {
                setup.ports.prefix(2).allSatisfy { port in app.pid(port: port).map { !before.contains($0) && TestSupport.isAlive($0) } == true }
            }, "\(setup.warden.log)")
        #expect(load.waitForProgress(40), "the load goes on")
        let summary = try #require(load.finish())
        print("a rolling restart of 2 instances under load: \(summary)")
        #expect(summary.socketErrors == 0 && summary.bad == 0, "\(summary)\n\(errorLog(setup))")
        let restarts = setup.warden.log.split(separator: "\n").filter { $0.contains("restart on user request") }
        #expect(restarts.count == 2, "\(restarts)")
    }

    /// `balance sticky cookie`: the first answer pins the client to an instance with a signed cookie,
    /// which keeps it there for 100 requests; a forged cookie pins nothing, and when the pinned
    /// instance is gone the client is served by another and pinned again.
    @Test func aStickyCookieKeepsAClientOnItsInstance() throws {
        let directory = try TemporaryDirectory()
        let app = try ProxiedApp(in: directory, delay: 0.001, instances: true)
        defer { app.killAll() }
        let setup = try start(app, in: directory, balance: "sticky cookie SRV")
        defer { setup.warden.stop() }
        let first = try #require(TestSupport.httpGet(port: setup.port, path: "/a"))
        let cookie = try #require(first.headers["set-cookie"], "\(first.headers)")
        let pair = try #require(cookie.split(separator: ";").first.map(String.init))
        #expect(cookie.hasPrefix("SRV=\(first.headers["x-port"] ?? "?").") && cookie.contains("HttpOnly"), "\(cookie)")
        var ports: Set<String> = []
        for number in 1...100 {
            let answer = try #require(TestSupport.httpGet(port: setup.port, path: "/b\(number)", headers: ["Cookie": "theme=dark; \(pair)"]))
            ports.insert(answer.headers["x-port"] ?? "?")
            #expect(answer.headers["set-cookie"] == nil)
        }
        #expect(ports == [first.headers["x-port"] ?? "?"])
        let pinned = try #require(Int(first.headers["x-port"] ?? ""))
        let other = setup.ports.prefix(3).first { $0 != pinned }!
        let forged = try #require(TestSupport.httpGet(port: setup.port, path: "/c", headers: ["Cookie": "SRV=\(other).00000000000000000000000000000000"]))
        #expect(forged.headers["set-cookie"]?.hasPrefix("SRV=\(forged.headers["x-port"] ?? "?").") == true, "\(forged.headers)")

        kill(try #require(app.pid(port: pinned)), SIGKILL)
        let moved = try #require(TestSupport.httpGet(port: setup.port, path: "/d", timeout: 10, headers: ["Cookie": pair]))
        #expect(moved.status == 200)
        #expect(moved.headers["x-port"] != String(pinned))
        #expect(moved.headers["set-cookie"]?.hasPrefix("SRV=\(moved.headers["x-port"] ?? "?").") == true, "\(moved.headers)")
    }

    /// A deploy behind `balance sticky cookie`: after the switch, new clients go to the new generation
    /// while a client pinned to an old instance keeps reaching it (its session lives there) until the
    /// drain ends (here its timeout, as the client never goes quiet); then it is served by a new
    /// instance and pinned to it. `warden deploy` says how many requests the drain saw through.
    @Test func aPinnedClientKeepsItsInstanceWhileItDrains() throws {
        let directory = try TemporaryDirectory()
        let app = try ProxiedApp(in: directory, delay: 0.001, instances: true)
        defer { app.killAll() }
        let setup = try start(app, in: directory, balance: "sticky cookie SRV", drainTimeout: 4)
        defer { setup.warden.stop() }
        let first = try #require(TestSupport.httpGet(port: setup.port, path: "/a"))
        let pinned = try #require(Int(first.headers["x-port"] ?? ""))
        let pair = try #require(first.headers["set-cookie"]?.split(separator: ";").first.map(String.init))
        let deploy = Background { try? setup.warden("deploy", "app") }
        let newPorts = Set(setup.ports.suffix(3).map(String.init))
        var (pinnedWhileSwitched, movedTo) = ([Date](), nil as (port: String, cookie: String?)?)
        let deadline = Date().addingTimeInterval(40)
        while movedTo == nil, Date() < deadline {
            let fresh = try #require(TestSupport.httpGet(port: setup.port, path: "/new"), "\(setup.warden.log)")
            let own = try #require(TestSupport.httpGet(port: setup.port, path: "/own", headers: ["Cookie": pair]), "\(setup.warden.log)")
            #expect(fresh.status == 200 && own.status == 200)
            let port = own.headers["x-port"] ?? "?"
            if port == String(pinned) {
                if newPorts.contains(fresh.headers["x-port"] ?? "") { pinnedWhileSwitched.append(Date()) }
            } else {
                movedTo = (port, own.headers["set-cookie"])
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        let span = (pinnedWhileSwitched.last ?? .distantPast).timeIntervalSince(pinnedWhileSwitched.first ?? .distantFuture)
        #expect(span >= 2.5, "the pinned client reached its old instance after the switch for most of the drain's 4 s: \(pinnedWhileSwitched)")
        let moved = try #require(movedTo, "the pinned client was moved once its instance stopped: \(setup.warden.log)")
        #expect(newPorts.contains(moved.port) && moved.cookie?.hasPrefix("SRV=\(moved.port).") == true, "\(moved)")
        let result = try #require(deploy.value(timeout: 30) ?? nil)
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        let drained = try #require(result.stdout.firstRange(of: "drained: ").map { result.stdout[$0.upperBound...].prefix { $0.isNumber } })
        #expect((Int(drained) ?? 0) >= pinnedWhileSwitched.count, "\(result.stdout)")
        let status = try #require(TestSupport.httpGet(port: setup.dashboard, path: "/_status?format=json"))
        #expect(status.body.contains("deploy switched traffic to") && status.body.contains("deploy drained and stopped"), "\(status.body)")
    }

    /// The key that signs sticky cookies is kept beside the state file (0600): after warden is
    /// stopped and started again, a client's cookie still pins it to its instance.
    @Test func aStickyCookieOutlivesARestartOfWarden() throws {
        let directory = try TemporaryDirectory()
        let app = try ProxiedApp(in: directory, delay: 0.001, instances: true)
        defer { app.killAll() }
        let setup = try start(app, in: directory, balance: "sticky cookie SRV")
        let first = try #require(TestSupport.httpGet(port: setup.port, path: "/a"))
        let pinned = try #require(first.headers["x-port"])
        let pair = try #require(first.headers["set-cookie"]?.split(separator: ";").first.map(String.init))
        setup.warden.stop()
        let key = try FileManager.default.attributesOfItem(atPath: directory.path + "/warden.state.sticky-key")
        #expect((key[.posixPermissions] as? Int) == 0o600 && (key[.size] as? Int) == 32, "\(key)")

        let again = try WardenProcess(controlFile: setup.warden.controlFile, logPath: directory.path + "/log.2")
        defer { again.stop() }
        try #require(TestSupport.waitUntil(timeout: 20) { TestSupport.httpGet(port: setup.port, path: "/up")?.status == 200 }, "\(again.log)")
        for number in 1...20 {
            let answer = try #require(TestSupport.httpGet(port: setup.port, path: "/b\(number)", headers: ["Cookie": pair]))
            #expect(answer.headers["x-port"] == pinned && answer.headers["set-cookie"] == nil, "\(answer.headers)")
        }
    }

    /// The Deploy button of an instance's page: a CSRF-protected POST that deploys the service.
    @Test func theDashboardDeploysWithItsButton() throws {
        let directory = try TemporaryDirectory()
        let app = try ProxiedApp(in: directory, delay: 0.001, instances: true)
        defer { app.killAll() }
        let setup = try start(app, in: directory, instances: 1)
        defer { setup.warden.stop() }
        let page = try #require(TestSupport.httpGet(port: setup.dashboard, path: "/app@\(setup.ports.lowerBound)"))
        #expect(page.body.contains("Deploy app") && page.body.contains("on port \(setup.ports.lowerBound), ready"), "\(page.body)")
        let token = try #require(page.body.firstRange(of: "name=\"securitytoken\" value=\"").map { page.body[$0.upperBound...].prefix { $0 != "\"" } })
        let forged = try TestSupport.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-d", "service=app&securitytoken=wrong", "http://127.0.0.1:\(setup.dashboard)/_deploy"])
        #expect(forged.stdout == "403")
        let pressed = try TestSupport.run(
            "/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-d", "service=app&securitytoken=\(token)", "http://127.0.0.1:\(setup.dashboard)/_deploy"])
        #expect(pressed.stdout == "303")
        #expect(
            TestSupport.waitUntil(timeout: 20) {
                serving(app, [setup.ports.upperBound]) && app.pid(port: setup.ports.lowerBound).map(TestSupport.isAlive) != true
            }, "\(setup.warden.log)")
        #expect(setup.warden.log.contains("'app' deploy requested by"))
    }

    /// A service that keeps failing to start backs off: once its next start comes after the hold would
    /// end, its requests are not held for nothing, they get the maintenance page at once, with the
    /// seconds until that start.
    @Test func aServiceBackingOffAnswersAtOnceWithRetryAfter() throws {
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        try directory.write("maintenance.html", "<h1>back soon</h1>\n", mode: 0o644)
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set proxy
                listen 127.0.0.1 port \(port)
            check process app with pidfile \(directory.path)/app.pid
                start program = "/bin/false"
                restart delay 1 second to 30 seconds
            check site app default
                pass / to http://127.0.0.1:\(TestSupport.freePort())/ for service app
                maintenance page \(directory.path)/maintenance.html hold 5 seconds
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        try #require(warden.waitForLog("proxy listening", timeout: 15), "\(warden.log)")
        // Held while the next start is within the 5 s hold (1, 2, 4 s); answered at once from the 8 s delay on.
        #expect(
            TestSupport.waitUntil(timeout: 40) { (TestSupport.httpGet(port: port, path: "/", timeout: 1)?.headers["retry-after"]).flatMap { Int($0) }.map { $0 > 5 } == true },
            "\(warden.log)")
        let began = Date()
        let answer = try #require(TestSupport.httpGet(port: port, path: "/", timeout: 5))
        #expect(Date().timeIntervalSince(began) < 2, "not held for the hold")
        #expect(answer.status == 503 && answer.body.contains("back soon"))
        #expect((6...10).contains(Int(answer.headers["retry-after"] ?? "") ?? 0), "\(answer.headers)")
    }
}
