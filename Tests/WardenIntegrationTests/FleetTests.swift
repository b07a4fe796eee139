import Foundation
import Testing
import WardenTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// examples/fleet/ for real: three warden daemons scraped by Debian's Prometheus, its alerts routed by
/// Debian's Alertmanager to a webhook receiver, and warden's own alertmanager channel beside it.
@Suite("Fleet: Prometheus and Alertmanager", .serialized)
struct FleetTests {
    static let examples = TestSupport.packageRoot + "/examples/fleet"

    /// promtool, prometheus and alertmanager from Debian (`prometheus`, `prometheus-alertmanager`).
    func tools() -> (promtool: String, prometheus: String, alertmanager: String, amtool: String)? {
        if let promtool = TestSupport.peer("promtool"), let prometheus = TestSupport.peer("prometheus"),
            let alertmanager = TestSupport.peer("prometheus-alertmanager", candidates: ["/usr/bin/alertmanager"]),
            let amtool = TestSupport.peer("amtool")
        {
            return (promtool, prometheus, alertmanager, amtool)
        }
        #expect(!TestSupport.isCI, "prometheus and prometheus-alertmanager are not installed (.ci/run installs them)")
        return nil
    }

    @Test func examplesPassPromtoolAndAmtool() throws {
        guard let tools = tools() else { return }
        let rules = try TestSupport.run(tools.promtool, ["check", "rules", Self.examples + "/warden-rules.yml"])
        #expect(rules.status == 0, "\(rules.stdout)\(rules.stderr)")
        let unit = try TestSupport.run(tools.promtool, ["test", "rules", "warden-rules-test.yml"], currentDirectory: Self.examples)
        #expect(unit.status == 0 && unit.stdout.contains("SUCCESS"), "\(unit.stdout)\(unit.stderr)")
        let config = try TestSupport.run(tools.promtool, ["check", "config", "prometheus.yml"], currentDirectory: Self.examples)
        #expect(config.status == 0, "\(config.stdout)\(config.stderr)")
        let routing = try TestSupport.run(tools.amtool, ["check-config", Self.examples + "/alertmanager.yml"])
        #expect(routing.status == 0, "\(routing.stdout)\(routing.stderr)")
    }

    /// The metrics listener keeps its own allow-list: a client it does not name gets no answer, while
    /// the dashboard (allowing 127.0.0.1) still serves it.
    @Test func metricsListenerRefusesClientsItsAllowListDoesNotName() throws {
        let directory = try TemporaryDirectory()
        let metricsPort = TestSupport.freePort()
        let dashboardPort = TestSupport.freePort()
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set httpd port \(dashboardPort) and use address 127.0.0.1
                allow 127.0.0.1
            set metrics listen 127.0.0.1 port \(metricsPort) allow 10.9.9.9
            check file hosts with path /etc/hosts
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(TestSupport.waitUntil(timeout: 20) { TestSupport.httpGet(port: dashboardPort, path: "/metrics")?.status == 200 }, "\(warden.log)")
        #expect(TestSupport.portOpen(metricsPort), "it listens")
        #expect(TestSupport.httpGet(port: metricsPort, path: "/metrics") == nil, "but answers no one outside its list")
        #expect(warden.waitForLog("access denied -- client [127.0.0.1]: host not allowed"), "\(warden.log)")
    }

