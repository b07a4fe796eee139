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
    public var limits = Limits()
    public var onReboot: OnReboot = .start
    public var services: [Service] = []
    public var proxy: ProxySettings?
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

public struct MailServer: Sendable, Hashable {
    public enum Security: Sendable, Hashable { case none, startTLS, implicitTLS }
    public var host: String
    public var port: Int?
    public var username: String?
    public var password: String?
    public var security: Security = .none
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
        instance, invalid, link, nonexist, packetin, packetout, permission, pid, ppid, resource,
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
    public var address: String
    public var filter: Filter = .all
    /// `with reminder on N cycles`: repeat the alert every N cycles while the failure lasts.
    public var reminder: Int?
    public var mailFormat: MailFormat?
}

public struct HTTPDSettings: Sendable, Hashable {
    public var port: Int?
    public var address: String?
    public var unixSocket: String?
    public var allow: [AllowRule] = []
    public var ssl: SSLSettings?
    public init() {}
}

public struct SSLSettings: Sendable, Hashable {
    public var pemfile: String?
    public var clientPemfile: String?
    public var selfSigned: Bool = false
}

public enum AllowRule: Sendable, Hashable {
    /// A host name (resolved when the daemon loads the file) or an address.
    case host(String)
    /// `NET/MASK` or `NET/BITS`.
    case network(address: String, prefix: Int)
    case user(name: String, password: String, readOnly: Bool)
    case htpasswd(path: String, hash: PasswordHash, users: [String], readOnly: Bool)
    /// `allow @group` (PAM groups).
    case group(String, readOnly: Bool)

    public enum PasswordHash: String, Sendable, Hashable { case cleartext, md5, crypt }

    public var holdsCredentials: Bool {
        if case .user = self { return true }
        return false
    }
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

/// A program to run: already split into arguments as monit does (no shell).
public struct ProgramSpec: Sendable, Hashable {
    public var arguments: [String]
    public var uid: String?
    public var gid: String?
    /// Seconds; `nil` means the default for the program's role.
    public var timeout: Int?

    public init(arguments: [String], uid: String? = nil, gid: String? = nil, timeout: Int? = nil) {
        self.arguments = arguments
        self.uid = uid
        self.gid = gid
        self.timeout = timeout
    }

    public var commandLine: String { arguments.joined(separator: " ") }

    /// Splits a monit program string into arguments: whitespace separates, quotes group.
    public static func split(_ command: String) -> [String] {
        var arguments: [String] = []
        var current = ""
        var quote: Character?
        var inArgument = false
        for character in command {
            if let q = quote {
                if character == q { quote = nil } else { current.append(character) }
            } else if character == "\"" || character == "'" {
                quote = character
                inArgument = true
            } else if character.isWhitespace {
                if inArgument { arguments.append(current) }
                current = ""
                inArgument = false
            } else {
                current.append(character)
                inArgument = true
            }
        }
        if inArgument { arguments.append(current) }
        return arguments
    }
}

public struct Service: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        case process(ProcessMatch)
        case program(ProgramSpec)
        case file(path: String)
        case fifo(path: String)
        case directory(path: String)
        case filesystem(path: String)
        case host(address: String)
        case system
        case network(NetworkTarget)

        /// monit's numeric service type, as in its XML status.
        public var monitType: Int {
            switch self {
            case .filesystem: 0
            case .directory: 1
            case .file: 2
            case .process: 3
            case .host: 4
            case .system: 5
            case .fifo: 6
            case .program: 7
            case .network: 8
            }
        }

        public var displayName: String {
            switch self {
            case .process: "Process"
            case .program: "Program"
            case .file: "File"
            case .fifo: "Fifo"
            case .directory: "Directory"
            case .filesystem: "Filesystem"
            case .host: "Remote Host"
            case .system: "System"
            case .network: "Network"
            }
        }
    }

    public enum ProcessMatch: Sendable, Hashable {
        case pidfile(String)
        case matching(String)
    }

    public enum NetworkTarget: Sendable, Hashable {
        case address(String)
        case interface(String)
    }

    public enum Mode: String, Sendable, Hashable { case active, passive, manual }

    public enum Every: Sendable, Hashable {
        case always
        case cycles(Int)
        case cron(String)
        case notCron(String)
    }

    public var name: String
    public var kind: Kind
    public var start: ProgramSpec?
    public var stop: ProgramSpec?
    public var restart: ProgramSpec?
    public var rules: [Rule] = []
    public var restartLimits: [RestartLimit] = []
    public var dependencies: [String] = []
    public var groups: [String] = []
    public var mode: Mode = .active
    public var every: Every = .always
    public var alerts: [AlertRecipient] = []
    public var noAlerts: [String] = []
    public var onReboot: OnReboot?
    public var location: FileLocation

    public init(name: String, kind: Kind, location: FileLocation) {
        self.name = name
        self.kind = kind
        self.location = location
    }
}

