import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A network namespace of the test's own, joined to this one by a veth pair: 198.51.100.(4n+1) here,
/// 198.51.100.(4n+2) there, a /30 of TEST-NET-2 per namespace (nothing outside the machine is
/// addressed; the sandbox itself may use TEST-NET-1), so suites running at once do not collide.
/// Removed with its links on deinit.
public final class TestNamespace {
    public let name: String
    public let hostLink: String
    public let peerLink: String
    public let hostAddress: String
    public let peerAddress: String
    private static let made = Mutex(0)

    public init() throws {
        let index = Self.made.withLock { count in
            defer { count += 1 }
            return count % 64
        }
        let tag = "\(getpid() % 10_000)x\(index)"
        name = "warden-test-\(tag)"
        hostLink = "wdh\(tag)"
        peerLink = "wdp\(tag)"
        hostAddress = "198.51.100.\(4 * index + 1)"
        peerAddress = "198.51.100.\(4 * index + 2)"
        try ip("netns", "add", name)
        try ip("link", "add", hostLink, "type", "veth", "peer", "name", peerLink)
        try ip("link", "set", peerLink, "netns", name)
        try ip("addr", "add", "\(hostAddress)/30", "dev", hostLink)
        try ip("link", "set", hostLink, "up")
        try inside("ip", "addr", "add", "\(peerAddress)/30", "dev", peerLink)
        try inside("ip", "link", "set", peerLink, "up")
    }

    public struct CommandFailed: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    public func ip(_ arguments: String...) throws {
        let result = try TestSupport.run("/usr/sbin/ip", arguments)
        guard result.status == 0 else { throw CommandFailed(description: "ip \(arguments.joined(separator: " ")): \(result.stderr)") }
    }

    /// A command run inside the namespace.
    public func inside(_ arguments: String...) throws {
        let result = try TestSupport.run("/usr/sbin/ip", ["netns", "exec", name] + arguments)
        guard result.status == 0 else { throw CommandFailed(description: "\(arguments.joined(separator: " ")): \(result.stderr)") }
    }

    deinit {
        _ = try? TestSupport.run("/usr/sbin/ip", ["link", "del", hostLink])
        _ = try? TestSupport.run("/usr/sbin/ip", ["netns", "del", name])
    }
}
