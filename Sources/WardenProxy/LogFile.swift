import Synchronization
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

/// An access or error log file, re-opened on SIGUSR1. Never follows a symlink at its path, and
/// creates the file readable by its owner and group only.
public final class LogFile: Sendable {
    let path: String
    private let fd = Mutex<Int32>(-1)
    /// The formatted time of the last line, reused within the same second.
    private let stamp = Mutex<(second: time_t, combined: String, error: String)>((-1, "", ""))

    public init(path: String) {
        self.path = path
        reopen()
    }

    deinit {
        fd.withLock { if $0 >= 0 { close($0) } }
    }

    public func reopen() {
        let new = LogFileOpening.open(path)
        let old = fd.withLock { fd -> Int32 in defer { fd = new }; return fd }
        if old >= 0 { close(old) }
    }

    func write(_ line: String) {
        var bytes = Array(line.utf8)
        fd.withLock { fd in
            guard fd >= 0 else { return }
            _ = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        }
    }

    private func stamps(_ now: time_t) -> (combined: String, error: String) {
        stamp.withLock { stamp in
            if stamp.second != now {
                stamp = (now, TimeFormat.string(Double(now), "%d/%b/%Y:%H:%M:%S %z"), TimeFormat.string(Double(now), "%Y/%m/%d %H:%M:%S"))
            }
            return (stamp.combined, stamp.error)
        }
    }

    /// nginx's `combined` format.
    func writeAccess(client: String, request: String, status: Int, bytes: Int, referer: String?, agent: String?) {
        let time = stamps(Glibc.time(nil)).combined
        write("\(client) - - [\(time)] \"\(request)\" \(status) \(bytes) \"\(referer ?? "-")\" \"\(agent ?? "-")\"\n")
    }

    /// nginx's error log line: `2026/11/25 16:00:48 [error] PID#0: *CONNECTION message, client: …`.
    func writeError(level: String, connection: UInt64, message: String, details: [(String, String)]) {
        let time = stamps(Glibc.time(nil)).error
        let context = details.map { "\($0.0): \($0.1)" }.joined(separator: ", ")
        write("\(time) [\(level)] \(getpid())#0: *\(connection) \(message)\(context.isEmpty ? "" : ", " + context)\n")
    }
}
