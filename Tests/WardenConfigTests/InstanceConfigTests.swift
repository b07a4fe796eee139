import Testing

@testable import WardenConfig

/// `instances N ports A-B`, `$PORT`, deploy and drain timeouts, and sites passing to a service's instances.
@Suite("Instances in the control file")
struct InstanceConfigTests {
    func parse(_ text: String) -> LoadResult { ControlFile.parse(text, path: "test.rc") }

    static let service = """
        check process myapp with pidfile /run/myapp.$PORT.pid
            instances 3 ports 8080-8085
            start program = "/app/start --port $PORT --instance $INSTANCE"
            stop program = "/app/stop $PORT"
            if failed url http://127.0.0.1:$PORT/ping then restart
            if failed port $PORT then alert
            deploy timeout 20 seconds
            drain timeout 5 seconds
        check site myapp with host "example.com"
            pass / to service myapp
            balance sticky cookie SESSION
        """

    @Test func instancesAreParsedAndEachGetsItsPort() throws {
        let result = parse(Self.service)
        #expect(!result.diagnostics.hasErrors, "\(result.renderedDiagnostics())")
        let configuration = try #require(result.configuration)
        let service = try #require(configuration.service(named: "myapp"))
        #expect(service.instances?.count == 3)
        #expect(service.instances?.ports == 8080...8085)
        #expect(service.deployTimeout == .seconds(20))
        #expect(service.drainTimeout == .seconds(5))
        #expect(configuration.sites.first?.routes.first?.target == .instances(service: "myapp"))
        #expect(configuration.sites.first?.balance == .stickyCookie("SESSION"))

        let second = service.instance(1, port: 8084)
        #expect(second.name == "myapp@8084")
        #expect(second.instanceOf == InstanceIdentity(group: "myapp", index: 1, port: 8084))
        #expect(second.kind == .process(.pidfile("/run/myapp.8084.pid")))
        #expect(second.start?.arguments == ["/app/start", "--port", "8084", "--instance", "1"])
        #expect(second.stop?.arguments == ["/app/stop", "8084"])
        let targets = second.rules.compactMap { rule -> ConnectionTest.Target? in
            if case .connection(let test) = rule.condition { test.target } else { nil }
        }
        #expect(targets.count == 2)
        #expect(targets.contains { if case .url(let url) = $0 { url.port == 8084 } else { false } })
        #expect(targets.contains { if case .port(_, 8084, _) = $0 { true } else { false } })
    }

    @Test func anInstanceWithoutAConnectionTestIsTestedOnItsPort() throws {
        let configuration = try #require(
            parse(
                """
                check process app with pidfile /run/app.$PORT.pid
                    instances 1 ports 9000-9001
                    start program = "/app/start $PORT"
                """
            ).configuration)
        let instance = try #require(configuration.service(named: "app")).instance(0, port: 9001)
        guard case .connection(let test)? = instance.rules.first?.condition, case .port("127.0.0.1", 9001, .tcp) = test.target else {
            Issue.record("expected a test of port 9001, got \(instance.rules)")
            return
        }
    }

    @Test func mistakesAreReportedWhereTheyAre() {
        func error(_ text: String) -> String { parse(text).renderedDiagnostics() }
        #expect(
            error("check process a with pidfile /run/a.$PORT.pid\n    instances 3 ports 8080-8084\n")
                .contains("test.rc:2:23: error: 3 instances need at least 6 ports (5 given): a deploy starts the new instances beside the old ones"))
        #expect(
            error("check process a with pidfile /run/a.pid\n    instances 2 ports 8080-8083\n")
                .contains("test.rc:1:15: error: 'a' runs 2 instances: its pidfile (or pattern) must contain $PORT"))
        #expect(
            error("check process a with pidfile /run/a.pid\n    if failed port $PORT then alert\n")
                .contains("error: 'a' uses $PORT but runs one process"))
        #expect(
            error("check process a with pidfile /run/a.pid\ncheck site s with host \"x\"\n    pass / to service a\n")
                .contains("error: site 's' passes / to service 'a', which has no 'instances … ports …'"))
        #expect(error("check file f with path /tmp/f\n    instances 1 ports 1-2\n").contains("error: 'instances' applies to 'check process' only"))
        #expect(error("check site s with host \"x\"\n    balance sticky cookie \"a b\"\n").contains("error: 'a b' cannot be a cookie name"))
    }
}
