import WardenConfig
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

// The supervisor's edges: everything it learns about processes, files and ports, and everything it does
// to them, goes through these protocols. The live implementations are the Linux code in WardenPlatform;
// tests script them (WardenTestSupport) and drive time with a manual clock.

/// A program the supervisor started (a start, stop, check or exec program).
public protocol RunningProgram: Sendable {
    var pid: pid_t { get }
    /// What it printed so far, up to the output limit.
    var capturedOutput: String { get }
    /// Its raw wait status once it has exited; nil while it runs.
    var exitStatus: Int32? { get }
    /// Waits for it to exit; returns the raw wait status.
    func wait() async -> Int32
}

/// Starts programs and signals processes.
public protocol ProcessSpawner: Sendable {
    func spawn(
        _ arguments: [String], environment: [String: String], uid: uid_t?, gid: gid_t?, outputLimit: Int,
        outputLine: @escaping @Sendable (String) -> Void
    ) throws -> any RunningProgram
    func signal(_ pid: pid_t, _ signal: Int32)
    /// The pidfile of a start program that stays in the foreground, written for it.
    func writePIDFile(_ pid: pid_t, to path: String) throws
}

/// Watches processes for their exit, whether or not they are warden's children.
public protocol ExitWatching: Sendable {
    /// Calls the watcher's handler once when `pid` exits; false when it cannot watch it (the cycle's
    /// check is then the fallback).
    @discardableResult func watch(_ pid: pid_t) -> Bool
    func unwatch(_ pid: pid_t)
}

/// What the system says about processes, files and itself.
public protocol ProcessInspector: Sendable {
    func readPIDFile(_ path: String) -> pid_t?
    func process(_ pid: pid_t) -> ProcessSnapshot?
    func allProcesses() -> [ProcessSnapshot]
    /// The oldest process whose command line matches the POSIX extended regex.
    func oldestMatching(_ pattern: String) -> ProcessSnapshot?
    /// A file's modification time, in seconds since the epoch.
    func modificationTime(_ path: String) -> Double?
    /// When a process started, in seconds since the epoch.
    func startDate(_ process: ProcessSnapshot) -> Double
    /// The kernel's coarse wall clock, the one that stamps files.
    func coarseNow() -> Double
    func file(_ path: String) -> FileFacts?
    func system() -> SystemSnapshot
    /// Identifies this boot, so a state file from before a reboot is told apart.
    var bootTime: UInt64 { get }
    func userID(_ name: String) -> uid_t?
    func groupID(_ name: String) -> gid_t?
    func primaryGroup(of uid: uid_t) -> gid_t?
    func makeExitWatcher(onExit: @escaping @Sendable (pid_t) -> Void) -> any ExitWatching
    /// The raw wait status of a process that exited, when warden reaped it (its child, or an orphaned
    /// descendant warden is the subreaper of); nil otherwise.
    func exitStatus(of pid: pid_t) async -> Int32?

    // What monit's tests measure beyond the process table (issue 22).
    /// The filesystem a mount point, a block device or a path inside it names.
    func filesystem(_ target: String) -> FilesystemFacts?
    func processIO(_ pid: pid_t) -> ProcessIO?
    func descriptors(of pid: pid_t) -> DescriptorUsage?
    func identity(of pid: pid_t) -> ProcessIdentity?
    func systemDescriptors() -> DescriptorUsage?
    func cpuTicks() -> CPUTicks?
    func checksum(_ path: String, _ kind: HashKind) -> String?
    /// The complete lines a file gained after `position` (see `FileContent.appendedLines`).
    func appendedLines(_ path: String, after position: FilePosition?, lineLimit: Int) -> (lines: [String], position: FilePosition)?
    /// `check network`: an interface's link and counters, and the interface holding an address.
    func network(_ interface: String) -> NetworkSample?
    func interface(holding address: String) -> String?
}

extension ProcessInspector {
    /// Scripted systems reap nothing.
    public func exitStatus(of pid: pid_t) async -> Int32? { nil }
}

/// Tests a port, a socket or a URL.
public protocol ConnectionProber: Sendable {
    func connect(host: String, port: Int, timeout: Duration) async -> ProbeResult
    func connect(unixSocket path: String, timeout: Duration) async -> ProbeResult
    func http(_ request: HTTPProbeRequest) async -> (ProbeResult, body: String)
    /// Speaks a protocol other than HTTP as monit does: a handshake, not a bare connect.
    func check(_ request: ProtocolCheckRequest) async -> ProbeResult
    /// ICMP echo to a host.
    func ping(_ request: PingRequest) async -> ProbeResult
}

