import Logging
import ServiceLifecycle
import WardenACME
import WardenConfig
import WardenCore
import WardenPlatform
import WardenProxy

/// Reads the certificate files of `listen … ssl { certificate: … }` once a cycle, so the status shows
/// each TLS site's certificate, and one that expires within 14 days raises an alert, once (a renewal
/// by another tool replaces the file: its later expiry makes it a new certificate). A renewed pair is
/// sent to the proxy, which serves it from the next handshake on (`CertificateFileFollower`).
struct CertificateFileService: ServiceLifecycle.Service {
    let supervisor: Supervisor
    let logger: Logger
    let interval: Duration
    let proxy: (any ProxyControl)?

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var watch = CertificateExpiryWatch()
            var follower = CertificateFileFollower()
            var reported = Set<String>()
            while !Task.isCancelled {
                let configuration = await supervisor.configuration
                let (outcomes, again) = follower.look(configuration.proxy?.listens ?? [], now: WallClock.now())
                for outcome in outcomes {
                    if let message = outcome.message { proxy?.send(message) }
                    guard let (succeeded, text) = outcome.report else { continue }
                    if succeeded { logger.info("proxy: \(text)") } else { logger.error("proxy: \(text)") }
                    for site in Self.sites(configuration) {
                        supervisor.events.publish(
                            Event(service: site.name, kind: .certificate, state: succeeded ? .changed : .failed, message: text, action: succeeded ? "reload" : "alert"))
                    }
                }
                let (certificates, problems) = Self.served(configuration, by: follower)
                for problem in problems.subtracting(reported) { logger.error("proxy: \(problem)") }
                reported = problems
                supervisor.certificates.keep(Set(certificates.map(\.site)), of: .file)
                for certificate in certificates { supervisor.certificates.set(certificate) }
                let now = WallClock.now()
                for certificate in watch.check(certificates, now: now) {
                    let event = CertificateExpiryWatch.event(certificate, now: now)
                    logger.error("'\(certificate.site)' \(event.message)")
                    supervisor.events.publish(event)
                }
                try await Task.sleep(for: again.map { min(interval, .seconds($0)) } ?? interval)
            }
        }
    }

    /// The certificate of each site the first file listener serves (every site but those `tls auto`
    /// gets one for): the pair the follower last sent to the proxy, not a refused one the files may
    /// hold now. Files never served have no certificate here; the follower reports why.
    static func served(_ configuration: Configuration, by follower: CertificateFileFollower) -> (certificates: [SiteCertificate], problems: Set<String>) {
        let listens = configuration.proxy?.listens ?? []
        guard let files = listens.lazy.compactMap(CertificateFiles.init).first, let chain = follower.servedChain(files) else { return ([], []) }
        let info: CertificateInfo
        do {
            info = try CertificateInfo(chainPEM: String(decoding: chain, as: UTF8.self))
        } catch {
            return ([], ["cannot read the certificate '\(files.certificate)': \(error)"])
        }
        let path = files.certificate
        return (sites(configuration).map { SiteCertificate(site: $0.name, issuer: info.issuer, names: info.names, notAfter: info.notAfter, source: .file, path: path) }, [])
    }

    /// The sites a file certificate serves: all, but those `tls auto` gets one for.
    static func sites(_ configuration: Configuration) -> [Site] {
        let automatic = configuration.proxy?.listens.contains(where: \.automaticTLS) == true
        return configuration.sites.filter { !automatic || $0.certificateNames.isEmpty }
    }
}
