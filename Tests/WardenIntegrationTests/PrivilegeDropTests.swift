import Foundation
import Testing
import WardenTestSupport

/// The proxy on the real privileged ports: bound as root, served by a worker that is nobody.
/// The one test that binds fixed ports (80 and 443 on 127.0.0.1); it needs root, which CI has.
@Suite("Privilege drop on ports 80 and 443", .serialized)
struct PrivilegeDropTests {
    /// Uid, Gid and Groups lines of /proc/PID/status.
    func identity(_ pid: pid_t) -> (uid: String, gid: String, groups: Set<Int>)? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        func line(_ name: String) -> String? {
            status.split(separator: "\n").first { $0.hasPrefix(name + ":") }.map { String($0.dropFirst(name.count + 1)).trimmingCharacters(in: .whitespaces) }
        }
        guard let uid = line("Uid"), let gid = line("Gid"), let groups = line("Groups") else { return nil }
        return (uid, gid, Set(groups.split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { Int($0) }))
    }

    /// The pids named by "proxy worker running as nobody with pid N" lines, in order.
    func workerPIDs(_ log: String) -> [pid_t] {
        log.split(separator: "\n").filter { $0.contains("proxy worker running as nobody") }.compactMap { line in
            line.firstMatch(of: /with pid (\d+)/).flatMap { pid_t($0.1) }
        }
    }

    func get(_ url: String) throws -> String {
        try TestSupport.run("/usr/bin/curl", ["-s", "-k", "-m", "5", "-o", "-", "-w", " %{http_code}", url], timeout: 10).stdout
    }

    @Test func workerOnPorts80And443IsNobodyWithoutRootsGroupsAndIsStartedAgainAfterSIGKILL() throws {
        guard getuid() == 0 else {
            #expect(!TestSupport.isCI, "CI runs as root: this test must bind ports 80 and 443 for real")
            return
        }
        #expect(!TestSupport.portOpen(80) && !TestSupport.portOpen(443), "ports 80 and 443 on 127.0.0.1 must be free for this test")
        let directory = try TemporaryDirectory()
        chmod(directory.path, 0o755)
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        // The key stays root's (0600): the worker must read it before it drops root, as nginx does.
        let tls = try TestSupport.selfSignedCertificate(in: directory)
        let nobodyGroups = try TestSupport.run("/usr/bin/id", ["-G", "nobody"]).stdout.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set proxy
                listen 127.0.0.1 port 80
                listen 127.0.0.1 port 443 with ssl { certificate: \(tls.cert), key: \(tls.key) }
                user nobody group nogroup
            check process app with pidfile \(app.pidfile)
                start program = "\(app.startScript)"
                stop program = "\(app.stopScript)"
            check site app default
                pass / to http://127.0.0.1:\(app.port)/ for service app
            """)
        // warden starts with root's group and adm (4) as supplementary groups, so a worker that kept
        // them (setgid without setgroups/initgroups) is seen; the runner's own root may have none.
        let warden = try WardenProcess(
            controlFile: rc, logPath: directory.path + "/log", launcher: ["/usr/bin/setpriv", "--groups", "0,4", "--"])
        var workers: [pid_t] = []
        defer {
            warden.stop()
            for pid in workers where TestSupport.isAlive(pid) { kill(pid, SIGKILL) }
        }
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing }, "\(warden.log)")
        #expect(warden.waitForLog("proxy worker running as nobody", timeout: 15), "\(warden.log)")
        // Read once warden runs (setpriv has exec'd it), so the worker's groups are compared with these.
        let daemon = try #require(identity(warden.pid))
        #expect(daemon.groups.isSuperset(of: [0, 4]), "the daemon runs with groups 0 and 4: \(daemon.groups)")
        workers = workerPIDs(warden.log)
        let first = try #require(workers.first)

        func checkWorker(_ pid: pid_t) throws {
            let worker = try #require(identity(pid), "worker \(pid) is gone")
            #expect(worker.uid == "65534\t65534\t65534\t65534", "real, effective, saved and fs uid are nobody's: \(worker.uid)")
            #expect(worker.gid == "65534\t65534\t65534\t65534", "every gid is nogroup: \(worker.gid)")
            #expect(worker.groups.isDisjoint(with: [0, 4]), "no group of root's is kept: \(worker.groups)")
            #expect(worker.groups.isSubset(of: Set(nobodyGroups + [65534])), "only nobody's own groups: \(worker.groups) vs \(nobodyGroups)")
            #expect(TestSupport.waitUntil(timeout: 10) { (try? get("http://127.0.0.1/ping")) == "pong 200" }, "port 80 serves: \(warden.log)")
            #expect(TestSupport.waitUntil(timeout: 10) { (try? get("https://127.0.0.1/ping")) == "pong 200" }, "port 443 serves: \(warden.log)")
        }
        try checkWorker(first)

        kill(first, SIGKILL)
        #expect(TestSupport.waitUntil(timeout: 20) { workerPIDs(warden.log).count >= 2 }, "a new worker after SIGKILL: \(warden.log)")
        workers = workerPIDs(warden.log)
        let second = try #require(workers.last)
        #expect(second != first)
        #expect(warden.log.contains("proxy worker \(first) ended"), "\(warden.log)")
        try checkWorker(second)
    }
}
