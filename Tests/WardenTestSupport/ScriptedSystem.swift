import Synchronization
import WardenCore
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

/// A process table, pidfiles and programs that exist only in a test: the supervisor spawns, signals and
/// inspects them through its seams, and the test says what each command does and kills processes.
public final class ScriptedSystem: ProcessSpawner, ProcessInspector, ConnectionProber, Sendable {
    /// What running a command does.
    public enum Behaviour: Sendable {
        /// An init script: starts the service as a process of its own, writes its pid to the pidfile, exits 0.
        case daemon(pidfile: String)
        /// The program is the service and stays in the foreground.
        case foreground
        /// Exits at once with this status and output.
        case exits(Int32, output: String)
        /// Never exits by itself.
        case hangs
        /// Kills the service the pidfile names, exits 0 (a stop program).
        case stops(pidfile: String)
        /// Kills the processes whose command contains the text, then never exits (a stuck restart program).
        case killsThenHangs(command: String)
    }

    private final class Program: RunningProgram, Sendable {
        let pid: pid_t
        private let state = Mutex<(output: String, status: Int32?, waiters: [CheckedContinuation<Int32, Never>])>(("", nil, []))

        init(pid: pid_t) { self.pid = pid }

        var capturedOutput: String { state.withLock { $0.output } }
        var exitStatus: Int32? { state.withLock { $0.status } }

        func setOutput(_ output: String) { state.withLock { $0.output = output } }

        /// Records the exit; false when it had already exited.
        func exit(_ status: Int32) -> Bool {
            let waiters = state.withLock { state -> [CheckedContinuation<Int32, Never>]? in
                guard state.status == nil else { return nil }
                state.status = status
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters ?? [] { waiter.resume(returning: status) }
            return waiters != nil
        }

        func wait() async -> Int32 {
            await withCheckedContinuation { continuation in
                let done = state.withLock { state -> Int32? in
                    if let status = state.status { return status }
                    state.waiters.append(continuation)
                    return nil
                }
                if let done { continuation.resume(returning: done) }
            }
        }
    }

    private final class Watcher: ExitWatching, Sendable {
        let system: ScriptedSystem
        let onExit: @Sendable (pid_t) -> Void
        init(system: ScriptedSystem, onExit: @escaping @Sendable (pid_t) -> Void) {
            self.system = system
            self.onExit = onExit
        }
        func watch(_ pid: pid_t) -> Bool {
            system.setWatched(pid, true)
            return true
        }
        func unwatch(_ pid: pid_t) { system.setWatched(pid, false) }
    }

    private struct State: Sendable {
        var behaviours: [String: Behaviour] = [:]
        var processes: [pid_t: ProcessSnapshot] = [:]
        var programs: [pid_t: Program] = [:]
        var pidfiles: [String: (pid: pid_t, written: Double)] = [:]
        var files: [String: FileFacts] = [:]
        var ports: [Int: Bool] = [:]
        /// Hosts that answer ping.
        var reachableHosts: Set<String> = []
        /// Probes of a port that fail whatever its state, and how many probes each port had.
        var failingProbes: [Int: Int] = [:]
        var probes: [Int: Int] = [:]
        var commands: [pid_t: String] = [:]
        var watched: Set<pid_t> = []
        var watcher: Watcher?
        var nextPID: pid_t = 1000
        var startTicks: UInt64 = 1
        /// Seconds since the epoch, as pidfile times and process start dates count them.
        var wallNow: Double = 1_000_000
        var spawned: [[String]] = []
        var signals: [(pid: pid_t, signal: Int32)] = []
        var filesystems: [String: FilesystemFacts] = [:]
        var processIO: [pid_t: ProcessIO] = [:]
        var descriptors: [pid_t: DescriptorUsage] = [:]
        var identities: [pid_t: ProcessIdentity] = [:]
        var systemDescriptors: DescriptorUsage?
        var cpuTicks: CPUTicks?
        var checksums: [String: String] = [:]
        /// A file's lines, for content tests: appended lines are those past the last position read.
        var lines: [String: [String]] = [:]
        var networks: [String: NetworkSample] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    fileprivate func setWatched(_ pid: pid_t, _ watched: Bool) {
        state.withLock { state in
            if watched { state.watched.insert(pid) } else { state.watched.remove(pid) }
        }
    }

