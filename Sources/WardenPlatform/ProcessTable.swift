import CWardenShims
#if canImport(Glibc)
import Glibc
#endif

/// What `/proc/PID/stat` says about one process.
public struct ProcessSnapshot: Sendable, Hashable {
    public var pid: pid_t
    public var parentPID: pid_t
    /// `R`, `S`, `D`, `Z`, `T`, …
    public var state: Character
    /// Clock ticks since boot when the process started: with the pid, its identity.
    public var startTime: UInt64
    /// User + system CPU ticks of the process itself and of its reaped children.
    public var cpuTicks: UInt64
    public var childrenCPUTicks: UInt64
    public var residentBytes: UInt64
    public var threads: Int
    public var processGroup: pid_t

    public var isZombie: Bool { state == "Z" || state == "X" }

    public init(
        pid: pid_t, parentPID: pid_t, state: Character, startTime: UInt64, cpuTicks: UInt64, childrenCPUTicks: UInt64,
        residentBytes: UInt64, threads: Int, processGroup: pid_t
    ) {
        self.pid = pid
        self.parentPID = parentPID
        self.state = state
        self.startTime = startTime
        self.cpuTicks = cpuTicks
        self.childrenCPUTicks = childrenCPUTicks
        self.residentBytes = residentBytes
        self.threads = threads
        self.processGroup = processGroup
    }
}

/// Reads Linux's `/proc`, as monit's `sysdep_LINUX.c` does.
public enum ProcessTable {
    public static let clockTicksPerSecond = UInt64(sysconf(Int32(_SC_CLK_TCK)))
    public static let pageSize = UInt64(sysconf(Int32(_SC_PAGESIZE)))
    public static let cpuCount = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    /// The CPUs warden may run on (its affinity mask, e.g. under `taskset`), for sizing thread pools.
    public static var usableCPUCount: Int {
        let count = Int(warden_usable_cpu_count())
        return count > 0 ? count : cpuCount
    }

    public static func snapshot(_ pid: pid_t) -> ProcessSnapshot? {
        guard pid > 0, let text = readSmallFile("/proc/\(pid)/stat") else { return nil }
        // The command name is in parentheses and may itself hold spaces or parentheses.
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] is the state (field 3 of stat(5)); field N of stat(5) is fields[N - 3].
        guard fields.count > 21, let state = fields[0].first else { return nil }
        func number(_ field: Int) -> UInt64 { UInt64(fields[field - 3]) ?? 0 }
        return ProcessSnapshot(
            pid: pid,
            parentPID: pid_t(number(4)),
            state: state,
            startTime: number(22),
            cpuTicks: number(14) + number(15),
            childrenCPUTicks: number(16) + number(17),
            residentBytes: number(24) * pageSize,
            threads: Int(number(20)),
            processGroup: pid_t(number(5)))
    }

    /// True when the pid exists and is not a zombie (a zombie counts as not running).
    public static func isRunning(_ pid: pid_t) -> Bool {
        guard let snapshot = snapshot(pid) else { return false }
        return !snapshot.isZombie
    }

    public static func allPIDs() -> [pid_t] {
        guard let directory = opendir("/proc") else { return [] }
        defer { closedir(directory) }
        var pids: [pid_t] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if let pid = pid_t(name) { pids.append(pid) }
        }
        return pids
    }

    /// The command line with arguments joined by spaces, as monit matches it.
    public static func commandLine(_ pid: pid_t) -> String? {
        guard var bytes = readSmallBytes("/proc/\(pid)/cmdline"), !bytes.isEmpty else { return nil }
        if bytes.last == 0 { bytes.removeLast() }
        return String(decoding: bytes.map { $0 == 0 ? UInt8(ascii: " ") : $0 }, as: UTF8.self)
    }

    /// Every live process, one snapshot each (used for children counts and totals).
    public static func all() -> [ProcessSnapshot] {
        allPIDs().compactMap(snapshot)
    }

    static func readSmallFile(_ path: String) -> String? {
        readSmallBytes(path).map { String(decoding: $0, as: UTF8.self) }
    }

    static func readSmallBytes(_ path: String, limit: Int = 65536) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while result.count < limit {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            result.append(contentsOf: buffer[0..<count])
        }
        return result
    }
}

/// Machine-wide figures from `/proc` for `check system` and the dashboard.
public struct SystemSnapshot: Sendable {
    public var load1: Double
    public var load5: Double
    public var load15: Double
    public var memoryTotalBytes: UInt64
    public var memoryAvailableBytes: UInt64
    public var swapTotalBytes: UInt64
    public var swapFreeBytes: UInt64
    public var uptimeSeconds: Double
    public var cpuCount: Int
    /// Total and idle jiffies from `/proc/stat`, for CPU usage between two snapshots.
    public var cpuTotalTicks: UInt64
    public var cpuIdleTicks: UInt64

