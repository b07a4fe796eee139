import Logging
import ServiceLifecycle
import WardenACME
import WardenConfig
import WardenCore
import WardenPlatform

/// Reads the certificate files of `listen … ssl { certificate: … }` once a cycle, so the status shows
/// each TLS site's certificate, and one that expires within 14 days raises an alert, once (a renewal
/// by another tool replaces the file: its later expiry makes it a new certificate).
struct CertificateFileService: ServiceLifecycle.Service {
    let supervisor: Supervisor
    let logger: Logger
    let interval: Duration

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var watch = CertificateExpiryWatch()
            var reported = Set<String>()
            while !Task.isCancelled {
                let (certificates, problems) = Self.read(await supervisor.configuration)
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
                try await Task.sleep(for: interval)
            }
        }
    }

    /// The certificate of each site the first file listener serves (every site but those `tls auto`
    /// gets one for), and the files that could not be read.
    static func read(_ configuration: Configuration) -> (certificates: [SiteCertificate], problems: Set<String>) {
        let listens = configuration.proxy?.listens ?? []
        guard let path = listens.lazy.compactMap(\.certificate).first else { return ([], []) }
        let automatic = listens.contains(where: \.automaticTLS)
        let info: CertificateInfo
        do {
            info = try CertificateInfo(chainPEM: String(decoding: try FileSystemReader().read(path), as: UTF8.self))
        } catch {
            return ([], ["cannot read the certificate '\(path)': \(error)"])
        }
        let sites = configuration.sites.filter { !automatic || $0.certificateNames.isEmpty }
        return (sites.map { SiteCertificate(site: $0.name, issuer: info.issuer, names: info.names, notAfter: info.notAfter, source: .file, path: path) }, [])
    }
}
