import WardenPlatform
import Logging
import WardenConfig

#if canImport(Glibc)
import Glibc
#endif

/// What the alert service needs to know about an event (the daemon converts the supervisor's events).
public struct AlertEvent: Sendable, Hashable {
    public enum State: String, Sendable { case failed, succeeded, changed }

    public var service: String
    public var kind: EventKind
    public var state: State
    /// monit's event title: "Does not exist", "Exists", "Connection failed", …
    public var title: String
    public var message: String
    public var action: String
    public var date: Double

    public init(service: String, kind: EventKind, state: State, title: String, message: String, action: String, date: Double) {
        self.service = service
        self.kind = kind
        self.state = state
        self.title = title
        self.message = message
        self.action = action
        self.date = date
    }
}

/// monit's alerts and more channels: mail to recipients (global and per service, filters, `noalert`,
/// mail-format templates, reminders while a failure lasts, failover across mail servers), JSON posts
/// to webhooks, and alerts posted to Alertmanager. Every channel goes through the one event queue,
/// which keeps each alert on disk until its channel took it (a `250`, a 2xx); a destination that
/// fails waits (`RetrySchedule`) while the others go on.
public actor AlertService {
    nonisolated let logger: Logger
    let configuration: Configuration
    let hostName: String
    let mailer: String
    let queue: AlertQueue?
    /// Without `set eventqueue`: alerts wait in memory (and are lost with warden), numbered so a
    /// flush removes the right one while events add more.
    private var memoryQueue: [(id: Int, item: Outgoing)] = []
    private var nextMemoryID = 0
    private var cycle = 0
    /// One flush at a time: actor reentrancy at `await deliver` must not send an alert twice.
    private var flushing = false
    /// Open failures with reminders: key "service|kind" → (event, recipient, cycle of the last mail).
    private var reminders: [String: [(AlertRecipient, AlertEvent, Int)]] = [:]
    private var backoff = DeliveryBackoff()
    private var firing = AlertmanagerFiring()
    /// Sends one message through one server; injectable for tests.
    let transport: @Sendable (MailMessage, MailServer) async throws -> Void
    /// Posts one document to a webhook or Alertmanager; injectable for tests.
    let poster: @Sendable (HTTPPost) async throws -> Void
    /// Seconds since the epoch.
    let now: @Sendable () -> Double

    public init(
        configuration: Configuration, hostName: String, mailer: String, logger: Logger,
        transport: (@Sendable (MailMessage, MailServer) async throws -> Void)? = nil
    ) {
        self.init(
            configuration: configuration, hostName: hostName, mailer: mailer, logger: logger, transport: transport,
            poster: { try await HTTPPoster().post($0) }, now: Self.wallClock)
    }

    init(
        configuration: Configuration, hostName: String, mailer: String, logger: Logger,
        transport: (@Sendable (MailMessage, MailServer) async throws -> Void)?, poster: @escaping @Sendable (HTTPPost) async throws -> Void,
        now: @escaping @Sendable () -> Double
    ) {
        self.configuration = configuration
        self.hostName = hostName
        self.mailer = mailer
        self.logger = logger
        self.queue = configuration.eventQueue.map { AlertQueue(settings: $0, logger: logger) }
        self.transport = transport ?? { message, server in
            _ = try await SMTPClient(server: server, heloName: hostName).send(message, mailer: mailer)
        }
        self.poster = poster
        self.now = now
    }

    static func wallClock() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }

    var documents: AlertDocuments { AlertDocuments(hostName: hostName) }

    /// Queues what an event calls for on every channel and tries to deliver it (and anything queued before).
    public func handle(_ event: AlertEvent) async {
        let recipients = recipients(for: event)
        let mails = recipients.filter { $0.channel == .mail }
        let key = "\(event.service)|\(event.kind.rawValue)"
        if event.state == .failed {
            let withReminder = mails.filter { $0.reminder != nil }
            if !withReminder.isEmpty { reminders[key] = withReminder.map { ($0, event, cycle) } }
        } else {
            reminders[key] = nil
        }
        if !mails.isEmpty, configuration.mailServers.isEmpty {
            logger.error("Mail: no mail server is configured ('set mailserver'); alert '\(event.title) \(event.service)' not mailed")
        } else {
            for group in Dictionary(grouping: mails, by: { $0.mailFormat ?? MailFormat() }) {
                enqueue(.mail(compose(event, to: group.value.map(\.address), format: group.key)))
            }
        }
        for recipient in recipients {
            guard let url = recipient.endpoint else { continue }
            switch recipient.channel {
            case .webhook:
                var generator = SystemRandomNumberGenerator()
                let id = "\(Int(event.date * 1000))-\(String(generator.next() as UInt64, radix: 16))"
                enqueue(.post(documents.webhook(event, url: url, id: id)))
            case .alertmanager:
                let started = firing.record(event, url: url)
                enqueue(.post(documents.alertmanager(event, baseURL: url, startedAt: started)))
            case .mail:
                break
            }
        }
        await flush()
    }

    /// Called once per cycle: sends the reminders that are due, posts lasting failures to Alertmanager
    /// again, and retries the queue.
    public func tick() async {
        cycle += 1
        for (key, entries) in reminders {
            var updated: [(AlertRecipient, AlertEvent, Int)] = []
            for (recipient, event, last) in entries {
                if let every = recipient.reminder, cycle - last >= every {
                    enqueue(.mail(compose(event, to: [recipient.address], format: recipient.mailFormat ?? MailFormat())))
                    updated.append((recipient, event, cycle))
                } else {
                    updated.append((recipient, event, last))
                }
            }
            reminders[key] = updated
        }
        for entry in firing.due(now: now()) {
            let post = documents.alertmanager(entry.event, baseURL: entry.url, startedAt: entry.startedAt)
            // While Alertmanager is unreachable the first post waits in the queue; repeats would pile up.
            if !backoff.isFailing(Outgoing.post(post).destination) { enqueue(.post(post)) }
        }
        await flush()
    }

    /// Global `set alert` recipients plus the service's own, minus its `noalert`, filtered by event.
    func recipients(for event: AlertEvent) -> [AlertRecipient] {
        let service = configuration.service(named: event.service)
        var all = configuration.alerts
        for own in service?.alerts ?? [] where !all.contains(where: { $0.address == own.address }) {
            all.append(own)
        }
        // A service's own entry for an address overrides the global one (its filter wins).
        all = all.map { recipient in service?.alerts.first { $0.address == recipient.address } ?? recipient }
        let excluded = Set(service?.noAlerts ?? [])
        return all.filter { recipient in
            let deliverable = recipient.channel != .mail || (recipient.address.contains("@") && !recipient.address.hasPrefix("["))
            return deliverable && !excluded.contains(recipient.address) && recipient.filter.admits(event.kind)
        }
    }

    func compose(_ event: AlertEvent, to addresses: [String], format: MailFormat) -> MailMessage {
        let global = configuration.mailFormat
        let from = format.from ?? global.from ?? "warden@\(hostName)"
        let subject = format.subject ?? global.subject ?? "warden alert --  $EVENT $SERVICE"
        let body = format.message ?? global.message ?? Self.defaultMessage
        var generator = SystemRandomNumberGenerator()
        let id = "\(Int(event.date)).\(String(generator.next() as UInt64, radix: 16))@\(hostName)"
        return MailMessage(
            from: substitute(from, event), to: addresses, replyTo: (format.replyTo ?? global.replyTo).map { substitute($0, event) },
            subject: substitute(subject, event), body: substitute(body, event), date: event.date, messageID: id)
    }

    static let defaultMessage = """
        $EVENT Service $SERVICE 

        \tDate:        $DATE
        \tAction:      $ACTION
        \tHost:        $HOST
        \tDescription: $DESCRIPTION

        Your faithful employee,
        warden
        """

    /// monit's variables: $EVENT, $SERVICE, $DATE, $HOST, $ACTION, $DESCRIPTION.
    func substitute(_ template: String, _ event: AlertEvent) -> String {
        let date = TimeFormat.string(event.date, "%a, %d %b %Y %H:%M:%S")
        let values: [(String, String)] = [
            ("$DESCRIPTION", event.message), ("$SERVICE", event.service), ("$EVENT", event.title), ("$ACTION", event.action),
            ("$DATE", date), ("$HOST", hostName),
        ]
        var result = template
        for (name, value) in values {
            result = result.split(separator: name, omittingEmptySubsequences: false).joined(separator: value)
        }
        return result
    }

    private func enqueue(_ item: Outgoing) {
        if let queue {
            queue.add(item)
        } else {
            memoryQueue.append((nextMemoryID, item))
            nextMemoryID += 1
            if memoryQueue.count > 100 {
                memoryQueue.removeFirst()
                logger.error("Alert: alert dropped -- no event queue is configured and 100 alerts are waiting")
            }
        }
    }

    /// Delivers queued alerts in order. A destination that fails (or still waits after failing) is
    /// left alone for the rest of the flush, so its alerts keep their order; the others go on.
    public func flush() async {
        guard !flushing else { return }
        flushing = true
        defer { flushing = false }
        var skipped = Set<String>()
        if let queue {
            var seen = Set<String>()
            // Re-read the directory each time: alerts added during a delivery go out in the same flush.
            while let entry = queue.entries().first(where: { !seen.contains($0) }) {
                seen.insert(entry)
                guard let item = queue.load(entry) else { continue }
                if await send(item, skipped: &skipped) { queue.remove(entry) }
            }
        } else {
            var seen = Set<Int>()
            while let (id, item) = memoryQueue.first(where: { !seen.contains($0.id) }) {
                seen.insert(id)
                if await send(item, skipped: &skipped) { memoryQueue.removeAll { $0.id == id } }
            }
        }
    }

    /// One delivery attempt, unless its destination is skipped in this flush; true when it was taken.
    private func send(_ item: Outgoing, skipped: inout Set<String>) async -> Bool {
        let destination = item.destination
        guard !skipped.contains(destination), backoff.isDue(destination, now: now()) else {
            skipped.insert(destination)
            return false
        }
        let delivered: Bool
        let schedule: RetrySchedule
        switch item {
        case .mail(let message):
            schedule = .mail
            delivered = await deliver(message)
            if !delivered { logger.error("Alert handler failed, retry scheduled for next cycle") }
        case .post(let post):
            schedule = .http
            do {
                try await poster(post)
                logger.info("Alert: \(post.channel) \(post.url) took the alert")
                delivered = true
            } catch {
                logger.error("Alert: cannot post to \(post.channel) \(post.url) -- \(error); the alert stays queued")
                delivered = false
            }
        }
        if delivered {
            backoff.delivered(destination)
        } else {
            backoff.failed(destination, schedule: schedule, now: now())
            skipped.insert(destination)
        }
        return delivered
    }

    /// Tries each mail server in order; the first that accepts the message wins.
    private func deliver(_ message: MailMessage) async -> Bool {
        for server in configuration.mailServers {
            do {
                try await transport(message, server)
                logger.info("Mail: '\(message.subject)' delivered to \(message.to.joined(separator: ", ")) via \(server.host)")
                return true
            } catch {
                logger.error("Mail: cannot deliver via [\(server.host)]:\(server.effectivePort) -- \(error)")
            }
        }
        logger.error("Mail: Delivery failed -- no mail server is available")
        return false
    }

    public var queuedCount: Int { queue?.entries().count ?? memoryQueue.count }
}