    public init(
        load1: Double, load5: Double, load15: Double, memoryTotalBytes: UInt64, memoryAvailableBytes: UInt64, swapTotalBytes: UInt64,
        swapFreeBytes: UInt64, uptimeSeconds: Double, cpuCount: Int, cpuTotalTicks: UInt64, cpuIdleTicks: UInt64
    ) {
        self.load1 = load1
        self.load5 = load5
        self.load15 = load15
        self.memoryTotalBytes = memoryTotalBytes
        self.memoryAvailableBytes = memoryAvailableBytes
        self.swapTotalBytes = swapTotalBytes
        self.swapFreeBytes = swapFreeBytes
        self.uptimeSeconds = uptimeSeconds
        self.cpuCount = cpuCount
        self.cpuTotalTicks = cpuTotalTicks
        self.cpuIdleTicks = cpuIdleTicks
    }

    public static func read() -> SystemSnapshot {
        var snapshot = SystemSnapshot(
            load1: 0, load5: 0, load15: 0, memoryTotalBytes: 0, memoryAvailableBytes: 0, swapTotalBytes: 0,
            swapFreeBytes: 0, uptimeSeconds: 0, cpuCount: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))),
            cpuTotalTicks: 0, cpuIdleTicks: 0)
        if let load = ProcessTable.readSmallFile("/proc/loadavg") {
            let parts = load.split(separator: " ").compactMap { Double($0) }
            if parts.count >= 3 { (snapshot.load1, snapshot.load5, snapshot.load15) = (parts[0], parts[1], parts[2]) }
        }
        if let meminfo = ProcessTable.readSmallFile("/proc/meminfo") {
            for line in meminfo.split(separator: "\n") {
                let parts = line.split(separator: " ", omittingEmptySubsequences: true)
                guard parts.count >= 2, let kilobytes = UInt64(parts[1]) else { continue }
                switch parts[0] {
                case "MemTotal:": snapshot.memoryTotalBytes = kilobytes * 1024
                case "MemAvailable:": snapshot.memoryAvailableBytes = kilobytes * 1024
                case "SwapTotal:": snapshot.swapTotalBytes = kilobytes * 1024
                case "SwapFree:": snapshot.swapFreeBytes = kilobytes * 1024
                default: break
                }
            }
        }
        if let uptime = ProcessTable.readSmallFile("/proc/uptime"), let first = uptime.split(separator: " ").first {
            snapshot.uptimeSeconds = Double(first) ?? 0
        }
        if let stat = ProcessTable.readSmallFile("/proc/stat"), let cpu = stat.split(separator: "\n").first {
            let ticks = cpu.split(separator: " ").dropFirst().compactMap { UInt64($0) }
            snapshot.cpuTotalTicks = ticks.reduce(0, +)
            snapshot.cpuIdleTicks = ticks.count > 4 ? ticks[3] + ticks[4] : 0
        }
        return snapshot
    }
}

/// Reads a pidfile as monit does: the first number, surrounding whitespace and newline tolerated.
public enum PIDFile {
    public static func read(_ path: String) -> pid_t? {
        guard let text = ProcessTable.readSmallFile(path) else { return nil }
        let trimmed = text.drop { $0.isWhitespace }.prefix { !$0.isWhitespace }
        guard let pid = pid_t(trimmed), pid > 0 else { return nil }
        return pid
    }
}

extension ProcessTable {
    /// Seconds since the epoch at which the kernel booted (`btime` in /proc/stat).
    public static let bootTime: UInt64 = {
        guard let text = readSmallFile("/proc/stat") else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("btime ") {
            return UInt64(line.dropFirst(6)) ?? 0
        }
        return 0
    }()

    /// Hands the free pages of every malloc arena back to the kernel (glibc keeps them otherwise).
    public static func releaseFreeMemory() {
        warden_release_free_memory()
    }

    /// When the process started, in seconds since the epoch.
    public static func startDate(_ snapshot: ProcessSnapshot) -> Double {
        Double(bootTime) + Double(snapshot.startTime) / Double(clockTicksPerSecond)
    }

    /// The oldest live process whose command line matches a POSIX extended regex, as `check process … matching`.
    public static func oldestMatching(_ pattern: String, excluding excluded: Set<pid_t> = []) -> ProcessSnapshot? {
        var regex = regex_t()
        guard regcomp(&regex, pattern, REG_EXTENDED | REG_NOSUB) == 0 else { return nil }
        defer { regfree(&regex) }
        let own = getpid()
        var best: ProcessSnapshot?
        for pid in allPIDs() where pid != own && !excluded.contains(pid) {
            guard let command = commandLine(pid), regexec(&regex, command, 0, nil, 0) == 0,
                let snapshot = snapshot(pid), !snapshot.isZombie
            else { continue }
            if best == nil || snapshot.startTime < best!.startTime { best = snapshot }
        }
        return best
    }

    /// Descendants of a process (children, grandchildren, …) from one scan of /proc.
    public static func descendants(of pid: pid_t, in table: [ProcessSnapshot]) -> [ProcessSnapshot] {
        var children: [pid_t: [ProcessSnapshot]] = [:]
        for process in table { children[process.parentPID, default: []].append(process) }
        var result: [ProcessSnapshot] = []
        var frontier = [pid]
        while let current = frontier.popLast() {
            for child in children[current] ?? [] where !child.isZombie {
                result.append(child)
                frontier.append(child.pid)
            }
        }
        return result
    }

    /// The modification time of a file in seconds since the epoch, nil when it does not exist.
    public static func modificationTime(_ path: String) -> Double? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
    }
}
