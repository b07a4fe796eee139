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

/// monit's mail alerts: recipients (global and per service, filters, `noalert`), mail-format
/// templates, reminders while a failure lasts, failover across mail servers, and the event queue
/// that keeps every alert on disk until a server has said `250` for it.
public actor AlertService {
    nonisolated let logger: Logger
    let configuration: Configuration
    let hostName: String
    let mailer: String
    let queue: MailQueue?
    private var memoryQueue: [MailMessage] = []
    private var cycle = 0
    /// One flush at a time: actor reentrancy at `await deliver` must not send a mail twice.
    private var flushing = false
    /// Open failures with reminders: key "service|kind" → (event, recipient, cycle of the last mail).
    private var reminders: [String: [(AlertRecipient, AlertEvent, Int)]] = [:]
    /// Sends one message through one server; injectable for tests.
    let transport: @Sendable (MailMessage, MailServer) async throws -> Void

    public init(configuration: Configuration, hostName: String, mailer: String, logger: Logger,
                transport: (@Sendable (MailMessage, MailServer) async throws -> Void)? = nil) {
        self.configuration = configuration
        self.hostName = hostName
        self.mailer = mailer
        self.logger = logger
        self.queue = configuration.eventQueue.map { MailQueue(settings: $0, logger: logger) }
        self.transport = transport ?? { message, server in
            _ = try await SMTPClient(server: server, heloName: hostName).send(message, mailer: mailer)
        }
    }

    /// Queues the mails an event calls for and tries to deliver them (and anything queued before).
    public func handle(_ event: AlertEvent) async {
        let recipients = recipients(for: event)
        let key = "\(event.service)|\(event.kind.rawValue)"
        if event.state == .failed {
            let withReminder = recipients.filter { $0.reminder != nil }
            if !withReminder.isEmpty { reminders[key] = withReminder.map { ($0, event, cycle) } }
        } else {
            reminders[key] = nil
        }
        for group in Dictionary(grouping: recipients, by: { $0.mailFormat ?? MailFormat() }) {
            enqueue(compose(event, to: group.value.map(\.address), format: group.key))
        }
        await flush()
    }

    /// Called once per cycle: retries the queue and sends the reminders that are due.
    public func tick() async {
        cycle += 1
        for (key, entries) in reminders {
            var updated: [(AlertRecipient, AlertEvent, Int)] = []
            for (recipient, event, last) in entries {
                if let every = recipient.reminder, cycle - last >= every {
                    enqueue(compose(event, to: [recipient.address], format: recipient.mailFormat ?? MailFormat()))
                    updated.append((recipient, event, cycle))
                } else {
                    updated.append((recipient, event, last))
                }
            }
            reminders[key] = updated
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
        return all.filter { !excluded.contains($0.address) && $0.filter.admits(event.kind) && $0.address.contains("@") && !$0.address.hasPrefix("[") }
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

    private func enqueue(_ message: MailMessage) {
        if let queue {
            queue.add(message)
        } else {
            memoryQueue.append(message)
            if memoryQueue.count > 100 {
                memoryQueue.removeFirst()
                logger.error("Mail: alert dropped -- no event queue is configured and 100 alerts are waiting")
            }
        }
    }

    /// Delivers queued mails in order; stops at the first one no server accepts (retried next cycle).
    public func flush() async {
        guard !flushing else { return }
        flushing = true
        defer { flushing = false }
        guard !configuration.mailServers.isEmpty else {
            if !memoryQueue.isEmpty {
                logger.error("Mail: no mail server is configured ('set mailserver'); \(memoryQueue.count) alert(s) not sent")
                memoryQueue = []
            }
            return
        }
        if let queue {
            var delivered = Set<String>()
            // Re-read the directory each time: alerts added during a delivery go out in the same flush.
            while let entry = queue.entries().first(where: { !delivered.contains($0) }) {
                delivered.insert(entry)
                guard let message = queue.load(entry) else { continue }
                guard await deliver(message) else {
                    logger.error("Alert handler failed, retry scheduled for next cycle")
                    return
                }
                queue.remove(entry)
            }
        } else {
            while let message = memoryQueue.first {
                guard await deliver(message) else { return }
                memoryQueue.removeFirst()
            }
        }
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
