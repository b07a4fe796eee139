#if canImport(Glibc)
import Glibc
#endif

/// Questions about TCP ports on 127.0.0.1, for the demo's port choice and the tests.
public enum Loopback {
    /// Whether `port` could be bound now.
    public static func isFree(_ port: Int) -> Bool {
        withSocket(port) { fd, address, length in bind(fd, address, length) == 0 }
    }

    /// Whether something accepts connections on `port`.
    public static func accepts(_ port: Int) -> Bool {
        withSocket(port) { fd, address, length in connect(fd, address, length) == 0 }
    }

    private static func withSocket(_ port: Int, _ body: (Int32, UnsafePointer<sockaddr>, socklen_t) -> Bool) -> Bool {
        // getaddrinfo fills the address: spelling out sockaddr_in's fields depends on which module a
        // clean build finds the type in (a MemberImportVisibility error once NIO's shims came first).
        guard let address = ResolvedAddress("127.0.0.1", family: 4, port: port) else { return false }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return address.withSockaddr { body(fd, $0, $1) }
    }
}
