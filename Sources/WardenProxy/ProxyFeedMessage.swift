import NIOCore
import WardenConfig
import WardenCore
import WardenPlatform

/// What the daemon tells its proxy, in order. The same messages reach a proxy in the daemon's own
/// process and a privilege-dropped worker, which reads them as one JSON object per line on its
/// standard input.
public enum ProxyFeedMessage: Sendable, Hashable, Codable {
    /// Whether a service (or one instance, `myapp@8081`) accepts traffic.
    case serviceUp(String, up: Bool)
    /// The instances a service's requests go to now: a deploy's switch is one of these.
    case backends(String, [Backend])
    /// The services that are down and wait for their next automatic start (a restart delay), with the
    /// seconds until it: a request whose hold would end before it gets the maintenance page at once,
    /// with that `Retry-After`, instead of waiting for nothing.
    case delayedStarts([String: Int])
    /// The sites in planned maintenance.
    case maintenance([String])
    /// The sites after a reload.
    case sites([Site])
    /// Starts a drain (`ServiceAvailability.beginDrain`); a worker answers `ProxyWorkerAnswer.drained`
    /// once it is over, or after the time given.
    case drain(String, milliseconds: Int)
    /// After logrotate (SIGUSR1).
    case reopenLogs
    /// The key that signs sticky cookies, in Base64: the same in every worker and after a restart.
    case stickyKey(String)
    /// The answer to an ACME http-01 challenge (nil: withdrawn).
    case challengeToken(String, keyAuthorization: String?)
    /// The tls-alpn-01 certificate for a name (nil: withdrawn).
    case challengeCertificate(name: String, chainPEM: String?, keyPEM: String?)
    /// A `tls auto` site's certificate and key, served from the next handshake on.
    case certificate(names: [String], chainPEM: String, keyPEM: String)
    /// What the certificate files of `listen … ssl` listeners hold now, checked by the daemon (which
    /// can read them after the worker dropped its privileges): served from the next handshake on.
    case listenerCertificate(CertificateFiles, chainPEM: String, keyPEM: String)
    /// Asks a worker for its metrics now (a scrape), besides the report it sends every second; the
    /// number comes back in the report.
    case reportMetrics(Int)
}

/// What a worker says back on its standard output, among its log lines.
public enum ProxyWorkerAnswer: Sendable, Hashable, Codable {
    /// A drain is over, with the requests it saw through.
    case drained(String, requests: Int)
    /// A request could not reach this instance: the supervisor checks it now.
    case unreachable(String)
    /// One part of the worker's cumulative metrics (see `ProxyMetricsReport`).
    case metrics(ProxyMetricsReport)
}

/// One instance of a service with `instances`, as the proxy reaches it.
public struct Backend: Sendable, Hashable, Codable {
    /// The instance's name, `myapp@8081`: its in-flight count and its hold go by it.
    public var instance: String
    public var host: String
    public var port: Int

    public init(instance: String, host: String, port: Int) {
        self.instance = instance
        self.host = host
        self.port = port
    }
}

extension ProxyServer {
    /// Carries out a message; a drain is begun and returned, for the caller to wait on.
    @discardableResult
    public func apply(_ message: ProxyFeedMessage) -> Drain? {
        switch message {
        case .serviceUp(let name, let up): shared.availability.set(name, up: up)
        case .backends(let service, let backends): shared.availability.setBackends(service, backends)
        case .delayedStarts(let services): shared.availability.setDelayedStarts(services)
        case .maintenance(let sites): shared.availability.setMaintenance(Set(sites))
        case .sites(let sites): update(sites: sites)
        case .drain(let name, let milliseconds): return shared.availability.beginDrain(name, timeout: .milliseconds(Int64(milliseconds)))
        case .reopenLogs: reopenLogs()
        case .stickyKey(let key): shared.availability.setStickyKey(Base64.decode(key) ?? [])
        case .challengeToken, .challengeCertificate, .certificate, .listenerCertificate: applyCertificate(message)
        case .reportMetrics: break  // answered by the worker's feed reader, which has the pipe
        }
        return nil
    }
}
