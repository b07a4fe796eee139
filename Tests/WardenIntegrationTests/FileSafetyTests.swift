import Foundation
import Testing
import WardenTestSupport

/// Files warden writes (pid, state, event queue, logs) get safe modes, and a symlink planted where
/// one of them goes, in a world-writable directory, never leads warden to write through it.
@Suite("Files warden writes", .serialized)
struct FileSafetyTests {
    func mode(_ path: String) -> mode_t {
        var info = stat()
        return lstat(path, &info) == 0 ? info.st_mode & 0o7777 : 0
    }

    struct Setup {
        let directory: TemporaryDirectory
        let app: TestApp
        /// A world-writable, sticky directory like /tmp, where every file warden writes goes.
        let shared: String
        let port: Int
        let controlFile: String
    }

    func setUp() throws -> Setup {
        let directory = try TemporaryDirectory()
        let app = try TestApp(in: directory)
        let shared = directory.path + "/shared"
        mkdir(shared, 0o1777)
        chmod(shared, 0o1777)
        let port = TestSupport.freePort()
        let rc = try directory.write("wardenrc", control(shared, app, proxyPort: port, upstream: app.port))
        return Setup(directory: directory, app: app, shared: shared, port: port, controlFile: rc)
    }

    func control(_ shared: String, _ app: TestApp, proxyPort: Int, upstream: Int) -> String {
        """
        set daemon 1
        set pidfile \(shared)/warden.pid
        set statefile \(shared)/warden.state
        set logfile \(shared)/warden.log
        set mailserver 127.0.0.1 port \(TestSupport.freePort()) with timeout 1 seconds
        set eventqueue basedir \(shared)/queue slots 10
        set alert ops@example.com
        set proxy
            listen 127.0.0.1 port \(proxyPort)
        check process app with pidfile \(app.pidfile)
            start program = "\(app.startScript)"
        check site main default
            pass / to http://127.0.0.1:\(upstream)/
            access log \(shared)/access.log combined
            error log \(shared)/error.log
        """
    }

    @Test func modesAreSafe() throws {
        let setup = try setUp()
        let (directory, app, shared, port, rc) = (setup.directory, setup.app, setup.shared, setup.port, setup.controlFile)
        defer { app.killAll() }
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/stderr", arguments: ["-I"])
        defer { warden.stop() }
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing })
        _ = TestSupport.httpGet(port: port, path: "/ping")
        _ = TestSupport.httpGet(port: port, path: "/ping", headers: ["Host": "x", "Content-Length": "-1"])
        kill(try #require(app.pid), SIGKILL)  // an alert that cannot be sent: it goes to the queue
        #expect(TestSupport.waitUntil(timeout: 10) { ((try? FileManager.default.contentsOfDirectory(atPath: shared + "/queue")) ?? []).count > 0 })
        #expect(TestSupport.waitUntil(timeout: 10) { FileManager.default.fileExists(atPath: shared + "/warden.state") })
        #expect(mode(shared + "/warden.state") == 0o600, "the state file is the owner's alone")
        #expect(mode(shared + "/warden.log") & 0o007 == 0, "the log is not world-readable")
        #expect(mode(shared + "/access.log") & 0o007 == 0)
        #expect(mode(shared + "/error.log") & 0o007 == 0)
        #expect(mode(shared + "/warden.pid") & 0o022 == 0, "nobody else may rewrite the pid file")
        #expect(mode(shared + "/queue") & 0o077 == 0, "the queue directory is private")
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: shared + "/queue")) ?? [] {
            #expect(mode(shared + "/queue/" + entry) == 0o600, "queued mail \(entry)")
        }
    }

    @Test func plantedSymlinksAreNeverWrittenThrough() throws {
        let setup = try setUp()
        let (directory, app, shared, port, rc) = (setup.directory, setup.app, setup.shared, setup.port, setup.controlFile)
        defer { app.killAll() }
        let victim = try directory.write("victim", "precious\n", mode: 0o644)

        // The pid file: warden refuses to start rather than open it.
        symlink(victim, shared + "/warden.pid")
        let refused = try TestSupport.run(TestSupport.wardenBinary, ["-c", rc, "-I"], timeout: 20)
        #expect(refused.status != 0, "warden does not start through a symlinked pid file")
        #expect(!refused.stderr.isEmpty, "and says why")
        unlink(shared + "/warden.pid")

        // The state file, the logs and the queue: warden runs, and writes none of them through the links.
        for name in ["warden.state", "warden.log", "access.log", "error.log"] { symlink(victim, shared + "/" + name) }
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/stderr", arguments: ["-I"])
        defer { warden.stop() }
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing })
        _ = TestSupport.httpGet(port: port, path: "/ping")
        kill(try #require(app.pid), SIGKILL)
        #expect(TestSupport.waitUntil(timeout: 10) { app.isServing }, "warden keeps supervising")
        usleep(2_500_000)
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious\n", "the symlinks' target is untouched")
        #expect(mode(victim) == 0o644)
        #expect(warden.log.contains("cannot open the log file"), "the log that cannot be opened is reported: \(warden.log)")
        var info = stat()
        lstat(shared + "/warden.state", &info)
        #expect(info.st_mode & S_IFMT == S_IFREG, "the state file replaced the link (rename), it did not write through it")
    }
}
