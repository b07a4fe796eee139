import Foundation
import Testing
import WardenConfig
import WardenCore
import WardenTestSupport
@testable import WardenHTTP

@Suite("Metrics: per-service instruments")
struct MetricsTests {
    @Test func stateIsOneOfFive() throws {
        #expect(ServiceState(try snapshot()) == .running)
        #expect(ServiceState(try snapshot(failures: ["nonexist"])) == .failed)
        #expect(ServiceState(try snapshot(failures: ["nonexist"], busy: true)) == .starting)
        #expect(ServiceState(try snapshot(monitor: "initializing")) == .starting)
        #expect(ServiceState(try snapshot(failures: ["exec"], backingOff: true)) == .backingOff)
        #expect(ServiceState(try snapshot(monitor: "notMonitored", failures: ["nonexist"])) == .unmonitored)
    }

    @Test func restartCausesComeFromTheEvents() {
        func cause(_ kind: EventKind, _ state: Event.State, _ action: String) -> RestartCause? {
            RestartCause(Event(service: "app", kind: kind, state: state, message: "", action: action))
        }
        #expect(cause(.nonexist, .failed, "restart") == .crash)
        #expect(cause(.connection, .failed, "restart") == .check)
        #expect(cause(.action, .changed, "restart") == .user)
        #expect(cause(.action, .changed, "deploy") == .deploy, "a deploy's start")
        #expect(cause(.action, .succeeded, "deploy") == nil, "its end is not a second restart")
        #expect(cause(.nonexist, .failed, "alert") == nil, "not restarted")
        #expect(cause(.action, .changed, "stop") == nil)
        #expect(cause(.nonexist, .succeeded, "alert") == nil)
    }

    @Test func eachCheckIsCountedOnceHoweverOftenItIsRead() throws {
        let exporter = MetricsExporter()
        exporter.observe([try snapshot(lastCheck: 100, checkSeconds: 0.004)])
        exporter.observe([try snapshot(lastCheck: 100, checkSeconds: 0.004)])
        exporter.observe([try snapshot(busy: true, lastCheck: 101, checkSeconds: 0.004)])
        exporter.observe([try snapshot(lastCheck: 101, checkSeconds: 0.2, startSeconds: 1.5)])
        exporter.record(Event(service: "app", kind: .nonexist, state: .failed, message: "", action: "restart"))
        let text = exporter.exposition([])
        #expect(text.contains("warden_service_check_duration_seconds_count{service=\"app\"} 2"), "\(text)")
        #expect(text.contains("warden_service_check_duration_seconds_bucket{service=\"app\",le=\"0.005\"} 1"), "\(text)")
        #expect(text.contains("warden_service_state{service=\"app\",state=\"running\"} 1"))
        #expect(text.contains("warden_service_state{service=\"app\",state=\"failed\"} 0"))
        #expect(text.contains("warden_service_start_duration_seconds{service=\"app\"} 1.5"))
        #expect(text.contains("warden_service_restarts_by_cause_total{service=\"app\",cause=\"crash\"} 1"))
        let types = text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] }
        let helps = Set(text.split(separator: "\n").filter { $0.hasPrefix("# HELP ") }.map { $0.split(separator: " ")[2] })
        #expect(!types.isEmpty && types.allSatisfy(helps.contains), "every metric has a help text")
    }

    /// The supervised process's last exit (the reaper's status: -N for signal N), else `check program`'s.
    @Test func lastExitStatusIsTheProcessesOrTheProgramOfItsCheck() throws {
        let exporter = MetricsExporter()
        exporter.observe([
            try snapshot(exitStatus: -9), try snapshot(name: "job", programStatus: 3), try snapshot(name: "quiet"),
        ])
        let text = exporter.exposition([])
        #expect(text.contains("warden_service_last_exit_status{service=\"app\"} -9"), "\(text)")
        #expect(text.contains("warden_service_last_exit_status{service=\"job\"} 3"), "\(text)")
        #expect(!text.contains("warden_service_last_exit_status{service=\"quiet\"}"), "none before an exit was seen")
    }

    /// Every family of `/metrics`, the services' and the proxy's, as Prometheus's own checker reads them.
    @Test func promtoolAcceptsTheWholeExposition() throws {
        guard let promtool = TestSupport.peer("promtool") else {
            #expect(!TestSupport.isCI, "promtool is not installed (.ci/run installs prometheus)")
            return
        }
        let board = ProxyMetricsBoard(source: nil)
        var counters = ProxySeriesCounters()
        counters.requests[ProxySeriesCounters.requestIndex(status: 502, method: 0)] = 2
        counters.duration.record(nanoseconds: 3_000_000)
        counters.duration.record(nanoseconds: 400_000_000)
        var proxy = ProxyMetricsSnapshot()
        proxy.series[ProxySeriesKey(site: "web", route: "/", service: "app")] = counters
        board.record(proxy, monotonic: 0, wall: 1_800_000_000)
        let exporter = MetricsExporter(proxy: board)
        exporter.record(Event(service: "app", kind: .nonexist, state: .failed, message: "", action: "restart"))
        exporter.record(Event(service: "app", kind: .action, state: .changed, message: "", action: "restart"))
        exporter.observe(certificates: [SiteCertificate(site: "web", issuer: "CA", names: ["app.local"], notAfter: 1_900_000_000, source: .acme)])
        let text = exporter.exposition([
            try snapshot(lastCheck: 100, checkSeconds: 0.02, startSeconds: 0.5, exitStatus: -9),
            try snapshot(name: "job", backingOff: true, programStatus: 1),
        ])
        for family in [
            "warden_service_check_duration_seconds_bucket", "warden_service_last_exit_status", "warden_service_restarts_by_cause_total",
            "warden_service_state", "warden_service_start_duration_seconds", "warden_proxy_request_duration_seconds_bucket",
        ] {
            #expect(text.contains("\n\(family){"), "\(family) in \(text)")
        }
        let check = try TestSupport.run(promtool, ["check", "metrics"], input: text)
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)\n\(text)")
    }
}
