#if canImport(Glibc)
import Glibc
#endif

/// The daemon's pidfile, locked with flock(2) so a second daemon on the same file is refused.
public final class PIDLock {
    public let path: String
    private let fd: Int32

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public init(path: String) throws {
        self.path = path
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw Failure(description: "cannot open pidfile '\(path)': \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let other = PIDFile.read(path).map { " with pid \($0)" } ?? ""
            close(fd)
            throw Failure(description: "a warden daemon is already running\(other) (pidfile '\(path)')")
        }
        _ = ftruncate(fd, 0)
        let line = Array("\(getpid())\n".utf8)
        var offset = 0
        while offset < line.count {
            let written = line.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { break }
            offset += written
        }
        fsync(fd)
    }

    /// The pid of a daemon holding the lock, or nil when none does.
    public static func runningPID(_ path: String) -> pid_t? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil
        }
        return PIDFile.read(path) ?? -1
    }

    public func release() {
        unlink(path)
        close(fd)
    }
}
