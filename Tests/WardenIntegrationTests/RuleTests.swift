import Foundation
import Testing
import WardenTestSupport

/// issue 22's rules run by the real binary on things the test changes: a tmpfs it fills, an ext4 image
/// it remounts read-only, files it rewrites and appends to, a process it starts and the machine itself.
@Suite("Filesystem, file, process and system rules, end to end", .serialized)
struct RuleTests {
    func start(_ directory: TemporaryDirectory, _ body: String) throws -> WardenProcess {
        let file = try directory.write("wardenrc", "set daemon 1\nset pidfile \(directory.path)/warden.pid\n" + body)
        return try WardenProcess(controlFile: file, logPath: directory.path + "/log")
    }

    /// Runs a command the test needs; under CI its failure is the test's, elsewhere (not root, no
    /// loop devices) the test is skipped with a note.
    func need(_ path: String, _ arguments: [String]) throws -> Bool {
        let result = try TestSupport.run(path, arguments, timeout: 30)
        if result.status == 0 { return true }
        let problem = "\(path) \(arguments.joined(separator: " ")): \(result.stderr)"
        if TestSupport.isCI { Issue.record("\(problem)") } else { print("skipped: \(problem)") }
        return false
    }

    /// Waits out two cycles: the first measures, rates and changes compare from the second.
    func twoCycles(_ warden: WardenProcess) { usleep(2_500_000) }

    @Test func aFullTmpfsFiresAndRecovers() throws {
        let directory = try TemporaryDirectory()
        let mountPoint = directory.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        guard try need("/bin/mount", ["-t", "tmpfs", "-o", "size=1m,nr_inodes=16", "tmpfs", mountPoint]) else { return }
        defer { _ = try? TestSupport.run("/bin/umount", ["-l", mountPoint]) }
        // A directory inside the filesystem names it, as in monit.
        try FileManager.default.createDirectory(atPath: mountPoint + "/inside", withIntermediateDirectories: true)
        let warden = try start(directory, """
            check filesystem scratch with path \(mountPoint)/inside
              if space usage > 50% then alert
              if inode usage > 60% then alert

            """)
        defer { warden.stop() }
        twoCycles(warden)
        #expect(!warden.log.contains("matches resource limit"), "\(warden.log)")
        try Data(count: 700 * 1024).write(to: URL(fileURLWithPath: mountPoint + "/fill"))
        #expect(warden.waitForLog("matches resource limit [space usage > 50.0%]", timeout: 10), "\(warden.log)")
        try FileManager.default.removeItem(atPath: mountPoint + "/fill")
        #expect(warden.waitForLog("'scratch' space usage test succeeded [current space usage = ", timeout: 10), "\(warden.log)")
        for index in 0..<10 { try directory.write("mnt/f\(index)", "") }
        #expect(warden.waitForLog("matches resource limit [inode usage > 60.0%]", timeout: 10), "\(warden.log)")
    }

