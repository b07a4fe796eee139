#if canImport(Glibc)
import Glibc
#endif

/// A host's address of one family, as the socket calls take it: for `ping4|ping6` and the `ipv4|ipv6`
/// of a port test, which must use that family whatever the resolver would prefer.
public struct ResolvedAddress: Sendable {
    var storage = sockaddr_storage()
    var length: socklen_t = 0

    init() {}

    /// `family` 4 or 6; nil: IPv4 when the host has such an address, else IPv6. With `port`, the
    /// address carries it (for bind or connect).
    public init?(_ host: String, family: Int?, port: Int? = nil) {
        guard let family else {
            guard let any = ResolvedAddress(host, family: 4, port: port) ?? ResolvedAddress(host, family: 6, port: port) else { return nil }
            self = any
            return
        }
        var hints = addrinfo()
        hints.ai_family = family == 6 ? AF_INET6 : AF_INET
        hints.ai_flags = AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, port.map(String.init), &hints, &result) == 0, let first = result else { return nil }
        defer { freeaddrinfo(result) }
        length = first.pointee.ai_addrlen
        withUnsafeMutableBytes(of: &storage) { target in
            target.copyMemory(from: UnsafeRawBufferPointer(start: first.pointee.ai_addr, count: Int(first.pointee.ai_addrlen)))
        }
    }

    var family: Int32 { Int32(storage.ss_family) }
    public var isIPv6: Bool { family == AF_INET6 }

    /// The address bytes alone (no port or scope): what a reply's sender is compared by.
    var hostBytes: [UInt8] {
        withUnsafeBytes(of: storage) { raw in
            let (offset, count) =
                family == AF_INET6
                ? (MemoryLayout<sockaddr_in6>.offset(of: \.sin6_addr)!, 16) : (MemoryLayout<sockaddr_in>.offset(of: \.sin_addr)!, 4)
            return Array(raw[offset..<offset + count])
        }
    }

    /// The address as text (`::1`, `127.0.0.1`), for a connection that must take this family.
    public var numeric: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let bytes = hostBytes
        _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        withUnsafePointer(to: storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) } }
    }
}
