import NIOCore
import Synchronization
import WardenConfig

#if canImport(Glibc)
import Glibc
#endif

/// Which services are up, fed by the supervisor's events; the proxy holds requests for those that are not.
public final class ServiceAvailability: Sendable {
    private let state = Mutex<(up: [String: Bool], maintenance: Set<String>)>(([:], []))

    public init() {}

    public func set(_ service: String, up: Bool) {
        state.withLock { $0.up[service] = up }
    }

    /// Unknown services count as up: the proxy then just tries the upstream.
    public func isUp(_ service: String) -> Bool {
        state.withLock { $0.up[service] ?? true }
    }

    /// `warden maintenance on|off SITE`: planned work answers with the maintenance page at once.
    public func setMaintenance(_ site: String, _ on: Bool) {
        state.withLock { if on { $0.maintenance.insert(site) } else { $0.maintenance.remove(site) } }
    }

    public func inMaintenance(_ site: String) -> Bool {
        state.withLock { $0.maintenance.contains(site) }
    }
}

/// Finds the site for a Host header and the longest route prefix for a path.
struct SiteRouter: Sendable {
    let sites: [Site]

    func site(forHost host: String?) -> Site? {
        let name = (host ?? "").lowercased().split(separator: ":").first.map(String.init) ?? ""
        return sites.first { $0.hosts.contains(name) } ?? sites.first { $0.hosts.contains("*") } ?? sites.first
    }

    static func route(in site: Site, path: String) -> Site.Route? {
        site.routes.filter { route in
            route.prefix == "/" || path == route.prefix || path.hasPrefix(route.prefix.hasSuffix("/") ? route.prefix : route.prefix + "/")
        }.max { $0.prefix.count < $1.prefix.count }
    }
}

/// Kept-alive upstream connections, per event loop and upstream address, so a request reuses one
/// instead of paying for a new TCP connection.
final class UpstreamPool: Sendable {
    private let idle = Mutex<[String: [any Channel]]>([:])
    let maximumIdlePerKey: Int

    init(maximumIdlePerKey: Int = 256) {
        self.maximumIdlePerKey = maximumIdlePerKey
    }

    private func key(_ loop: any EventLoop, _ host: String, _ port: Int) -> String {
        "\(ObjectIdentifier(loop))|\(host)|\(port)"
    }

    func acquire(on loop: any EventLoop, host: String, port: Int) -> (any Channel)? {
        let key = key(loop, host, port)
        while let channel = idle.withLock({ $0[key]?.popLast() }) {
            if channel.isActive { return channel }
        }
        return nil
    }

    func release(_ channel: any Channel, host: String, port: Int) {
        let key = key(channel.eventLoop, host, port)
        let kept = idle.withLock { idle -> Bool in
            guard idle[key, default: []].count < maximumIdlePerKey else { return false }
            idle[key, default: []].append(channel)
            return true
        }
        if !kept { channel.close(promise: nil) }
        // A pooled connection closed by the upstream is dropped from the pool.
        channel.closeFuture.whenComplete { [weak self] _ in
            self?.idle.withLock { idle in idle[key]?.removeAll { $0 === channel } }
        }
    }
}

/// An access or error log file, re-opened on SIGUSR1.
public final class LogFile: Sendable {
    let path: String
    private let fd = Mutex<Int32>(-1)

    public init(path: String) {
        self.path = path
        reopen()
    }

    public func reopen() {
        let new = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o640)
        let old = fd.withLock { fd -> Int32 in defer { fd = new }; return fd }
        if old >= 0 { close(old) }
    }

    func write(_ line: String) {
        var bytes = Array(line.utf8)
        fd.withLock { fd in
            guard fd >= 0 else { return }
            _ = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        }
    }

    /// nginx's `combined` format.
    static func combined(client: String, time: time_t, request: String, status: Int, bytes: Int, referer: String?, agent: String?) -> String {
        let stamp = TimeFormat.string(Double(time), "%d/%b/%Y:%H:%M:%S %z")
        return "\(client) - - [\(stamp)] \"\(request)\" \(status) \(bytes) \"\(referer ?? "-")\" \"\(agent ?? "-")\"\n"
    }
}

/// The small HTML pages the proxy answers with itself.
enum ProxyPages {
    static func page(_ status: Int, _ title: String, _ text: String) -> [UInt8] {
        Array("<!DOCTYPE html><html><head><title>\(status) \(title)</title></head><body><center><h1>\(status) \(title)</h1></center><hr><center>\(text)</center></body></html>\n".utf8)
    }

    static let badGateway = page(502, "Bad Gateway", "warden")
    static let gatewayTimeout = page(504, "Gateway Time-out", "warden")
    static let notFound = page(404, "Not Found", "warden")
    static let defaultMaintenance = page(503, "Service Temporarily Unavailable", "The application is being restarted; please try again in a moment.")
}
