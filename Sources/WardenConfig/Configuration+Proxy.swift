/// `set proxy`: where the reverse proxy listens and whom it runs as.
public struct ProxySettings: Sendable, Hashable {
    public struct Listen: Sendable, Hashable {
        public var address: String
        public var port: Int
        public var certificate: String?
        public var key: String?
        /// `tls auto`: certificates from `set acme`, one per site.
        public var automaticTLS = false
        /// Where `tls auto` is written, for `-t`.
        public var location: FileLocation?
        public var isTLS: Bool { certificate != nil || automaticTLS }
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
        /// How an `https://` upstream is reached; nil for every other target.
        public var tls: UpstreamTLS?

        public init(prefix: String, target: Target, tls: UpstreamTLS? = nil) {
            self.prefix = prefix
            self.target = target
            self.tls = tls
        }
    }

    public var name: String
    public var hosts: [String]
    public var routes: [Route] = []
    public var accessLog: String?
    public var errorLog: String?
    public var maintenancePage: String?
    /// Seconds a request waits for the service to come back before the maintenance page.
    public var hold = 0
    /// `redirect to https`: plain-HTTP requests are sent to the same URL over HTTPS.
    public var redirectToHTTPS = false
    /// `hsts max-age N [include subdomains]`: the Strict-Transport-Security header on HTTPS responses.
    public var hsts: HSTS?
    /// `compress …`: text responses gzip- or deflate-encoded for clients that accept it.
    public var compression: Compression?
    public var balance = Balance.roundRobin
    public var location: FileLocation

    public init(name: String, hosts: [String], location: FileLocation) {
        self.name = name
        self.hosts = hosts
        self.location = location
    }

    public struct HSTS: Sendable, Hashable, Codable {
        /// Seconds.
        public var maxAge: Int
        public var includeSubdomains: Bool

        public init(maxAge: Int, includeSubdomains: Bool) {
            self.maxAge = maxAge
            self.includeSubdomains = includeSubdomains
        }

        public var headerValue: String { "max-age=\(maxAge)\(includeSubdomains ? "; includeSubDomains" : "")" }
    }

    /// `compress [gzip] [deflate] [level N] [min-size SIZE]`.
    public struct Compression: Sendable, Hashable, Codable {
        public enum Coding: String, Sendable, Hashable, Codable, CaseIterable {
            case gzip, deflate
        }

        /// In the site's order of preference, used when the client likes several equally.
        public var codings: [Coding]
        /// zlib's level, 1 (fastest) to 9 (smallest). 5 as Caddy and h5bp's nginx configuration
        /// choose: most of level 9's gain at a third of its CPU.
        public var level: Int
        /// Bodies whose `Content-Length` says they are smaller go out as they are (Caddy's 512:
        /// below that, the gzip header and a flush cost about what compression saves).
        public var minimumBytes: Int

        public init(codings: [Coding] = [.gzip], level: Int = 5, minimumBytes: Int = 512) {
            self.codings = codings
            self.level = level
            self.minimumBytes = minimumBytes
        }
    }

    /// The names a certificate for this site covers: its hosts and aliases, without `default`.
    public var certificateNames: [String] { hosts.filter { $0 != "*" } }

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

/// The options of `pass … to https://…`: the upstream's certificate is verified against the system's
/// CAs (or `ca FILE`) for the URL's host (or `sni NAME`) unless `verify off`.
public struct UpstreamTLS: Sendable, Hashable, Codable {
    public var verify = true
    /// `ca FILE`: trust the CAs in this PEM file instead of the system's.
    public var caFile: String?
    /// `sni NAME`: the name sent in SNI and expected in the certificate, instead of the URL's host.
    public var serverName: String?
    /// `certificate FILE [key FILE]`: a client certificate for upstreams that ask for one (the key
    /// in the same file when `key` is not given).
    public var certificate: String?
    public var key: String?

    public init() {}
}

/// `set acme`: where `tls auto` gets its certificates (RFC 8555).
public struct ACMESettings: Sendable, Hashable {
    public enum Challenge: String, Sendable, Hashable, CaseIterable {
        case http01 = "http-01"
        case tlsALPN01 = "tls-alpn-01"
    }

    public enum KeyType: String, Sendable, Hashable, CaseIterable {
        case ecdsa, rsa
    }

    public var directory: String
    public var email: String?
    /// Account key and certificates (directory 0700, files 0600).
    public var storage: String
    /// A CA file to verify the ACME server with instead of the system's roots.
    public var trust: String?
    /// `renew before N days`, in seconds; nil: when two thirds of the lifetime have passed.
    public var renewBefore: Int?
    /// `challenge http-01|tls-alpn-01`; nil: http-01 when the proxy listens without TLS, else tls-alpn-01.
    public var challenge: Challenge?
    /// `key rsa`: RSA 2048 certificates instead of ECDSA P-256.
    public var keyType = KeyType.ecdsa
    public var location: FileLocation

    public init(directory: String, storage: String, location: FileLocation) {
        self.directory = directory
        self.storage = storage
        self.location = location
    }
}
