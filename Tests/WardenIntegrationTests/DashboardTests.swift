import Foundation
import Testing
import WardenTestSupport

/// The dashboard in a real browser: the front page with the sites, a service page whose SVG chart
/// draws the recorded history, and the maintenance switch of a site pressed as a person would.
@Suite("Dashboard: history charts, sites and maintenance in a browser", .serialized)
struct DashboardTests {
    struct Setup {
        let directory: TemporaryDirectory
        let app: TestApp
        let port: Int
        let proxyPort: Int
        let warden: WardenProcess
    }

    func start() throws -> Setup {
        let directory = try TemporaryDirectory()
        let app = try TestApp(in: directory)
        let (port, proxyPort) = (TestSupport.freePort(), TestSupport.freePort())
        try directory.write("maintenance.html", "<h1>back soon</h1>\n", mode: 0o644)
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set httpd port \(port) and use address 127.0.0.1
                allow admin:s3cret
                allow guest:guest read-only
            set proxy
                listen 127.0.0.1 port \(proxyPort)
            check process app with pidfile \(app.pidfile)
              start program = "\(app.startScript)"
              stop program = "\(app.stopScript)"
            check site web with host "app.local"
                pass / to http://127.0.0.1:\(app.port)/ for service app
                maintenance page \(directory.path)/maintenance.html
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        #expect(TestSupport.waitUntil(timeout: 20) { app.isServing }, "\(warden.log)")
        #expect(warden.waitForLog("httpd listening", timeout: 10))
        #expect(warden.waitForLog("proxy listening", timeout: 15), "\(warden.log)")
        return Setup(directory: directory, app: app, port: port, proxyPort: proxyPort, warden: warden)
    }

