import Foundation
import Testing
import WardenTestSupport

/// Each TLS site's certificate in `warden status` (text and JSON), on the dashboard and in `/metrics`,
/// and the alert for one about to expire (issue 23).
@Suite("Certificates visible", .serialized)
struct CertificateStatusTests {
    /// A site served with a certificate file that expires in 10 days: its names, issuer and expiry are
    /// in every view, promtool accepts the metric, and the expiry raises one event, not one a cycle.
    @Test func aFileCertificateIsShownAndItsNearExpiryAlertedOnce() throws {
        let directory = try TemporaryDirectory()
        let ca = try TestCA("status", in: directory)
        let leaf = try ca.issue("shop", names: ["shop.test", "www.shop.test"], days: 10)
        let httpd = TestSupport.freePort()
        let proxy = TestSupport.freePort()
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set httpd port \(httpd) and use address 127.0.0.1
                allow 127.0.0.1
            set proxy
                listen 127.0.0.1 port \(proxy) with ssl { certificate: \(leaf.certificate), key: \(leaf.key) }
            check site shop with host "shop.test"
                serve / from \(directory.path)
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(warden.waitForLog("httpd listening", timeout: 15), "\(warden.log)")
        let started = Date().timeIntervalSince1970

        func site() throws -> [String: Any]? {
            let json = try TestSupport.run(TestSupport.wardenBinary, ["-c", rc, "status", "--json"])
            let document = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
            return ((document?["sites"] as? [[String: Any]]) ?? []).first { $0["name"] as? String == "shop" }
        }
        #expect(TestSupport.waitUntil(timeout: 10) { (try? site())??["certificate"] != nil }, "\(warden.log)")
        let certificate = try #require(try site()?["certificate"] as? [String: Any])
        #expect(certificate["names"] as? [String] == ["shop.test", "www.shop.test"])
        #expect((certificate["issuer"] as? String)?.contains("status test CA") == true, "\(certificate)")
        #expect(certificate["source"] as? String == "file" && certificate["path"] as? String == leaf.certificate)
        let notAfter = try #require(certificate["notAfter"] as? Double)
        #expect(abs(notAfter - (started + 10 * 86400)) < 3600, "expires in 10 days: \(notAfter)")

        let text = try TestSupport.run(TestSupport.wardenBinary, ["-c", rc, "status", "shop"]).stdout
        #expect(text.contains("certificate names") && text.contains("shop.test www.shop.test"), "\(text)")
        #expect(text.contains("days left)") && text.contains("certificate source") && text.contains("file \(leaf.certificate)"), "\(text)")

        let dashboard = try #require(TestSupport.httpGet(port: httpd, path: "/")?.body)
        #expect(dashboard.contains("id=\"certificate-shop\"") && dashboard.contains("www.shop.test"), "\(dashboard)")

        let metrics = try #require(TestSupport.httpGet(port: httpd, path: "/metrics")?.body)
        let line = metrics.split(separator: "\n").first { $0.hasPrefix("warden_certificate_expiry_timestamp_seconds{site=\"shop\"}") }
        #expect(line.flatMap { $0.split(separator: " ").last.flatMap { Double($0) } } == notAfter, "\(metrics)")
        if let promtool = TestSupport.peer("promtool") {
            let check = try TestSupport.run(promtool, ["check", "metrics"], input: metrics)
            #expect(check.status == 0, "\(check.stdout)\(check.stderr)\n\(metrics)")
        } else {
            #expect(!TestSupport.isCI, "promtool is not installed (.ci/run installs it)")
        }

        // Several cycles (of a second) later, still one alert.
        func alerts() throws -> Int {
            (try site()?["events"] as? [[String: Any]] ?? []).count { ($0["message"] as? String)?.hasPrefix("certificate expires in 9 days") == true }
        }
        #expect(TestSupport.waitUntil(timeout: 10) { (try? alerts()) == 1 }, "\(warden.log)")
        Thread.sleep(forTimeInterval: 3.5)
        #expect(try alerts() == 1)
    }
}
