import Foundation
import Testing
import WardenTestSupport

/// Debian's real logrotate, configured as a package would: rename (no copytruncate), then SIGUSR1.
@Suite("Log rotation with logrotate", .serialized)
struct LogRotationTests {
    /// Without `user` the proxy runs in the daemon; with `user nobody` (as root) in a worker process,
    /// which must reopen its logs too.
    @Test(arguments: [nil, "nobody"] as [String?])
    func logrotateRenamesAndSIGUSR1SendsTheNextLinesToNewFiles(proxyUser: String?) throws {
        guard let logrotate = TestSupport.peer("logrotate") else {
            #expect(!TestSupport.isCI, "logrotate is not installed (.ci/run installs it)")
            return
        }
        if proxyUser != nil, getuid() != 0 {
            #expect(!TestSupport.isCI, "CI runs as root: the proxy worker case needs it")
            return
        }
        let directory = try TemporaryDirectory()
        chmod(directory.path, 0o755)
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        let port = TestSupport.freePort()
        let logs = directory.path + "/logs"
        let wardenLog = logs + "/warden.log"
        let accessLog = logs + "/access.log"
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set logfile \(wardenLog)
            set proxy
                listen 127.0.0.1 port \(port)
                \(proxyUser.map { "user \($0)" } ?? "")
            check process app with pidfile \(app.pidfile)
                start program = "\(app.startScript)"
                stop program = "\(app.stopScript)"
            check site app default
                pass / to http://127.0.0.1:\(app.port)/ for service app
                access log \(accessLog) combined
                error log \(logs)/error.log
            """)
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        // The logs' directory belongs to the proxy's user, as /var/log/nginx does to www-data, so the
        // worker can create the new files.
        if let proxyUser, let entry = getpwnam(proxyUser) { chown(logs, entry.pointee.pw_uid, entry.pointee.pw_gid) }
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/stdout")
        defer { warden.stop() }
        let read = { (path: String) in (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        #expect(TestSupport.waitUntil(timeout: 20) { TestSupport.httpGet(port: port, path: "/before-rotation")?.status == 200 }, "\(read(wardenLog)) \(warden.log)")
        #expect(TestSupport.waitUntil(timeout: 5) { read(accessLog).contains("GET /before-rotation") })
        #expect(read(wardenLog).contains("started"), "warden writes its own log file: \(read(wardenLog))")
        // No copytruncate and no create: logrotate renames, and the new files must be warden's doing.
        let configuration = try directory.write(
            "logrotate.conf",
            """
            \(accessLog) \(wardenLog) {
                rotate 2
                nocompress
                nocopytruncate
                missingok
                sharedscripts
                postrotate
                    /bin/kill -USR1 \(warden.pid)
                endscript
            }

            """, mode: 0o644)
        let rotate = try TestSupport.run(logrotate, ["-f", "-s", directory.path + "/logrotate.state", configuration], timeout: 30)
        #expect(rotate.status == 0, "\(rotate.stdout)\(rotate.stderr)")
        #expect(read(accessLog + ".1").contains("GET /before-rotation"), "renamed")
        #expect(read(wardenLog + ".1").contains("started"), "renamed")
        // warden logs the reopening into the new file, so the new file is the proof it reopened.
        #expect(TestSupport.waitUntil(timeout: 10) { read(wardenLog).contains("log files re-opened") }, "\(read(wardenLog + ".1")) \(warden.log)")
        #expect(!read(wardenLog).contains("started"), "the new file starts empty")
        #expect(TestSupport.httpGet(port: port, path: "/after-rotation")?.status == 200)
        #expect(TestSupport.waitUntil(timeout: 5) { read(accessLog).contains("GET /after-rotation") }, "the next line goes to the new access log")
        #expect(!read(accessLog).contains("/before-rotation"))
        #expect(!read(accessLog + ".1").contains("/after-rotation"), "nothing more in the renamed file")
        #expect(!read(wardenLog + ".1").contains("log files re-opened"))
        var info = stat()
        stat(accessLog, &info)
        #expect(info.st_mode & 0o777 == 0o640, "the new access log is created 0640 like the first")
    }
}
