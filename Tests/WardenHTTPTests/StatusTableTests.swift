import Foundation
import Testing
import WardenConfig
import WardenCore
import WardenPlatform
@testable import WardenHTTP

/// `warden status` in a terminal: the front page's figures in aligned columns, in colour only when asked.
@Suite("Status table: warden status in a terminal")
struct StatusTableTests {
    static let now = 1_800_000_000.0
    static let gibibyte: UInt64 = 1 << 30

    func render(colour: Bool) throws -> String {
        let system = SystemSnapshot(
            load1: 0.2, load5: 0.5, load15: 1, memoryTotalBytes: 8 * Self.gibibyte, memoryAvailableBytes: 6 * Self.gibibyte, swapTotalBytes: 0,
            swapFreeBytes: 0, uptimeSeconds: 90061, cpuCount: 2, cpuTotalTicks: 0, cpuIdleTicks: 0)
        let running = Event(date: Self.now - 3, service: "app", kind: .nonexist, state: .succeeded, message: "process is\nrunning", action: "alert")
        let services = [
            try snapshot(
                lastCheck: Self.now - 3, cpuPercent: 1.5, memoryBytes: 12 << 20, exitStatus: -9, pid: 4242, uptime: 3723, events: [running]),
            try snapshot(name: "db", monitor: "notMonitored", lastCheck: nil, status: "Not monitored"),
        ]
        let traffic = SiteTraffic(
            site: "web", requestsPerSecond: 8.5, errorsPerSecond: 10.0 / 60, errorRatio: 10.0 / 510, p50: 0.003775, p99: 0.3725, windowSeconds: 60.2)
        let certificate = SiteCertificate(
            site: "web", issuer: "CA", names: ["app.local"], notAfter: Self.now + 10 * 86400 + 100, source: .file, path: "/etc/web.pem")
        let sites = [
            SiteStatus(
                name: "web", hosts: ["app.local", "www.app.local"], maintenance: false, events: [], certificate: certificate, services: ["app"],
                traffic: traffic),
            SiteStatus(name: "blog", hosts: [], maintenance: true, events: [], services: []),
        ]
        return StatusTable.render(host: "web1", system: system, wardenUptime: 3723, services: services, sites: sites, now: Self.now, colour: colour)
    }

    static let plain = """
        warden 0.1.0 on web1, up 1h 2m; system up 1d 1h 1m, load 0.2 0.5 1.0, memory 2.0 GB of 8.0 GB

        SERVICE  TYPE     STATUS          PID  UPTIME   CPU   MEMORY  RESTARTS      EXIT  CHECKED    LAST EVENT
        app      Process  OK             4242  1h 2m   1.5%  12.0 MB         2  signal 9  0m 3s ago  process is running
        db       Process  Not monitored     -  -          -        -         2         -  -          -

        SITE  HOSTS                    SERVICE  REQ/S   5XX     P50       P99  MAINTENANCE  CERTIFICATE
        web   app.local www.app.local  app        8.5  2.0%  3.8 ms  372.5 ms  off          2027-01-25 (10 days)
        blog  (default)                -            -     -       -         -  on           -
        (requests per second, 5xx share and latency over the last minute)

        """

    @Test func alignedColumnsWithoutColour() throws {
        let text = try render(colour: false)
        #expect(text == Self.plain, "\n\(text)")
        #expect(!text.contains("\u{1B}"), "no escape sequence in a pipe or a file")
    }

    /// Colour wraps a cell's text, never its padding: without the escape sequences it is the plain table.
    @Test func colourKeepsTheAlignment() throws {
        let text = try render(colour: true)
        let escape = "\u{1B}["
        func coloured(_ code: String, _ cell: String) -> String { "\(escape)\(code)m\(cell)\(escape)0m" }
        #expect(text.replacing(try Regex("\u{1B}\\[[0-9]+m"), with: "") == Self.plain, "\n\(text)")
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(
            lines[3]
                == "app      Process  \(coloured("32", "OK"))             4242  1h 2m   1.5%  12.0 MB         2  \(coloured("31", "signal 9"))  0m 3s ago  process is running")
        #expect(lines[4].hasPrefix("db       Process  \(coloured("2", "Not monitored"))     -"), "not monitored is dimmed")
        #expect(lines[2].hasPrefix("\(coloured("1", "SERVICE"))  \(coloured("1", "TYPE"))     \(coloured("1", "STATUS"))"), "headers in bold")
        #expect(lines[7].hasSuffix("\(coloured("31", "2.0%"))  3.8 ms  372.5 ms  off          \(coloured("31", "2027-01-25 (10 days)"))"), "5xx and a certificate under 14 days in red")
        #expect(lines[8].contains("\(coloured("33", "on"))"), "maintenance on in yellow")
        #expect(text.components(separatedBy: escape).count - 1 == 2 * (11 + 9 + 6), "only the headers and the cells above are coloured")
    }

    /// The CLI asks for the table (and for colour) only without a name; with one, monit's words.
    @Test func theCLIsPath() {
        #expect(StatusTable.path(service: nil, colour: false) == "/_status?format=table")
        #expect(StatusTable.path(service: nil, colour: true) == "/_status?format=table&color=1")
        #expect(StatusTable.path(service: "my app", colour: true) == "/_status?service=my%20app")
    }

    @Test func theServiceStatusSaysHowTheProcessLastEnded() throws {
        let text = TextStatus.status([try snapshot(exitStatus: -9)], name: "app")
        #expect(text.contains("  last exit                     killed by signal 9 (SIGKILL)\n"), "\(text)")
        #expect(Pages.exit(3, at: Self.now) == "exit status 3 at Fri, 15 Jan 2027 08:00:00 GMT")
    }
}
