import WardenConfig
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

/// What survives a restart of warden itself (`set statefile`).
public struct PersistentState: Sendable, Codable, Hashable {
    public struct ServiceState: Sendable, Codable, Hashable {
        public var monitor: MonitorState
        public var restarts: RestartHistory
        public var pid: Int32?
        public var processStartTicks: UInt64?
        public var lastEvent: Event?
    }

    public var version = 1
    /// The kernel's boot time, to tell a reboot (onreboot applies) from a restart of warden.
    public var bootTime: UInt64 = 0
    public var cycle = 0
    public var services: [String: ServiceState] = [:]
    /// Sites in planned maintenance (`warden maintenance on SITE`); absent in older state files.
    public var maintenance: Set<String>?
    /// The ports of the generation that serves, per service with `instances`; absent in older state files.
    public var instancePorts: [String: [Int]]?

    public init() {}
}

/// Reads and writes the state file atomically: write a temporary file, fsync, rename, fsync the directory.
public struct StateStore: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    public func load() -> PersistentState? {
        guard let bytes = try? FileSystemReader().read(path) else { return nil }
        return try? JSONCoding.decode(PersistentState.self, from: bytes)
    }

    public func save(_ state: PersistentState) throws {
        try AtomicFile.write(try JSONCoding.encode(state), to: path, mode: 0o600)
    }
}