    /// Says what running the program `path` (the command's first word) does.
    public func script(_ path: String, _ behaviour: Behaviour) {
        state.withLock { $0.behaviours[path] = behaviour }
    }

    /// Every command spawned so far, in order.
    public var spawned: [[String]] { state.withLock { $0.spawned } }

    /// Starts a process outside the supervisor (an app that was already running), pidfile and all.
    @discardableResult
    public func startProcess(pidfile: String? = nil, command: String? = nil) -> ProcessSnapshot {
        state.withLock { state in
            let process = Self.newProcess(&state)
            if let pidfile { state.pidfiles[pidfile] = (process.pid, state.wallNow) }
            if let command { state.commands[process.pid] = command }
            return process
        }
    }

    /// The process dies (kill -9, a crash): its watcher hears of it, a waiting parent gets its status.
    public func crash(_ pid: pid_t) {
        end([pid], status: SIGKILL)
    }

    public func setPort(_ port: Int, open: Bool) { state.withLock { $0.ports[port] = open } }
    public func setReachable(_ host: String, _ reachable: Bool) {
        state.withLock { if reachable { $0.reachableHosts.insert(host) } else { $0.reachableHosts.remove(host) } }
    }
    /// The next `count` probes of the port fail, open or not.
    public func failProbes(of port: Int, count: Int) { state.withLock { $0.failingProbes[port] = count } }
    public func probeCount(of port: Int) -> Int { state.withLock { $0.probes[port] ?? 0 } }
    public func setFile(_ path: String, _ facts: FileFacts?) { state.withLock { $0.files[path] = facts } }
    public func removePIDFile(_ path: String) { _ = state.withLock { $0.pidfiles.removeValue(forKey: path) } }
    /// Moves the wall clock on (pidfile times and process start dates).
    public func passWallTime(_ seconds: Double) { state.withLock { $0.wallNow += seconds } }

    public func isAlive(_ pid: pid_t) -> Bool { state.withLock { $0.processes[pid] != nil } }
    public var signalsSent: [(pid: pid_t, signal: Int32)] { state.withLock { $0.signals } }

    private static func newProcess(_ state: inout State) -> ProcessSnapshot {
        state.nextPID += 1
        state.startTicks += 1
        let process = ProcessSnapshot(
            pid: state.nextPID, parentPID: 1, state: "S", startTime: state.startTicks, cpuTicks: 0, childrenCPUTicks: 0,
            residentBytes: 1 << 20, threads: 1, processGroup: state.nextPID)
        state.processes[process.pid] = process
        return process
    }

    /// Ends processes outside the lock, so the handlers they call may come back in.
    private func end(_ pids: [pid_t], status: Int32) {
        let ended = state.withLock { state in
            pids.compactMap { pid -> (pid: pid_t, program: Program?, onExit: (@Sendable (pid_t) -> Void)?)? in
                guard state.processes.removeValue(forKey: pid) != nil else { return nil }
                let onExit = state.watched.remove(pid) != nil ? state.watcher?.onExit : nil
                return (pid, state.programs[pid], onExit)
            }
        }
        for process in ended {
            _ = process.program?.exit(status)
            process.onExit?(process.pid)
        }
    }

    // MARK: - ProcessSpawner

