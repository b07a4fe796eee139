#if canImport(Glibc)
import Glibc
#endif

/// A process's I/O counters since it started, from /proc/PID/io.
public struct ProcessIO: Sendable, Hashable {
    /// Bytes and calls of read(2)/write(2) and the like, page cache included (`rchar`, `syscr`, …).
    public var readBytes: UInt64
    public var readOperations: UInt64
    public var writeBytes: UInt64
    public var writeOperations: UInt64
    /// Bytes that reached the storage layer (`read_bytes`, `write_bytes`): monit's `disk read|write`.
    public var diskReadBytes: UInt64
    public var diskWriteBytes: UInt64

    public init(
        readBytes: UInt64, readOperations: UInt64, writeBytes: UInt64, writeOperations: UInt64, diskReadBytes: UInt64,
        diskWriteBytes: UInt64
    ) {
        self.readBytes = readBytes
        self.readOperations = readOperations
        self.writeBytes = writeBytes
        self.writeOperations = writeOperations
        self.diskReadBytes = diskReadBytes
        self.diskWriteBytes = diskWriteBytes
    }
}

/// Open descriptors of a process and its `RLIMIT_NOFILE`, or of the whole system and its maximum.
public struct DescriptorUsage: Sendable, Hashable {
    public var open: UInt64
    /// The lower of the soft and hard limits (monit's), nil when unlimited or unknown.
    public var limit: UInt64?
    /// A process's hard limit, which monit's XML status shows beside the soft one.
    public var hardLimit: UInt64?

    public init(open: UInt64, limit: UInt64?, hardLimit: UInt64? = nil) {
        self.open = open
        self.limit = limit
        self.hardLimit = hardLimit
    }
}

/// A process's real and effective user and its real group, from /proc/PID/status.
public struct ProcessIdentity: Sendable, Hashable {
    public var uid: uid_t
    public var euid: uid_t
    public var gid: gid_t

    public init(uid: uid_t, euid: uid_t, gid: gid_t) {
        self.uid = uid
        self.euid = euid
        self.gid = gid
    }
}

/// The machine's CPU time by kind, in ticks since boot (the `cpu` line of /proc/stat).
public struct CPUTicks: Sendable, Hashable {
    public var user: UInt64 = 0
    public var nice: UInt64 = 0
    public var system: UInt64 = 0
    public var idle: UInt64 = 0
    public var iowait: UInt64 = 0
    public var irq: UInt64 = 0
    public var softirq: UInt64 = 0
    public var steal: UInt64 = 0
    /// Already counted in `user` (and `nice`) by the kernel.
    public var guest: UInt64 = 0
    public var guestNice: UInt64 = 0

    public init() {}

    /// Every tick once: guest time is part of user time.
    public var total: UInt64 { user + nice + system + idle + iowait + irq + softirq + steal }

    static func parse(_ line: Substring) -> CPUTicks? {
        let numbers = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
        guard numbers.count >= 4 else { return nil }
        func at(_ index: Int) -> UInt64 { index < numbers.count ? numbers[index] : 0 }
        var ticks = CPUTicks()
        (ticks.user, ticks.nice, ticks.system, ticks.idle, ticks.iowait) = (at(0), at(1), at(2), at(3), at(4))
        (ticks.irq, ticks.softirq, ticks.steal, ticks.guest, ticks.guestNice) = (at(5), at(6), at(7), at(8), at(9))
        return ticks
    }
}

/// Per-process and machine-wide figures from /proc that `check process` and `check system` test.
public enum ProcessResources {
    public static func io(_ pid: pid_t) -> ProcessIO? {
        guard let text = ProcessTable.readSmallFile("/proc/\(pid)/io") else { return nil }
        var values: [Substring: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":")
            guard parts.count == 2, let value = UInt64(parts[1].drop { $0 == " " }) else { continue }
            values[parts[0]] = value
        }
        guard let rchar = values["rchar"], let wchar = values["wchar"] else { return nil }
        return ProcessIO(
            readBytes: rchar, readOperations: values["syscr"] ?? 0, writeBytes: wchar, writeOperations: values["syscw"] ?? 0,
            diskReadBytes: values["read_bytes"] ?? 0, diskWriteBytes: values["write_bytes"] ?? 0)
    }

    /// The entries of /proc/PID/fd, and "Max open files" of /proc/PID/limits.
    public static func descriptors(_ pid: pid_t) -> DescriptorUsage? {
        guard let directory = opendir("/proc/\(pid)/fd") else { return nil }
        defer { closedir(directory) }
        var open: UInt64 = 0
        while let entry = readdir(directory) {
            if entry.pointee.d_name.0 != 46 { open += 1 }  // not "." or ".."
        }
        var limits: [UInt64?] = [nil, nil]
        if let text = ProcessTable.readSmallFile("/proc/\(pid)/limits"),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Max open files") })
        {
            // Soft, then hard; "unlimited" reads as nil.
            limits = line.dropFirst("Max open files".count).split(separator: " ").prefix(2).map { UInt64($0) }
        }
        return DescriptorUsage(open: open, limit: limits.compactMap { $0 }.min(), hardLimit: limits.last ?? nil)
    }

    public static func identity(_ pid: pid_t) -> ProcessIdentity? {
        guard let text = ProcessTable.readSmallFile("/proc/\(pid)/status") else { return nil }
        var uids: [UInt32] = []
        var gids: [UInt32] = []
        for line in text.split(separator: "\n") {
            if line.hasPrefix("Uid:") { uids = line.dropFirst(4).split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { UInt32($0) } }
            if line.hasPrefix("Gid:") { gids = line.dropFirst(4).split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { UInt32($0) } }
        }
        guard uids.count >= 2, let gid = gids.first else { return nil }
        return ProcessIdentity(uid: uids[0], euid: uids[1], gid: gid)
    }

    /// Allocated file handles and the system's maximum (/proc/sys/fs/file-nr: allocated, free, maximum).
    public static func systemDescriptors() -> DescriptorUsage? {
        guard let text = ProcessTable.readSmallFile("/proc/sys/fs/file-nr") else { return nil }
        let numbers = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { UInt64($0) }
        guard numbers.count == 3 else { return nil }
        return DescriptorUsage(open: numbers[0], limit: numbers[2])
    }

    public static func cpuTicks() -> CPUTicks? {
        guard let text = ProcessTable.readSmallFile("/proc/stat"), let line = text.split(separator: "\n").first, line.hasPrefix("cpu ")
        else { return nil }
        return CPUTicks.parse(line)
    }
}