    @Test func remountReadOnlyChangesFsflags() throws {
        let directory = try TemporaryDirectory()
        let image = directory.path + "/fs.img"
        let mountPoint = directory.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        guard try need("/usr/bin/truncate", ["-s", "8M", image]), try need("/sbin/mkfs.ext4", ["-q", "-F", image]),
            try need("/bin/mount", ["-o", "loop", image, mountPoint])
        else { return }
        defer { _ = try? TestSupport.run("/bin/umount", ["-d", mountPoint]) }
        // The block device names the filesystem too.
        let device = try #require(
            try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8).split(separator: "\n")
                .first { $0.contains(" \(mountPoint) ") }?.split(separator: " ").last { $0.hasPrefix("/dev/") }.map(String.init))
        let warden = try start(directory, """
            check filesystem image with path \(device)
              if changed fsflags then alert
              if write rate > 100 kB/s then alert

            """)
        defer { warden.stop() }
        twoCycles(warden)
        #expect(try need("/bin/dd", ["if=/dev/zero", "of=\(mountPoint)/data", "bs=1M", "count=3", "conv=fsync"]))
        #expect(warden.waitForLog("matches resource limit [write > 100 kB/s]", timeout: 10), "\(warden.log)")
        #expect(warden.waitForLog("'image' write rate test succeeded", timeout: 10), "\(warden.log)")
        #expect(try need("/bin/mount", ["-o", "remount,ro", mountPoint]))
        #expect(warden.waitForLog("filesystem flags changed from 'rw,relatime' to 'ro,relatime'", timeout: 10), "\(warden.log)")
    }

    func md5(_ path: String) throws -> String {
        String(try TestSupport.run("/usr/bin/md5sum", [path]).stdout.prefix(32))
    }

    @Test func fileChangesFireAndRecover() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.write("app.conf", "a\n")
        let original = try md5(path)
        let warden = try start(directory, """
            check file conf with path \(path)
              if failed checksum expect \(original) then alert
              if changed checksum then alert
              if changed size then alert
              if changed timestamp then alert

            """)
        defer { warden.stop() }
        twoCycles(warden)
        #expect(!warden.log.contains("checksum failed") && !warden.log.contains("changed"), "\(warden.log)")
        usleep(1_100_000)  // a timestamp of another second
        try directory.write("app.conf", "bb\n")
        let changed = try md5(path)
        #expect(warden.waitForLog("'conf' checksum failed, expected \(original) got \(changed)", timeout: 10), "\(warden.log)")
        #expect(warden.waitForLog("'conf' checksum changed to \(changed)"), "\(warden.log)")
        #expect(warden.waitForLog("'conf' size for \(path) changed to 3 B"), "\(warden.log)")
        #expect(warden.waitForLog("'conf' timestamp for \(path) changed from "), "\(warden.log)")
        try directory.write("app.conf", "a\n")
        #expect(warden.waitForLog("'conf' checksum is valid", timeout: 10), "\(warden.log)")
        #expect(warden.waitForLog("'conf' checksum changed to \(original)"), "every change is reported: \(warden.log)")
    }

    @Test func logLinesAppendedAreMatched() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.write("app.log", "error before warden\n")
        let warden = try start(directory, """
            check file log with path \(path)
              ignore content = "health"
              if content = "error" then alert

            """)
        defer { warden.stop() }
        twoCycles(warden)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        log.seekToEndOfFile()
        log.write(Data("GET /health error\nkernel: disk error on sda\nunfinished error".utf8))
        #expect(warden.waitForLog("disk error on sda", timeout: 10), "\(warden.log)")
        #expect(!warden.log.contains("/health") && !warden.log.contains("before warden"), "\(warden.log)")
        #expect(!warden.log.contains("unfinished"), "a line is read once its writer ends it")
        log.write(Data(" line\n".utf8))
        try log.close()
        #expect(warden.waitForLog("unfinished error line", timeout: 10), "\(warden.log)")
        #expect(warden.waitForLog("'log' content doesn't match", timeout: 10), "\(warden.log)")
        // Rotated: a new file in its place is read from its start, even when it is already longer than
        // where the old one was read to.
        let rotated = try directory.write("app.log.new", "error after rotation\n" + String(repeating: "padding\n", count: 40))
        #expect(rename(rotated, path) == 0)
        #expect(warden.waitForLog("error after rotation", timeout: 10), "\(warden.log)")
    }

    @Test func programStatusChanges() throws {
        let directory = try TemporaryDirectory()
        let status = try directory.write("status", "0")
        let script = try directory.write("job.sh", "#!/bin/sh\nexit $(cat \(status))\n", mode: 0o755)
        let warden = try start(directory, """
            check program job with path \(script)
              if changed status then alert

            """)
        defer { warden.stop() }
        twoCycles(warden)
        try directory.write("status", "3")
        #expect(warden.waitForLog("'job' status changed (0 -> 3) -- no output", timeout: 10), "\(warden.log)")
    }

    @Test func processResources() throws {
        let directory = try TemporaryDirectory()
        let pidfile = directory.path + "/writer.pid"
        // A shell that writes two bytes ten times a second.
        let script = try directory.write(
            "start.sh", "#!/bin/sh\n(while :; do echo x >> \(directory.path)/out; sleep 0.1; done) >/dev/null 2>&1 &\necho $! > \(pidfile)\n", mode: 0o755)
        let warden = try start(directory, """
            check process writer with pidfile \(pidfile)
              start program = "\(script)"
              if filedescriptors > 1 then alert
              if filedescriptors > 99% then alert
              if failed euid nobody then alert
              if write rate > 5 B/s then alert

            """)
        defer {
            warden.stop()
            if let pid = TestSupport.readPID(pidfile) { kill(pid, SIGKILL) }
        }
        #expect(warden.waitForLog("'writer' filedescriptors usage of ", timeout: 15), "\(warden.log)")
        #expect(warden.log.contains("matches limit [filedescriptors > 1]"), "\(warden.log)")
        #expect(!warden.log.contains("matches limit [filedescriptors > 99.0%]"), "\(warden.log)")
        #expect(warden.waitForLog("'writer' euid test failed for writer -- current euid is \(geteuid())"), "\(warden.log)")
        #expect(warden.waitForLog("matches resource limit [write > 5 B/s]", timeout: 10), "\(warden.log)")
    }

    @Test func systemResources() throws {
        let directory = try TemporaryDirectory()
        let warden = try start(directory, """
            check system box
              if cpu >= 0% then alert
              if cpu user >= 0% then alert
              if filedescriptors > 1 then alert

            """)
        defer { warden.stop() }
        #expect(warden.waitForLog("matches resource limit [cpu usage >= 0.0%]", timeout: 10), "\(warden.log)")
        #expect(warden.waitForLog("matches resource limit [cpu user usage >= 0.0%]"), "\(warden.log)")
        #expect(warden.waitForLog("'box' filedescriptors usage of "), "\(warden.log)")
    }

    @Test func aRuleWardenDoesNotRunFailsTheSyntaxCheck() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("wardenrc", "check host db with address 127.0.0.1\n  if failed port 1812 protocol radius then alert\n")
        let result = try TestSupport.run(TestSupport.wardenBinary, ["-t", "-c", file])
        #expect(result.status == 1)
        let expected = "wardenrc:2:3: error: 'protocol radius' is not supported on this system: "
        #expect(result.stdout.contains(expected) || result.stderr.contains(expected), "\(result.stdout)\(result.stderr)")
    }

    /// `if exist`: a file and a process that must not be there. Their absence is not reported and the
    /// process is not started, as in monit; their presence fails the rule, their removal recovers it.
    @Test func whatMustNotExist() throws {
        let directory = try TemporaryDirectory()
        let pidfile = directory.path + "/ghost.pid"
        let warden = try start(directory, """
            check file maintenance with path \(directory.path)/maintenance
              if exist then alert

            check process ghost with pidfile \(pidfile)
              start program = "/bin/sh -c 'sleep 60 & echo $! > \(pidfile)'"
              if exist then alert

            """)
        defer {
            warden.stop()
            if let pid = TestSupport.readPID(pidfile) { kill(pid, SIGKILL) }
        }
        twoCycles(warden)
        #expect(!warden.log.contains("doesn't exist") && !warden.log.contains("not running"), "\(warden.log)")
        #expect(TestSupport.readPID(pidfile) == nil, "a process that must not exist is not started")
        try directory.write("maintenance", "")
        #expect(warden.waitForLog("'maintenance' file exists", timeout: 10), "\(warden.log)")
        try FileManager.default.removeItem(atPath: directory.path + "/maintenance")
        #expect(warden.waitForLog("'maintenance' file doesn't exist", timeout: 10), "\(warden.log)")
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["60"]
        try sleeper.run()
        defer { kill(sleeper.processIdentifier, SIGKILL) }
        try directory.write("ghost.pid", "\(sleeper.processIdentifier)\n")
        #expect(warden.waitForLog("'ghost' process is running with pid \(sleeper.processIdentifier)", timeout: 10), "\(warden.log)")
        kill(sleeper.processIdentifier, SIGKILL)
        sleeper.waitUntilExit()
        #expect(warden.waitForLog("'ghost' process is not running", timeout: 10), "\(warden.log)")
    }
}