    public func spawn(
        _ arguments: [String], environment: [String: String], uid: uid_t?, gid: gid_t?, outputLimit: Int,
        outputLine: @escaping @Sendable (String) -> Void
    ) throws -> any RunningProgram {
        let (program, behaviour, stopped) = state.withLock { state -> (Program, Behaviour, [pid_t]) in
            state.spawned.append(arguments)
            let process = Self.newProcess(&state)
            let program = Program(pid: process.pid)
            state.programs[process.pid] = program
            let behaviour = state.behaviours[arguments.first ?? ""] ?? .exits(127, output: "not scripted")
            var stopped: [pid_t] = []
            switch behaviour {
            case .daemon(let pidfile):
                let service = Self.newProcess(&state)
                state.pidfiles[pidfile] = (service.pid, state.wallNow)
            case .stops(let pidfile):
                stopped = state.pidfiles[pidfile].map { [$0.pid] } ?? []
            case .killsThenHangs(let command):
                stopped = state.commands.filter { $0.value.contains(command) }.map(\.key)
            case .foreground, .hangs, .exits:
                break
            }
            return (program, behaviour, stopped)
        }
        end(stopped, status: SIGTERM)
        switch behaviour {
        case .daemon, .stops:
            end([program.pid], status: 0)
        case .exits(let code, let output):
            program.setOutput(output)
            end([program.pid], status: code << 8)
        case .foreground, .hangs, .killsThenHangs:
            break
        }
        return program
    }

    public func signal(_ pid: pid_t, _ signal: Int32) {
        let targets = state.withLock { state -> [pid_t] in
            state.signals.append((pid, signal))
            guard signal == SIGTERM || signal == SIGKILL else { return [] }
            return pid < 0 ? state.processes.values.filter { $0.processGroup == -pid }.map(\.pid) : [pid]
        }
        end(targets, status: signal)
    }

    public func writePIDFile(_ pid: pid_t, to path: String) throws {
        state.withLock { $0.pidfiles[path] = (pid, $0.wallNow) }
    }

    // MARK: - ProcessInspector

    public func readPIDFile(_ path: String) -> pid_t? { state.withLock { $0.pidfiles[path]?.pid } }
    public func process(_ pid: pid_t) -> ProcessSnapshot? { state.withLock { $0.processes[pid] } }
    public func allProcesses() -> [ProcessSnapshot] { state.withLock { Array($0.processes.values) } }
    /// A substring of the command stands in for the regular expression.
    public func oldestMatching(_ pattern: String) -> ProcessSnapshot? {
        state.withLock { state in
            state.commands.filter { state.processes[$0.key] != nil && $0.value.contains(pattern) }.keys.min().flatMap { state.processes[$0] }
        }
    }
    public func modificationTime(_ path: String) -> Double? { state.withLock { $0.pidfiles[path]?.written } }
    /// A process started when the wall clock said so: scripted processes start "now".
    public func startDate(_ process: ProcessSnapshot) -> Double { state.withLock { $0.wallNow } }
    public func coarseNow() -> Double { state.withLock { $0.wallNow } }
    public func file(_ path: String) -> FileFacts? { state.withLock { $0.files[path] } }
    public var bootTime: UInt64 { 1 }
    public func userID(_ name: String) -> uid_t? { name == "root" ? 0 : nil }
    public func groupID(_ name: String) -> gid_t? { name == "root" ? 0 : nil }
    public func primaryGroup(of uid: uid_t) -> gid_t? { 0 }

    public func system() -> SystemSnapshot {
        SystemSnapshot(
            load1: 0, load5: 0, load15: 0, memoryTotalBytes: 1 << 30, memoryAvailableBytes: 1 << 29, swapTotalBytes: 0, swapFreeBytes: 0,
            uptimeSeconds: 100, cpuCount: 2, cpuTotalTicks: 0, cpuIdleTicks: 0)
    }

    // What issue 22's tests measure, as the test says it is.
    public func setFilesystem(_ target: String, _ facts: FilesystemFacts?) { state.withLock { $0.filesystems[target] = facts } }
    public func setProcessIO(_ pid: pid_t, _ io: ProcessIO?) { state.withLock { $0.processIO[pid] = io } }
    public func setDescriptors(_ pid: pid_t, _ usage: DescriptorUsage?) { state.withLock { $0.descriptors[pid] = usage } }
    public func setIdentity(_ pid: pid_t, _ identity: ProcessIdentity?) { state.withLock { $0.identities[pid] = identity } }
    public func setSystemDescriptors(_ usage: DescriptorUsage?) { state.withLock { $0.systemDescriptors = usage } }
    public func setCPUTicks(_ ticks: CPUTicks?) { state.withLock { $0.cpuTicks = ticks } }
    public func setChecksum(_ path: String, _ digest: String?) { state.withLock { $0.checksums[path] = digest } }
    public func appendLines(_ path: String, _ lines: [String]) { state.withLock { $0.lines[path, default: []] += lines } }