    /// JSON from a GET on 127.0.0.1, or nil.
    func json(_ port: Int, _ path: String) -> Any? {
        guard let response = TestSupport.httpGet(port: port, path: path, timeout: 5), response.status == 200 else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(response.body.utf8))
    }

    /// One warden host: its own directory, control file, state, metrics listener and dashboard.
    struct Host {
        let name: String
        let directory: TemporaryDirectory
        let app: TestApp
        let metricsPort: Int
        let dashboardPort: Int
        let warden: WardenProcess
        /// While this file is missing the app's start program fails, so a killed app stays down.
        var startAllowed: String { directory.path + "/start-allowed" }

        init(name: String, extra: String = "") throws {
            self.name = name
            directory = try TemporaryDirectory("warden-\(name)")
            app = try TestApp(in: directory)
            metricsPort = TestSupport.freePort()
            dashboardPort = TestSupport.freePort()
            let guarded = try directory.write(
                "guarded-start.sh", "#!/bin/sh\n[ -f \(directory.path)/start-allowed ] || { echo 'start refused' >&2; exit 1; }\nexec \(app.startScript)\n",
                mode: 0o755)
            _ = FileManager.default.createFile(atPath: directory.path + "/start-allowed", contents: nil)
            let rc = try directory.write(
                "wardenrc",
                """
                set daemon 1
                set pidfile \(directory.path)/warden.pid
                set statefile \(directory.path)/state
                set eventqueue basedir \(directory.path)/queue
                set httpd port \(dashboardPort) and use address 127.0.0.1
                    allow admin:secret
                set metrics listen 127.0.0.1 port \(metricsPort) allow 127.0.0.1
                \(extra)
                check process app with pidfile \(app.pidfile)
                  start program = "\(guarded)"
                  stop program = "\(app.stopScript)"
                  if failed port \(app.port) protocol http request "/ping" then restart
                  restart delay 1 second to 60 seconds reset after 2 seconds
                """)
            warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        }

        func stop() {
            warden.stop()
            app.killAll()
        }
    }

    @Test func threeHostsScrapedAndAServiceDownAlertReachesTheWebhook() throws {
        guard let tools = tools() else { return }
        let directory = try TemporaryDirectory("fleet")
        let receiver = try WebhookReceiver(directory: directory, name: "alertmanager-webhook")
        defer { receiver.stop() }
        let alertmanagerPort = TestSupport.freePort()
        let prometheusPort = TestSupport.freePort()

        // Alertmanager with the example's routing, sped up and pointed at the receiver.
        let routing = try String(contentsOfFile: Self.examples + "/alertmanager.yml", encoding: .utf8)
            .replacingOccurrences(of: "http://127.0.0.1:5001/alerts", with: "http://127.0.0.1:\(receiver.port)/alerts")
            .replacingOccurrences(of: "group_wait: 30s", with: "group_wait: 1s")
            .replacingOccurrences(of: "group_interval: 5m", with: "group_interval: 1s")
        let amConfig = try directory.write("alertmanager.yml", routing)
        let alertmanager = try Peer(
            tools.alertmanager,
            [
                "--config.file=\(amConfig)", "--storage.path=\(directory.path)/am-data",
                "--web.listen-address=127.0.0.1:\(alertmanagerPort)", "--cluster.listen-address=",
            ], log: directory.path + "/alertmanager.log")
        defer { alertmanager.stop() }
        #expect(TestSupport.waitUntil(timeout: 30) { TestSupport.httpGet(port: alertmanagerPort, path: "/-/ready")?.status == 200 }, "\(alertmanager.output)")

        // Three hosts; host3 also posts its events to Alertmanager itself.
        var hosts: [Host] = []
        defer { for host in hosts { host.stop() } }
        for name in ["host1", "host2", "host3"] {
            hosts.append(try Host(name: name, extra: name == "host3" ? "set alert alertmanager \"http://127.0.0.1:\(alertmanagerPort)\"" : ""))
        }

        // Prometheus with the example's rules (their `for` shortened) scraping the three every second.
        let rules = try String(contentsOfFile: Self.examples + "/warden-rules.yml", encoding: .utf8)
            .replacing(/for: \d+m/, with: "for: 1s")
        try directory.write("warden-rules.yml", rules)
        let targets = hosts.map { "      - targets: [\"127.0.0.1:\($0.metricsPort)\"]\n        labels: { host: \($0.name) }" }.joined(separator: "\n")
        let promConfig = try directory.write(
            "prometheus.yml",
            """
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            rule_files: [warden-rules.yml]
            alerting:
              alertmanagers:
                - static_configs:
                    - targets: ["127.0.0.1:\(alertmanagerPort)"]
            scrape_configs:
              - job_name: warden
                static_configs:
            \(targets)
            """)
        let prometheus = try Peer(
            tools.prometheus,
            [
                "--config.file=\(promConfig)", "--storage.tsdb.path=\(directory.path)/prom-data",
                "--web.listen-address=127.0.0.1:\(prometheusPort)",
            ], log: directory.path + "/prometheus.log")
        defer { prometheus.stop() }

        for host in hosts {
            #expect(TestSupport.waitUntil(timeout: 30) { host.app.isServing }, "\(host.name): \(host.warden.log)")
        }

        // The metrics listener needs no password; the dashboard's /metrics still does.
        let running = "warden_service_state{service=\"app\",state=\"running\"} 1"
        #expect(
            TestSupport.waitUntil(timeout: 20) { TestSupport.httpGet(port: hosts[0].metricsPort, path: "/metrics")?.body.contains(running) == true },
            "\(TestSupport.httpGet(port: hosts[0].metricsPort, path: "/metrics")?.body ?? "no answer")")
        // The start was timed, and the port check lands in the latency histogram.
        func value(_ line: String) -> Double? {
            let body = TestSupport.httpGet(port: hosts[0].metricsPort, path: "/metrics")?.body ?? ""
            return body.split(separator: "\n").first { $0.hasPrefix(line + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
        }
        let started = value("warden_service_start_duration_seconds{service=\"app\"}") ?? 0
        #expect(started > 0 && started < 30, "\(started)")
        #expect(TestSupport.waitUntil(timeout: 20) { (value("warden_service_check_duration_seconds_count{service=\"app\"}") ?? 0) >= 2 })
        #expect(TestSupport.httpGet(port: hosts[0].metricsPort, path: "/")?.status == 404, "the listener serves /metrics only")
        #expect(TestSupport.httpGet(port: hosts[0].dashboardPort, path: "/metrics")?.status == 401)

        // promtool accepts what a running warden exports.
        for host in hosts {
            let exposition = try #require(TestSupport.httpGet(port: host.metricsPort, path: "/metrics")?.body)
            let check = try TestSupport.run(tools.promtool, ["check", "metrics"], input: exposition)
            #expect(check.status == 0, "\(host.name): \(check.stdout)\(check.stderr)\n\(exposition)")
        }

        // Prometheus scrapes all three.
        #expect(
            TestSupport.waitUntil(timeout: 60) {
                let targets = ((json(prometheusPort, "/api/v1/targets") as? [String: Any])?["data"] as? [String: Any])?["activeTargets"] as? [[String: Any]] ?? []
                return targets.count == 3 && targets.allSatisfy { $0["health"] as? String == "up" }
            }, "\(prometheus.output)")

        // Every query of the Grafana dashboard is valid PromQL.
        let dashboard = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.examples + "/grafana-dashboard.json"))) as? [String: Any])
        let expressions = (dashboard["panels"] as? [[String: Any]] ?? []).flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
        #expect(expressions.count >= 10)
        for expression in expressions {
            let query = expression.replacingOccurrences(of: "$host", with: ".*")
            let encoded = query.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
            let answer = json(prometheusPort, "/api/v1/query?query=\(encoded)") as? [String: Any]
            #expect(answer?["status"] as? String == "success", "\(query)")
        }

        // host2's app is killed and cannot start again.
        let host2 = hosts[1]
        unlink(host2.startAllowed)
        kill(try #require(host2.app.pid), SIGKILL)
        func alertmanagerAlerts() -> [[String: Any]] { json(alertmanagerPort, "/api/v2/alerts") as? [[String: Any]] ?? [] }
        func labels(_ alert: [String: Any]) -> [String: String] { alert["labels"] as? [String: String] ?? [:] }
        #expect(
            TestSupport.waitUntil(timeout: 60) {
                alertmanagerAlerts().contains { labels($0)["alertname"] == "WardenServiceDown" && labels($0)["host"] == "host2" && labels($0)["service"] == "app" }
            }, "\(alertmanager.output)\n\(host2.warden.log)")
        let notified = {
            receiver.documents.contains { document in
                (document["alerts"] as? [[String: Any]] ?? []).contains { labels($0)["alertname"] == "WardenServiceDown" && labels($0)["host"] == "host2" }
            }
        }
        #expect(TestSupport.waitUntil(timeout: 60, notified), "\(alertmanager.output)")
        let host2Metrics = TestSupport.httpGet(port: host2.metricsPort, path: "/metrics")?.body ?? ""
        #expect(host2Metrics.contains("warden_service_restarts_by_cause_total{service=\"app\",cause=\"crash\"} "), "\(host2Metrics)")
        #expect(!host2Metrics.contains("warden_service_state{service=\"app\",state=\"running\"} 1"), "\(host2Metrics)")
        let others = alertmanagerAlerts().filter { labels($0)["alertname"] == "WardenServiceDown" && labels($0)["host"] != "host2" }
        #expect(others.isEmpty, "only host2 is down: \(others)")

        // host3 posts to Alertmanager directly: its app killed, the failure fires; back up, it resolves.
        let host3 = hosts[2]
        unlink(host3.startAllowed)
        kill(try #require(host3.app.pid), SIGKILL)
        func direct(_ status: String) -> Bool {
            receiver.documents.contains { document in
                (document["alerts"] as? [[String: Any]] ?? []).contains {
                    labels($0)["alertname"] == "WardenNonexist" && labels($0)["service"] == "app" && $0["status"] as? String == status
                }
            }
        }
        #expect(TestSupport.waitUntil(timeout: 60) { direct("firing") }, "\(host3.warden.log)")
        _ = FileManager.default.createFile(atPath: host3.startAllowed, contents: nil)
        #expect(TestSupport.waitUntil(timeout: 60) { direct("resolved") }, "\(host3.warden.log)")
        #expect(!host3.warden.log.contains("cannot post to alertmanager"), "\(host3.warden.log)")
    }
}
