import WardenConfig

#if canImport(Glibc)
import Glibc
#endif

/// Whether warden watches a service.
public enum MonitorState: String, Sendable, Codable, Hashable {
    case monitored, notMonitored, initializing
}

/// What warden knows about one service between cycles.
struct ServiceRuntime {
    var config: WardenConfig.Service
    var monitor: MonitorState = .initializing
    /// The process warden believes is the service, with its start time so a recycled pid is not it.
    var pid: pid_t?
    var processStartTicks: UInt64?
    var startedAt: WallClock.Time?
    /// Checks currently failing, with their last message (the status column joins them).
    var failures: [EventKind: String] = [:]
    var rules: [RuleState] = []
    var restarts = RestartHistory()
    /// An action (start, stop, restart) is under way; checks of this service wait for it.
    var busy = false
    /// A planned stop is under way: the proxy holds new requests from the moment it begins.
    var stopping = false
    /// After a start, connection failures count only once a test has passed or the start timeout is over.
    var connectionGraceUntil: ContinuousClock.Instant?
    var lastCheck: WallClock.Time?
    var lastAutomaticStart: ContinuousClock.Instant?
    var lastCPUTicks: UInt64?
    var lastCPUSample: ContinuousClock.Instant?
    var metrics = ServiceMetrics()
    var recentEvents: [Event] = []
    /// `every N cycles`: cycles left until the next check.
    var skipCycles = 0

    init(config: WardenConfig.Service) {
        self.config = config
        self.rules = Array(repeating: RuleState(), count: config.rules.count)
    }

    mutating func remember(_ event: Event) {
        recentEvents.append(event)
        if recentEvents.count > 50 { recentEvents.removeFirst() }
    }
}

/// Figures of the last check, for the dashboard, the CLI and metrics.
public struct ServiceMetrics: Sendable, Codable, Hashable {
    public var cpuPercent: Double?
    public var totalCPUPercent: Double?
    public var memoryBytes: UInt64?
    public var totalMemoryBytes: UInt64?
    public var children: Int?
    public var threads: Int?
    public var responseTime: Double?
    public var programStatus: Int?
    public var programOutput: String?
    public init() {}
}

/// A read-only view of one service, for status output, the dashboard and the API.
public struct ServiceSnapshot: Sendable, Codable, Hashable {
    public var name: String
    public var type: String
    public var monitType: Int
    public var status: String
    public var monitor: MonitorState
    public var mode: String
    public var pid: Int32?
    public var uptimeSeconds: Double?
    public var restarts: Int
    public var failures: [String]
    public var groups: [String]
    public var dependencies: [String]
    public var metrics: ServiceMetrics
    public var lastCheck: Double?
    public var events: [Event]
    public var busy: Bool
    /// The proxy may send it requests: its process runs, it is not failing to exist, and no planned
    /// stop is under way.
    public var acceptsTraffic: Bool

    /// monit's status words: "OK", "Not monitored", "Initializing", "Does not exist | Connection failed", …
    public var isHealthy: Bool { failures.isEmpty && monitor == .monitored }
}
