import Foundation
import Testing
import WardenTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The proxy's metrics in the real binary's `/metrics`: requests of several statuses and methods, a
/// refused upstream, maintenance answers and a held request, counted exactly, with the proxy in the
/// daemon and in a privilege-dropped worker (root only), whose counts survive its SIGKILL.
@Suite("Proxy metrics in /metrics", .serialized)
struct ProxyMetricsIntegrationTests {
    /// What the test's clients saw, by series: the counts `/metrics` must show.
    struct Tally {
        var requests: [String: Int] = [:]

        mutating func add(site: String, service: String = "", status: Int, method: String = "GET") {
            requests[Self.series(site: site, service: service) + ",code_class=\"\(status / 100)xx\",method=\"\(method)\"", default: 0] += 1
        }

        static func series(site: String, service: String = "") -> String {
            "site=\"\(site)\",route=\"/\"" + (service.isEmpty ? "" : ",service=\"\(service)\"")
        }

        func count(site: String) -> Int {
            requests.filter { $0.key.hasPrefix(Self.series(site: site)) }.values.reduce(0, +)
        }
    }

    /// The value of one sample, by its whole name and labels.
    func value(_ text: String, _ sample: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(sample + " ") }.flatMap { Double($0.dropFirst(sample.count + 1)) }
    }

    func cli(_ rc: String, _ arguments: [String]) throws {
        let result = try TestSupport.run(TestSupport.wardenBinary, ["-c", rc] + arguments)
        #expect(result.status == 0, "\(arguments): \(result.stdout)\(result.stderr)")
    }

    @Test(arguments: [false, true]) func requestsHoldsMaintenanceAndErrorsAreCountedExactly(inWorker: Bool) throws {
        guard let promtool = TestSupport.peer("promtool") else {
            #expect(!TestSupport.isCI, "promtool is not installed (Debian's prometheus; .ci/run installs it)")
            return
        }
        guard !inWorker || getuid() == 0 else {
            #expect(!TestSupport.isCI, "CI runs as root: the worker's metrics must be tested")
            return
        }
        let directory = try TemporaryDirectory()
        chmod(directory.path, 0o755)
        let upstream = try EchoUpstream(directory: directory)
        defer { upstream.stop() }
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        try directory.write("maintenance.html", "<h1>back soon</h1>\n", mode: 0o644)
        let (port, httpd, refusing) = (TestSupport.freePort(), TestSupport.freePort(), TestSupport.freePort())
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set httpd port \(httpd) and use address 127.0.0.1
                allow 127.0.0.1
            set proxy
                listen 127.0.0.1 port \(port)
                \(inWorker ? "user nobody group nogroup" : "")
            check process app with pidfile \(app.pidfile)
                start program = "\(app.startScript)"
                stop program = "\(app.stopScript)"
            check site echo with host "echo.test"
                pass / to http://127.0.0.1:\(upstream.port)/
            check site app with host "app.test"
                pass / to http://127.0.0.1:\(app.port)/ for service app
                maintenance page \(directory.path)/maintenance.html hold 15 seconds
            check site refused with host "refused.test"
                pass / to http://127.0.0.1:\(refusing)/
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(warden.waitForLog("proxy listening", timeout: 20), "\(warden.log)")
        if inWorker { #expect(warden.waitForLog("proxy worker running as nobody", timeout: 20), "\(warden.log)") }
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing }, "\(warden.log)")
        func scrape() -> String { TestSupport.httpGet(port: httpd, path: "/metrics", timeout: 5)?.body ?? "" }
        // Running, and the proxy told so (the feed's next report), so no request of the count is held but one.
        #expect(TestSupport.waitUntil(timeout: 20) { value(scrape(), "warden_service_up{service=\"app\",type=\"process\"}") == 1 })
        usleep(1_500_000)
        var tally = Tally()
        func get(_ site: String, _ path: String = "/", service: String = "", timeout: Double = 5) -> Int {
            let status = TestSupport.httpGet(port: port, path: path, timeout: timeout, headers: ["Host": "\(site).test"])?.status ?? 0
            tally.add(site: site, service: service, status: status)
            return status
        }
        func curl(_ site: String, _ arguments: [String]) throws -> Int {
            let result = try TestSupport.run(
                "/usr/bin/curl", ["-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: \(site).test"] + arguments + ["http://127.0.0.1:\(port)/"])
            return Int(result.stdout) ?? 0
        }

        // Several statuses and methods, an unknown method among them.
        for path in ["/", "/", "/", "/status=404", "/status=404", "/status=500"] { _ = get("echo", path) }
        #expect(try curl("echo", ["--data", "hello"]) == 200)
        tally.add(site: "echo", status: 200, method: "POST")
        #expect(try curl("echo", ["-X", "PURGE"]) == 501, "the upstream knows no PURGE")
        tally.add(site: "echo", status: 501, method: "other")
        // A refused upstream (no hold on that site): 502.
        #expect(get("refused") == 502)
        // Maintenance from the CLI, until the proxy has it, and off again.
        #expect(get("app", "/ping", service: "app") == 200)
        try cli(rc, ["maintenance", "on", "app"])
        #expect(TestSupport.waitUntil(timeout: 10) { get("app", "/ping", service: "app") == 503 })
        try cli(rc, ["maintenance", "off", "app"])
        #expect(TestSupport.waitUntil(timeout: 10) { get("app", "/ping", service: "app") == 200 })
        // A request held while the app is stopped, answered once it is started again.
        try cli(rc, ["stop", "app"])
        #expect(TestSupport.waitUntil(timeout: 20) { app.instances == 0 }, "\(warden.log)")
        let listener = "warden_proxy_connections_open{listener=\"127.0.0.1:\(port)\"}"
        #expect(TestSupport.waitUntil(timeout: 5) { value(scrape(), listener) == 0 }, "the clients so far have closed")
        let held = Background { TestSupport.httpGet(port: port, path: "/ping", timeout: 20, headers: ["Host": "app.test"])?.status }
        #expect(TestSupport.waitUntil(timeout: 5) { value(scrape(), listener) == 1 }, "the held client is connected")
        usleep(300_000)  // its request has reached the proxy and waits
        try cli(rc, ["start", "app"])
        let heldStatus = held.value(timeout: 20) ?? nil
        #expect(heldStatus == 200, "held, then answered by the app: \(warden.log)")
        tally.add(site: "app", service: "app", status: heldStatus ?? 0)

        func check(_ text: String) {
            for (series, count) in tally.requests {
                #expect(value(text, "warden_proxy_requests_total{\(series)}") == Double(count), "\(series)\n\(text)")
            }
            let app = Tally.series(site: "app", service: "app")
            #expect(value(text, "warden_proxy_request_duration_seconds_count{\(Tally.series(site: "echo"))}") == Double(tally.count(site: "echo")))
            #expect(value(text, "warden_proxy_request_duration_seconds_count{\(app)}") == Double(tally.count(site: "app")))
            #expect(value(text, "warden_proxy_upstream_errors_total{\(Tally.series(site: "refused")),kind=\"refused\"}") == 1)
            #expect(value(text, "warden_proxy_maintenance_responses_total{\(app)}") == Double(tally.requests[app + ",code_class=\"5xx\",method=\"GET\""] ?? -1))
            #expect(value(text, "warden_proxy_hold_duration_seconds_count{\(app)}") == 1, "one request held")
            #expect(value(text, "warden_proxy_hold_duration_seconds_bucket{\(app),le=\"0.25\"}") == 0, "held until the app was back")
            #expect(value(text, "warden_proxy_request_bytes_total{\(Tally.series(site: "echo"))}") == 5, "the POST's body")
            #expect((value(text, "warden_proxy_upstream_reused_connections_total{\(Tally.series(site: "echo"))}") ?? 0) > 0)
            #expect((value(text, "warden_proxy_connections_total{listener=\"127.0.0.1:\(port)\"}") ?? 0) >= Double(tally.requests.values.reduce(0, +)))
        }
        let text = scrape()
        check(text)
        let promtoolCheck = try TestSupport.run(promtool, ["check", "metrics"], input: text)
        #expect(promtoolCheck.status == 0, "\(promtoolCheck.stdout)\(promtoolCheck.stderr)")

        guard inWorker else { return }
        // A worker killed and started again counts from zero; the daemon carries its totals over.
        let worker = try #require(warden.log.firstMatch(of: /proxy worker running as nobody with pid (\d+)/).flatMap { pid_t($0.1) })
        kill(worker, SIGKILL)
        #expect(warden.waitForLog("proxy worker running as nobody", count: 2, timeout: 20), "\(warden.log)")
        #expect(TestSupport.waitUntil(timeout: 10) { get("echo") == 200 }, "the new worker serves")
        check(scrape())
    }
}
