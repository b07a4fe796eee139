import WardenPlatform

public enum ComparisonOperator: String, Sendable, Hashable {
    case greater = ">", less = "<", equal = "=", notEqual = "!=", greaterOrEqual = ">=", lessOrEqual = "<="

    public func compare<T: Comparable>(_ lhs: T, _ rhs: T) -> Bool {
        switch self {
        case .greater: lhs > rhs
        case .less: lhs < rhs
        case .equal: lhs == rhs
        case .notEqual: lhs != rhs
        case .greaterOrEqual: lhs >= rhs
        case .lessOrEqual: lhs <= rhs
        }
    }
}

/// A quantity with its unit resolved: percentages stay percent, sizes become bytes, times seconds.
public enum Quantity: Sendable, Hashable {
    case percent(Double)
    case bytes(Double)
    case count(Double)
    case seconds(Double)
    /// Bytes per second, or operations/packets per second.
    case rate(Double, unit: String)
}

public enum Condition: Sendable, Hashable {
    case connection(ConnectionTest)
    case resource(ResourceMetric, ComparisonOperator, Quantity)
    /// `does not exist` (process/file) or `exist` for a service that must not.
    case nonexistence
    case existence
    case timestamp(ComparisonOperator, seconds: Int)
    case changedTimestamp
    case size(ComparisonOperator, bytes: Int64)
    case changedSize
    case changedPID
    case changedPPID
    case uptime(ComparisonOperator, seconds: Int)
    case programStatus(ComparisonOperator, Int)
    case changedProgramStatus
    case checksum(expected: String?, hash: String?)
    case changedChecksum
    case permission(Int)
    case uid(String)
    case euid(String)
    case gid(String)
    case content(ComparisonOperator, regex: String)
    case ping(PingTest)
    /// `if link down` (and the older `if failed link`): fails while the link is down; `if link up`
    /// fails while it is up. `up` is the state that fails the test.
    case link(up: Bool)
    /// `changed link [capacity]`: the link's speed or duplex mode changed.
    case changedLink
    /// `total upload|download OP N unit|packets in last N minute(s)|hour(s)|day`.
    case transferred(TrafficTotal)
    case saturation(ComparisonOperator, percent: Double)
    case filesystemFlags
}

public enum ResourceMetric: String, Sendable, Hashable, CaseIterable {
    case cpu, totalCPU, cpuUser, cpuSystem, cpuWait, cpuNice, cpuHardIRQ, cpuSoftIRQ, cpuSteal, cpuGuest
    case memory, totalMemory, swap, threads, children
    case loadAverage1, loadAverage5, loadAverage15
    case loadAveragePerCore1, loadAveragePerCore5, loadAveragePerCore15
    case fileDescriptors, totalFileDescriptors
    case readBytes, writeBytes, readOperations, writeOperations, diskReadBytes, diskWriteBytes
    case spaceUsage, inodeUsage, spaceFree, inodeFree, serviceTime
    /// Bytes or packets per second over the last cycle (`upload > 500 kB/s`, `download > 100 packets/s`).
    case upload, download
}

/// `if failed ping[4|6] [count N] [size N] [responsetime OP N ms|s] [timeout N s] [address A]`.
public struct PingTest: Sendable, Hashable {
    /// `ping4` or `ping6`; nil: `ping`, the address's own family.
    public var family: Int?
    /// Echo requests to send in one cycle; monit's default is 3.
    public var count: Int?
    /// The echo request's size in bytes, its 8-byte header included; monit's default is 64.
    public var size: Int?
    /// Seconds to wait for each reply; monit's default is the network timeout (5 s).
    public var timeout: Int?
    /// `responsetime OP N`: the reply's round trip must compare so, in seconds.
    public var responseTime: Comparison<Double>?
    /// `address A`: the source address the requests leave from.
    public var sourceAddress: String?

    public init() {}
}

