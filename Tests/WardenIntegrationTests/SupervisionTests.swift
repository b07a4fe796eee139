import Foundation
import Testing
import WardenTestSupport

/// The real warden binary supervising real processes on 127.0.0.1.
@Suite("Supervision engine, end to end", .serialized)
struct SupervisionTests {
    func controlFile(_ directory: TemporaryDirectory, _ body: String, daemon: Int = 1) throws -> String {
        try directory.write("wardenrc", "set daemon \(daemon)\nset statefile \(directory.path)/state\nset pidfile \(directory.path)/warden.pid\n" + body)
    }

    func appCheck(_ app: TestApp, name: String = "app", extra: String = "") -> String {
        """
        check process \(name) with pidfile \(app.pidfile)
          start program = "\(app.startScript)"
          stop program = "\(app.stopScript)"
          if failed url http://127.0.0.1:\(app.port)/ping and content == "pong" timeout 2 seconds then restart
        \(extra)

        """
    }

    @Test func killedProcessIsRestartedWithinMilliseconds() throws {
        let directory = try TemporaryDirectory()
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        // A 10-second cycle: only the pidfd can explain a fast restart. Five kills in a few seconds would
        // be a crash loop, which backs off by default: monit's spacing is asked for.
        let check = appCheck(app, extra: "restart delay 1 second to 1 second")
        let warden = try WardenProcess(controlFile: try controlFile(directory, check, daemon: 10), logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing }, "\(warden.log)")
        var latencies: [Double] = []
        for _ in 0..<5 {
            // Past the 1 s minimum between automatic starts, so the measure is the detection itself.
            usleep(1_200_000)
            let old = try #require(app.pid)
            let killed = Date()
            kill(old, SIGKILL)
            let restarted = TestSupport.waitUntil(timeout: 8) { app.pid != old && app.isServing }
            #expect(restarted, "\(warden.log)")
            latencies.append(Date().timeIntervalSince(killed))
            #expect(app.instances == 1)
        }
        print("kill -9 → serving again (s):", latencies.map { String(format: "%.3f", $0) })
        // Generous liveness bound: far below the 10 s cycle.
        #expect(try #require(latencies.max()) < 3)
        #expect(warden.log.contains("'app' process is not running"))
        #expect(warden.log.contains("'app' trying to restart"))
    }

    @Test func hungProcessIsRestartedAfterTheURLTimeout() throws {
        let directory = try TemporaryDirectory()
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        let httpd = TestSupport.freePort()
        let rc = try controlFile(directory, "set httpd port \(httpd) and use address 127.0.0.1\n    allow 127.0.0.1\n" + appCheck(app))
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing })
        // Let one URL test pass first, which ends the start's grace period (a hang before that would be
        // a start that never completed, not a hung service): a whole cycle that ends OK and logs no
        // "ignored while the process is starting" is one whose URL test passed.
        #expect(urlTestPassed(rc, warden, "app"), "\(warden.log)")
        usleep(1_500_000)
        let old = try #require(app.pid)
        kill(old, SIGSTOP)
        let stopped = Date()
        #expect(TestSupport.waitUntil(timeout: 15) { app.pid != old && app.isServing }, "\(warden.log)")
        let latency = Date().timeIntervalSince(stopped)
        print("SIGSTOP → restarted and serving (s):", String(format: "%.3f", latency))
        #expect(latency < 10)
        #expect(warden.log.contains("failed protocol test [HTTP]"))
        #expect(!TestSupport.isAlive(old))
    }

    @Test func crashLoopEndsInTimeout() throws {
        let directory = try TemporaryDirectory()
        let crash = try directory.write(
            "crash.sh", "#!/bin/sh\nsetsid /bin/sh -c 'echo $$ > \(directory.path)/crash.pid; sleep 0.2' >/dev/null 2>&1 &\nexit 0\n", mode: 0o755)
        let rc = try controlFile(
            directory,
            """
            check process crash with pidfile \(directory.path)/crash.pid
              start program = "\(crash)"
              if 3 restarts within 5 cycles then timeout
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(warden.waitForLog("service restarted 3 times within", timeout: 20), "\(warden.log)")
        let starts = warden.log.components(separatedBy: "'crash' start:").count - 1
        #expect(starts == 3)
        // No further start after the timeout.
        usleep(2_500_000)
        #expect(warden.log.components(separatedBy: "'crash' start:").count - 1 == 3)
    }

    @Test func restartDelaysGrowWhileTheServiceKeepsCrashing() throws {
        let directory = try TemporaryDirectory()
        // Each start notes its time, then the app dies 0.2 s later.
        let crash = try directory.write(
            "crash.sh",
            "#!/bin/sh\ndate +%s.%N >> \(directory.path)/starts\nsetsid /bin/sh -c 'echo $$ > \(directory.path)/crash.pid; sleep 0.2' >/dev/null 2>&1 &\nexit 0\n",
            mode: 0o755)
        let rc = try controlFile(
            directory,
            """
            check process crash with pidfile \(directory.path)/crash.pid
              start program = "\(crash)"
              restart delay 1 second to 4 seconds
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        func starts() -> [Double] {
            ((try? String(contentsOfFile: directory.path + "/starts", encoding: .utf8)) ?? "").split(separator: "\n").compactMap { Double($0) }
        }
        #expect(TestSupport.waitUntil(timeout: 40) { starts().count >= 5 }, "\(warden.log)")
        let times = starts()
        let gaps = zip(times.dropFirst(), times).map { $0 - $1 }
        // 1 s, 2 s, then 4 s (the longest), each ±20 %, plus the time to see the crash and start.
        let expected: [ClosedRange<Double>] = [0.7...1.9, 1.5...3.3, 3.1...5.9, 3.1...5.9]
        #expect(gaps.count >= 4)
        for (gap, range) in zip(gaps, expected) { #expect(range.contains(gap), "gaps \(gaps)") }
    }

    @Test func failingStartProgramIsReportedAtOnceWithoutABusyLoop() throws {
        let directory = try TemporaryDirectory()
        let app = try TestApp(in: directory)
        let rc = try controlFile(
            directory,
            """
            check process bad with pidfile \(directory.path)/bad.pid
              start program = "\(app.failingStartScript)"
            check process missing with pidfile \(directory.path)/missing.pid
              start program = "/nonexistent/start-me"
            """)
        let started = Date()
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(warden.waitForLog("'bad' failed to start (exit status 1)", timeout: 10), "\(warden.log)")
        // monit waits the whole 30 s start timeout; warden knows at once.
        #expect(Date().timeIntervalSince(started) < 8)
        #expect(warden.log.contains("app: cannot start (simulated)"))
        #expect(warden.waitForLog("'missing' failed to start", timeout: 5))
        // One attempt per cycle, not a busy loop: ~1 per second.
        usleep(3_000_000)
        let attempts = warden.log.components(separatedBy: "'bad' start:").count - 1
        #expect(attempts >= 2 && attempts <= 6, "\(attempts) attempts in ~4 s")
    }

    /// Found by the disk-full chaos scenario: an app that wrote its pidfile and died before a check
    /// saw it left warden waiting out the whole start timeout before the next attempt.
    @Test func appDyingRightAfterItsStartIsRetriedWithoutWaitingOutTheTimeout() throws {
        let directory = try TemporaryDirectory()
        let pidfile = directory.path + "/brief.pid"
        let script = try directory.write("brief.sh", "#!/bin/sh\necho $$ > \(pidfile)\nexit 0\n", mode: 0o755)
        let rc = try controlFile(
            directory,
            """
            check process brief with pidfile \(pidfile)
              start program = "\(script)" with timeout 60 seconds

            """)
        let started = Date()
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(warden.waitForLog("exited right after it started", count: 2, timeout: 15), "\(warden.log)")
        #expect(Date().timeIntervalSince(started) < 15)
    }

    @Test func stalePidfileAndRecycledPidAreNotMistakenForTheApp() throws {
        let directory = try TemporaryDirectory()
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        // Stale: a pid that does not exist. Recycled: a live process that started after the pidfile was written.
        try directory.write("app.pid", "999999\n")
        let stale = try WardenProcess(controlFile: try controlFile(directory, appCheck(app)), logPath: directory.path + "/log1")
        #expect(TestSupport.waitUntil(timeout: 15) { app.isServing }, "\(stale.log)")
        stale.stop()
        app.killAll()
        let pidfile = app.pidfile
        try "1\n".write(toFile: pidfile, atomically: false, encoding: .utf8)
        // Backdate the pidfile: pid 1 started long ago, so make the pidfile older than an unrelated new process.
        let unrelated = Process()
        unrelated.executableURL = URL(fileURLWithPath: "/bin/sleep")
        unrelated.arguments = ["30"]
        try unrelated.run()
        defer { unrelated.terminate() }
        try "\(unrelated.processIdentifier)\n".write(toFile: pidfile, atomically: false, encoding: .utf8)
        let old = timespec(tv_sec: time(nil) - 3600, tv_nsec: 0)
        var times = [old, old]
        _ = utimensat(AT_FDCWD, pidfile, &times, 0)
        let recycled = try WardenProcess(controlFile: try controlFile(directory, appCheck(app)), logPath: directory.path + "/log2")
        defer { recycled.stop() }
        #expect(TestSupport.waitUntil(timeout: 15) { app.isServing }, "\(recycled.log)")
        #expect(unrelated.isRunning, "the unrelated process must never be signalled")
    }

    @Test func foregroundStartProgramIsARunningService() throws {
        let directory = try TemporaryDirectory()
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        let rc = try controlFile(
            directory,
            """
            check process fg with pidfile \(directory.path)/fg.pid
              start program = "\(app.foregroundCommand)"
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(warden.waitForLog("'fg' process is running with pid", timeout: 10), "\(warden.log)")
        #expect(!warden.log.contains("failed to start"))
        usleep(2_000_000)
        #expect(app.instances == 1)
        #expect(warden.log.components(separatedBy: "'fg' start:").count - 1 == 1)
    }

    @Test func dependenciesStartFirstAndRestartTheirDependants() throws {
        let directory = try TemporaryDirectory()
        let db = try TestApp(in: directory, name: "db")
        let web = try TestApp(in: directory, name: "web")
        defer {
            db.killAll()
            web.killAll()
        }
        let rc = try controlFile(
            directory,
            """
            check process web with pidfile \(web.pidfile)
              start program = "\(web.startScript)"
              stop program = "\(web.stopScript)"
              depends on db
            check process db with pidfile \(db.pidfile)
              start program = "\(db.startScript)"
              stop program = "\(db.stopScript)"
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(TestSupport.waitUntil(timeout: 20) { db.isServing && web.isServing }, "\(warden.log)")
        let log = warden.log
        let dbStart = try #require(log.range(of: "'db' start:"))
        let webStart = try #require(log.range(of: "'web' start:"))
        #expect(dbStart.lowerBound < webStart.lowerBound, "db must start before web")
        // Killing db restarts db, and web with it.
        let webPID = try #require(web.pid)
        kill(try #require(db.pid), SIGKILL)
        #expect(TestSupport.waitUntil(timeout: 15) { web.pid != webPID && web.isServing && db.isServing }, "\(warden.log)")
        #expect(warden.log.contains("'web' restarting because 'db' restarted"))
        // quit --stop-services stops web before db.
        let quit = try TestSupport.run(TestSupport.wardenBinary, ["quit", "--stop-services", "-c", rc])
        #expect(quit.status == 0, "\(quit.stderr)")
        #expect(TestSupport.waitUntil(timeout: 15) { db.instances == 0 && web.instances == 0 })
        let final = warden.log
        let webStop = try #require(final.range(of: "'web' stop:"))
        let dbStop = try #require(final.range(of: "'db' stop:"))
        #expect(webStop.lowerBound < dbStop.lowerBound)
    }

    @Test func wardenKilledWithSIGKILLAdoptsTheRunningAppWithoutADoubleStart() throws {
        let directory = try TemporaryDirectory()
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        let rc = try controlFile(directory, appCheck(app))
        let first = try WardenProcess(controlFile: rc, logPath: directory.path + "/log1")
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing })
        #expect(TestSupport.waitUntil(timeout: 5) { FileManager.default.fileExists(atPath: directory.path + "/state") })
        let pid = try #require(app.pid)
        first.kill9()
        for round in 0..<3 {
            let next = try WardenProcess(controlFile: rc, logPath: directory.path + "/log-\(round)")
            #expect(next.waitForLog("'app' process is running with pid \(pid)", timeout: 10), "\(next.log)")
            usleep(1_500_000)
            #expect(!next.log.contains("'app' start:"), "adopted, never started again")
            #expect(app.instances == 1)
            next.kill9()
        }
        #expect(app.pid == pid)
        let state = try String(contentsOfFile: directory.path + "/state", encoding: .utf8)
        #expect(state.contains("\"app\""))
        var info = stat()
        stat(directory.path + "/state", &info)
        #expect(info.st_mode & 0o777 == 0o600)
    }

    /// A service's entry in `warden status --json`.
    func serviceStatus(_ rc: String, _ name: String) -> (monitor: String, status: String, lastCheck: Double, busy: Bool)? {
        guard let result = try? TestSupport.run(TestSupport.wardenBinary, ["-c", rc, "status", "--json"], timeout: 10), result.status == 0,
            let document = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any],
            let entry = (document["services"] as? [[String: Any]])?.first(where: { $0["name"] as? String == name })
        else { return nil }
        return (entry["monitor"] as? String ?? "", entry["status"] as? String ?? "", entry["lastCheck"] as? Double ?? 0, entry["busy"] as? Bool ?? true)
    }

    /// True once a whole check cycle of `name` ended OK without logging that its connection test was
    /// ignored for the start's grace period: that cycle's URL test passed (a failure after the grace
    /// would not be OK, one during it is logged). warden logs nothing when a test passes.
    func urlTestPassed(_ rc: String, _ warden: WardenProcess, _ name: String, timeout: Double = 15) -> Bool {
        let ignored = { warden.log.components(separatedBy: "'\(name)' connection test ignored while the process is starting").count }
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard let before = serviceStatus(rc, name), !before.busy, before.status == "OK" else {
                usleep(100_000)
                continue
            }
            let count = ignored()
            var after = before
            let finished = TestSupport.waitUntil(timeout: 5) {
                after = serviceStatus(rc, name) ?? before
                return after.lastCheck > before.lastCheck && !after.busy
            }
            if finished, after.status == "OK", ignored() == count { return true }
        }
        return false
    }

    /// The state file's view of a service, decoded (so the test does not depend on the JSON layout).
    func savedService(_ directory: TemporaryDirectory, _ name: String) -> [String: Any]? {
        guard let data = FileManager.default.contents(atPath: directory.path + "/state"),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return nil }
        return (object["services"] as? [String: Any])?[name] as? [String: Any]
    }

    /// The app's pidfile is removed while warden is down: only the state file still names the running
    /// app (pid and start time), and warden must adopt it rather than start a second one.
    @Test func stateFileAloneNamesTheAppWhenItsPidfileIsGone() throws {
        let directory = try TemporaryDirectory()
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        let rc = try controlFile(directory, appCheck(app))
        let first = try WardenProcess(controlFile: rc, logPath: directory.path + "/log1")
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing }, "\(first.log)")
        let pid = try #require(app.pid)
        #expect(TestSupport.waitUntil(timeout: 5) { (savedService(directory, "app")?["pid"] as? Int) == Int(pid) }, "the state file names the pid")
        first.kill9()
        try FileManager.default.removeItem(atPath: app.pidfile)
        let second = try WardenProcess(controlFile: rc, logPath: directory.path + "/log2")
        defer { second.stop() }
        #expect(second.waitForLog("state restored from", timeout: 10), "\(second.log)")
        // Three cycles: enough for a warden that does not know the app to have started another.
        usleep(3_500_000)
        #expect(!second.log.contains("'app' start:"), "adopted from the state file, not started again: \(second.log)")
        #expect(second.log.contains("'app' process is running with pid \(pid)"), "\(second.log)")
        #expect(TestSupport.processes(containing: "\(app.port) \(app.pidfile)") == [pid], "the original app alone")
        #expect(TestSupport.httpGet(port: app.port, path: "/ping")?.body == "pong")
    }

    /// `warden unmonitor` is kept in the state file: a warden killed -9 and started again neither
    /// starts nor restarts the unmonitored service, and says it is not monitored.
    @Test func unmonitoredServiceStaysUnmonitoredAcrossKill9() throws {
        let directory = try TemporaryDirectory()
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        let httpd = TestSupport.freePort()
        let rc = try controlFile(
            directory, "set httpd port \(httpd) and use address 127.0.0.1\n    allow 127.0.0.1\n" + appCheck(app))
        let warden = TestSupport.wardenBinary
        let first = try WardenProcess(controlFile: rc, logPath: directory.path + "/log1")
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing }, "\(first.log)")
        #expect(first.waitForLog("httpd listening", timeout: 10))
        let unmonitor = try TestSupport.run(warden, ["-c", rc, "unmonitor", "app"])
        #expect(unmonitor.status == 0, "\(unmonitor.stderr)")
        #expect(TestSupport.waitUntil(timeout: 5) { (savedService(directory, "app")?["monitor"] as? String) == "notMonitored" }, "\(first.log)")
        first.kill9()
        // With warden down, the app dies: a warden that monitored it would start it again.
        app.killAll()
        #expect(TestSupport.waitUntil(timeout: 5) { app.instances == 0 })
        let second = try WardenProcess(controlFile: rc, logPath: directory.path + "/log2")
        defer { second.stop() }
        #expect(second.waitForLog("httpd listening", timeout: 10), "\(second.log)")
        usleep(3_500_000)
        #expect(app.instances == 0, "not started: \(second.log)")
        #expect(!second.log.contains("'app' start:"))
        let status = try TestSupport.run(warden, ["-c", rc, "status", "app"])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("Not monitored"), "\(status.stdout)")
        let json = try TestSupport.run(warden, ["-c", rc, "status", "--json"])
        let document = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let entry = (document["services"] as? [[String: Any]])?.first { $0["name"] as? String == "app" }
        #expect(entry?["monitor"] as? String == "notMonitored")
        // The control: monitoring it again starts it, so the silence above was the kept mode.
        #expect(try TestSupport.run(warden, ["-c", rc, "monitor", "app"]).status == 0)
        #expect(TestSupport.waitUntil(timeout: 15) { app.isServing }, "\(second.log)")
    }

    /// `warden` without -I: the command returns, the daemon runs on detached (its own session, not the
    /// test's child, no terminal), writes its pidfile, answers the CLI, and `warden quit` ends it.
    @Test func daemonizesAndQuitEndsIt() throws {
        let directory = try TemporaryDirectory()
        let httpd = TestSupport.freePort()
        let pidfile = directory.path + "/warden.pid"
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(pidfile)
            set logfile \(directory.path)/warden.log
            set httpd port \(httpd) and use address 127.0.0.1
                allow 127.0.0.1
            check host loopback with address 127.0.0.1
            """)
        // Launched by a caller that hands it one extra descriptor (as a shell, ssh or a CI runner may):
        // a daemon closes what it inherited, or the caller waiting for end-of-file waits for ever.
        // (Foundation's Process is such a caller: it cannot launch warden directly, so python does.)
        let launcher = """
            import json, os, select, subprocess, sys
            r, w = os.pipe()
            p = subprocess.run(sys.argv[1:], pass_fds=(w,), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
            os.close(w)
            ready = select.select([r], [], [], 3)[0]
            print(json.dumps({"status": p.returncode, "stdout": p.stdout.decode(), "stderr": p.stderr.decode(),
                "inheritedClosed": bool(ready) and os.read(r, 1) == b""}))
            """
        let started = Date()
        let launch = try TestSupport.run("/usr/bin/python3", ["-c", launcher, TestSupport.wardenBinary, "-c", rc], timeout: 40)
        defer {
            if let pid = TestSupport.readPID(pidfile), TestSupport.isAlive(pid) { kill(pid, SIGKILL) }
        }
        let result = try #require((try? JSONSerialization.jsonObject(with: Data(launch.stdout.utf8))) as? [String: Any], "the launcher reports: \(launch.stdout) \(launch.stderr)")
        #expect(result["status"] as? Int == 0, "\(result)")
        #expect(Date().timeIntervalSince(started) < 10, "the command returns; the daemon goes on")
        #expect((result["stdout"] as? String ?? "").contains("Starting warden"), "\(result)")
        #expect(result["inheritedClosed"] as? Bool == true, "the daemon still holds a descriptor its caller gave it")
        #expect(TestSupport.waitUntil(timeout: 10) { TestSupport.readPID(pidfile) != nil })
        let pid = try #require(TestSupport.readPID(pidfile))
        #expect(TestSupport.isAlive(pid))
        // /proc/PID/stat after the command name: state ppid pgrp session tty_nr.
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        let fields = stat[stat.index(after: try #require(stat.lastIndex(of: ")")))...].split(separator: " ")
        let (ppid, session, tty) = (pid_t(fields[1]) ?? -1, pid_t(fields[3]) ?? -1, Int(fields[4]) ?? -1)
        #expect(ppid != getpid(), "not a child of the test")
        #expect(session != getsid(0), "a session of its own")
        #expect(tty == 0, "no controlling terminal")
        let log = { (try? String(contentsOfFile: directory.path + "/warden.log", encoding: .utf8)) ?? "" }
        #expect(TestSupport.waitUntil(timeout: 10) { log().contains("httpd listening") }, "\(log())")
        let status = try TestSupport.run(TestSupport.wardenBinary, ["-c", rc, "status"])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("loopback"), "\(status.stdout)")
        let quit = try TestSupport.run(TestSupport.wardenBinary, ["-c", rc, "quit"], timeout: 40)
        #expect(quit.status == 0, "\(quit.stderr)")
        #expect(TestSupport.waitUntil(timeout: 10) { !TestSupport.isAlive(pid) }, "quit ends the daemon")
        #expect(!FileManager.default.fileExists(atPath: pidfile), "the pidfile is removed")
        #expect(try TestSupport.run(TestSupport.wardenBinary, ["-c", rc, "status"]).status == 2, "no daemon reachable any more")
    }

    @Test func badReloadKeepsTheRunningConfiguration() throws {
        let directory = try TemporaryDirectory()
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        let rc = try controlFile(directory, appCheck(app))
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing })
        try directory.write("wardenrc", try String(contentsOfFile: rc, encoding: .utf8) + "\nfoobar\n")
        // The CLI checks first and refuses.
        let reload = try TestSupport.run(TestSupport.wardenBinary, ["reload", "-c", rc])
        #expect(reload.status == 1)
        #expect(reload.stderr.contains("error: unknown statement 'foobar'"))
        // A SIGHUP straight to the daemon: it logs the error and keeps running the old configuration.
        warden.signal(SIGHUP)
        #expect(warden.waitForLog("keeping the running configuration", timeout: 10), "\(warden.log)")
        #expect(warden.process.isRunning)
        let old = try #require(app.pid)
        kill(old, SIGKILL)
        #expect(TestSupport.waitUntil(timeout: 10) { app.pid != old && app.isServing }, "still supervising after the bad reload")
        // A good reload that removes the service: no longer monitored.
        try directory.write("wardenrc", "set daemon 1\nset pidfile \(directory.path)/warden.pid\n")
        let good = try TestSupport.run(TestSupport.wardenBinary, ["reload", "-c", rc])
        #expect(good.status == 0, "\(good.stderr)")
        #expect(warden.waitForLog("'app' removed from the configuration", timeout: 10))
    }

    @Test func quitLeavesServicesRunningAndASecondDaemonIsRefused() throws {
        let directory = try TemporaryDirectory()
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        let rc = try controlFile(directory, appCheck(app))
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing })
        let second = try TestSupport.run(TestSupport.wardenBinary, ["-c", rc, "-I"], timeout: 10)
        #expect(second.status == 1)
        #expect(second.stderr.contains("already running with pid \(warden.pid)"))
        let quit = try TestSupport.run(TestSupport.wardenBinary, ["quit", "-c", rc])
        #expect(quit.status == 0)
        #expect(TestSupport.waitUntil(timeout: 10) { !warden.process.isRunning })
        #expect(app.isServing, "quit leaves the services running, as monit does")
    }
}
