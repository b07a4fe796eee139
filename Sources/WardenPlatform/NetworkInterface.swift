#if canImport(Glibc)
import Glibc
#endif

/// What `check network` measures of an interface in one cycle: its link and its counters, from
/// /sys/class/net (monit reads the same numbers through the kernel's link statistics).
public struct NetworkSample: Sendable, Equatable {
    public var interface: String
    /// The link is up and carries traffic (operstate "up", or "unknown" with a carrier, as loopback and tunnels report).
    public var isUp: Bool
    /// Megabits per second; nil when the driver does not say (many virtual interfaces).
    public var speedMbps: Int?
    public var fullDuplex: Bool
    public var receivedBytes: UInt64
    public var sentBytes: UInt64
    public var receivedPackets: UInt64
    public var sentPackets: UInt64
    /// Packets the driver failed to receive or send (`link down` fails while they grow, as in monit).
    public var receivedErrors: UInt64
    public var sentErrors: UInt64

    public init(
        interface: String, isUp: Bool, speedMbps: Int?, fullDuplex: Bool, receivedBytes: UInt64, sentBytes: UInt64,
        receivedPackets: UInt64, sentPackets: UInt64, receivedErrors: UInt64 = 0, sentErrors: UInt64 = 0
    ) {
        self.interface = interface
        self.isUp = isUp
        self.speedMbps = speedMbps
        self.fullDuplex = fullDuplex
        self.receivedBytes = receivedBytes
        self.sentBytes = sentBytes
        self.receivedPackets = receivedPackets
        self.sentPackets = sentPackets
        self.receivedErrors = receivedErrors
        self.sentErrors = sentErrors
    }
}

public enum NetworkInterface {
    /// The interface's link and counters; nil when there is no such interface.
    public static func sample(_ name: String, root: String = "/sys/class/net") -> NetworkSample? {
        guard !name.contains("/"), let state = read("\(root)/\(name)/operstate") else { return nil }
        func counter(_ file: String) -> UInt64 { read("\(root)/\(name)/statistics/\(file)").flatMap { UInt64($0) } ?? 0 }
        let carrier = read("\(root)/\(name)/carrier") == "1"
        // speed reads -1 (or fails with EINVAL) while the link is down or the driver does not know it.
        let speed = read("\(root)/\(name)/speed").flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil }
        return NetworkSample(
            interface: name, isUp: state == "up" || (state == "unknown" && carrier), speedMbps: speed,
            fullDuplex: read("\(root)/\(name)/duplex") != "half", receivedBytes: counter("rx_bytes"), sentBytes: counter("tx_bytes"),
            receivedPackets: counter("rx_packets"), sentPackets: counter("tx_packets"), receivedErrors: counter("rx_errors"),
            sentErrors: counter("tx_errors"))
    }

    /// The interface holding an IPv4 or IPv6 address (`check network … with address A`).
    public static func name(forAddress address: String) -> String? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return nil }
        defer { freeifaddrs(list) }
        var entry = list
        while let current = entry {
            defer { entry = current.pointee.ifa_next }
            guard let socketAddress = current.pointee.ifa_addr else { continue }
            var text = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            let length = socklen_t(socketAddress.pointee.sa_family == sa_family_t(AF_INET6) ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
            guard [sa_family_t(AF_INET), sa_family_t(AF_INET6)].contains(socketAddress.pointee.sa_family),
                getnameinfo(socketAddress, length, &text, socklen_t(text.count), nil, 0, NI_NUMERICHOST) == 0
            else { continue }
            // A link-local IPv6 address carries its scope ("fe80::1%eth0").
            let numeric = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if numeric.split(separator: "%").first.map(String.init) == address {
                return String(cString: current.pointee.ifa_name)
            }
        }
        return nil
    }

    private static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = Glibc.read(fd, &buffer, buffer.count)
        guard count > 0 else { return nil }
        return String(decoding: buffer[..<count], as: UTF8.self).split(whereSeparator: \.isNewline).first.map(String.init)
    }
}

/// A network service's history, as monit keeps it: the link state of the previous cycle (for
/// `changed link`), the counters of the last two cycles (for per-second rates), and the counters at
/// each minute of the last day (for `total upload|download … in last N minutes|hours|days`).
public struct LinkStatistics: Sendable, Equatable {
    public enum Direction: Sendable { case upload, download }
    public enum Unit: Sendable { case bytes, packets, errors }

    private struct Mark: Sendable, Equatable {
        var time: Double
        var sample: NetworkSample
    }

    private var previous: Mark?
    private var latest: Mark?
    /// One mark per minute, oldest first, at most a day of them.
    private var minutes: [Mark] = []

    public init() {}

    /// Whether the link changed since the previous cycle; nil on the first.
    public var linkChanged: Bool? {
        guard let previous, let latest else { return nil }
        return previous.sample.isUp != latest.sample.isUp
    }

    /// When the last sample was taken.
    public var latestTime: Double? { latest?.time }

    /// Records a cycle's sample taken at `time` (seconds, any monotonic origin).
    public mutating func record(_ sample: NetworkSample, at time: Double) {
        previous = latest
        latest = Mark(time: time, sample: sample)
        // A counter that went backwards means the interface was recreated: its history is another's.
        if let previous, sample.receivedBytes < previous.sample.receivedBytes || sample.sentBytes < previous.sample.sentBytes {
            self.previous = nil
            minutes = []
        }
        if minutes.last.map({ time - $0.time >= 60 }) ?? true {
            minutes.append(Mark(time: time, sample: sample))
            if minutes.count > 24 * 60 + 1 { minutes.removeFirst(minutes.count - (24 * 60 + 1)) }
        }
    }

    /// Per second over the last cycle; nil until two cycles have been seen.
    public func rate(_ direction: Direction, _ unit: Unit) -> Double? {
        guard let previous, let latest, latest.time > previous.time else { return nil }
        return Double(Self.count(latest.sample, direction, unit) - Self.count(previous.sample, direction, unit)) / (latest.time - previous.time)
    }

    /// The amount moved within the last `seconds`, from the oldest minute mark inside that window; nil
    /// until a cycle after the first.
    public func total(_ direction: Direction, _ unit: Unit, inLast seconds: Double) -> Double? {
        guard let latest, let start = minutes.first(where: { latest.time - $0.time <= seconds }) ?? previous,
            start.time < latest.time
        else { return nil }
        return Double(Self.count(latest.sample, direction, unit) - Self.count(start.sample, direction, unit))
    }

    /// One direction's bits per second as a share of the link's speed, in percent, as monit computes
    /// it; nil without a known speed or before the second cycle.
    public func saturation(_ direction: Direction) -> Double? {
        guard let speed = latest?.sample.speedMbps, let rate = rate(direction, .bytes) else { return nil }
        return rate * 8 / (Double(speed) * 1_000_000) * 100
    }

    private static func count(_ sample: NetworkSample, _ direction: Direction, _ unit: Unit) -> UInt64 {
        switch (direction, unit) {
        case (.upload, .bytes): sample.sentBytes
        case (.upload, .packets): sample.sentPackets
        case (.download, .bytes): sample.receivedBytes
        case (.download, .packets): sample.receivedPackets
        case (.upload, .errors): sample.sentErrors
        case (.download, .errors): sample.receivedErrors
        }
    }
}
