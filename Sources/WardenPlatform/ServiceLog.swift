import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How every log file warden writes is opened: appending, mode 0640, never through a symlink at its path.
public enum LogFileOpening {
    public static func open(_ path: String) -> Int32 {
        Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o640)
    }
}

/// `log … rotate at SIZE keep N`: when a service's log is rotated and which names the old files take,
/// as logrotate names them (`app.log.1` the newest … `app.log.N` the oldest).
public struct LogRotation: Sendable, Hashable {
    public var limit: Int
    public var keep: Int

    public init(limit: Int, keep: Int) {
        self.limit = limit
        self.keep = keep
    }

    /// Rotate before a line that would take a non-empty file past the limit: a file never holds part of
    /// a line, and a line longer than the limit still gets a file of its own.
    public func rotatesBefore(line: Int, fileSize: Int) -> Bool {
        fileSize > 0 && fileSize + line > limit
    }

    /// The renames, in order: the oldest kept file is overwritten by the one before it, … and the live file becomes `.1`.
    public func renames(of path: String) -> [(from: String, to: String)] {
        var steps: [(from: String, to: String)] = []
        for index in stride(from: keep - 1, through: 1, by: -1) { steps.append(("\(path).\(index)", "\(path).\(index + 1)")) }
        steps.append((path, "\(path).1"))
        return steps
    }
}

/// A service's log file. Lines are queued and written by a queue of the file's own, so a slow disk never
/// holds up the reader of the program's pipe (and so the program): when the queue is full, lines are
/// dropped, counted, and the count is written once there is room again.
public final class ServiceLogWriter: Sendable {
    public let path: String
    /// Bytes waiting at most: a few seconds of a chatty app.
    static let defaultCapacity = 4 << 20
    private let capacity: Int

    private struct Queue {
        var lines: [String] = []
        var bytes = 0
        var dropped = 0
        var scheduled = false
        var reopen = false
        var rotation: LogRotation?
        var stamp: (second: time_t, text: String) = (-1, "")
    }

    /// Touched on the writer queue only; a lock to make that checkable.
    private struct File {
        var fd: Int32 = -1
        var size = 0
    }

    private let queued: Mutex<Queue>
    private let file = Mutex(File())
    private let writer: DispatchQueue

    init(path: String, rotation: LogRotation?, capacity: Int = defaultCapacity, writer: DispatchQueue = DispatchQueue(label: "warden.service-log")) {
        self.path = path
        self.capacity = capacity
        queued = Mutex(Queue(rotation: rotation))
        self.writer = writer
    }

    func setRotation(_ rotation: LogRotation?) {
        queued.withLock { $0.rotation = rotation }
    }

    /// Queues one line, stamped with the time it was read.
    public func append(_ line: String) {
        let now = time(nil)
        let schedule = queued.withLock { queue -> Bool in
            if queue.stamp.second != now { queue.stamp = (now, TimeFormat.string(Double(now), "%Y-%m-%dT%H:%M:%S%z")) }
            let text = "\(queue.stamp.text) \(line)\n"
            guard queue.bytes + text.utf8.count <= capacity else {
                queue.dropped += 1
                return false
            }
            queue.lines.append(text)
            queue.bytes += text.utf8.count
            defer { queue.scheduled = true }
            return !queue.scheduled
        }
        if schedule { writer.async { self.drain() } }
    }

    /// Opens the file again at its path, between two lines (after an outside logrotate moved it away).
    public func reopen() {
        let schedule = queued.withLock { queue -> Bool in
            queue.reopen = true
            defer { queue.scheduled = true }
            return !queue.scheduled
        }
        if schedule { writer.async { self.drain() } }
    }

    /// Why the file cannot be opened (a missing directory, a symlink at its path), nil when it is open:
    /// asked before each start, so the problem is said in warden's log rather than lines vanishing.
    public func openProblem() -> String? {
        file.withLock { file in
            if file.fd < 0 { open(&file) }
            return file.fd < 0 ? String(cString: strerror(errno)) : nil
        }
    }

    /// Waits until every line queued so far is written (tests, and before warden exits).
    public func flush() {
        writer.sync {}
    }

    private func drain() {
        while true {
            let taken = queued.withLock { queue -> (lines: [String], dropped: Int, reopen: Bool, rotation: LogRotation?)? in
                guard !queue.lines.isEmpty || queue.dropped > 0 || queue.reopen else {
                    queue.scheduled = false
                    return nil
                }
                defer { queue.lines = []; queue.bytes = 0; queue.dropped = 0; queue.reopen = false }
                return (queue.lines, queue.dropped, queue.reopen, queue.rotation)
            }
            guard let taken else { return }
            var lines = taken.lines
            if taken.dropped > 0 {
                let now = time(nil)
                let stamp = TimeFormat.string(Double(now), "%Y-%m-%dT%H:%M:%S%z")
                lines.append("\(stamp) warden: \(taken.dropped) lines dropped: the log file could not be written fast enough\n")
            }
            file.withLock { file in
                if taken.reopen { close(&file) }
                write(lines, to: &file, rotation: taken.rotation)
            }
        }
    }

    private func write(_ lines: [String], to file: inout File, rotation: LogRotation?) {
        if file.fd < 0 { open(&file) }
        var chunk: [UInt8] = []
        for line in lines {
            let count = line.utf8.count
            if let rotation, rotation.rotatesBefore(line: count, fileSize: file.size + chunk.count) {
                writeAll(&chunk, to: &file)
                rotate(&file, rotation)
            }
            chunk.append(contentsOf: line.utf8)
        }
        writeAll(&chunk, to: &file)
    }

    private func writeAll(_ bytes: inout [UInt8], to file: inout File) {
        defer { bytes.removeAll(keepingCapacity: true) }
        guard file.fd >= 0 else { return }
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(file.fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0, errno == EINTR { continue }
            if written <= 0 { return }
            offset += written
        }
        file.size += offset
    }

    /// Only this queue writes the file, so no line can fall between the renames and the new file.
    private func rotate(_ file: inout File, _ rotation: LogRotation) {
        close(&file)
        for step in rotation.renames(of: path) { _ = rename(step.from, step.to) }
        open(&file)
    }

    private func open(_ file: inout File) {
        file.fd = LogFileOpening.open(path)
        var info = stat()
        file.size = file.fd >= 0 && fstat(file.fd, &info) == 0 ? Int(info.st_size) : 0
    }

    private func close(_ file: inout File) {
        if file.fd >= 0 { Glibc.close(file.fd) }
        file = File()
    }
}

/// The service log files of this process, one writer per path: instances that share a file share its
/// writer, and a reload keeps the open ones.
public final class ServiceLogs: Sendable {
    public static let shared = ServiceLogs()
    private let writers = Mutex<[String: ServiceLogWriter]>([:])

    public func writer(path: String, rotation: LogRotation?) -> ServiceLogWriter {
        let writer = writers.withLock { writers in
            if let known = writers[path] { return known }
            let new = ServiceLogWriter(path: path, rotation: rotation)
            writers[path] = new
            return new
        }
        writer.setRotation(rotation)
        return writer
    }

    /// SIGUSR1: every service log opens its path again.
    public func reopenAll() {
        for writer in writers.withLock({ Array($0.values) }) { writer.reopen() }
    }

    public func flushAll() {
        for writer in writers.withLock({ Array($0.values) }) { writer.flush() }
    }
}