/// monit's `total upload|download` test: what moved through the interface within a window.
public struct TrafficTotal: Sendable, Hashable {
    public enum Span: String, Sendable, Hashable {
        case minute, hour, day
        public var seconds: Int {
            switch self {
            case .minute: 60
            case .hour: 3600
            case .day: 86400
            }
        }
    }
    public var upload: Bool
    public var op: ComparisonOperator
    /// Bytes, or packets when `packets`.
    public var limit: Double
    public var packets: Bool
    /// `in last COUNT SPAN`.
    public var count: Int
    public var span: Span

    public init(upload: Bool, op: ComparisonOperator, limit: Double, packets: Bool, count: Int, span: Span) {
        self.upload = upload
        self.op = op
        self.limit = limit
        self.packets = packets
        self.count = count
        self.span = span
    }

    public var seconds: Int { count * span.seconds }
}

public struct ConnectionTest: Sendable, Hashable {
    public enum Target: Sendable, Hashable {
        case url(HTTPURL)
        case port(host: String, port: Int, transport: Transport)
        case unixSocket(String)
    }
    public enum Transport: String, Sendable, Hashable { case tcp, udp, tcpSSL = "tcpssl" }

    public var target: Target
    public var proto: ConnectionProtocol = .generic
    /// Seconds; monit's default is 5 (`networkTimeout`).
    public var timeout: Int?
    public var retry: Int?
    /// monit's generic dialogue (`send "…" expect "…"`), in order.
    public var dialogue: [DialogueStep] = []
    /// `certificate valid > N days` on a TLS connection.
    public var certificateMinimumDays: Int?
    /// `certificate checksum [md5|sha1] HASH` on a TLS connection.
    public var certificateChecksum: CertificateChecksum?
    /// A named protocol's options (`username`, `password`, `request`, `origin`, …), by keyword; `-t`
    /// refuses one the protocol's checker does not use (`SpokenProtocols.options`).
    public var protocolOptions: [String: String] = [:]
    /// `ssl|tls [options] { … }`: how the TLS connection is made (verification, CAs, client
    /// certificate, versions, ciphers); unset options come from `set ssl`.
    public var ssl = SSLSettings()
    /// `address A`: the local address the connection goes out from (monit's outgoing address).
    public var sourceAddress: String?
    /// `ipv4` or `ipv6`: the connection uses that family's address of the host; nil: the resolver's choice.
    public var family: Int?
    /// `responsetime [OP] N ms|s`, in seconds: a test that connects must also be this quick.
    public var responseTime: Comparison<Double>?

    public init(target: Target) { self.target = target }
}

public struct HTTPURL: Sendable, Hashable, Codable, CustomStringConvertible {
    public var scheme: String
    public var host: String
    public var port: Int
    /// Path and query, at least `/`.
    public var path: String
    public var user: String?
    public var password: String?

    public init(scheme: String, host: String, port: Int, path: String, user: String? = nil, password: String? = nil) {
        self.scheme = scheme
        self.host = host
        self.port = port
        self.path = path
        self.user = user
        self.password = password
    }

    public var description: String {
        let defaultPort = scheme == "https" ? 443 : 80
        return "\(scheme)://\(host)\(port == defaultPort ? "" : ":\(port)")\(path)"
    }
}

public enum ConnectionProtocol: Sendable, Hashable {
    case generic
    case http(HTTPCheck)
    /// Another protocol of monit's, by its lowercase name (mysql, smtp, ssh, …).
    case named(String)
}

public struct HTTPCheck: Sendable, Hashable {
    /// Path and query to request; `/` by default.
    public var request = "/"
    public var hostHeader: String?
    /// `status OP N`; without it, any status below 400 passes, as in monit.
    public var status: Comparison<Int>?
    /// `content ==|!= "REGEX"`: an unanchored POSIX extended regex searched in the body.
    public var content: Comparison<String>?
    /// `checksum HASH`: the MD5 (32 hex digits) or SHA-1 (40) of the body must be this.
    public var checksum: String?
    /// `username "u" password "p"`: Basic authentication.
    public var user: String?
    public var password: String?

    public init() {}
}

public struct Comparison<Value: Sendable & Hashable>: Sendable, Hashable {
    public var op: ComparisonOperator
    public var value: Value
    public init(_ op: ComparisonOperator, _ value: Value) {
        self.op = op
        self.value = value
    }
}