    public func filesystem(_ target: String) -> FilesystemFacts? { state.withLock { $0.filesystems[target] } }
    /// An interface as `check network` reads it; nil removes it.
    public func setNetwork(_ interface: String, _ sample: NetworkSample?) { state.withLock { $0.networks[interface] = sample } }
    public func network(_ interface: String) -> NetworkSample? { state.withLock { $0.networks[interface] } }
    /// A scripted interface holds the address `10.0.0.N` for an interface named `ethN`.
    public func interface(holding address: String) -> String? {
        guard address.hasPrefix("10.0.0.") else { return nil }
        return "eth" + address.dropFirst("10.0.0.".count)
    }
    public func processIO(_ pid: pid_t) -> ProcessIO? { state.withLock { $0.processIO[pid] } }
    public func descriptors(of pid: pid_t) -> DescriptorUsage? { state.withLock { $0.descriptors[pid] } }
    public func identity(of pid: pid_t) -> ProcessIdentity? { state.withLock { $0.identities[pid] } }
    public func systemDescriptors() -> DescriptorUsage? { state.withLock { $0.systemDescriptors } }
    public func cpuTicks() -> CPUTicks? { state.withLock { $0.cpuTicks } }
    public func checksum(_ path: String, _ kind: HashKind) -> String? { state.withLock { $0.checksums[path] } }

    /// Positions count lines, not bytes; the first read starts at the end, as the real one does.
    public func appendedLines(_ path: String, after position: FilePosition?, lineLimit: Int) -> (lines: [String], position: FilePosition)? {
        state.withLock { state in
            guard let lines = state.lines[path] else { return nil }
            let start = position.map { Int($0.offset) } ?? lines.count
            return (Array(lines[min(start, lines.count)...]), FilePosition(inode: 1, offset: UInt64(lines.count)))
        }
    }

    public func makeExitWatcher(onExit: @escaping @Sendable (pid_t) -> Void) -> any ExitWatching {
        let watcher = Watcher(system: self, onExit: onExit)
        state.withLock { $0.watcher = watcher }
        return watcher
    }

    // MARK: - ConnectionProber

    private func probe(_ port: Int) -> Bool {
        state.withLock { state in
            state.probes[port, default: 0] += 1
            if let failing = state.failingProbes[port], failing > 0 {
                state.failingProbes[port] = failing - 1
                return false
            }
            return state.ports[port] ?? false
        }
    }

    public func connect(host: String, port: Int, timeout: Duration) async -> ProbeResult {
        let open = probe(port)
        return ProbeResult(succeeded: open, message: open ? "connection succeeded" : "connection refused", responseTime: .milliseconds(1))
    }

    public func connect(unixSocket path: String, timeout: Duration) async -> ProbeResult {
        ProbeResult(succeeded: false, message: "no such socket", responseTime: .zero)
    }

    public func http(_ request: HTTPProbeRequest) async -> (ProbeResult, body: String) {
        let open = probe(request.port)
        return (ProbeResult(succeeded: open, message: open ? "HTTP status 200" : "connection refused", responseTime: .milliseconds(1), status: open ? 200 : nil), "")
    }

    public func ping(_ request: PingRequest) async -> ProbeResult {
        let reachable = state.withLock { $0.reachableHosts.contains(request.host) }
        return ProbeResult(
            succeeded: reachable, message: reachable ? "ping test succeeded" : "ping test failed -- no response", responseTime: .milliseconds(1))
    }

    /// A scripted port speaks every protocol while it is open.
    public func check(_ request: ProtocolCheckRequest) async -> ProbeResult {
        switch request.target {
        case .tcp(_, let port), .udp(_, let port):
            return await connect(host: "127.0.0.1", port: port, timeout: request.timeout)
        case .unixSocket(let path):
            return await connect(unixSocket: path, timeout: request.timeout)
        }
    }
}
