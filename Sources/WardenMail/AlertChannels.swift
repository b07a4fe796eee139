import FoundationEssentials
import WardenConfig
import WardenPlatform

/// One alert on its way through one channel: what the event queue holds (one file each) until the
/// channel has taken it.
enum Outgoing: Sendable, Hashable {
    case mail(MailMessage)
    case post(HTTPPost)

    /// Deliveries to one destination go out in order and wait together: every mail goes through the
    /// same list of mail servers; each URL is a receiver of its own.
    var destination: String {
        switch self {
        case .mail: "mail"
        case .post(let post): post.url.description
        }
    }
}

/// A JSON document to POST to a webhook or to Alertmanager; 2xx means delivered.
struct HTTPPost: Sendable, Codable, Hashable {
    var channel: String
    var url: HTTPURL
    var body: String
}

/// The decisions of the webhook and alertmanager channels: what to send for an event. Pure, so
/// tests check the documents without a network.
struct AlertDocuments {
    let hostName: String

    /// `{"id", "service", "event", "kind", "state", "message", "action", "host", "time", "timestamp"}`:
    /// `event` is monit's title ("Does not exist"), `kind` the event name used in filters. `id` is
    /// unique per event and channel, so a receiver can drop a delivery repeated after a crash.
    func webhook(_ event: AlertEvent, url: HTTPURL, id: String) -> HTTPPost {
        struct Document: Encodable {
            var id, service, event, kind, state, message, action, host, time: String
            var timestamp: Double
        }
        let document = Document(
            id: id, service: event.service, event: event.title, kind: event.kind.rawValue, state: event.state.rawValue,
            message: event.message, action: event.action, host: hostName, time: Self.rfc3339(event.date), timestamp: event.date)
        return HTTPPost(channel: "webhook", url: url, body: Self.json(document))
    }

    /// One alert in Alertmanager's v2 shape. Its labels are the same for a failure and its recovery
    /// (alertname from the event kind, not from the title), so the recovery's `endsAt` resolves the
    /// alert the failure raised. A failure has no `endsAt`: Alertmanager keeps it for its
    /// `resolve_timeout`, and warden posts it again while it lasts (`AlertmanagerFiring`). A change
    /// (action done, pid changed) is an `info` alert that ends by itself after `changeLifetime`.
    func alertmanager(_ event: AlertEvent, baseURL: HTTPURL, startedAt: Double?) -> HTTPPost {
        struct Alert: Encodable {
            var labels: [String: String]
            var annotations: [String: String]
            var startsAt: String
            var endsAt: String?
        }
        let kind = event.kind.rawValue
        let labels = [
            "alertname": "Warden" + kind.prefix(1).uppercased() + kind.dropFirst(), "service": event.service, "host": hostName,
            "severity": event.state == .changed ? "info" : "critical",
        ]
        let ends: Double? =
            switch event.state {
            case .failed: nil
            case .succeeded: event.date
            case .changed: event.date + Self.changeLifetime
            }
        let alert = Alert(
            labels: labels, annotations: ["summary": "\(event.title) \(event.service)", "description": event.message, "action": event.action],
            startsAt: Self.rfc3339(startedAt ?? event.date), endsAt: ends.map(Self.rfc3339))
        return HTTPPost(channel: "alertmanager", url: Self.alertsURL(baseURL), body: Self.json([alert]))
    }

    static let changeLifetime = 300.0

    /// `http://am:9093` → `http://am:9093/api/v2/alerts`; a URL that already names the endpoint stays.
    static func alertsURL(_ base: HTTPURL) -> HTTPURL {
        var url = base
        if !url.path.hasSuffix("/api/v2/alerts") {
            url.path = (url.path.hasSuffix("/") ? String(url.path.dropLast()) : url.path) + "/api/v2/alerts"
        }
        return url
    }

    static func rfc3339(_ time: Double) -> String { TimeFormat.string(time, "%Y-%m-%dT%H:%M:%SZ", utc: true) }

    static func json(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding strings and numbers cannot fail.
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}

/// When to try a destination again after failures: at once for the first retry, then doubling up to
/// `cap` seconds, so a receiver that is down is not hammered and one that comes back is reached soon.
struct RetrySchedule: Sendable, Hashable {
    var first: Double
    var cap: Double

    /// monit retries mail every cycle; the flush runs every cycle, so no wait of its own.
    static let mail = RetrySchedule(first: 0, cap: 0)
    static let http = RetrySchedule(first: 1, cap: 60)

    func delay(afterFailures failures: Int) -> Double {
        guard failures > 0, first > 0 else { return 0 }
        return min(cap, first * Double(1 << min(failures - 1, 30)))
    }
}

/// Which destinations are waiting after failures, and until when.
struct DeliveryBackoff: Sendable {
    private var waits: [String: (failures: Int, until: Double)] = [:]

    func isDue(_ destination: String, now: Double) -> Bool {
        guard let wait = waits[destination] else { return true }
        return now >= wait.until
    }

    func isFailing(_ destination: String) -> Bool { waits[destination] != nil }

    mutating func failed(_ destination: String, schedule: RetrySchedule, now: Double) {
        let failures = (waits[destination]?.failures ?? 0) + 1
        waits[destination] = (failures, now + schedule.delay(afterFailures: failures))
    }

    mutating func delivered(_ destination: String) { waits[destination] = nil }
}

/// Alertmanager forgets an alert with no `endsAt` after its `resolve_timeout` (5 minutes by
/// default), so a failure that lasts is posted again every `repeatInterval`, as Prometheus does.
struct AlertmanagerFiring: Sendable {
    struct Entry: Sendable {
        var url: HTTPURL
        var event: AlertEvent
        var startedAt: Double
        var lastSent: Double
    }
    static let repeatInterval = 60.0
    private(set) var entries: [String: Entry] = [:]

    static func key(_ event: AlertEvent, url: HTTPURL) -> String { "\(url)|\(event.service)|\(event.kind.rawValue)" }

    /// Records the event; returns when the failure began, for a recovery's `startsAt`.
    mutating func record(_ event: AlertEvent, url: HTTPURL) -> Double? {
        let key = Self.key(event, url: url)
        switch event.state {
        case .failed:
            let started = entries[key]?.startedAt ?? event.date
            entries[key] = Entry(url: url, event: event, startedAt: started, lastSent: event.date)
            return started
        case .succeeded:
            defer { entries[key] = nil }
            return entries[key]?.startedAt
        case .changed:
            return nil
        }
    }

    /// The failures to post again now, marked as sent.
    mutating func due(now: Double) -> [Entry] {
        var result: [Entry] = []
        for (key, entry) in entries where now - entry.lastSent >= Self.repeatInterval {
            entries[key]?.lastSent = now
            result.append(entry)
        }
        return result
    }
}
