import Testing
import WardenTestSupport
@testable import WardenConfig

@Suite("Parsing the control-file language into a typed model")
struct ParserTests {
    func parse(_ text: String) -> LoadResult { ControlFile.parse(text, path: "test.rc") }

    func configuration(_ text: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws -> Configuration {
        let result = parse(text)
        #expect(!result.diagnostics.hasErrors, "\(result.renderedDiagnostics())", sourceLocation: sourceLocation)
        return try #require(result.configuration, sourceLocation: sourceLocation)
    }

    @Test func chapterURLCheckBecomesTypedRules() throws {
        let config = try configuration(
            """
            check process myapp with pidfile /var/run/myapp.pid
            start program = "/etc/init.d/myapp start"
            stop program = "/etc/init.d/myapp stop"
            if failed (url http://localhost:8080/ping
            and content == "pong"
            and timeout 10 seconds)
            then restart
            if 5 restarts within 5 cycles
            then timeout
            """)
        let service = try #require(config.service(named: "myapp"))
        #expect(service.kind == .process(.pidfile("/var/run/myapp.pid")))
        #expect(service.start?.arguments == ["/etc/init.d/myapp", "start"])
        #expect(service.stop?.arguments == ["/etc/init.d/myapp", "stop"])
        #expect(service.restartLimits.map { [$0.restarts, $0.cycles] } == [[5, 5]])
        #expect(service.restartLimits.first?.action == .timeout)
        let rule = try #require(service.rules.first)
        #expect(rule.action == .restart)
        guard case .connection(let test) = rule.condition, case .url(let url) = test.target,
            case .http(let http) = test.proto
        else {
            Issue.record("expected a URL test, got \(rule.condition)")
            return
        }
        #expect(url.host == "localhost")
        #expect(url.port == 8080)
        #expect(url.path == "/ping")
        #expect(http.content == Comparison(.equal, "pong"))
        #expect(test.timeout == 10)
    }

    @Test func portTestWithWindowAndProtocol() throws {
        let config = try configuration(
            """
            check process apache with pidfile /var/run/apache2/apache2.pid
              start program = "/etc/init.d/apache2 start"
              if failed host localhost port 80 with protocol http and request "/server-status" with timeout 25 seconds for 4 times within 5 cycles then restart else if succeeded then alert
            """)
        let rule = try #require(config.services.first?.rules.first)
        #expect(rule.window == FailureWindow(times: 4, cycles: 5))
        #expect(rule.recoveryAction == .alert)
        guard case .connection(let test) = rule.condition, case .http(let http) = test.proto else {
            Issue.record("expected an http port test")
            return
        }
        #expect(test.target == .port(host: "localhost", port: 80, transport: .tcp))
        #expect(http.request == "/server-status")
        #expect(test.timeout == 25)
    }

    @Test func globalSettings() throws {
        let config = try configuration(
            """
            set daemon 10 with start delay 5
            set logfile syslog facility log_daemon
            set pidfile /run/warden.pid
            set idfile /var/lib/warden/id
            set statefile /var/lib/warden/state
            set eventqueue basedir /var/lib/warden/events slots 100
            set mailserver smtp1.example.com port 587 username "bob" password "s3cret" using tls,
                           smtp2.example.com
                           with timeout 15 seconds
            set alert ops@example.com but not on { instance, action } with reminder on 3 cycles
            set alert boss@example.com only on { timeout }
            set httpd port 2812 and use address 127.0.0.1
                allow localhost allow 10.0.0.0/255.0.0.0 allow 192.168.1.0/24
                allow admin:monit allow guest:guest read-only
                allow md5 /etc/warden/htpasswd alice bob
            set onreboot laststate
            set init
            """)
        #expect(config.daemon.interval == 10)
        #expect(config.daemon.startDelay == 5)
        #expect(config.log == .syslog(facility: "log_daemon"))
        #expect(config.pidfile == "/run/warden.pid")
        #expect(config.statefile == "/var/lib/warden/state")
        #expect(config.eventQueue == EventQueueSettings(basedir: "/var/lib/warden/events", slots: 100))
        #expect(config.mailServers.count == 2)
        #expect(config.mailServers[0].username == "bob")
        #expect(config.mailServers[0].password == "s3cret")
        #expect(config.mailServers[0].security == .startTLS)
        #expect(config.mailServers[0].port == 587)
        #expect(config.mailServers.map(\.timeout) == [15, 15])
        #expect(config.alerts[0].filter == .except([.instance, .action]))
        #expect(config.alerts[0].reminder == 3)
        #expect(config.alerts[1].filter == .only([.timeout]))
        let httpd = try #require(config.httpd)
        #expect(httpd.port == 2812)
        #expect(httpd.address == "127.0.0.1")
        #expect(
            httpd.allow == [
                .host("localhost"), .network(address: "10.0.0.0", prefix: 8), .network(address: "192.168.1.0", prefix: 24),
                .user(name: "admin", password: "monit", readOnly: false),
                .user(name: "guest", password: "guest", readOnly: true),
                .htpasswd(path: "/etc/warden/htpasswd", hash: .md5, users: ["alice", "bob"], readOnly: false),
            ])
        #expect(config.onReboot == .laststate)
        #expect(config.initMode)
    }

