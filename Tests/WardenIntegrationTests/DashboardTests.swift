import Foundation
import Testing
import WardenTestSupport

/// The dashboard in a real browser: the front page with the sites and their traffic, a service page
/// whose SVG chart draws the recorded history, a site page whose chart draws the site's, and the
/// maintenance switch pressed as a person would.
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
        let (port, proxyPort, nobody) = (TestSupport.freePort(), TestSupport.freePort(), TestSupport.freePort())
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
                pass /broken to http://127.0.0.1:\(nobody)/
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

    /// The site's history, as `/_history?site=` gives it.
    func siteHistory(_ setup: Setup) throws -> [[String: Any]] {
        let answer = try curl(setup.port, "/_history?site=web", user: "admin:s3cret")
        guard answer.status == 200 else { return [] }
        let document = try #require(try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any], "\(answer)")
        return document["points"] as? [[String: Any]] ?? []
    }

    /// Requests through the proxy in one curl (kept alive): each URL's status.
    func traffic(_ setup: Setup, _ paths: [String]) throws -> [Int] {
        // An `-o` for each URL: curl writes the bodies of the others to its standard output.
        let urls = paths.flatMap { ["-o", "/dev/null", "http://127.0.0.1:\(setup.proxyPort)\($0)"] }
        let result = try TestSupport.run("/usr/bin/curl", ["-s", "-m", "20", "-H", "Host: app.local", "-w", "%{http_code}\\n"] + urls, timeout: 25)
        return result.stdout.split(separator: "\n").compactMap { Int($0) }
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
        // The app killed: warden sees its exit (the pidfd, then the reaper's status) and starts it again.
        let killed = try #require(setup.app.pid)
        kill(killed, SIGKILL)
        #expect(TestSupport.waitUntil(timeout: 20) { setup.app.pid != killed && setup.app.isServing }, "\(setup.warden.log)")
        // Traffic through the proxy, bounded in count and time: nine of ten answered by the app, one
        // by an upstream nobody listens on (502), until the site's chart has points (one per 10 s)
        // and the service's history a few cycles with CPU and memory known.
        var answers: [Int] = []
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, answers.count < 20_000 {
            answers += try traffic(setup, Array(repeating: "/ping", count: 45) + Array(repeating: "/broken", count: 5))
            if try siteHistory(setup).filter({ $0["p50"] != nil }).count >= 3,
                ((try? history(setup))?.points.filter { $0["cpu"] != nil }.count ?? 0) >= 5
            {
                break
            }
            usleep(200_000)
        }
        let byStatus = Dictionary(grouping: answers, by: { $0 }).mapValues(\.count)
        #expect((byStatus[200] ?? 0) >= 200 && (byStatus[502] ?? 0) >= 20, "answers by status: \(byStatus)")
        let output = "/tmp/warden-dashboard-\(getpid())"
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        let (front, page, sitePage) = (output + "/front.png", output + "/service.png", output + "/site.png")
        let viewport = (width: 1200, height: 1500)
        let session = try Browser.session(
            port: setup.port, user: "admin", password: "s3cret",
            steps: [
                .dom, .screenshot(front), .navigate("/app"), .dom, .screenshot(page), .navigate("/_site/web"), .dom, .screenshot(sitePage),
                .click("#maintenance button[value=maintenance-on]"), .dom,
            ],
            viewport: viewport)
        let recorded = try history(setup)
        let siteRecorded = try siteHistory(setup)
        #expect(session.error == nil, "\(session.error ?? "") \(session.output.suffix(500))")
        #expect(session.authChallenges >= 1, "the browser answered the 401 challenge itself")
        try #require(session.doms.count == 4, "\(session.doms.count) pages read")

        // The front page lists the site beside the services: its host, where it sends, its traffic, maintenance off.
        let dashboard = session.doms[0]
        #expect(dashboard.contains("id=\"service-app\""))
        let site = try #require(dashboard.firstRange(of: "<tr id=\"site-web\">").map { String(dashboard[$0.lowerBound...].prefix(2000)) })
        #expect(site.contains("app.local") && site.contains("data-maintenance=\"off\""), "\(site)")
        #expect(site.contains("<a href=\"/app\">app</a>: http://127.0.0.1:\(setup.app.port)/"), "\(site)")
        #expect(site.contains("<a href=\"/_site/web\">web</a>"), "the site's page is linked: \(site)")
        func figure(_ name: String) -> Double? {
            site.firstMatch(of: try! Regex(#"data-\#(name)="([0-9.e+-]+)""#)).flatMap { Double(String($0.output[1].substring ?? "")) }
        }
        #expect((figure("rate") ?? 0) > 1, "requests per second: \(site)")
        #expect(abs((figure("errors") ?? 0) - 0.1) < 0.05, "a tenth of the answers are 502: \(site)")
        #expect((figure("p50") ?? 0) > 0 && (figure("p99") ?? 0) >= (figure("p50") ?? 0), "\(site)")
        #expect(site.contains(" ms</td>") && site.contains("%</td>"), "\(site)")
        #expect(dashboard.contains("<th>Requests/s</th><th>5xx</th><th>p50</th><th>p99</th>"))
        #expect(dashboard.firstMatch(of: try Regex(#"over the last (minute|\d+ s)"#)) != nil, "the window is said on the page")
        for path in [front, page, sitePage] {
            let size = pngSize(path)
            #expect(size?.width == viewport.width && size?.height == viewport.height, "\(path): \(String(describing: size))")
        }

        // The service page's chart: every recorded point of the page's time, where it belongs; how the process last ended.
        let service = session.doms[1]
        #expect(service.contains("role=\"img\"") && service.contains("<title id=\"history-title\">CPU, memory and check latency of 'app'</title>"))
        #expect(service.contains("data-exit=\"-9\">killed by signal 9 (SIGKILL) at "), "the last exit status")
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

        // The site page's chart: requests, errors, p50 and p99 of each recorded span, where they belong.
        let sitePageDOM = session.doms[2]
        #expect(sitePageDOM.contains("<title id=\"site-history-title\">Requests, errors and latency of site 'web'</title>"))
        let siteShown = try #require(
            sitePageDOM.firstMatch(of: try Regex(#"UTC, (\d+) points?"#)).flatMap { Int(String($0.output[1].substring ?? "")) }, "the site chart's caption")
        #expect(siteRecorded.count >= siteShown && siteShown >= 3, "\(siteRecorded.count) recorded, \(siteShown) on the page")
        let siteBounds = try #require(sitePageDOM.firstMatch(of: try Regex(#"data-start="([0-9.]+)" data-end="([0-9.]+)""#)))
        let siteWindow = (
            start: Double(String(siteBounds.output[1].substring ?? "")) ?? 0, end: Double(String(siteBounds.output[2].substring ?? "")) ?? 0
        )
        for (panel, axis, series, key) in [
            (0, "requests", "requests", "requestsPerSecond"), (1, "errors", "errors", "errorsPerSecond"), (2, "latency", "p50", "p50"),
            (2, "latency", "p99", "p99"),
        ] {
            let scale = try #require(
                sitePageDOM.firstMatch(of: try Regex(#"data-series="\#(axis)" data-scale="([0-9.e+-]+)""#)).flatMap {
                    Double(String($0.output[1].substring ?? ""))
                }, "\(axis)'s axis")
            let values = siteRecorded.prefix(siteShown).compactMap { point -> (time: Double, value: Double)? in
                guard let time = point["time"] as? Double, let value = point[key] as? Double else { return nil }
                return (time, value)
            }
            expectDrawn(chartPoints(sitePageDOM, series: series), recorded: values, window: siteWindow, scale: scale, panel: panel, series: series)
        }
        #expect(siteRecorded.prefix(siteShown).dropFirst().contains { ($0["errorsPerSecond"] as? Double ?? 0) > 0 }, "the 502s are charted")

        // The maintenance button on the site page: the form's POST, back on the site page, the site in maintenance.
        let base = "http://127.0.0.1:\(setup.port)"
        #expect(session.clicks == ["clicked"], "the button is on the site's page")
        #expect(session.requests.contains("POST \(base)/_maintenance"), "\(session.requests)")
        #expect(session.doms[3].contains("data-maintenance=\"on\"") && session.doms[3].contains("id=\"site-history\""), "the site page shows it on")
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
        #expect(metrics.contains("warden_service_last_exit_status{service=\"app\"} -9"), "\(metrics)")
        #expect(metrics.contains("warden_service_restarts_by_cause_total{service=\"app\",cause=\"crash\"} 1"), "\(metrics)")

        // `warden status`: the same figures in columns, in colour only on a terminal without NO_COLOR.
        let rc = setup.directory.path + "/wardenrc"
        #expect(try traffic(setup, Array(repeating: "/ping", count: 20)).allSatisfy { $0 == 200 }, "requests within the minute the status shows")
        let piped = try TestSupport.run(TestSupport.wardenBinary, ["-c", rc, "status"])
        #expect(piped.status == 0 && !piped.stdout.contains("\u{1B}["), "\(piped.stdout)\(piped.stderr)")
        let siteLine = piped.stdout.split(separator: "\n").first { $0.hasPrefix("web ") }.map(String.init) ?? ""
        #expect(siteLine.contains("app.local") && siteLine.contains(" ms ") && siteLine.contains("%") && siteLine.contains(" off "), "\(piped.stdout)")
        #expect(piped.stdout.contains("SERVICE") && piped.stdout.contains("signal 9"), "\(piped.stdout)")
        let command = "\(TestSupport.wardenBinary) -c \(rc) status"
        var environment = ProcessInfo.processInfo.environment
        environment["NO_COLOR"] = nil
        let terminal = try TestSupport.run("/usr/bin/script", ["-q", "-e", "-c", command, "/dev/null"], environment: environment)
        #expect(terminal.status == 0 && terminal.stdout.contains("\u{1B}[32mOK\u{1B}[0m"), "a terminal gets colour: \(terminal.stdout)")
        environment["NO_COLOR"] = "1"
        let plain = try TestSupport.run("/usr/bin/script", ["-q", "-e", "-c", command, "/dev/null"], environment: environment)
        #expect(plain.status == 0 && plain.stdout.contains("SERVICE") && !plain.stdout.contains("\u{1B}["), "NO_COLOR: \(plain.stdout)")
        let json = try TestSupport.run(TestSupport.wardenBinary, ["-c", rc, "status", "--json"])
        let document = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let jsonSite = (document["sites"] as? [[String: Any]])?.first
        #expect(((jsonSite?["traffic"] as? [String: Any])?["requestsPerSecond"] as? Double ?? 0) > 0, "\(json.stdout.prefix(3000))")
        #expect(jsonSite?["services"] as? [String] == ["app"])
        let app = (document["services"] as? [[String: Any]])?.first { $0["name"] as? String == "app" }
        #expect((app?["metrics"] as? [String: Any])?["exitStatus"] as? Int == -9)
        guard let promtool = TestSupport.peer("promtool") else {
            #expect(!TestSupport.isCI, "promtool is not installed (.ci/run installs prometheus)")
            return
        }
        let check = try TestSupport.run(promtool, ["check", "metrics"], input: metrics)
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
    }
}