/// `if N restarts within M cycles then ACTION`.
public struct RestartLimit: Sendable, Hashable {
    public var restarts: Int
    public var cycles: Int
    public var action: Action
    public var location: FileLocation
}

/// `if <condition> [for …] then ACTION [else if succeeded then ACTION]`.
public struct Rule: Sendable, Hashable {
    public var condition: Condition
    public var window: FailureWindow
    public var action: Action
    public var recoveryAction: Action?
    public var location: FileLocation

    public init(
        condition: Condition, window: FailureWindow = .once, action: Action, recoveryAction: Action? = nil,
        location: FileLocation
    ) {
        self.condition = condition
        self.window = window
        self.action = action
        self.recoveryAction = recoveryAction
        self.location = location
    }
}

/// How many failures in how many cycles make a rule fire.
public struct FailureWindow: Sendable, Hashable {
    public var times: Int
    public var cycles: Int
    public static let once = FailureWindow(times: 1, cycles: 1)
    public init(times: Int, cycles: Int) {
        self.times = times
        self.cycles = cycles
    }
}

public enum Action: Sendable, Hashable {
    case alert
    case restart
    case start
    case stop
    case unmonitor
    /// monit's `timeout`: an alias of `unmonitor` that names the event `timeout`.
    case timeout
    case exec(ProgramSpec, repeatEvery: Int?)

    /// Whether performing the action waits for a program or a process (start, stop, restart).
    public var waits: Bool {
        switch self {
        case .restart, .start, .stop: true
        case .alert, .unmonitor, .timeout, .exec: false
        }
    }

    public var name: String {
        switch self {
        case .alert: "alert"
        case .restart: "restart"
        case .start: "start"
        case .stop: "stop"
        case .unmonitor: "unmonitor"
        case .timeout: "timeout"
        case .exec: "exec"
        }
    }
}

public enum ComparisonOperator: String, Sendable, Hashable {
    case greater = ">", less = "<", equal = "=", notEqual = "!=", greaterOrEqual = ">=", lessOrEqual = "<="

    public func compare<T: Comparable>(_ lhs: T, _ rhs: T) -> Bool {
        switch self {
        case .greater: lhs > rhs
        case .less: lhs < rhs
        case .equal: lhs == rhs
        case .notEqual: lhs != rhs
        case .greaterOrEqual: lhs >= rhs
        case .lessOrEqual: lhs <= rhs
        }
    }
}

/// A quantity with its unit resolved: percentages stay percent, sizes become bytes, times seconds.
public enum Quantity: Sendable, Hashable {
    case percent(Double)
    case bytes(Double)
    case count(Double)
    case seconds(Double)
    /// Bytes per second, or operations/packets per second.
    case rate(Double, unit: String)
}

public enum Condition: Sendable, Hashable {
    case connection(ConnectionTest)
    case resource(ResourceMetric, ComparisonOperator, Quantity)
    /// `does not exist` (process/file) or `exist` for a service that must not.
    case nonexistence
    case existence
    case timestamp(ComparisonOperator, seconds: Int)
    case changedTimestamp
    case size(ComparisonOperator, bytes: Int64)
    case changedSize
    case changedPID
    case changedPPID
    case uptime(ComparisonOperator, seconds: Int)
    case programStatus(ComparisonOperator, Int)
    case changedProgramStatus
    case checksum(expected: String?, hash: String?)
    case changedChecksum
    case permission(Int)
    case uid(String)
    case euid(String)
    case gid(String)
    case content(ComparisonOperator, regex: String)
    case ping(count: Int?, timeout: Int?)
    case link(up: Bool)
    case changedLink
    case saturation(ComparisonOperator, percent: Double)
    case filesystemFlags
}

