#if canImport(Glibc)
import Glibc
#endif

/// Reads a log file as `tail -F` does: its last lines, then what is appended, following the path to a
/// new file when the old one is rotated away (after reading the old one to its end).
public final class LogTail {
    public let path: String
    private var fd: Int32 = -1
    private var inode: ino_t = 0
    private var offset: off_t = 0
    private var partial: [UInt8] = []

    public init(path: String) {
        self.path = path
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    /// The last `count` complete lines, reading at most `window` bytes from the end; the next `poll`
    /// starts after them.
    public func lastLines(_ count: Int, window: Int = 1 << 20) -> [String] {
        guard open() else { return [] }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return [] }
        let start = max(0, Int(info.st_size) - window)
        offset = off_t(start)
        let bytes = readAvailable()
        var lines = complete(bytes)
        if start > 0, !lines.isEmpty { lines.removeFirst() }  // cut by the window
        return Array(lines.suffix(count))
    }

    /// The complete lines appended since the last call. A file at the path that is not the one open is
    /// the rotated one's successor: the rest of the old file comes first, then the new one from its start.
    public func poll() -> [String] {
        if fd < 0, !open() { return [] }
        var bytes = partial + readAvailable()
        var info = stat()
        guard stat(path, &info) == 0 else { return complete(bytes) }
        if info.st_ino != inode {
            bytes += readAvailable()
            close(fd)
            fd = -1
            if open() { bytes += readAvailable() }
        } else if off_t(info.st_size) < offset {
            offset = 0  // truncated in place (copytruncate)
            bytes += readAvailable()
        }
        return complete(bytes)
    }

    /// The whole lines of `bytes`; an unfinished last one waits for the next poll.
    private func complete(_ bytes: [UInt8]) -> [String] {
        var lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        partial = Array(lines.removeLast().utf8)
        return lines
    }

    private func open() -> Bool {
        fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return false }
        var info = stat()
        inode = fstat(fd, &info) == 0 ? info.st_ino : 0
        offset = 0
        return true
    }

    private func readAvailable() -> [UInt8] {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while fd >= 0 {
            let count = pread(fd, &buffer, buffer.count, offset)
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            result += buffer[0..<count]
            offset += off_t(count)
        }
        return result
    }
}