    func curl(_ port: Int, _ path: String, user: String, method: String = "GET", form: String? = nil, headers: [String] = []) throws -> (
        status: Int, body: String
    ) {
        var arguments = ["-s", "-m", "10", "-o", "-", "-w", "\n%{http_code}", "-X", method, "-u", user]
        if let form { arguments += ["-d", form] }
        for header in headers { arguments += ["-H", header] }
        let result = try TestSupport.run("/usr/bin/curl", arguments + ["http://127.0.0.1:\(port)\(path)"])
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    /// The history the service page charts, as `/_history` gives it.
    func history(_ setup: Setup) throws -> (points: [[String: Any]], start: Double) {
        let answer = try curl(setup.port, "/_history?service=app", user: "admin:s3cret")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any], "\(answer)")
        return (document["points"] as? [[String: Any]] ?? [], document["start"] as? Double ?? 0)
    }

    /// Width and height from a PNG's header, nil when the bytes are not a PNG.
    func pngSize(_ path: String) -> (width: Int, height: Int)? {
        guard let data = FileManager.default.contents(atPath: path), data.count > 24,
            Array(data.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], String(decoding: data[12..<16], as: UTF8.self) == "IHDR"
        else { return nil }
        let number = { (offset: Int) in data[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) } }
        return (number(16), number(20))
    }

    /// The points of the polylines of one series in the chart of a page, in order.
    func chartPoints(_ html: String, series: String) -> [(x: Double, y: Double)] {
        let pattern = try! Regex(#"<polyline class="value" data-series="\#(series)" points="([^"]*)""#)
        return html.matches(of: pattern).flatMap { match in
            String(match.output[1].substring ?? "").split(separator: " ").compactMap { pair -> (x: Double, y: Double)? in
                let numbers = pair.split(separator: ",").compactMap { Double($0) }
                return numbers.count == 2 ? (numbers[0], numbers[1]) : nil
            }
        }
    }

    /// The chart draws each recorded value where its time and value put it: x at its time in the
    /// chart's window across the plot (x 70 to 708), y at its value on its panel's axis (80 px from 0
    /// to the panel's `data-scale`, panels 110 px apart from y 22), rounded to 0.1 px.
    func expectDrawn(
        _ drawn: [(x: Double, y: Double)], recorded: [(time: Double, value: Double)], window: (start: Double, end: Double), scale: Double,
        panel: Int, series: String
    ) {
        #expect(drawn.count == recorded.count && drawn.count >= 3, "\(series): \(drawn.count) drawn, \(recorded.count) recorded")
        #expect(recorded.allSatisfy { $0.value <= scale }, "\(series): the axis reaches every value")
        let bottom = 22 + 80 + Double(panel) * 110
        for (point, value) in zip(drawn, recorded) {
            #expect(abs(point.x - (70 + (value.time - window.start) / (window.end - window.start) * 638)) < 0.06, "\(series): x of \(value)")
            #expect(abs(point.y - (bottom - value.value / scale * 80)) < 0.06, "\(series): y of \(value)")
        }
    }

    @Test func chartsSitesAndMaintenanceInARealBrowser() throws {
        guard Browser.chromium != nil, Browser.driverAvailable else {
            #expect(!TestSupport.isCI, "chromium or python3-websocket is not installed (.ci/run installs them)")
            return
        }
        let setup = try start()
        defer {
            setup.warden.stop()
            setup.app.killAll()
        }
        // A few cycles of history, CPU and memory known (CPU needs two samples of the process).
        #expect(TestSupport.waitUntil(timeout: 20) { ((try? history(setup))?.points.filter { $0["cpu"] != nil }.count ?? 0) >= 5 })
        let output = "/tmp/warden-dashboard-\(getpid())"
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        let (front, page) = (output + "/front.png", output + "/service.png")
        let viewport = (width: 1200, height: 1500)
        let session = try Browser.session(
            port: setup.port, user: "admin", password: "s3cret",
            steps: [.dom, .screenshot(front), .navigate("/app"), .dom, .screenshot(page), .navigate("/"), .click("#site-web button[value=maintenance-on]"), .dom],
            viewport: viewport)
        let recorded = try history(setup)
        #expect(session.error == nil, "\(session.error ?? "") \(session.output.suffix(500))")
        #expect(session.authChallenges >= 1, "the browser answered the 401 challenge itself")
        try #require(session.doms.count == 3, "\(session.doms.count) pages read")

        // The front page lists the site beside the services: its host, where it sends, maintenance off.
        let dashboard = session.doms[0]
        #expect(dashboard.contains("id=\"service-app\""))
        let site = try #require(dashboard.firstRange(of: "<tr id=\"site-web\">").map { String(dashboard[$0.lowerBound...].prefix(1200)) })
        #expect(site.contains("app.local") && site.contains("data-maintenance=\"off\""), "\(site)")
        #expect(site.contains("<a href=\"/app\">app</a>: http://127.0.0.1:\(setup.app.port)/"), "\(site)")
        for path in [front, page] {
            let size = pngSize(path)
            #expect(size?.width == viewport.width && size?.height == viewport.height, "\(path): \(String(describing: size))")
        }

        // The service page's chart: every recorded point of the page's time, where it belongs.
        let service = session.doms[1]
        #expect(service.contains("role=\"img\"") && service.contains("<title id=\"history-title\">CPU, memory and check latency of 'app'</title>"))
        let shown = try #require(
            service.firstMatch(of: try Regex(#"UTC, (\d+) points?"#)).flatMap { Int(String($0.output[1].substring ?? "")) }, "the caption counts the points")
        #expect(recorded.points.count >= shown && shown >= 5, "\(recorded.points.count) recorded, \(shown) on the page")
        let bounds = try #require(service.firstMatch(of: try Regex(#"data-start="([0-9.]+)" data-end="([0-9.]+)""#)), "the chart's window")
        let window = (start: Double(String(bounds.output[1].substring ?? "")) ?? 0, end: Double(String(bounds.output[2].substring ?? "")) ?? 0)
        #expect(window.start < window.end && window.end - window.start <= 3600)
        for (panel, series) in ["cpu", "memory", "check"].enumerated() {
            let scale = try #require(
                service.firstMatch(of: try Regex(#"data-series="\#(series)" data-scale="([0-9.e+-]+)""#)).flatMap {
                    Double(String($0.output[1].substring ?? ""))
                }, "\(series)'s axis")
            let values = recorded.points.prefix(shown).compactMap { point -> (time: Double, value: Double)? in
                guard let time = point["time"] as? Double, let value = point[series] as? Double else { return nil }
                return (time, value)
            }
            expectDrawn(chartPoints(service, series: series), recorded: values, window: window, scale: scale, panel: panel, series: series)
        }

        // The maintenance button: the form's POST, back on the front page, the site in maintenance.
        let base = "http://127.0.0.1:\(setup.port)"
        #expect(session.clicks == ["clicked"], "the button is in the site's row")
        #expect(session.requests.contains("POST \(base)/_maintenance"), "\(session.requests)")
        #expect(session.doms[2].contains("data-maintenance=\"on\""), "the front page shows it on")
        let during = TestSupport.httpGet(port: setup.proxyPort, path: "/ping", headers: ["Host": "app.local"])
        #expect(during?.status == 503 && during?.body.contains("back soon") == true, "the site answers with its maintenance page: \(String(describing: during))")
        #expect(setup.warden.log.contains("'web' maintenance on requested by admin"), "\(setup.warden.log)")

        // A read-only user gets no button, and is refused if it posts anyway.
        let guestPage = try curl(setup.port, "/", user: "guest:guest")
        #expect(guestPage.status == 200 && guestPage.body.contains("id=\"site-web\"") && !guestPage.body.contains("action=\"/_maintenance\""))
        let refused = try curl(
            setup.port, "/_maintenance", user: "guest:guest", method: "POST", form: "site=web&action=off", headers: ["X-Requested-By: warden-cli"])
        #expect(refused.status == 403)
        #expect(try curl(setup.port, "/_maintenance", user: "admin:s3cret", method: "POST", form: "site=web&action=off").status == 403, "no CSRF token")

        // And off again from the browser.
        let off = try Browser.session(
            port: setup.port, user: "admin", password: "s3cret", steps: [.click("#site-web button[value=maintenance-off]"), .dom])
        #expect(off.error == nil && off.clicks == ["clicked"], "\(off.error ?? "") \(off.clicks)")
        #expect(off.doms.last?.contains("data-maintenance=\"off\"") == true)
        #expect(TestSupport.waitUntil(timeout: 5) { TestSupport.httpGet(port: setup.proxyPort, path: "/ping", headers: ["Host": "app.local"])?.body == "pong" })

        // The per-service metrics of the same checks: every check in the latency histogram, promtool-clean.
        let metrics = try curl(setup.port, "/metrics", user: "admin:s3cret").body
        let counted = metrics.split(separator: "\n").first { $0.hasPrefix("warden_service_check_duration_seconds_count{service=\"app\"} ") }
        #expect((counted?.split(separator: " ").last).flatMap { Int($0) } ?? 0 >= shown, "\(metrics)")
        #expect(metrics.contains("warden_service_state{service=\"app\",state=\"running\"} 1"))
        guard let promtool = TestSupport.peer("promtool") else {
            #expect(!TestSupport.isCI, "promtool is not installed (.ci/run installs prometheus)")
            return
        }
        let check = try TestSupport.run(promtool, ["check", "metrics"], input: metrics)
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
    }
}