public enum ResourceMetric: String, Sendable, Hashable {
    case cpu, totalCPU, cpuUser, cpuSystem, cpuWait, cpuNice, cpuHardIRQ, cpuSoftIRQ, cpuSteal, cpuGuest
    case memory, totalMemory, swap, threads, children
    case loadAverage1, loadAverage5, loadAverage15
    case loadAveragePerCore1, loadAveragePerCore5, loadAveragePerCore15
    case fileDescriptors, totalFileDescriptors
    case readBytes, writeBytes, readOperations, writeOperations, diskReadBytes, diskWriteBytes
    case spaceUsage, inodeUsage, spaceFree, inodeFree, serviceTime
    case upload, download, totalUpload, totalDownload
}

public struct ConnectionTest: Sendable, Hashable {
    public enum Target: Sendable, Hashable {
        case url(HTTPURL)
        case port(host: String, port: Int, transport: Transport)
        case unixSocket(String)
    }
    public enum Transport: String, Sendable, Hashable { case tcp, udp, tcpSSL = "tcpssl" }

    public var target: Target
    public var proto: ConnectionProtocol = .generic
    /// Seconds; monit's default is 5 (`networkTimeout`).
    public var timeout: Int?
    public var retry: Int?

    public init(target: Target) { self.target = target }
}

public struct HTTPURL: Sendable, Hashable, Codable, CustomStringConvertible {
    public var scheme: String
    public var host: String
    public var port: Int
    /// Path and query, at least `/`.
    public var path: String
    public var user: String?
    public var password: String?

    public var description: String {
        let defaultPort = scheme == "https" ? 443 : 80
        return "\(scheme)://\(host)\(port == defaultPort ? "" : ":\(port)")\(path)"
    }
}

public enum ConnectionProtocol: Sendable, Hashable {
    case generic
    case http(HTTPCheck)
    /// Protocols monit speaks that warden checks as a plain connection (mysql, smtp, ssh, …).
    case named(String)
}

public struct HTTPCheck: Sendable, Hashable {
    /// Path and query to request; `/` by default.
    public var request = "/"
    public var hostHeader: String?
    /// `status OP N`; without it, any status below 400 passes, as in monit.
    public var status: Comparison<Int>?
    /// `content ==|!= "REGEX"`: an unanchored POSIX extended regex searched in the body.
    public var content: Comparison<String>?
    public var checksum: String?

    public init() {}
}

public struct Comparison<Value: Sendable & Hashable>: Sendable, Hashable {
    public var op: ComparisonOperator
    public var value: Value
    public init(_ op: ComparisonOperator, _ value: Value) {
        self.op = op
        self.value = value
    }
}

/// `set proxy`: where the reverse proxy listens and whom it runs as.
public struct ProxySettings: Sendable, Hashable {
    public struct Listen: Sendable, Hashable {
        public var address: String
        public var port: Int
        public var certificate: String?
        public var key: String?
        public var isTLS: Bool { certificate != nil }
    }

    public var listens: [Listen] = []
    public var user: String?
    public var group: String?
    /// Seconds.
    public var connectTimeout = 5
    public var readTimeout = 60
    public var sendTimeout = 60
    public var idleTimeout = 75
    public var headerTimeout = 10
    public var maximumBodyBytes = 100 * 1_048_576
    public var maximumConnections = 10_000
    public init() {}
}

/// `check site NAME with host "h" alias "a"`: a virtual host of the proxy.
/// Codable so the daemon can hand new sites to a proxy worker that may not read the control file.
public struct Site: Sendable, Hashable, Codable {
    public enum Target: Sendable, Hashable, Codable {
        /// `pass /prefix to http://host:port/path [for service NAME]`.
        case upstream(HTTPURL, service: String?)
        /// `serve /prefix from /dir`.
        case directory(String)
    }

    public struct Route: Sendable, Hashable, Codable {
        public var prefix: String
        public var target: Target
    }

    public var name: String
    public var hosts: [String]
    public var routes: [Route] = []
    public var accessLog: String?
    public var errorLog: String?
    public var maintenancePage: String?
    /// Seconds a request waits for the service to come back before the maintenance page.
    public var hold = 0
    public var location: FileLocation

    public init(name: String, hosts: [String], location: FileLocation) {
        self.name = name
        self.hosts = hosts
        self.location = location
    }

    /// The service named by a `for service` route, if any.
    public var services: [String] {
        routes.compactMap { if case .upstream(_, let service) = $0.target { return service } else { return nil } }
    }
}
