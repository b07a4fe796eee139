import Foundation
import Logging
import Synchronization
import Testing
import WardenConfig
import WardenTestSupport
@testable import WardenMail

@Suite("Alerts: webhook and alertmanager channels")
struct AlertChannelTests {
    func configuration(_ text: String) throws -> Configuration {
        let result = ControlFile.parse(text)
        return try #require(result.configuration, "\(result.renderedDiagnostics())")
    }

    func event(_ kind: EventKind, _ state: AlertEvent.State, date: Double = 1_800_000_000) -> AlertEvent {
        AlertEvent(
            service: "app", kind: kind, state: state, title: state == .failed ? "Does not exist" : "Exists", message: "process is not running",
            action: "restart", date: date)
    }

    func object(_ json: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    }

    @Test func webhookAndAlertmanagerAreParsedGloballyAndPerService() throws {
        let config = try configuration(
            """
            set alert webhook "https://hooks.example.com/warden" only on { nonexist }
            set alert alertmanager "http://127.0.0.1:9093"
            check process app with pidfile /run/app.pid
              alert webhook "http://user:secret@10.0.0.1:8080/hook"
            """)
        #expect(config.alerts.map(\.channel) == [.webhook, .alertmanager])
        #expect(config.alerts[0].endpoint?.host == "hooks.example.com")
        #expect(config.alerts[0].endpoint?.port == 443)
        #expect(config.alerts[0].filter == .only([.nonexist]))
        let own = try #require(config.service(named: "app")?.alerts.first)
        #expect(own.channel == .webhook)
        #expect(own.endpoint?.user == "user")
        #expect(own.endpoint?.path == "/hook")
    }

    @Test func noalertExcludesAGlobalWebhookForOneService() async throws {
        let config = try configuration(
            """
            set alert webhook "http://hooks/all"
            check process quiet with pidfile /run/quiet.pid
              noalert "http://hooks/all"
            check process loud with pidfile /run/loud.pid
            """)
        let alerts = AlertService(configuration: config, hostName: "vm", mailer: "warden", logger: Logger(label: "test"))
        var quiet = event(.nonexist, .failed)
        quiet.service = "quiet"
        var loud = quiet
        loud.service = "loud"
        #expect(await alerts.recipients(for: quiet).isEmpty)
        #expect(await alerts.recipients(for: loud).map(\.channel) == [.webhook])
    }

    @Test func badChannelStatementsAreErrorsWithTheirPlace() {
        let result = ControlFile.parse(
            """
            set alert webhook "ftp://example.com/x"
            set alert webhook "http://example.com/x" reminder 3
            set metrics listen 127.0.0.1 port 99999
            set metrics listen 127.0.0.1 port 9101 allow admin:secret
            """, path: "/etc/wardenrc")
        let text = result.renderedDiagnostics()
        #expect(text.contains("/etc/wardenrc:1:19: error: URL scheme 'ftp' is not supported"), "\(text)")
        #expect(text.contains("/etc/wardenrc:2:42: error: 'reminder' applies to mail alerts, not to 'webhook'"), "\(text)")
        #expect(text.contains("/etc/wardenrc:3:35: error: port 99999 is out of range"), "\(text)")
        #expect(text.contains("/etc/wardenrc:4:40: error: the metrics listener admits hosts and networks only"), "\(text)")
    }

    @Test func metricsListenerWithItsAllowList() throws {
        let config = try configuration("set metrics listen 127.0.0.1 port 9101 allow 10.0.0.0/8 allow localhost\n")
        let listener = try #require(config.metricsListener)
        #expect(listener.address == "127.0.0.1")
        #expect(listener.port == 9101)
        #expect(listener.allow == [.network(address: "10.0.0.0", prefix: 8), .host("localhost")])
    }

    @Test func webhookDocumentCarriesTheEvent() throws {
        let url = try #require(try configuration("set alert webhook \"http://h/hook\"").alerts.first?.endpoint)
        let post = AlertDocuments(hostName: "vm").webhook(event(.nonexist, .failed), url: url, id: "1-a")
        let document = try object(post.body)
        #expect(document["service"] as? String == "app")
        #expect(document["event"] as? String == "Does not exist")
        #expect(document["kind"] as? String == "nonexist")
        #expect(document["state"] as? String == "failed")
        #expect(document["message"] as? String == "process is not running")
        #expect(document["action"] as? String == "restart")
        #expect(document["host"] as? String == "vm")
        #expect(document["time"] as? String == "2027-01-15T08:00:00Z")
        #expect(document["id"] as? String == "1-a")
    }

    @Test func alertmanagerRecoveryResolvesTheSameAlert() throws {
        let base = try #require(try configuration("set alert alertmanager \"http://am:9093/\"").alerts.first?.endpoint)
        let documents = AlertDocuments(hostName: "web1")
        var firing = AlertmanagerFiring()
        let failed = event(.nonexist, .failed)
        let down = documents.alertmanager(failed, baseURL: base, startedAt: firing.record(failed, url: base))
        let recovered = event(.nonexist, .succeeded, date: 1_800_000_090)
        let up = documents.alertmanager(recovered, baseURL: base, startedAt: firing.record(recovered, url: base))
        #expect(down.url.path == "/api/v2/alerts")
        func alert(_ post: HTTPPost) throws -> [String: Any] {
            try #require((try JSONSerialization.jsonObject(with: Data(post.body.utf8)) as? [[String: Any]])?.first)
        }
        let first = try alert(down), second = try alert(up)
        let labels = try #require(first["labels"] as? [String: String])
        #expect(labels == ["alertname": "WardenNonexist", "service": "app", "host": "web1", "severity": "critical"])
        #expect(second["labels"] as? [String: String] == labels, "the same labels, so the recovery resolves it")
        #expect(first["endsAt"] == nil, "a failure lasts until it recovers")
        #expect(second["startsAt"] as? String == "2027-01-15T08:00:00Z")
        #expect(second["endsAt"] as? String == "2027-01-15T08:01:30Z")
        #expect(firing.entries.isEmpty)
    }

