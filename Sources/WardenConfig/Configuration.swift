/// A parsed and validated control file: everything the daemon needs, as typed values.
public struct Configuration: Sendable, Hashable {
    /// The file it was read from (the one given with `-c` or found by the search order).
    public var controlFile: String
    public var daemon = DaemonSettings()
    /// `set init`: run in the foreground, as when started from inittab/systemd.
    public var initMode = false
    public var log: LogTarget?
    public var pidfile: String?
    public var idfile: String?
    public var statefile: String?
    public var eventQueue: EventQueueSettings?
    public var mailServers: [MailServer] = []
    public var mailFormat = MailFormat()
    public var alerts: [AlertRecipient] = []
    public var httpd: HTTPDSettings?
    /// `set ssl {…}`: the options every client connection takes unless its own say otherwise.
    public var ssl = SSLSettings()
    public var metricsListener: MetricsListenerSettings?
    public var limits = Limits()
    public var onReboot: OnReboot = .start
    public var services: [Service] = []
    public var proxy: ProxySettings?
    public var acme: ACMESettings?
    public var sites: [Site] = []

    public init(controlFile: String) {
        self.controlFile = controlFile
    }

    public func service(named name: String) -> Service? {
        services.first { $0.name == name }
    }
}

public struct DaemonSettings: Sendable, Hashable {
    /// Seconds between cycles (`set daemon N`); monit's default is 30 s when `set daemon` is missing.
    public var interval: Int = 30
    public var startDelay: Int = 0
    public init() {}
}

public enum LogTarget: Sendable, Hashable {
    case file(String)
    case syslog(facility: String)
}

public struct EventQueueSettings: Sendable, Hashable {
    public var basedir: String
    public var slots: Int?
}

public struct Limits: Sendable, Hashable {
    public var programOutput = 512
    public var sendExpectBuffer = 256
    public var fileContentBuffer = 512
    public var httpContentBuffer = 1_048_576
    public var networkTimeout = 5
    public var programTimeout = 300
    public var stopTimeout = 30
    public var startTimeout = 30
    public var restartTimeout = 30
    public init() {}
}

public enum OnReboot: String, Sendable, Hashable { case start, nostart, laststate }
