import Foundation
import Testing
import WardenTestSupport

/// The proxy and the supervisor together under a bounded keep-alive load: a planned restart and a
/// crash of the app behind a site lose no request (issue 25).
@Suite("Proxy under load", .serialized)
struct ProxyLoadTests {
    struct Setup {
        let port: Int
        let warden: WardenProcess
        let errorLog: String
    }

    /// warden with the control server (for `warden restart`), the proxy, `app` as a service and a
    /// site passing to it with a 20 s hold.
    /// Ten kills in a few seconds would be a crash loop, which backs off by default: monit's spacing is asked for.
    func start(_ app: ProxiedApp, in directory: TemporaryDirectory, user: String = "") throws -> Setup {
        let port = TestSupport.freePort()
        try directory.write("maintenance.html", "<h1>back soon</h1>\n", mode: 0o644)
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set httpd port \(TestSupport.freePort()) and use address 127.0.0.1
                allow 127.0.0.1
            set proxy
                listen 127.0.0.1 port \(port)
                \(user)
            check process app with pidfile \(app.pidfile)
                start program = "\(app.startScript)"
                stop program = "\(app.stopScript)"
                restart delay 1 second to 1 second
            check site app default
                pass / to http://127.0.0.1:\(app.port)/ for service app
                maintenance page \(directory.path)/maintenance.html hold 20 seconds
                error log \(directory.path)/error.log
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        try #require(warden.waitForLog("proxy listening", timeout: 15), "\(warden.log)")
        try #require(app.waitUntilServing(replacing: nil), "the app did not start: \(warden.log)")
        try #require(TestSupport.waitUntil(timeout: 10) { TestSupport.httpGet(port: port, path: "/first")?.status == 200 }, "\(warden.log)")
        return Setup(port: port, warden: warden, errorLog: directory.path + "/error.log")
    }

    func errorLog(_ setup: Setup) -> String {
        (try? String(contentsOfFile: setup.errorLog, encoding: .utf8)) ?? ""
    }

    /// `warden restart` ten times while eight keep-alive clients send GETs and POSTs: the proxy holds
    /// new requests and lets the app finish the ones it has before the stop program ends it. The app
    /// exits at once on SIGTERM, and takes 50 ms per request, so without the drain each restart cuts
    /// the requests it is serving (a POST is not sent again: it gets a 502).
    @Test func plannedRestartsUnderLoadResetNoConnection() throws {
        let directory = try TemporaryDirectory()
        let app = try ProxiedApp(in: directory, delay: 0.05)
        defer { app.killAll() }
        let setup = try start(app, in: directory)
        defer { setup.warden.stop() }
        try restartTenTimesUnderLoad(app, setup)
    }

    /// The same through the privilege-dropped proxy worker, whose drain goes through its pipe.
    @Test func plannedRestartsUnderLoadThroughTheProxyWorker() throws {
        guard getuid() == 0 else {
            #expect(!TestSupport.isCI, "CI runs as root; the worker needs it")
            return
        }
        let directory = try TemporaryDirectory()
        chmod(directory.path, 0o755)
        let app = try ProxiedApp(in: directory, delay: 0.05)
        defer { app.killAll() }
        let setup = try start(app, in: directory, user: "user nobody group nogroup")
        defer { setup.warden.stop() }
        #expect(setup.warden.waitForLog("proxy worker running as nobody", timeout: 15), "\(setup.warden.log)")
        try restartTenTimesUnderLoad(app, setup)
    }

    private func restartTenTimesUnderLoad(_ app: ProxiedApp, _ setup: Setup) throws {
        let directory = try TemporaryDirectory()
        let load = try KeepAliveLoad(port: setup.port, connections: 8, post: true, maximumSeconds: 180, in: directory)
        try #require(load.waitForProgress(50), "the load is flowing")
        for round in 1...10 {
            let before = try #require(app.pid)
            let restart = try TestSupport.run(TestSupport.wardenBinary, ["-c", setup.warden.controlFile, "restart", "app"])
            #expect(restart.status == 0, "\(restart.stdout) \(restart.stderr)")
            #expect(app.waitUntilServing(replacing: before), "restart \(round): \(setup.warden.log)")
            #expect(load.waitForProgress(40), "the load goes on after restart \(round)")
        }
        let summary = try #require(load.finish())
        print("10 restarts under load: \(summary)")
        #expect(summary.socketErrors == 0 && summary.bad == 0, "\(summary)\n\(errorLog(setup))")
        #expect(summary.requests >= 450, "\(summary)")
        #expect(app.starts == 11, "one start, then one per restart")
    }

    /// kill -9 of the app ten times while eight keep-alive clients send GETs. The app writes each
    /// response's head, then its body 50 ms later, so most kills fall between the two: a GET cut
    /// there is sent again once the app is back (its small response is read whole before any of it
    /// goes to the client), as is one cut before the head.
    @Test func crashesUnderLoadLoseNoRequest() throws {
        let directory = try TemporaryDirectory()
        let app = try ProxiedApp(in: directory, delay: 0.005, gap: 0.05)
        defer { app.killAll() }
        let setup = try start(app, in: directory)
        defer { setup.warden.stop() }
        let load = try KeepAliveLoad(port: setup.port, connections: 8, maximumSeconds: 180, in: directory)
        try #require(load.waitForProgress(50), "the load is flowing")
        for round in 1...10 {
            let victim = try #require(app.pid)
            kill(victim, SIGKILL)
            #expect(app.waitUntilServing(replacing: victim), "kill \(round): \(setup.warden.log)")
            #expect(load.waitForProgress(40), "the load goes on after kill \(round)")
        }
        let summary = try #require(load.finish())
        print("10 kills under load: \(summary)")
        #expect(summary.socketErrors == 0 && summary.bad == 0, "\(summary)\n\(errorLog(setup))")
        #expect(summary.requests >= 450, "\(summary)")
        #expect(app.starts == 11, "one start, then one per kill")
    }
}
