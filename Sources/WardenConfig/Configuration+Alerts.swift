public struct MailServer: Sendable, Hashable {
    public enum Security: Sendable, Hashable { case none, startTLS, implicitTLS }
    public var host: String
    public var port: Int?
    public var username: String?
    public var password: String?
    public var security: Security = .none
    /// `using ssl {…}`, merged over `set ssl {…}` once the whole file is read.
    public var ssl = SSLSettings()
    /// Seconds; monit's default is 5.
    public var timeout: Int?

    public var effectivePort: Int { port ?? (security == .implicitTLS ? 465 : 25) }
}

public struct MailFormat: Sendable, Hashable {
    public var from: String?
    public var replyTo: String?
    public var subject: String?
    public var message: String?
    public init(from: String? = nil, replyTo: String? = nil, subject: String? = nil, message: String? = nil) {
        self.from = from
        self.replyTo = replyTo
        self.subject = subject
        self.message = message
    }
}

/// monit's event names, used in `only on { … }` and `but not on { … }` filters.
public enum EventKind: String, Sendable, Hashable, CaseIterable, Codable {
    case action, checksum, bytein, byteout, connection, content, data, exec, exist, fsflags, gid, icmp,
        instance, invalid, link, nonexist, certificate, packetin, packetout, permission, pid, ppid, resource,
        saturation, size, speed, status, timeout, timestamp, uid, uptime
    // monit accepts a few synonyms in filters.
    static let synonyms: [String: EventKind] = [
        "nonexists": .nonexist, "exists": .exist, "changed": .timestamp, "unmonitor": .action,
        "start": .action, "stop": .action, "restart": .action, "monitor": .action,
    ]
}

public struct AlertRecipient: Sendable, Hashable {
    public enum Filter: Sendable, Hashable {
        case all
        case only(Set<EventKind>)
        case except(Set<EventKind>)

        public func admits(_ event: EventKind) -> Bool {
            switch self {
            case .all: true
            case .only(let set): set.contains(event)
            case .except(let set): !set.contains(event)
            }
        }
    }
    /// Where an alert goes: mail to `address`, or a JSON POST to the URL in `address`.
    public enum Channel: String, Sendable, Hashable {
        case mail
        /// `alert webhook "URL"`: each event as a JSON object.
        case webhook
        /// `alert alertmanager "URL"`: Alertmanager's v2 API (`POST /api/v2/alerts`) at that base URL.
        case alertmanager
    }
    /// An e-mail address, or a URL for the webhook and alertmanager channels.
    public var address: String
    public var channel: Channel = .mail
    /// The parsed URL of a webhook or alertmanager channel.
    public var endpoint: HTTPURL?
    public var filter: Filter = .all
    /// `with reminder on N cycles`: repeat the alert every N cycles while the failure lasts.
    public var reminder: Int?
    public var mailFormat: MailFormat?
}

/// `set metrics listen ADDRESS port N [allow …]`: `/metrics` on a listener of its own, with its own
/// allow-list, so a Prometheus server needs no dashboard credentials.
public struct MetricsListenerSettings: Sendable, Hashable {
    public var address: String
    public var port: Int
    public var allow: [AllowRule] = []
    public init(address: String, port: Int, allow: [AllowRule] = []) {
        self.address = address
        self.port = port
        self.allow = allow
    }
}
