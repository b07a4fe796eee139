import Foundation
import Testing
import WardenTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The same control file run at once by the real monit 5.33 (Debian's) and by warden, while the test
/// changes the world both watch: each must report the same events, in the same order, in the same words
/// (up to the figures measured). Where the words differ on purpose, docs/config-language.md says why.
@Suite("Rules side by side with monit", .serialized)
struct RuleDifferentialTests {
    /// monit and warden on one control file body, each with its own files.
    final class Pair {
        let warden: WardenProcess
        let monitLog: String
        let monitPIDFile: String

        init(_ directory: TemporaryDirectory, _ body: String) throws {
            let path = directory.path
            let monitPIDFile = path + "/monit.pid"
            monitLog = path + "/monit.log"
            self.monitPIDFile = monitPIDFile
            // monit refuses a control file more open than 0700. It runs as the daemon it makes of itself
            // (a foreground child of the test runner would inherit its blocked signals), ended by its pid.
            let monitrc = try directory.write(
                "monitrc", "set daemon 1\nset logfile \(monitLog)\nset statefile \(path)/monit.state\nset idfile \(path)/monit.id\n"
                    + "set pidfile \(monitPIDFile)\n" + body, mode: 0o700)
            let started = try TestSupport.run("/usr/bin/monit", ["-c", monitrc], timeout: 10)
            guard started.status == 0, TestSupport.waitUntil(timeout: 5, { TestSupport.readPID(monitPIDFile) != nil }) else {
                throw TestNamespace.CommandFailed(description: "monit did not start: \(started.stderr)")
            }
            let wardenrc = try directory.write("wardenrc", "set daemon 1\nset pidfile \(path)/warden.pid\n" + body)
            warden = try WardenProcess(controlFile: wardenrc, logPath: path + "/warden.log")
        }

        var monitText: String { (try? String(contentsOfFile: monitLog, encoding: .utf8)) ?? "" }

        /// Waits until both logs hold each text after the one before it.
        func expect(_ texts: [String], timeout: Double = 15, sourceLocation: SourceLocation = #_sourceLocation) {
            for (name, log) in [("monit", { self.monitText }), ("warden", { self.warden.log })] {
                let seen = TestSupport.waitUntil(timeout: timeout) { Self.inOrder(texts, in: log()) }
                #expect(seen, "\(name) did not log \(texts) in order:\n\(log())", sourceLocation: sourceLocation)
            }
        }

        /// Neither log holds the text.
        func expectNeither(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(!monitText.contains(text), "monit: \(monitText)", sourceLocation: sourceLocation)
            #expect(!warden.log.contains(text), "warden: \(warden.log)", sourceLocation: sourceLocation)
        }

        static func inOrder(_ texts: [String], in log: String) -> Bool {
            var rest = log[...]
            for text in texts {
                guard let found = rest.range(of: text) else { return false }
                rest = rest[found.upperBound...]
            }
            return true
        }

        func stop() {
            if let pid = TestSupport.readPID(monitPIDFile) {
                kill(pid, SIGTERM)
                if !TestSupport.waitUntil(timeout: 10, { !TestSupport.isAlive(pid) }) { kill(pid, SIGKILL) }
            }
            warden.stop()
        }
    }

    @Test func fileChecksumAndExistence() throws {
        guard TestSupport.tool("/usr/bin/monit") else { return }
        let directory = try TemporaryDirectory()
        let path = try directory.write("app.conf", "a\n")
        let pair = try Pair(directory, """
            check file conf with path \(path)
              if changed checksum then alert
            check file maintenance with path \(directory.path)/maintenance
              if exist then alert

            """)
        defer { pair.stop() }
        usleep(2_500_000)
        pair.expectNeither("maintenance' file doesn't exist")
        try directory.write("app.conf", "bb\n")
        // md5 of "bb\n".
        pair.expect(["'conf' checksum changed to bfcc9da4f2e1d313c63cd0a4ee7604e9"])
        try directory.write("maintenance", "")
        pair.expect(["'maintenance' file exists"])
        try FileManager.default.removeItem(atPath: directory.path + "/maintenance")
        pair.expect(["'maintenance' file exists", "'maintenance' file doesn't exist"])
    }

    @Test func pingAndLinkOnAVeth() throws {
        guard TestSupport.tool("/usr/bin/monit"), TestSupport.tool("/usr/sbin/ip") else { return }
        let namespace = try TestNamespace()
        let directory = try TemporaryDirectory()
        let pair = try Pair(directory, """
            check host peer with address \(namespace.peerAddress)
              if failed ping count 1 timeout 1 seconds then alert
            check network veth with interface \(namespace.hostLink)
              if link down then alert

            """)
        defer { pair.stop() }
        usleep(2_500_000)
        pair.expectNeither("ping test failed")
        try namespace.inside("sysctl", "-q", "-w", "net.ipv4.icmp_echo_ignore_all=1")
        pair.expect(["'peer' ping test failed"])
        try namespace.inside("sysctl", "-q", "-w", "net.ipv4.icmp_echo_ignore_all=0")
        pair.expect(["'peer' ping test failed", "'peer' ping test succeeded [response time "])
        try namespace.ip("link", "set", namespace.hostLink, "down")
        pair.expect(["'veth' link down"])
        try namespace.ip("link", "set", namespace.hostLink, "up")
        pair.expect(["'veth' link down", "'veth' link up"])
    }

    @Test func loopbackUploadRate() throws {
        guard TestSupport.tool("/usr/bin/monit") else { return }
        let directory = try TemporaryDirectory()
        let pair = try Pair(directory, """
            check network loopback with interface lo
              if upload > 100 kB/s then alert

            """)
        defer { pair.stop() }
        usleep(2_500_000)
        let sent = try TestSupport.run(
            "/usr/bin/python3",
            ["-c", "import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor _ in range(300):\n    for _ in range(10): s.sendto(bytes(1000), ('127.0.0.1', 9))\n    time.sleep(0.005)"])
        #expect(sent.status == 0, "\(sent.stderr)")
        pair.expect(["matches limit [upload rate > 100 kB in last 1 second]", "'loopback' upload check succeeded [current upload rate "])
    }

    /// A tmpfs filled past its limit and emptied: the same limit event and the same recovery.
    @Test func aFilesystemFilledAndEmptied() throws {
        guard TestSupport.tool("/usr/bin/monit") else { return }
        let directory = try TemporaryDirectory()
        let mountPoint = directory.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mounted = try TestSupport.run("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mountPoint], timeout: 30)
        guard mounted.status == 0 else {
            if TestSupport.isCI { Issue.record("mount tmpfs: \(mounted.stderr)") }
            return
        }
        defer { _ = try? TestSupport.run("/bin/umount", ["-l", mountPoint]) }
        let pair = try Pair(directory, """
            check filesystem scratch with path \(mountPoint)
              if space usage > 50% then alert

            """)
        defer { pair.stop() }
        usleep(2_500_000)
        pair.expectNeither("matches resource limit")
        try Data(count: 700 * 1024).write(to: URL(fileURLWithPath: mountPoint + "/fill"))
        pair.expect(["'scratch' space usage ", "matches resource limit [space usage > 50.0%]"])
        try FileManager.default.removeItem(atPath: mountPoint + "/fill")
        pair.expect(["matches resource limit [space usage > 50.0%]", "'scratch' space usage test succeeded [current space usage = "])
    }

    /// A server stopped by its pid and started again: the same protocol failure, named the same way
    /// (`[REDIS] at [127.0.0.1]:PORT [TCP/IP]`), and the same recovery.
    @Test func aServerStoppedAndStartedAgain() throws {
        guard TestSupport.tool("/usr/bin/monit"), TestSupport.tool("/usr/bin/redis-server") else { return }
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        func startRedis() throws -> Peer {
            let server = try Peer(
                "/usr/bin/redis-server", ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory.path],
                log: directory.path + "/redis.log")
            #expect(TestSupport.waitUntil(timeout: 10) { TestSupport.portOpen(port) })
            return server
        }
        var server = try startRedis()
        let pair = try Pair(directory, """
            check host cache with address 127.0.0.1
              if failed port \(port) protocol redis with timeout 2 seconds then alert

            """)
        defer { pair.stop() }
        usleep(2_500_000)
        pair.expectNeither("failed protocol test")
        server.stop()
        pair.expect(["'cache' failed protocol test [REDIS] at [127.0.0.1]:\(port) [TCP/IP] -- "])
        server = try startRedis()
        defer { server.stop() }
        pair.expect(["'cache' failed protocol test [REDIS]", "'cache' connection succeeded to [127.0.0.1]:\(port) [TCP/IP]"])
    }
}
