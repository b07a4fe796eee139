import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// `if failed ping [count N] [size N] [timeout N seconds] [address A]`.
public struct PingRequest: Sendable {
    public var host: String
    /// Echo requests to send; the test passes on the first reply, as monit's does.
    public var count: Int
    /// How long to wait for each reply.
    public var timeout: Duration
    /// Each request's length in bytes, its 8-byte ICMP header included.
    public var size: Int
    /// The address the requests leave from; nil: the route's.
    public var sourceAddress: String?
    /// 4 (`ping4`) or 6 (`ping6`); nil (`ping`): the host's IPv4 address if it has one, else its IPv6 one.
    public var family: Int?

    public init(host: String, count: Int = 3, timeout: Duration = .seconds(5), size: Int = 64, sourceAddress: String? = nil, family: Int? = nil) {
        self.host = host
        self.count = count
        self.timeout = timeout
        self.size = size
        self.sourceAddress = sourceAddress
        self.family = family
    }
}

extension ConnectionProbe {
    /// ICMP echo: an unprivileged ICMP datagram socket where `net.ipv4.ping_group_range` allows it, a
    /// raw socket (root) otherwise. Blocking socket calls run on NIO's thread pool. On success the
    /// response time is the answered request's round trip.
    public func ping(_ request: PingRequest) async -> ProbeResult {
        let started = ContinuousClock.now
        do {
            let roundTrip = try await NIOThreadPool.singleton.runIfActive { try ICMPPing.echo(request) }
            return ProbeResult(succeeded: true, message: "ping test succeeded", responseTime: roundTrip)
        } catch let failure as ProtocolFailure {
            return ProbeResult(succeeded: false, message: failure.message, responseTime: .now - started)
        } catch {
            return ProbeResult(succeeded: false, message: "ping test failed -- \(error)", responseTime: .now - started)
        }
    }
}

/// ICMP echo over IPv4 (type 8, reply 0) or ICMPv6 (type 128, reply 129).
enum ICMPPing {
    /// Sends up to `count` echo requests, each waited for `timeout`; the reply's round trip on success.
    static func echo(_ request: PingRequest) throws -> Duration {
        guard let address = ResolvedAddress(request.host, family: request.family) else {
            throw ProtocolFailure("ping test failed -- cannot resolve \(request.host)\(request.family.map { " as an IPv\($0) address" } ?? "")")
        }
        let (fd, raw) = try openSocket(family: address.family)
        defer { close(fd) }
        if let source = request.sourceAddress {
            guard let local = ResolvedAddress(source, family: address.family == AF_INET6 ? 6 : 4) else {
                throw ProtocolFailure("ping test failed -- cannot resolve source address \(source)")
            }
            guard local.withSockaddr({ bind(fd, $0, $1) }) == 0 else {
                throw ProtocolFailure("ping test failed -- cannot send from \(source): \(String(cString: strerror(errno)))")
            }
        }
        let identifier = UInt16(truncatingIfNeeded: getpid())
        let waitMilliseconds = Int(request.timeout.components.seconds * 1000 + request.timeout.components.attoseconds / 1_000_000_000_000_000)
        for sequence in 1...max(1, request.count) {
            let packet = echoRequest(identifier: identifier, sequence: UInt16(sequence), size: request.size, v6: address.family == AF_INET6)
            let sent = packet.withUnsafeBytes { bytes in address.withSockaddr { sendto(fd, bytes.baseAddress, bytes.count, 0, $0, $1) } }
            guard sent == packet.count else { throw ProtocolFailure("ping test failed -- cannot send: \(String(cString: strerror(errno)))") }
            let sentAt = ContinuousClock.now
            if waitForReply(fd, raw: raw, from: address, identifier: identifier, sequence: UInt16(sequence), milliseconds: waitMilliseconds) {
                return ContinuousClock.now - sentAt
            }
        }
        throw ProtocolFailure(
            "ping test failed -- no response from \(request.host) to \(request.count) echo request\(request.count == 1 ? "" : "s") within \(request.timeout.components.seconds) s each")
    }

    private static func openSocket(family: Int32) throws -> (Int32, raw: Bool) {
        let proto = Int32(family == AF_INET6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP)
        let datagram = socket(family, Int32(SOCK_DGRAM.rawValue), proto)
        if datagram >= 0 { return (datagram, false) }
        let raw = socket(family, Int32(SOCK_RAW.rawValue), proto)
        if raw >= 0 { return (raw, true) }
        throw ProtocolFailure(
            "ping test failed -- cannot open an ICMP socket (\(String(cString: strerror(errno)))): run as root or allow the group in net.ipv4.ping_group_range")
    }

    /// The kernel fills in an ICMPv6 checksum (it covers the IPv6 pseudo-header, which it knows); IPv4's is ours.
    static func echoRequest(identifier: UInt16, sequence: UInt16, size: Int = 64, v6: Bool = false) -> [UInt8] {
        var packet: [UInt8] = [v6 ? 128 : 8, 0, 0, 0, UInt8(identifier >> 8), UInt8(identifier & 0xff), UInt8(sequence >> 8), UInt8(sequence & 0xff)]
        packet += (0..<max(0, size - 8)).map { UInt8(truncatingIfNeeded: $0) }
        guard !v6 else { return packet }
        let sum = checksum(packet)
        packet[2] = UInt8(sum >> 8)
        packet[3] = UInt8(sum & 0xff)
        return packet
    }

    static func checksum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var index = 0
        while index + 1 < bytes.count {
            sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
            index += 2
        }
        if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }

    /// Reads until our echo reply arrives or `milliseconds` pass. A raw socket also sees other replies and,
    /// on loopback, our own request (an IPv4 one with the IP header before it; ICMPv6 comes without);
    /// a datagram socket gets only its own replies, with the kernel's identifier.
    private static func waitForReply(
        _ fd: Int32, raw: Bool, from address: ResolvedAddress, identifier: UInt16, sequence: UInt16, milliseconds: Int
    ) -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(milliseconds)
        let v6 = address.family == AF_INET6
        let expectedHost = address.hostBytes
        var buffer = [UInt8](repeating: 0, count: 1500)
        while ContinuousClock.now < deadline {
            let left = deadline - ContinuousClock.now
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let wait = Int32(max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            guard poll(&descriptor, 1, wait) > 0 else { continue }
            var sender = ResolvedAddress()
            sender.length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let count = buffer.withUnsafeMutableBytes { bytes in
                withUnsafeMutablePointer(to: &sender.storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, bytes.baseAddress, bytes.count, 0, $0, &sender.length) }
                }
            }
            guard count > 0, sender.family == address.family, sender.hostBytes == expectedHost else { continue }
            let header = raw && !v6 ? Int(buffer[0] & 0x0f) * 4 : 0
            guard count >= header + 8, buffer[header] == (v6 ? 129 : 0) else { continue }  // an echo reply
            let replySequence = UInt16(buffer[header + 6]) << 8 | UInt16(buffer[header + 7])
            let replyIdentifier = UInt16(buffer[header + 4]) << 8 | UInt16(buffer[header + 5])
            if replySequence == sequence, !raw || replyIdentifier == identifier { return true }
        }
        return false
    }
}