    @Test func mailFormatKeepsFreeText() throws {
        let config = try configuration(
            """
            set mail-format {
              from: Warden <warden@example.com>
              reply-to: ops@example.com
              subject: $SERVICE $EVENT at $DATE
              message: $EVENT on $HOST: $DESCRIPTION.
                       Yours, warden
            }
            """)
        #expect(config.mailFormat.from == "Warden <warden@example.com>")
        #expect(config.mailFormat.replyTo == "ops@example.com")
        #expect(config.mailFormat.subject == "$SERVICE $EVENT at $DATE")
        #expect(config.mailFormat.message == "$EVENT on $HOST: $DESCRIPTION.\n           Yours, warden")
    }

    @Test func lexicalRules() throws {
        // Case-insensitive keywords, noise words, both quote styles, comments, '=' glued to the keyword.
        let config = try configuration(
            """
            # a comment
            CHECK Process app WITH PIDFILE '/run/app.pid'   # trailing comment
              START PROGRAM="/bin/sleep 100" AS UID nobody AND GID nogroup WITH TIMEOUT 1 MINUTE
              stop program '/bin/kill -TERM 1'
              if totalmem > 200.5 MB for 3 cycles then alert
              if cpu is greater than 80% for 2 cycles then restart
              if changed pid then exec "/usr/bin/logger 'pid changed'" repeat every 2 cycles
              every 2 cycles
              depends on db, cache
              group web
              mode passive
            check process db with pidfile /run/db.pid
              start program "/bin/true"
            check process cache matching "memcache[d]?"
              start program = "/bin/true"
            """)
        let app = try #require(config.service(named: "app"))
        #expect(app.start == ProgramSpec(arguments: ["/bin/sleep", "100"], uid: "nobody", gid: "nogroup", timeout: 60))
        #expect(app.stop?.arguments == ["/bin/kill", "-TERM", "1"])
        #expect(app.rules[0].condition == .resource(.totalMemory, .greater, .bytes(200.5 * 1_048_576)))
        #expect(app.rules[0].window == FailureWindow(times: 3, cycles: 3))
        #expect(app.rules[1].condition == .resource(.cpu, .greater, .percent(80)))
        #expect(app.rules[2].action == .exec(ProgramSpec(arguments: ["/usr/bin/logger", "pid changed"]), repeatEvery: 2))
        #expect(app.every == .cycles(2))
        #expect(app.dependencies == ["db", "cache"])
        #expect(app.groups == ["web"])
        #expect(app.mode == .passive)
        #expect(config.service(named: "cache")?.kind == .process(.matching("memcache[d]?")))
    }

    @Test func otherServiceTypes() throws {
        let config = try configuration(
            """
            check program backup with path "/bin/sh -c 'exit 0'" with timeout 600 seconds
              every "0 3 * * *"
              if status != 0 then alert
            check file syslog with path /var/log/syslog
              if timestamp > 65 minutes then alert
              if size > 1 GB then alert
              if failed permission 640 then unmonitor
            check host web with address 127.0.0.1
              if failed port 80 type tcp protocol http status = 200 then alert
            check system $HOST
              if loadavg (5min) per core > 1.5 then alert
            check directory d with path /tmp
            check filesystem root with path /
              if space usage > 90% then alert
            check network lo with interface lo
            """)
        let backup = try #require(config.service(named: "backup"))
        #expect(backup.kind == .program(ProgramSpec(arguments: ["/bin/sh", "-c", "exit 0"], timeout: 600)))
        #expect(backup.every == .cron(try CronSchedule("0 3 * * *")))
        #expect(backup.rules.first?.condition == .programStatus(.notEqual, 0))
        let file = try #require(config.service(named: "syslog"))
        #expect(file.rules.map(\.condition) == [.timestamp(.greater, seconds: 3900), .size(.greater, bytes: 1_073_741_824), .permission(0o640)])
        #expect(config.services.contains { $0.kind == .system })
        #expect(config.service(named: "lo")?.kind == .network(.interface("lo")))
    }

    @Test func programStringsSplitLikeMonit() {
        #expect(ProgramSpec.split(#"/bin/sh -c "echo 'a b'"  x"#) == ["/bin/sh", "-c", "echo 'a b'", "x"])
        #expect(ProgramSpec.split("  /etc/init.d/myapp   start ") == ["/etc/init.d/myapp", "start"])
        #expect(ProgramSpec.split(#"/bin/echo """#) == ["/bin/echo", ""])
    }

    @Test func includeIsRelativeSortedAndContinuesServices() throws {
        let directory = try TemporaryDirectory()
        try directory.write("conf.d/b.rc", "check process b with pidfile /run/b.pid\n  start program = \"/bin/true\"\n")
        try directory.write("conf.d/a.rc", "check process a with pidfile /run/a.pid\n  start program = \"/bin/true\"\n  include ../templates/limits\n")
        try directory.write("templates/limits", "  if 3 restarts within 5 cycles then timeout\n")
        let main = try directory.write("wardenrc", "set daemon 5\ninclude conf.d/*.rc\ninclude nothing-here/*.rc\n")
        let result = ControlFile.load(main, checkPermissions: false)
        #expect(!result.diagnostics.hasErrors, "\(result.renderedDiagnostics())")
        let config = try #require(result.configuration)
        #expect(config.services.map(\.name) == ["a", "b"])
        #expect(config.services[0].restartLimits.count == 1)
    }
}

