import WardenConfig

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
    /// How long the last start took, from the start program to a running process.
    public var startSeconds: Double?
    /// How long the last check of the service took (all its tests, and what it did about them).
    public var checkSeconds: Double?
    /// How the supervised process last ended, as warden saw it (its pidfd, then the reaper's wait
    /// status): the exit code, or -N when signal N killed it. Nil until one was seen, and for a
    /// process warden is not the reaper of (started before warden, by someone else).
    public var exitStatus: Int?
    /// When that was, wall-clock seconds.
    public var exitedAt: Double?
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
    /// It keeps failing to start (`restart delay`), and the next automatic start is in this many seconds.
    public var backingOff: Bool
    /// For one of the instances of a service with `instances`: which, and whether it gets requests.
    public var instance: Instance?
    public var nextStartSeconds: Double?

    public struct Instance: Sendable, Codable, Hashable {
        public var group: String
        public var index: Int
        public var port: Int
        /// Running with its connection tests passed since its start.
        public var ready: Bool
    }

    /// monit's status words: "OK", "Not monitored", "Initializing", "Does not exist | Connection failed", …
    public var isHealthy: Bool { failures.isEmpty && monitor == .monitored }
}
