import CWardenShims
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A program warden started: its pid and the last bytes of what it printed.
public final class SpawnedProgram: Sendable {
    public let pid: pid_t
    private let output: Mutex<[UInt8]>
    private let status = Mutex<Int32?>(nil)
    private let limit: Int

    init(pid: pid_t, limit: Int) {
        self.pid = pid
        self.limit = limit
        self.output = Mutex([])
    }

    /// What the program printed so far (stdout and stderr, at most `limit` bytes, the first ones).
    public var capturedOutput: String {
        output.withLock { String(decoding: $0, as: UTF8.self) }
    }

    func append(_ bytes: ArraySlice<UInt8>) {
        output.withLock { output in
            let room = limit - output.count
            if room > 0 { output.append(contentsOf: bytes.prefix(room)) }
        }
    }

    /// The raw wait status once the program has exited, nil while it runs. Kept once read, since the
    /// reaper hands a status out only once.
    public var exitStatus: Int32? {
        status.withLock { status in
            if status == nil { status = ChildReaper.shared.takeStatus(pid) }
            return status
        }
    }

    /// Waits for the program to exit; returns the raw wait status.
    public func wait() async -> Int32 {
        if let status = exitStatus { return status }
        let status = await ChildReaper.shared.waitForExit(pid)
        self.status.withLock { $0 = status }
        return status
    }
}

public struct SpawnError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(description: String) { self.description = description }
}

/// Starts programs as monit does: arguments executed directly (no shell), in a new session so a
/// signal to its process group can never reach warden, with a clean environment.
public enum Spawner {
    private static let poller = FDPoller()

    /// - Parameters:
    ///   - outputLine: called for each line the program prints, for the log.
    public static func spawn(
        _ arguments: [String], environment: [String: String], uid: uid_t? = nil, gid: gid_t? = nil,
        directory: String? = "/", outputLimit: Int = 1024, input: Int32? = nil,
        outputLine: (@Sendable (String) -> Void)? = nil
    ) throws -> SpawnedProgram {
        guard let path = arguments.first else { throw SpawnError(description: "empty command") }
        ChildReaper.shared.start()
        var pipeFDs: [Int32] = [-1, -1]
        guard warden_pipe(&pipeFDs, 0) == 0 else {
            throw SpawnError(description: "cannot create a pipe: \(String(cString: strerror(errno)))")
        }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = warden_spawn(
            path, argv, envp, input ?? -1, pipeFDs[1], uid ?? getuid(), gid ?? getgid(), uid != nil || gid != nil ? 1 : 0,
            directory, &pid)
        close(pipeFDs[1])
        if pid > 0 { ChildReaper.shared.childSpawned(pid) }
        guard result == 0 else {
            close(pipeFDs[0])
            throw SpawnError(description: "cannot run '\(path)': \(String(cString: strerror(result)))")
        }
        let program = SpawnedProgram(pid: pid, limit: outputLimit)
        let readFD = pipeFDs[0]
        _ = fcntl(readFD, F_SETFL, fcntl(readFD, F_GETFL) | O_NONBLOCK)
        let pending = Mutex<[UInt8]>([])
        poller.register(readFD) { fd in
            var buffer = [UInt8](repeating: 0, count: 16384)
            let count = read(fd, &buffer, buffer.count)
            if count < 0, errno == EAGAIN || errno == EINTR { return true }
            guard count > 0 else {
                // End of output: flush a last unterminated line.
                let rest = pending.withLock { bytes -> [UInt8] in defer { bytes = [] }; return bytes }
                if !rest.isEmpty { outputLine?(String(decoding: rest, as: UTF8.self)) }
                close(fd)
                return false
            }
            program.append(buffer[0..<count])
            guard let outputLine else { return true }
            let lines = pending.withLock { bytes -> [String] in
                bytes.append(contentsOf: buffer[0..<count])
                var lines: [String] = []
                while let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) {
                    lines.append(String(decoding: bytes[..<newline], as: UTF8.self))
                    bytes.removeSubrange(...newline)
                }
                if bytes.count > 8192 {
                    lines.append(String(decoding: bytes, as: UTF8.self))
                    bytes = []
                }
                return lines
            }
            for line in lines { outputLine(line) }
            return true
        }
        return program
    }

    /// Resolves `as uid U` (a name or a number) to a uid.
    public static func userID(_ name: String) -> uid_t? {
        if let number = uid_t(name) { return number }
        guard let entry = getpwnam(name) else { return nil }
        return entry.pointee.pw_uid
    }

    public static func groupID(_ name: String) -> gid_t? {
        if let number = gid_t(name) { return number }
        guard let entry = getgrnam(name) else { return nil }
        return entry.pointee.gr_gid
    }

    /// The primary group of a user, for `as uid U` without `gid`.
    public static func primaryGroup(of uid: uid_t) -> gid_t? {
        guard let entry = getpwuid(uid) else { return nil }
        return entry.pointee.pw_gid
    }
}

/// Watches processes with pidfd_open(2), so a death is seen within milliseconds rather than at the
/// next cycle, whether or not the process is warden's child.
public final class ExitWatcher: Sendable {
    private let poller = FDPoller()
    private let watched = Mutex<[pid_t: Int32]>([:])
    private let onExit: @Sendable (pid_t) -> Void

    public init(onExit: @escaping @Sendable (pid_t) -> Void) {
        self.onExit = onExit
    }

    /// Starts watching; false when the kernel has no pidfd_open (then the cycle's poll is the fallback).
    @discardableResult
    public func watch(_ pid: pid_t) -> Bool {
        if watched.withLock({ $0[pid] != nil }) { return true }
        let fd = warden_pidfd_open(pid)
        guard fd >= 0 else { return false }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        watched.withLock { $0[pid] = fd }
        poller.register(fd) { [self] fd in
            let stillOurs = watched.withLock { watched -> Bool in
                guard watched[pid] == fd else { return false }
                watched[pid] = nil
                return true
            }
            if stillOurs {
                close(fd)
                onExit(pid)
            }
            return false
        }
        return true
    }

    public func unwatch(_ pid: pid_t) {
        guard let fd = watched.withLock({ $0.removeValue(forKey: pid) }) else { return }
        poller.unregister(fd)
        close(fd)
    }
}

public enum Privileges {
    /// Becomes `user` (and `group`, else the user's primary group) for good.
    public static func drop(user: String, group: String?) throws {
        guard let entry = getpwnam(user) else { throw SpawnError(description: "unknown user '\(user)'") }
        let uid = entry.pointee.pw_uid
        var gid = entry.pointee.pw_gid
        if let group {
            guard let resolved = Spawner.groupID(group) else { throw SpawnError(description: "unknown group '\(group)'") }
            gid = resolved
        }
        let result = warden_drop_privileges(user, uid, gid)
        guard result == 0 else {
            throw SpawnError(description: "cannot become \(user): \(String(cString: strerror(result)))")
        }
    }
}
