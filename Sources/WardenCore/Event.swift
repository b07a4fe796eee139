import WardenConfig

/// A change of state of a service (or of warden itself), as monit names them.
/// Alerts, the dashboard and the proxy all consume these.
public struct Event: Sendable, Codable, Hashable {
    public enum State: String, Sendable, Codable, Hashable {
        /// A check failed (`Does not exist`, `Connection failed`, …).
        case failed
        /// A failed check passes again (`Exists`, `Connection succeeded`, …).
        case succeeded
        /// Something changed (pid, timestamp) or an action was done.
        case changed
    }

    public var date: WallClock.Time
    public var service: String
    public var kind: EventKind
    public var state: State
    public var message: String
    /// The action taken in response (`restart`, `alert`, `unmonitor`, …).
    public var action: String

    public init(date: WallClock.Time = WallClock.now(), service: String, kind: EventKind, state: State, message: String, action: String) {
        self.date = date
        self.service = service
        self.kind = kind
        self.state = state
        self.message = message
        self.action = action
    }

    /// monit's event titles: "Does not exist", "Exists", "Connection failed", "Action done", …
    public var title: String {
        switch (kind, state) {
        // monit's "changed" titles, for the tests that report changes rather than failures.
        case (.checksum, .changed): "Checksum changed"
        case (.timestamp, .changed): "Timestamp changed"
        case (.size, .changed): "Size changed"
        case (.content, .changed): "Content match"
        case (.status, .changed): "Status changed"
        case (.fsflags, .changed): "Filesystem flags changed"
        case (.nonexist, .succeeded), (.exist, .failed): "Exists"
        case (.nonexist, _): "Does not exist"
        case (.connection, .failed): "Connection failed"
        case (.connection, _): "Connection succeeded"
        case (.content, .failed): "Content failed"
        case (.content, _): "Content succeeded"
        case (.exec, .failed): "Execution failed"
        case (.exec, _): "Execution succeeded"
        case (.timeout, _): "Timeout"
        case (.resource, .failed): "Resource limit matched"
        case (.resource, _): "Resource limit succeeded"
        case (.status, .failed): "Status failed"
        case (.status, _): "Status succeeded"
        case (.pid, _): "PID changed"
        case (.ppid, _): "PPID changed"
        case (.timestamp, .failed): "Timestamp failed"
        case (.timestamp, _): "Timestamp succeeded"
        case (.size, .failed): "Size failed"
        case (.size, _): "Size succeeded"
        case (.permission, .failed): "Permission failed"
        case (.permission, _): "Permission succeeded"
        case (.uid, .failed): "UID failed"
        case (.uid, _): "UID succeeded"
        case (.gid, .failed): "GID failed"
        case (.gid, _): "GID succeeded"
        case (.uptime, .failed): "Uptime failed"
        case (.uptime, _): "Uptime succeeded"
        case (.checksum, .failed): "Checksum failed"
        case (.checksum, _): "Checksum succeeded"
        case (.action, _): "Action done"
        case (.instance, _): "Monit instance changed"
        default: state == .failed ? "\(kind.rawValue.prefix(1).uppercased() + kind.rawValue.dropFirst()) failed" : "\(kind.rawValue.prefix(1).uppercased() + kind.rawValue.dropFirst()) succeeded"
        }
    }
}
