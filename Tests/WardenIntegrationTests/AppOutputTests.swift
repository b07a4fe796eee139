import Foundation
import Testing
import WardenTestSupport

/// A foreground service's own output: written to its log file, rotated by warden without losing or
/// doubling a line, and read back with `warden log NAME [-f]`.
@Suite("The app's own output", .serialized)
struct AppOutputTests {
    static var myapp: String { TestSupport.productsDirectory + "/myapp" }

    static func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    @Test func myappsRequestLinesLandInItsLogFileBesideWardensLog() throws {
        let directory = try TemporaryDirectory()
        let appPort = TestSupport.freePort()
        let httpd = TestSupport.freePort()
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set logfile \(directory.path)/warden.log
            set httpd port \(httpd) and use address 127.0.0.1
                allow 127.0.0.1
            check process myapp with pidfile \(directory.path)/myapp.pid
                start program = "\(Self.myapp) --port \(appPort)"
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/stdout")
        defer {
            warden.stop()
            if let pid = TestSupport.readPID(directory.path + "/myapp.pid") { kill(pid, SIGKILL) }
        }
        #expect(TestSupport.waitUntil(timeout: 20) { TestSupport.httpGet(port: appPort, path: "/ping")?.body == "pong" }, "\(warden.log)")
        for index in 0..<5 { _ = TestSupport.httpGet(port: appPort, path: "/request-\(index)") }
        let log = directory.path + "/myapp.log"
        #expect(TestSupport.waitUntil(timeout: 5) { Self.read(log).contains("ZnRequest(GET /request-4)") }, "\(Self.read(log))")
        for index in 0..<5 { #expect(Self.read(log).contains("I Read a ZnRequest(GET /request-\(index))")) }
        // Each line carries the time it was read: `2026-12-03T12:00:00+0000 …`.
        let first = try #require(Self.read(log).split(separator: "\n").first)
        #expect(first.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} .*/) != nil, "\(first)")
        var info = stat()
        #expect(stat(log, &info) == 0 && info.st_mode & 0o777 == 0o640)
        // The dashboard's service page shows the last lines, escaped.
        _ = TestSupport.httpGet(port: appPort, path: "/<b>")
        #expect(TestSupport.waitUntil(timeout: 5) { Self.read(log).contains("GET /<b>") }, "\(Self.read(log))")
        let page = try #require(TestSupport.httpGet(port: httpd, path: "/myapp"))
        #expect(page.body.contains("<pre id=\"log\">"), "\(page.body)")
        #expect(page.body.contains("ZnRequest(GET /request-4)"))
        #expect(page.body.contains("GET /&lt;b&gt;") && !page.body.contains("GET /<b>"))
        let tail = try TestSupport.run(TestSupport.wardenBinary, ["-c", rc, "log", "myapp", "-n", "3"])
        #expect(tail.status == 0, "\(tail.stderr)")
        #expect(tail.stdout.split(separator: "\n").count == 3)
        #expect(tail.stdout.split(separator: "\n").last.map(String.init) == Self.read(log).split(separator: "\n").last.map(String.init))
    }

    @Test func eachInstanceWritesItsOwnLog() throws {
        let directory = try TemporaryDirectory()
        let ports = try #require(InstanceTests.freePortRange(4))
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set logfile \(directory.path)/warden.log
            check process myapp with pidfile \(directory.path)/myapp.$PORT.pid
                instances 2 ports \(ports.lowerBound)-\(ports.upperBound)
                start program = "\(Self.myapp) --port $PORT --pidfile \(directory.path)/myapp.$PORT.pid"
                stop program = "/bin/sh -c 'kill $(cat \(directory.path)/myapp.$PORT.pid)'"
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/stdout")
        defer {
            warden.stop()
            for port in ports { if let pid = TestSupport.readPID(directory.path + "/myapp.\(port).pid") { kill(pid, SIGKILL) } }
        }
        for port in ports.prefix(2) {
            #expect(TestSupport.waitUntil(timeout: 20) { TestSupport.httpGet(port: port, path: "/hello-\(port)") != nil }, "\(warden.log)")
        }
        for port in ports.prefix(2) {
            let log = directory.path + "/myapp@\(port).log"
            #expect(TestSupport.waitUntil(timeout: 5) { Self.read(log).contains("ZnRequest(GET /hello-\(port))") }, "\(Self.read(log))")
            #expect(!Self.read(log).contains("/hello-\(port == ports.lowerBound ? port + 1 : ports.lowerBound))"), "only its own lines")
        }
    }

    @Test func tenThousandLinesAreEachFoundOnceAcrossTheRotatedFiles() throws {
        let directory = try TemporaryDirectory()
        let script = try directory.write(
            "printer.sh",
            """
            i=0
            while [ $i -lt 10000 ]; do echo "line $i"; i=$((i+1)); done
            exec sleep 3600
            """, mode: 0o644)
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set logfile \(directory.path)/warden.log
            check process printer with pidfile \(directory.path)/printer.pid
                start program = "/bin/sh \(script)"
                log \(directory.path)/logs/printer.log rotate at 16 KB keep 100
            """)
        try FileManager.default.createDirectory(atPath: directory.path + "/logs", withIntermediateDirectories: true)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/stdout")
        defer {
            warden.stop()
            if let pid = TestSupport.readPID(directory.path + "/printer.pid") { kill(pid, SIGKILL) }
        }
        let base = directory.path + "/logs/printer.log"
        // Oldest first: `.100` … `.1`, then the live file.
        let files = (1...100).reversed().map { "\(base).\($0)" } + [base]
        func numbers() -> [Int] {
            files.flatMap { Self.read($0).split(separator: "\n").compactMap { $0.split(separator: " ").last.flatMap { Int($0) } } }
        }
        #expect(TestSupport.waitUntil(timeout: 30) { numbers().count >= 10_000 }, "\(numbers().count) lines; \(warden.log)")
        let found = numbers()
        #expect(found.count == 10_000)
        #expect(found == Array(0..<10_000), "each line once, in order, in files named as logrotate names them")
        let rotated = files.filter { FileManager.default.fileExists(atPath: $0) }
        #expect(rotated.count > 10, "about 360 KB in 16 KB files")
        #expect(rotated.dropLast().map { $0.split(separator: ".").last.flatMap { Int($0) } } == Array((1..<max(1, rotated.count)).reversed()), "numbered from .1 without a gap")
        for file in rotated { #expect(Self.read(file).utf8.count <= 16 << 10, "\(file)") }
    }

    @Test func logFollowsAcrossRotationsAndSIGUSR1ReopensForAnOutsideLogrotate() throws {
        let directory = try TemporaryDirectory()
        let script = try directory.write(
            "ticker.sh",
            """
            i=0
            while :; do echo "tick $i"; i=$((i+1)); sleep 0.02; done
            """, mode: 0o644)
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set logfile \(directory.path)/warden.log
            check process ticker with pidfile \(directory.path)/ticker.pid
                start program = "/bin/sh \(script)"
                log rotate at 1 KB keep 200
            check process chatter with pidfile \(directory.path)/chatter.pid
                start program = "/bin/sh \(script)"
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/stdout")
        defer {
            warden.stop()
            for name in ["ticker", "chatter"] {
                if let pid = TestSupport.readPID(directory.path + "/\(name).pid") { kill(-pid, SIGKILL); kill(pid, SIGKILL) }
            }
        }
        let log = directory.path + "/ticker.log"
        #expect(TestSupport.waitUntil(timeout: 20) { Self.read(log).contains("tick 1\n") }, "\(warden.log)")
        let output = directory.path + "/follow.out"
        let follower = try WardenProcess(controlFile: rc, logPath: output, arguments: ["log", "ticker", "-f", "-n", "1"])
        defer { follower.stop() }
        // A kilobyte is about 30 ticks, a file a second or so: the follower looks five times as often.
        #expect(TestSupport.waitUntil(timeout: 20) { Self.read(output).contains("tick") }, "\(follower.log)")
        #expect(TestSupport.waitUntil(timeout: 30) { Self.read(log + ".5").contains("tick") }, "rotated 5 times")
        let newest = try #require(Self.number(Self.read(log).split(separator: "\n").last))
        #expect(TestSupport.waitUntil(timeout: 10) { Self.read(output).contains("tick \(newest)\n") }, "the follower keeps up")
        let ticks = Self.read(output).split(separator: "\n").compactMap { Self.number($0) }
        #expect(ticks.count > 100)
        #expect(ticks == Array((ticks.first ?? 0)..<((ticks.first ?? 0) + ticks.count)), "every tick once, in order, across the rotations")
        // logrotate's way, for `chatter`, which warden does not rotate: rename, then SIGUSR1, and the
        // next lines go to a new file at the path.
        let chatter = directory.path + "/chatter.log"
        #expect(TestSupport.waitUntil(timeout: 10) { Self.read(chatter).contains("tick") })
        #expect(rename(chatter, chatter + ".1") == 0)
        warden.signal(SIGUSR1)
        #expect(TestSupport.waitUntil(timeout: 10) { Self.read(chatter).contains("tick") }, "reopened")
        let moved = try #require(Self.number(Self.read(chatter + ".1").split(separator: "\n").last))
        #expect(Self.number(Self.read(chatter).split(separator: "\n").first) == moved + 1, "no line lost between the files")
    }

    /// The tick's number at the end of a log line.
    static func number(_ line: Substring?) -> Int? {
        line?.split(separator: " ").last.flatMap { Int($0) }
    }
}
