import Testing
import WardenPlatform

@testable import WardenConfig

/// `log [PATH] [rotate at SIZE [keep N]]` in a check block, and where a service's log goes without it.
@Suite("Service log in the control file")
struct ServiceLogConfigTests {
    func parse(_ text: String) -> LoadResult { ControlFile.parse(text, path: "test.rc") }

    @Test func pathRotationAndKeepAreParsedWithMonitsSizeUnits() throws {
        let configuration = try #require(
            parse(
                """
                set logfile /var/log/warden/warden.log
                check process myapp with pidfile /run/myapp.pid
                    start program = "/app/start"
                    log /srv/logs/myapp.log rotate at 10 MB keep 3
                check process other with pidfile /run/other.pid
                    log rotate at 512 kB
                check process plain with pidfile /run/plain.pid
                check site web with host example.com
                    pass / to http://127.0.0.1:8080/ for service myapp
                    error log /var/log/warden/error.log
                """
            ).configuration)
        let myapp = try #require(configuration.service(named: "myapp"))
        #expect(myapp.log == ServiceLogSettings(path: "/srv/logs/myapp.log", rotation: LogRotation(limit: 10 << 20, keep: 3)))
        #expect(configuration.logPath(of: myapp) == "/srv/logs/myapp.log")
        let other = try #require(configuration.service(named: "other"))
        #expect(other.log?.rotation == LogRotation(limit: 512 << 10, keep: ServiceLogSettings.defaultKeep))
        #expect(configuration.logPath(of: other) == "/var/log/warden/other.log", "beside warden's own log")
        #expect(configuration.logPath(ofServiceNamed: "plain") == "/var/log/warden/plain.log")
        #expect(configuration.sites.first?.errorLog == "/var/log/warden/error.log", "a site's 'error log' is not a service's 'log'")
    }

    @Test func withoutWardensLogFileOrAPathThereIsNoServiceLog() throws {
        let configuration = try #require(parse("check process app with pidfile /run/app.pid\n").configuration)
        #expect(configuration.logPath(ofServiceNamed: "app") == nil)
        let syslog = try #require(parse("set logfile syslog\ncheck process app with pidfile /run/app.pid\n").configuration)
        #expect(syslog.logPath(ofServiceNamed: "app") == nil)
    }

    @Test func eachInstanceHasItsOwnLog() throws {
        let configuration = try #require(
            parse(
                """
                set logfile /var/log/warden/warden.log
                check process myapp with pidfile /run/myapp.$PORT.pid
                    instances 2 ports 8080-8083
                    start program = "/app/start $PORT"
                check process api with pidfile /run/api.$PORT.pid
                    instances 2 ports 9080-9083
                    start program = "/app/api $PORT"
                    log /srv/api.$PORT.log
                """
            ).configuration)
        #expect(configuration.logPath(ofServiceNamed: "myapp@8081") == "/var/log/warden/myapp@8081.log")
        #expect(configuration.logPath(ofServiceNamed: "api@9082") == "/srv/api.9082.log")
        let instance = try #require(configuration.service(named: "api")).instance(1, port: 9083)
        #expect(configuration.logPath(of: instance) == "/srv/api.9083.log")
        #expect(configuration.logPath(ofServiceNamed: "myapp@x") == nil)
        #expect(configuration.logPath(ofServiceNamed: "nothing") == nil)
    }

    @Test(arguments: [
        ("    log relative.log", "test.rc:2:9: error: the log file must be an absolute path, found 'relative.log'"),
        ("    log /x.log rotate 10 MB", "test.rc:2:23: error: expected 'at' after 'rotate', found '10'"),
        ("    log /x.log rotate at ten", "test.rc:2:26: error: expected a size such as 10 MB, found 'ten'"),
        ("    log /x.log rotate at 10 parsecs", "test.rc:2:26: error: a log is rotated at 1 KB or more, found '10'"),
        ("    log /x.log rotate at 100 bytes", "test.rc:2:26: error: a log is rotated at 1 KB or more, found '100'"),
        ("    log /x.log rotate at 1 MB keep 0", "test.rc:2:36: error: a number of old files to keep '0' is out of range (1...1000)"),
        ("    log rotate at 5 seconds", "test.rc:2:19: error: expected a size unit (B, KB, MB, GB), found 'seconds'"),
    ])
    func errorsPointAtTheToken(line: String, expected: String) {
        let result = parse("check process app with pidfile /run/app.pid\n\(line)\n")
        #expect(result.configuration == nil)
        #expect(result.renderedDiagnostics().hasPrefix(expected), "\(result.renderedDiagnostics())")
    }

    @Test func logOutsideACheckIsAnError() {
        let result = parse("log /x.log\n")
        #expect(result.renderedDiagnostics().hasPrefix("test.rc:1:1: error: 'log' must follow a 'check' statement"), "\(result.renderedDiagnostics())")
    }
}
