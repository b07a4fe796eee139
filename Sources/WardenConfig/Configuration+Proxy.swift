/// `set proxy`: where the reverse proxy listens and whom it runs as.
public struct ProxySettings: Sendable, Hashable {
    public struct Listen: Sendable, Hashable {
        public var address: String
        public var port: Int
        public var certificate: String?
        public var key: String?
        public var isTLS: Bool { certificate != nil }
    }

    public var listens: [Listen] = []
    public var user: String?
    public var group: String?
    /// Seconds.
    public var connectTimeout = 5
    public var readTimeout = 60
    public var sendTimeout = 60
    public var idleTimeout = 75
    public var headerTimeout = 10
    public var maximumBodyBytes = 100 * 1_048_576
    public var maximumConnections = 10_000
    public init() {}
}

/// `check site NAME with host "h" alias "a"`: a virtual host of the proxy.
/// Codable so the daemon can hand new sites to a proxy worker that may not read the control file.
public struct Site: Sendable, Hashable, Codable {
    public enum Target: Sendable, Hashable, Codable {
        /// `pass /prefix to http://host:port/path [for service NAME]`.
        case upstream(HTTPURL, service: String?)
        /// `serve /prefix from /dir`.
        case directory(String)
        /// `pass /prefix to service NAME`: the ready instances of a service with `instances`.
        case instances(service: String)
    }

    /// `balance …`: how requests are spread over a service's instances.
    public enum Balance: Sendable, Hashable, Codable {
        case roundRobin
        case leastConnections
        /// A cookie warden sets, signed, naming the client's instance (what Seaside's sessions need).
        case stickyCookie(String)
        /// The client's address picks the instance.
        case stickyIP
    }

    public struct Route: Sendable, Hashable, Codable {
        public var prefix: String
        public var target: Target
    }

    public var name: String
    public var hosts: [String]
    public var routes: [Route] = []
    public var accessLog: String?
    public var errorLog: String?
    public var maintenancePage: String?
    /// Seconds a request waits for the service to come back before the maintenance page.
    public var hold = 0
    public var balance = Balance.roundRobin
    public var location: FileLocation

    public init(name: String, hosts: [String], location: FileLocation) {
        self.name = name
        self.hosts = hosts
        self.location = location
    }

    /// The service named by a `for service` route, if any.
    public var services: [String] {
        routes.compactMap { route in
            switch route.target {
            case .upstream(_, let service): service
            case .instances(let service): service
            case .directory: nil
            }
        }
    }
}
