import WardenPlatform

/// `log [PATH] [rotate at SIZE [keep N]]` in a check block: where a service's own output goes.
public struct ServiceLogSettings: Sendable, Hashable {
    /// nil: `<service>.log` beside warden's own log file.
    public var path: String?
    /// nil: warden does not rotate it (an outside logrotate may, with SIGUSR1).
    public var rotation: LogRotation?

    public init(path: String? = nil, rotation: LogRotation? = nil) {
        self.path = path
        self.rotation = rotation
    }

    /// `keep` when `rotate at` does not say.
    public static let defaultKeep = 5
}

extension Configuration {
    /// The file a service's output is written to: its `log` path, else `<name>.log` in the directory of
    /// warden's log file; nil when neither exists (the output is then only logged at debug level).
    public func logPath(of service: Service) -> String? {
        if let path = service.log?.path { return path }
        guard case .file(let wardenLog) = log, let slash = wardenLog.lastIndex(of: "/") else { return nil }
        return "\(wardenLog[...slash])\(service.name).log"
    }

    /// The log file of a service by name, an instance's (`myapp@8081`) included.
    public func logPath(ofServiceNamed name: String) -> String? {
        if let named = service(named: name) { return logPath(of: named) }
        guard let at = name.lastIndex(of: "@"), let port = Int(name[name.index(after: at)...]),
            let group = service(named: String(name[..<at])), group.instances != nil
        else { return nil }
        return logPath(of: group.instance(0, port: port))
    }
}