extension ConnectionProbe: ConnectionProber {}

// MARK: - Linux

extension SpawnedProgram: RunningProgram {}

/// Programs run without a shell in a session of their own (`Spawner`), reaped by `ChildReaper`.
public struct SystemSpawner: ProcessSpawner {
    public init() {}

    public func spawn(
        _ arguments: [String], environment: [String: String], uid: uid_t?, gid: gid_t?, outputLimit: Int,
        outputLine: @escaping @Sendable (String) -> Void
    ) throws -> any RunningProgram {
        try Spawner.spawn(arguments, environment: environment, uid: uid, gid: gid, outputLimit: outputLimit, outputLine: outputLine)
    }

    public func signal(_ pid: pid_t, _ signal: Int32) {
        kill(pid, signal)
    }

    public func writePIDFile(_ pid: pid_t, to path: String) throws {
        try AtomicFile.write(Array("\(pid)\n".utf8), to: path, mode: 0o644)
    }
}

extension ExitWatcher: ExitWatching {}

/// `/proc`, pidfiles, stat(2) and the user database.
public struct SystemInspector: ProcessInspector {
    public init() {}

    public func readPIDFile(_ path: String) -> pid_t? { PIDFile.read(path) }
    public func process(_ pid: pid_t) -> ProcessSnapshot? { ProcessTable.snapshot(pid) }
    public func allProcesses() -> [ProcessSnapshot] { ProcessTable.all() }
    public func oldestMatching(_ pattern: String) -> ProcessSnapshot? { ProcessTable.oldestMatching(pattern) }
    public func modificationTime(_ path: String) -> Double? { ProcessTable.modificationTime(path) }
    public func startDate(_ process: ProcessSnapshot) -> Double { ProcessTable.startDate(process) }
    public func coarseNow() -> Double { WallClock.coarseNow() }
    public func system() -> SystemSnapshot { SystemSnapshot.read() }
    public var bootTime: UInt64 { ProcessTable.bootTime }
    public func userID(_ name: String) -> uid_t? { Spawner.userID(name) }
    public func groupID(_ name: String) -> gid_t? { Spawner.groupID(name) }
    public func primaryGroup(of uid: uid_t) -> gid_t? { Spawner.primaryGroup(of: uid) }

    public func file(_ path: String) -> FileFacts? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return FileFacts(
            modified: WallClock.Time(info.st_mtim.tv_sec), statusChanged: WallClock.Time(info.st_ctim.tv_sec), size: Int64(info.st_size),
            mode: Int(info.st_mode) & 0o7777, uid: info.st_uid, gid: info.st_gid)
    }

    public func filesystem(_ target: String) -> FilesystemFacts? { Filesystems.facts(target) }
    public func processIO(_ pid: pid_t) -> ProcessIO? { ProcessResources.io(pid) }
    public func descriptors(of pid: pid_t) -> DescriptorUsage? { ProcessResources.descriptors(pid) }
    public func identity(of pid: pid_t) -> ProcessIdentity? { ProcessResources.identity(pid) }
    public func systemDescriptors() -> DescriptorUsage? { ProcessResources.systemDescriptors() }
    public func cpuTicks() -> CPUTicks? { ProcessResources.cpuTicks() }
    public func checksum(_ path: String, _ kind: HashKind) -> String? { FileContent.checksum(path, kind) }

    public func appendedLines(_ path: String, after position: FilePosition?, lineLimit: Int) -> (lines: [String], position: FilePosition)? {
        FileContent.appendedLines(path, after: position, lineLimit: lineLimit)
    }

    public func network(_ interface: String) -> NetworkSample? { NetworkInterface.sample(interface) }
    public func interface(holding address: String) -> String? { NetworkInterface.name(forAddress: address) }

    public func makeExitWatcher(onExit: @escaping @Sendable (pid_t) -> Void) -> any ExitWatching {
        ExitWatcher(onExit: onExit)
    }

    public func exitStatus(of pid: pid_t) async -> Int32? {
        // A pidfd is readable once the process is a zombie; the reaper's thread takes its status a
        // moment later. Until the pid is gone the reaper's record may be an earlier process's with the
        // same pid, so it is read only then. Another process's child is not ours to know.
        for _ in 0..<20 {
            guard let process = ProcessTable.snapshot(pid) else { return ChildReaper.shared.lastStatus(pid) }
            guard process.parentPID == getpid() else { return nil }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return nil
    }
}
