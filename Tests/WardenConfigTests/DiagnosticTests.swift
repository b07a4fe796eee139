import Testing
import WardenTestSupport
@testable import WardenConfig

#if canImport(Glibc)
import Glibc
#endif

@Suite("Diagnostics a person enjoys")
struct DiagnosticTests {
    @Test func errorIsRenderedWithLineCaretAndLocation() {
        let result = ControlFile.parse(
            """
            check process nginx with pidfile /var/run/nginx.pid
                start program = "/etc/init.d/nginx start" with timeout thirty seconds
            """, path: "/etc/warden/monitrc")
        let rendered = result.renderedDiagnostics()
        #expect(
            rendered.contains(
                """
                /etc/warden/monitrc:2:60: error: expected a timeout, found 'thirty'
                        start program = "/etc/init.d/nginx start" with timeout thirty seconds
                                                                               ^~~~~~
                """))
        #expect(result.configuration == nil)
    }

    @Test func aCronFieldOutOfItsRangeIsAnError() {
        let result = ControlFile.parse(
            """
            check program backup with path "/usr/local/bin/backup"
                every "61 3 * * *"
            check program report with path "/usr/local/bin/report"
                every "0 3 * * 1-8/0"
            """, path: "/etc/warden/monitrc")
        let rendered = result.renderedDiagnostics()
        #expect(rendered.contains("/etc/warden/monitrc:2:11: error: invalid cron field '61' for the minute (0-59)"))
        #expect(rendered.contains("/etc/warden/monitrc:4:11: error: invalid cron field '1-8/0' for the day of the week (0-7)"))
        #expect(result.configuration == nil)
    }

    @Test func restartDelayIsParsedAndChecked() throws {
        let good = ControlFile.parse(
            """
            check process app with pidfile /run/app.pid
                start program = "/bin/true"
                restart delay 1 second to 2 minutes reset after 30 seconds
            """, path: "/etc/warden/monitrc")
        let backoff = try #require(good.configuration?.services.first?.restartBackoff)
        #expect(backoff.initial == .seconds(1))
        #expect(backoff.maximum == .seconds(120))
        #expect(backoff.reset == .seconds(30))
        #expect(backoff.delay(after: 1) == .seconds(1))
        #expect(backoff.delay(after: 3) == .seconds(4))
        #expect(backoff.delay(after: 30) == .seconds(120))
        let bad = ControlFile.parse(
            """
            check process app with pidfile /run/app.pid
                restart delay 10 seconds to 5 seconds
            """, path: "/etc/warden/monitrc")
        #expect(bad.renderedDiagnostics().contains("/etc/warden/monitrc:2:19: error: the first restart delay must be at least 1 second and no longer than the longest"))
    }

    @Test func notEveryChecksOutsideTheSchedule() throws {
        let result = ControlFile.parse(
            """
            check process app with pidfile /run/app.pid
                not every "* 8-19 * * 1-5"
            """, path: "/etc/warden/monitrc")
        let service = try #require(result.configuration?.services.first)
        #expect(service.every == .notCron(try CronSchedule("* 8-19 * * 1-5")))
    }

    @Test func everyErrorIsReportedNotJustTheFirst() {
        let result = ControlFile.parse(
            """
            set deamon 10
            check process a with pidfil /run/a.pid
            check process b with pidfile /run/b.pid
              start program = "/bin/true"
              if cpu > 90% then reboot
              depends on c
            """)
        let ids = result.diagnostics.errors.map(\.id)
        #expect(ids == [.unknownStatement, .syntax, .syntax, .unknownDependency])
        let lines = result.diagnostics.errors.compactMap(\.location?.line)
        #expect(lines == [1, 2, 5, 6])
        #expect(result.diagnostics[0].hint == "did you mean 'daemon'?")
        #expect(result.diagnostics.errors[1].hint == "did you mean 'pidfile'?")
    }

    @Test func duplicateServiceNamesPointAtTheFirstDefinition() throws {
        let result = ControlFile.parse(
            """
            check process app with pidfile /run/a.pid
              start program = "/bin/true"
            check process app with pidfile /run/b.pid
              start program = "/bin/true"
            """, path: "x.rc")
        let error = try #require(result.diagnostics.errors.first)
        #expect(error.id == .duplicateService)
        #expect(error.location == FileLocation(file: "x.rc", line: 3, column: 15))
        #expect(error.notes.first?.location == FileLocation(file: "x.rc", line: 1, column: 15))
        #expect(result.renderedDiagnostics().contains("x.rc:1:15: note: first defined here"))
    }

    @Test func dependencyCycleAndUnknownDependency() {
        let result = ControlFile.parse(
            """
            check process a with pidfile /run/a.pid
              start program = "/bin/true"
              depends on b
            check process b with pidfile /run/b.pid
              start program = "/bin/true"
              depends on a, ghost
            """)
        #expect(result.diagnostics.errors.map(\.id).sorted { $0.rawValue < $1.rawValue } == [.dependencyCycle, .unknownDependency])
        #expect(result.renderedDiagnostics().contains("dependency cycle: a -> b -> a"))
    }

    @Test func semanticChecks() {
        let result = ControlFile.parse(
            """
            check process a matching "a(b"
            check host h with address localhost
              if failed port 0 then alert
            check process c with pidfile /run/c.pid
              start program = "/bin/true"
              if 9 restarts within 3 cycles then timeout
            """)
        #expect(result.diagnostics.errors.map(\.id) == [.invalidRegex, .portOutOfRange, .restartWindow])
    }

    @Test func missingStartProgramIsAWarning() throws {
        let result = ControlFile.parse("check process lonely with pidfile /run/lonely.pid\n")
        #expect(!result.diagnostics.hasErrors)
        #expect(result.diagnostics.map(\.id) == [.missingStartProgram])
        #expect(result.configuration != nil)
    }

    @Test func errorsInIncludedFilesNameTheIncludeLine() throws {
        let directory = try TemporaryDirectory()
        let included = try directory.write("conf.d/web", "check process web with pidfile /run/web.pid\n  stat program = \"/bin/true\"\n")
        let main = try directory.write("wardenrc", "set daemon 5\n\ninclude conf.d/*\n")
        let result = ControlFile.load(main, checkPermissions: false)
        let error = try #require(result.diagnostics.errors.first)
        #expect(error.location?.file == included)
        #expect(error.location?.line == 2)
        #expect(error.notes.map(\.location) == [FileLocation(file: main, line: 3, column: 1)])
        #expect(result.renderedDiagnostics().contains("\(main):3:1: note: included from here"))
    }

    @Test func includeCycleIsReported() throws {
        let directory = try TemporaryDirectory()
        try directory.write("b", "include a\n")
        let a = try directory.write("a", "include b\n")
        let result = ControlFile.load(a, checkPermissions: false)
        #expect(result.diagnostics.errors.map(\.id) == [.includeCycle])
    }

    @Test func controlFileWithCredentialsMustNotBeReadableByOthers() throws {
        let directory = try TemporaryDirectory()
        let open = try directory.write("open.rc", "set httpd port 2812 allow admin:monit\n", mode: 0o644)
        let result = ControlFile.load(open)
        let error = try #require(result.diagnostics.errors.first)
        #expect(error.id == .insecurePermissions)
        #expect(error.hint == "run 'chmod 600 \(open)'")
        let closed = try directory.write("closed.rc", "set httpd port 2812 allow admin:monit\n", mode: 0o600)
        #expect(!ControlFile.load(closed).diagnostics.hasErrors)
        // Without credentials a readable file is fine (monit refuses it anyway; warden need not).
        let harmless = try directory.write("harmless.rc", "set daemon 10\n", mode: 0o644)
        #expect(!ControlFile.load(harmless).diagnostics.hasErrors)
    }

    @Test func chapterAlertBeforeCheckIsBoundToTheFollowingCheckWithAWarning() throws {
        let result = ControlFile.parse(
            """
            alert me@example.com
            check process myapp with pidfile /var/run/myapp.pid
            start program = "/etc/init.d/myapp start"
            """)
        #expect(!result.diagnostics.hasErrors)
        let warning = try #require(result.diagnostics.first { $0.id == .alertBeforeCheck })
        #expect(warning.message.contains("binds it to 'myapp'"))
        #expect(result.configuration?.service(named: "myapp")?.alerts.map(\.address) == ["me@example.com"])
    }

    @Test func alertBeforeCheckInAnIncludedFileDoesNotGoToThePreviousService() throws {
        // monit would give this alert to 'first', defined in the main file before the include.
        let directory = try TemporaryDirectory()
        try directory.write("conf.d/myapp", "alert me@example.com\ncheck process myapp with pidfile /run/myapp.pid\n  start program = \"/bin/true\"\n")
        let main = try directory.write(
            "wardenrc", "check process first with pidfile /run/first.pid\n  start program = \"/bin/true\"\ninclude conf.d/*\n")
        let result = ControlFile.load(main, checkPermissions: false)
        let config = try #require(result.configuration)
        #expect(config.service(named: "first")?.alerts.isEmpty == true)
        #expect(config.service(named: "myapp")?.alerts.map(\.address) == ["me@example.com"])
        #expect(result.diagnostics.contains { $0.id == .alertBeforeCheck })
    }

    @Test func alertWithNoServiceAnywhereIsAnError() {
        let result = ControlFile.parse("alert me@example.com\n")
        #expect(result.diagnostics.errors.map(\.id) == [.statementOutsideService])
        #expect(result.diagnostics.errors.first?.hint == "write 'set alert me@example.com' to alert on every service")
    }

    @Test func unterminatedStringAndUnbalancedParenthesis() {
        let result = ControlFile.parse(
            """
            check process a with pidfile /run/a.pid
              start program = "/bin/true
              if failed (url http://localhost/ then restart
              if failed url http://localhost/) then restart
            """)
        #expect(result.diagnostics.errors.map(\.id) == [.unterminatedString, .unbalancedParenthesis, .unbalancedParenthesis])
    }
}
