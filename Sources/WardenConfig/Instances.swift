/// `instances N ports A-B`: a process run as N copies, each on a port of the range. The range leaves
/// room for a second generation beside the first, which a deploy starts before it stops the first.
public struct InstanceSettings: Sendable, Hashable {
    public var count: Int
    public var ports: ClosedRange<Int>
    public var location: FileLocation

    public init(count: Int, ports: ClosedRange<Int>, location: FileLocation) {
        self.count = count
        self.ports = ports
        self.location = location
    }
}

/// Which copy of a service with `instances` a service is: its name is `GROUP@PORT`.
public struct InstanceIdentity: Sendable, Hashable {
    public var group: String
    /// `$INSTANCE`: 0…N-1 within its generation.
    public var index: Int
    /// `$PORT`.
    public var port: Int
}

extension Service {
    /// Where `$PORT` stands in a connection test until an instance gives it its port.
    public static let instancePort = 0

    /// The name of the instance of `group` on `port`.
    public static func instanceName(_ group: String, port: Int) -> String { "\(group)@\(port)" }

    /// This service as its instance number `index` on `port`: `$PORT` and `$INSTANCE` replaced in its
    /// programs, its pidfile or pattern and its connection tests; a test of its port added when it has
    /// no connection test, so that "ready" means the instance answers.
    public func instance(_ index: Int, port: Int) -> Service {
        func substitute(_ text: String) -> String {
            text.replacing("$PORT", with: String(port)).replacing("$INSTANCE", with: String(index))
        }
        func substitute(_ program: ProgramSpec?) -> ProgramSpec? {
            program.map { var copy = $0; copy.arguments = copy.arguments.map(substitute); return copy }
        }
        var copy = self
        copy.name = Self.instanceName(name, port: port)
        copy.instanceOf = InstanceIdentity(group: name, index: index, port: port)
        copy.instances = nil
        copy.start = substitute(start)
        copy.stop = substitute(stop)
        copy.restart = substitute(restart)
        // `$PORT` only: the port names an instance for good, its index does not (`warden log NAME` finds it).
        copy.log?.path = log?.path.map { $0.replacing("$PORT", with: String(port)) }
        switch kind {
        case .process(.pidfile(let path)): copy.kind = .process(.pidfile(substitute(path)))
        case .process(.matching(let pattern)): copy.kind = .process(.matching(substitute(pattern)))
        default: break
        }
        var hasConnectionTest = false
        for index in copy.rules.indices {
            guard case .connection(var test) = copy.rules[index].condition else { continue }
            hasConnectionTest = true
            switch test.target {
            case .port(let host, Self.instancePort, let transport): test.target = .port(host: host, port: port, transport: transport)
            case .url(var url) where url.port == Self.instancePort:
                url.port = port
                test.target = .url(url)
            case .port, .url, .unixSocket: break
            }
            copy.rules[index].condition = .connection(test)
        }
        if !hasConnectionTest {
            copy.rules.append(
                Rule(condition: .connection(ConnectionTest(target: .port(host: "127.0.0.1", port: port, transport: .tcp))), action: .restart, location: location))
        }
        return copy
    }

    /// Whether `$PORT` appears where an instance would replace it.
    var usesInstancePort: Bool {
        let programs = [start, stop, restart].compactMap { $0 }.flatMap(\.arguments)
        if programs.contains(where: { $0.contains("$PORT") }) { return true }
        return rules.contains { rule in
            guard case .connection(let test) = rule.condition else { return false }
            switch test.target {
            case .port(_, let port, _): return port == Self.instancePort
            case .url(let url): return url.port == Self.instancePort
            case .unixSocket: return false
            }
        }
    }
}
