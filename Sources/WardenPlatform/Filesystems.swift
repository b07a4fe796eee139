#if canImport(Glibc)
import Glibc
#endif

/// What `check filesystem` measures: statvfs(3) of the mount, its flags, and its device's I/O counters.
public struct FilesystemFacts: Sendable, Hashable {
    public var mountPoint: String
    public var device: String
    /// The mount's options as /proc/self/mountinfo lists them (`rw,relatime`), for `changed fsflags`.
    public var flags: String
    public var blockSize: UInt64
    public var blocks: UInt64
    /// Free blocks, those reserved for root included (`f_bfree`).
    public var blocksFree: UInt64
    /// Free blocks an unprivileged user may use (`f_bavail`).
    public var blocksAvailable: UInt64
    public var files: UInt64
    public var filesFree: UInt64
    /// nil for a filesystem without a block device (tmpfs, proc, …): its rate tests have no data.
    public var io: DiskCounters?

    public init(
        mountPoint: String, device: String, flags: String, blockSize: UInt64, blocks: UInt64, blocksFree: UInt64,
        blocksAvailable: UInt64, files: UInt64, filesFree: UInt64, io: DiskCounters? = nil
    ) {
        self.mountPoint = mountPoint
        self.device = device
        self.flags = flags
        self.blockSize = blockSize
        self.blocks = blocks
        self.blocksFree = blocksFree
        self.blocksAvailable = blocksAvailable
        self.files = files
        self.filesFree = filesFree
        self.io = io
    }
}

/// A block device's counters since boot, from /proc/diskstats.
public struct DiskCounters: Sendable, Hashable {
    public var readOperations: UInt64
    public var readBytes: UInt64
    public var readMilliseconds: UInt64
    public var writeOperations: UInt64
    public var writeBytes: UInt64
    public var writeMilliseconds: UInt64

    public init(
        readOperations: UInt64, readBytes: UInt64, readMilliseconds: UInt64, writeOperations: UInt64, writeBytes: UInt64,
        writeMilliseconds: UInt64
    ) {
        self.readOperations = readOperations
        self.readBytes = readBytes
        self.readMilliseconds = readMilliseconds
        self.writeOperations = writeOperations
        self.writeBytes = writeBytes
        self.writeMilliseconds = writeMilliseconds
    }
}

/// Finds the filesystem a `check filesystem` names, as monit does: a mount point, a block device, or
/// any path inside the filesystem.
public enum Filesystems {
    struct Mount: Equatable {
        var major: UInt32
        var minor: UInt32
        var mountPoint: String
        var options: String
        var source: String
    }

    public static func facts(_ target: String) -> FilesystemFacts? {
        guard let text = readLarge("/proc/self/mountinfo"),
            let mount = find(target, in: mounts(text))
        else { return nil }
        var info = statvfs()
        guard statvfs(mount.mountPoint, &info) == 0 else { return nil }
        return FilesystemFacts(
            mountPoint: mount.mountPoint, device: mount.source, flags: mount.options, blockSize: UInt64(info.f_frsize),
            blocks: UInt64(info.f_blocks), blocksFree: UInt64(info.f_bfree), blocksAvailable: UInt64(info.f_bavail),
            files: UInt64(info.f_files), filesFree: UInt64(info.f_ffree),
            io: readLarge("/proc/diskstats").flatMap { diskCounters(major: mount.major, minor: mount.minor, in: $0) })
    }

    /// The lines of /proc/self/mountinfo (proc(5)): `ID PARENT MAJOR:MINOR ROOT MOUNTPOINT OPTIONS … - TYPE SOURCE SUPER`.
    static func mounts(_ text: String) -> [Mount] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ").map(String.init)
            guard fields.count >= 6, let separator = fields.firstIndex(of: "-"), separator + 2 < fields.count else { return nil }
            let numbers = fields[2].split(separator: ":").compactMap { UInt32($0) }
            guard numbers.count == 2 else { return nil }
            return Mount(
                major: numbers[0], minor: numbers[1], mountPoint: unescape(fields[4]), options: fields[5],
                source: unescape(fields[separator + 2]))
        }
    }

    /// A block device names the filesystem mounted from it; any other path the filesystem holding it
    /// (the device number its stat(2) gives, and of the mounts of that device the deepest one above it).
    static func find(_ target: String, in mounts: [Mount]) -> Mount? {
        var info = stat()
        guard stat(target, &info) == 0 else { return nil }
        let isDevice = info.st_mode & 0o170000 == 0o060000  // S_ISBLK
        let device = UInt64(isDevice ? info.st_rdev : info.st_dev)
        // glibc's major()/minor() are macros Swift does not import.
        let major = UInt32(truncatingIfNeeded: ((device >> 8) & 0xfff) | ((device >> 32) & ~0xfff))
        let minor = UInt32(truncatingIfNeeded: (device & 0xff) | ((device >> 12) & ~0xff))
        let candidates = mounts.filter { $0.major == major && $0.minor == minor }
        if isDevice { return candidates.last }
        let path = realPath(target) ?? target
        // A later mount over the same place hides an earlier one, so the last deepest wins.
        return candidates.filter { path == $0.mountPoint || path.hasPrefix($0.mountPoint == "/" ? "/" : $0.mountPoint + "/") }
            .max { $0.mountPoint.count <= $1.mountPoint.count }
    }

    /// /proc/diskstats (Documentation/admin-guide/iostats.rst): sectors are 512 bytes whatever the device.
    static func diskCounters(major: UInt32, minor: UInt32, in text: String) -> DiskCounters? {
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 11, UInt32(fields[0]) == major, UInt32(fields[1]) == minor else { continue }
            func number(_ index: Int) -> UInt64 { UInt64(fields[index]) ?? 0 }
            return DiskCounters(
                readOperations: number(3), readBytes: number(5) * 512, readMilliseconds: number(6),
                writeOperations: number(7), writeBytes: number(9) * 512, writeMilliseconds: number(10))
        }
        return nil
    }

    /// mountinfo writes space, tab, newline and backslash as octal escapes (`\040`).
    static func unescape(_ field: String) -> String {
        guard field.contains("\\") else { return field }
        var bytes: [UInt8] = []
        var input = Array(field.utf8)[...]
        while let byte = input.popFirst() {
            if byte == UInt8(ascii: "\\"), input.count >= 3, let value = UInt8(String(decoding: input.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(value)
                input = input.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// /proc tables that outgrow the small-file limit on a machine with many mounts or disks.
    static func readLarge(_ path: String) -> String? {
        ProcessTable.readSmallBytes(path, limit: 1 << 22).map { String(decoding: $0, as: UTF8.self) }
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