    @Test func lastingFailuresArePostedAgainEveryMinute() throws {
        let base = try #require(try configuration("set alert alertmanager \"http://am:9093\"").alerts.first?.endpoint)
        var firing = AlertmanagerFiring()
        _ = firing.record(event(.nonexist, .failed), url: base)
        #expect(firing.due(now: 1_800_000_030).isEmpty)
        #expect(firing.due(now: 1_800_000_060).map(\.startedAt) == [1_800_000_000])
        #expect(firing.due(now: 1_800_000_100).isEmpty, "sent at 060, next at 120")
    }

    /// Alertmanager forgets an alert without `endsAt` after its resolve_timeout: the service posts a
    /// lasting failure again each minute, and stops once the recovery went out.
    @Test func alertServicePostsALastingFailureAgainUntilItRecovers() async throws {
        let config = try configuration("set alert alertmanager \"http://am:9093\"\n")
        let clock = Mutex(1_800_000_000.0)
        let posted = Mutex<[String]>([])
        let alerts = AlertService(
            configuration: config, hostName: "vm", mailer: "warden", logger: Logger(label: "test"), transport: nil,
            poster: { post in posted.withLock { $0.append(post.body) } }, now: { clock.withLock { $0 } })
        await alerts.handle(event(.nonexist, .failed))
        await alerts.tick()
        #expect(posted.withLock { $0.count } == 1)
        clock.withLock { $0 += 61 }
        await alerts.tick()
        let repeated = posted.withLock { $0 }
        #expect(repeated.count == 2 && repeated[1] == repeated[0], "the same alert, startsAt unchanged: \(repeated)")
        await alerts.handle(event(.nonexist, .succeeded, date: 1_800_000_070))
        clock.withLock { $0 += 120 }
        await alerts.tick()
        let all = posted.withLock { $0 }
        #expect(all.count == 3, "\(all)")
        #expect(all.last?.contains("\"endsAt\":\"2027-01-15T08:01:10Z\"") == true, "\(all)")
    }

    @Test func retryScheduleDoublesUpToItsCap() {
        #expect((1...8).map { RetrySchedule.http.delay(afterFailures: $0) } == [1, 2, 4, 8, 16, 32, 60, 60])
        #expect(RetrySchedule.mail.delay(afterFailures: 5) == 0, "mail is retried every cycle, as monit does")
        var backoff = DeliveryBackoff()
        backoff.failed("u", schedule: .http, now: 100)
        backoff.failed("u", schedule: .http, now: 101)
        #expect(!backoff.isDue("u", now: 102.5))
        #expect(backoff.isDue("u", now: 103))
        #expect(backoff.isDue("other", now: 0))
        backoff.delivered("u")
        #expect(!backoff.isFailing("u"))
    }

    /// A webhook that is down waits with back-off and keeps its alerts in order on disk; mail goes on
    /// meanwhile; once the receiver answers, each alert is posted exactly once.
    @Test func downReceiverWaitsWhileMailGoesOn() async throws {
        let directory = try TemporaryDirectory()
        let config = try configuration(
            """
            set mailserver mail.example
            set eventqueue basedir \(directory.path)/queue
            set alert ops@example.com
            set alert webhook "http://127.0.0.1:1/hook"
            """)
        let clock = Mutex(1_800_000_000.0)
        let up = Mutex(false)
        let posted = Mutex<[String]>([])
        let mailed = Mutex(0)
        let alerts = AlertService(
            configuration: config, hostName: "vm", mailer: "warden", logger: Logger(label: "test"), transport: { _, _ in mailed.withLock { $0 += 1 } },
            poster: { post in
                guard up.withLock({ $0 }) else { throw HTTPPostError(description: "refused") }
                posted.withLock { $0.append(post.body) }
            }, now: { clock.withLock { $0 } })
        await alerts.handle(event(.nonexist, .failed))
        await alerts.handle(event(.nonexist, .succeeded, date: 1_800_000_001))
        #expect(mailed.withLock { $0 } == 2, "mail is not held up by the webhook")
        #expect(await alerts.queuedCount == 2, "both posts wait on disk, in order")
        up.withLock { $0 = true }
        await alerts.tick()
        #expect(posted.withLock { $0 }.isEmpty, "within the back-off, no new attempt")
        clock.withLock { $0 += 1 }
        await alerts.tick()
        await alerts.tick()
        let bodies = posted.withLock { $0 }
        #expect(bodies.count == 2)
        #expect(bodies.first?.contains("\"state\":\"failed\"") == true, "in order")
        #expect(await alerts.queuedCount == 0)
    }
}
