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
        /// `every "cron"`: checked in the minutes the schedule names.
        case cron(CronSchedule)
        /// `not every "cron"`: checked in every other minute.
        case notCron(CronSchedule)
    }

    public var name: String
    public var kind: Kind
    public var start: ProgramSpec?
    public var stop: ProgramSpec?
    public var restart: ProgramSpec?
    public var rules: [Rule] = []
    /// `ignore content =|!= "REGEX"`: lines of a file its content tests skip.
    public var ignoredContent: [Comparison<String>] = []
    public var restartLimits: [RestartLimit] = []
    /// `restart delay MIN to MAX [reset after N]`: how automatic starts of a crashing service space out;
    /// nil when the control file does not say (see `effectiveRestartBackoff`).
    public var restartBackoff: RestartBackoff?
    public var dependencies: [String] = []
    public var groups: [String] = []
    public var mode: Mode = .active
    public var every: Every = .always
    public var alerts: [AlertRecipient] = []
    public var noAlerts: [String] = []
    public var onReboot: OnReboot?
    /// `instances N ports A-B`; nil for one process, as in monit.
    public var instances: InstanceSettings?
    /// Set on each copy of a service with `instances` (see `instance(_:port:)`).
    public var instanceOf: InstanceIdentity?
    /// `deploy timeout N seconds`: how long a new generation may take to be ready.
    public var deployTimeout: Duration = .seconds(60)
    /// `drain timeout N seconds`: how long a planned stop waits for the requests in flight.
    public var drainTimeout: Duration = .seconds(30)
    /// `log …`: the file its start program's output goes to, and its rotation.
    public var log: ServiceLogSettings?
    public var location: FileLocation

    public init(name: String, kind: Kind, location: FileLocation) {
        self.name = name
        self.kind = kind
        self.location = location
    }
}

extension Service {
    /// Without `restart delay`: a service that has `N restarts within M cycles` keeps monit's spacing
    /// (its limit is counted in starts, which a growing delay would stretch); any other never gives up,
    /// and backs off from 1 s to 60 s instead.
    public var effectiveRestartBackoff: RestartBackoff {
        restartBackoff ?? (restartLimits.isEmpty ? .growing : .monit)
    }
}

/// The delay before each further automatic start of a service that keeps failing grows from `initial`,
/// doubling up to `maximum`; it starts over once the service has passed its checks for `reset`.
public struct RestartBackoff: Sendable, Hashable {
    public var initial: Duration = .seconds(1)
    public var maximum: Duration = .seconds(60)
    public var reset: Duration = .seconds(60)
    public init() {}

    /// 1 s, 2 s, 4 s … 60 s.
    public static let growing = RestartBackoff()
    /// A second between automatic starts, as monit's cycle spaces them.
    public static let monit: RestartBackoff = {
        var spacing = RestartBackoff()
        spacing.maximum = .seconds(1)
        return spacing
    }()

    /// The delay after the `attempt`th automatic start in a row (1-based), before jitter.
    public func delay(after attempt: Int) -> Duration {
        var delay = initial
        for _ in 1..<max(1, attempt) where delay < maximum { delay = delay * 2 }
        return min(delay, maximum)
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
