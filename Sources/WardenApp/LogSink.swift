import WardenPlatform
import Logging
import Synchronization
import WardenConfig

#if canImport(Glibc)
import Glibc
#endif

/// Where log lines go: a file (re-opened on SIGUSR1 for logrotate), syslog, and/or standard error.
public final class LogSink: Sendable {
    private struct State {
        var fd: Int32 = -1
    }

    public let target: LogTarget?
    public let verbose: Bool
    public let toStandardError: Bool
    private let state = Mutex(State())

    public init(target: LogTarget?, verbose: Bool, toStandardError: Bool) {
        self.target = target
        self.verbose = verbose
        self.toStandardError = toStandardError
        if case .syslog = target { openlog("warden", LOG_PID | LOG_NDELAY, LOG_DAEMON) }
        reopen()
    }

    /// Opens the log file again (after logrotate moved it away); mode 0640, never through a symlink.
    public func reopen() {
        guard case .file(let path) = target else { return }
        let fd = LogFileOpening.open(path)
        if fd < 0 {
            // Said where it can still be seen: standard error (before daemonizing) and syslog.
            let problem = "warden: cannot open the log file '\(path)': \(String(cString: strerror(errno)))"
            Self.writeAll(2, problem + "\n")
            problem.withCString { withVaList([$0]) { vsyslog(LOG_ERR, "%s", $0) } }
        }
        let old = state.withLock { state -> Int32 in
            defer { state.fd = fd }
            return state.fd
        }
        if old >= 0 { close(old) }
    }

    public func write(level: Logger.Level, _ message: String) {
        let line = "[\(Self.timestamp())] \(Self.levelName(level).padding(9)): \(message)\n"
        switch target {
        case .file:
            let fd = state.withLock { $0.fd }
            if fd >= 0 { Self.writeAll(fd, line) }
        case .syslog:
            let priority: Int32 = level >= .error ? LOG_ERR : level >= .warning ? LOG_WARNING : level >= .info ? LOG_INFO : LOG_DEBUG
            message.withCString { withVaList([$0]) { vsyslog(priority, "%s", $0) } }
        case nil:
            break
        }
        if toStandardError || verbose { Self.writeAll(2, line) }
    }

    static func levelName(_ level: Logger.Level) -> String {
        switch level {
        case .trace, .debug: "debug"
        case .info, .notice: "info"
        case .warning: "warning"
        case .error: "error"
        case .critical: "critical"
        }
    }

    static func timestamp() -> String {
        TimeFormat.string(Double(time(nil)), "%Y-%m-%dT%H:%M:%S%z")
    }

    public static func writeAll(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written <= 0 { return }
            offset += written
        }
    }
}

/// monit's log line format: `[2026-11-25T12:41:26+0000] error    : 'app' process is not running`.
public struct MonitStyleLogHandler: LogHandler {
    let sink: LogSink
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]

    public init(sink: LogSink, logLevel: Logger.Level) {
        self.sink = sink
        self.logLevel = logLevel
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        sink.write(level: event.level, "\(event.message)")
    }
}

extension String {
    func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
