import Logging
import ServiceLifecycle
import Synchronization
import WardenACME
import WardenConfig
import WardenCore
import WardenPlatform
import WardenProxy

/// The certificates and challenge answers sent to the proxy, kept so that a new proxy worker (one
/// started again after a crash) gets them too. Only PEM certificates, their keys and key
/// authorizations cross; never the account key.
final class CertificateFeed: Sendable {
    let proxy: any ProxyControl
    private let sent = Mutex<(certificates: [String: ProxyFeedMessage], challenges: [String: ProxyFeedMessage])>(([:], [:]))

    init(proxy: any ProxyControl) {
        self.proxy = proxy
    }

    func send(_ message: ProxyFeedMessage) {
        sent.withLock { sent in
            switch message {
            case .certificate(let names, _, _): sent.certificates[names.joined(separator: " ")] = message
            case .challengeToken(let token, let answer): sent.challenges["http " + token] = answer == nil ? nil : message
            case .challengeCertificate(let name, let chain, _): sent.challenges["tls " + name] = chain == nil ? nil : message
            default: break
            }
        }
        proxy.send(message)
    }

    func replay() {
        let messages = sent.withLock { Array($0.certificates.values) + Array($0.challenges.values) }
        for message in messages { proxy.send(message) }
    }
}

/// Publishes challenge answers while an order waits for validation.
struct ChallengePublisher: ACMEChallengePublisher {
    let feed: CertificateFeed
    /// The proxy's first plain listener, where an http-01 answer is checked before the server is told.
    let plainListener: (address: String, port: Int)?

    func publish(_ answer: ACMEChallengeAnswer) async {
        switch answer.type {
        case .http01:
            feed.send(.challengeToken(answer.token, keyAuthorization: answer.keyAuthorization))
            await preflight(answer)
        case .tlsALPN01:
            let pair = try? CertificateFactory.challengeCertificate(for: answer, now: WallClock.now())
            feed.send(.challengeCertificate(name: answer.name, chainPEM: pair?.chainPEM, keyPEM: pair?.keyPEM))
            // A worker reads its input on its own thread: give it a moment before the server looks.
            try? await Task.sleep(for: .milliseconds(200))
        }
    }

    /// Asks the proxy for the token until it answers (the worker applies it on its own thread), for
    /// at most 2 s: validation fails for good if the server looks too early.
    private func preflight(_ answer: ACMEChallengeAnswer) async {
        guard let listener = plainListener else { return }
        let host = switch listener.address {
        case "0.0.0.0": "127.0.0.1"
        case "::", "[::]": "::1"
        default: listener.address
        }
        let request = HTTPProbeRequest(
            host: host, port: listener.port, path: FrontDoor.challengePrefix + answer.token, hostHeader: answer.name,
            timeout: .seconds(1), bodyLimit: 4096)
        for _ in 0..<40 {
            let (result, body) = await ConnectionProbe().http(request)
            if result.succeeded, body == answer.keyAuthorization { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    func withdraw(_ answer: ACMEChallengeAnswer) async {
        switch answer.type {
        case .http01: feed.send(.challengeToken(answer.token, keyAuthorization: nil))
        case .tlsALPN01: feed.send(.challengeCertificate(name: answer.name, chainPEM: nil, keyPEM: nil))
        }
    }
}

/// `tls auto`: obtains each site's certificate from `set acme`, keeps it under `storage`, serves it
/// through the proxy, renews it, and reports each issuance, renewal and failure as an event (so
/// `set alert` mails them). Runs in the daemon, as root: the proxy worker never sees the account key.
struct ACMEService: ServiceLifecycle.Service {
    let supervisor: Supervisor
    let feed: CertificateFeed
    let logger: Logger
    /// Between looks at what is due (and at a reloaded configuration).
    let interval: Duration

    /// The daemon's cycle, at most a minute: a reload or a retry is seen within one.
    static func interval(_ configuration: Configuration) -> Duration { .seconds(min(configuration.daemon.interval, 60)) }

    func run() async throws {
        // A stop cancels an order in progress too: the next start begins it again.
        try? await cancelWhenGracefulShutdown {
            var current: Setup?
            // Prepared once per configuration: an unusable storage is reported once, not every interval.
            var prepared: Setup.Key?
            var scheduler = RenewalScheduler(renewBefore: nil)
            while !Task.isCancelled {
                let configuration = await supervisor.configuration
                let key = Setup.Key(configuration)
                if key != prepared {
                    prepared = key
                    current = prepare(configuration, scheduler: &scheduler)
                }
                if let current {
                    for action in scheduler.due(now: WallClock.now()) where !Task.isCancelled {
                        await carry(out: action, with: current, scheduler: &scheduler)
                    }
                }
                try await Task.sleep(for: interval)
            }
        }
    }

    /// What one configuration needs: storage, account key, client, the sites and their names.
    struct Setup {
        let settings: ACMESettings
        let sites: [String: [String]]
        let challengeTypes: [ACME.ChallengeType]
        let plainListener: (address: String, port: Int)?
        let store: CertificateStore
        let accountKey: ACMEAccountKey
        let client: ACMEClient<ContinuousClock>

        /// What decides a setup: `set acme` and the sites' names.
        struct Key: Hashable {
            let settings: ACMESettings?
            let sites: [String: [String]]

            init(_ configuration: Configuration) {
                settings = configuration.acme
                sites = Setup.sites(configuration)
            }
        }

        static func sites(_ configuration: Configuration) -> [String: [String]] {
            guard configuration.proxy?.listens.contains(where: \.automaticTLS) == true else { return [:] }
            return Dictionary(
                configuration.sites.filter { !$0.certificateNames.isEmpty }.map { ($0.name, $0.certificateNames) }, uniquingKeysWith: { first, _ in first })
        }
    }

    private func prepare(_ configuration: Configuration, scheduler: inout RenewalScheduler) -> Setup? {
        let sites = Setup.sites(configuration)
        guard let settings = configuration.acme, !sites.isEmpty else { return nil }
        let setup: Setup
        do {
            let store = try CertificateStore(directory: settings.storage)
            let https = try ACMEHTTPSClient(trustFile: settings.trust)
            let plain = configuration.proxy?.listens.first { !$0.isTLS }
            let challengeTypes: [ACME.ChallengeType] = switch settings.challenge {
            case .http01: [.http01]
            case .tlsALPN01: [.tlsALPN01]
            case nil: plain != nil ? [.http01, .tlsALPN01] : [.tlsALPN01]
            }
            setup = Setup(
                settings: settings, sites: sites, challengeTypes: challengeTypes, plainListener: plain.map { ($0.address, $0.port) },
                store: store, accountKey: try store.accountKey(),
                client: ACMEClient(clock: ContinuousClock(), now: { WallClock.now() }, transport: { try await https.send($0) }))
        } catch {
            logger.error("acme: cannot use storage '\(settings.storage)' or the trust file: \(error)")
            for (site, names) in sites.sorted(by: { $0.key < $1.key }) {
                if let placeholder = try? CertificateFactory.placeholder(names: names, now: WallClock.now()) {
                    feed.send(.certificate(names: names, chainPEM: placeholder.chainPEM, keyPEM: placeholder.keyPEM))
                }
                report(site, .failed, "certificate storage unusable: \(error)", action: "alert")
            }
            return nil
        }
        scheduler.renewBefore = settings.renewBefore.map(Double.init)
        var wanted: [(site: String, names: [String], stored: CertificateInfo?)] = []
        let now = WallClock.now()
        for (site, names) in sites.sorted(by: { $0.key < $1.key }) {
            let stored = setup.store.load(site: site)
            if let stored, stored.info.notAfter > now, stored.info.covers(names) {
                feed.send(.certificate(names: names, chainPEM: stored.pair.chainPEM, keyPEM: stored.pair.keyPEM))
                show(stored.info, site: site)
                logger.info("acme: '\(site)' serves its stored certificate (expires \(TimeFormat.string(stored.info.notAfter, "%Y-%m-%d %H:%M:%S")))")
            } else if let placeholder = try? CertificateFactory.placeholder(names: names, now: now) {
                feed.send(.certificate(names: names, chainPEM: placeholder.chainPEM, keyPEM: placeholder.keyPEM))
            }
            wanted.append((site, names, stored?.info))
        }
        scheduler.configure(wanted)
        supervisor.certificates.keep(Set(sites.keys), of: .acme)
        return setup
    }

    private func carry(out action: RenewalScheduler.Action, with setup: Setup, scheduler: inout RenewalScheduler) async {
        switch action {
        case .expiring(let site, let notAfter):
            let days = Int(((notAfter - WallClock.now()) / 86400).rounded(.down))
            report(site, .failed, "certificate expires in \(days) days (\(date(notAfter))) and has not been renewed", action: "alert")
        case .obtain(let site):
            guard let names = setup.sites[site] else { return }
            // A stored certificate for other names (the site's hosts changed) is replaced, not renewed.
            let renewal = scheduler.certificate(of: site)?.covers(names) == true
            logger.info("acme: ordering a certificate for '\(site)' (\(names.joined(separator: ", ")))")
            let order = ACMEClient<ContinuousClock>.Order(
                directoryURL: setup.settings.directory, email: setup.settings.email, names: names, challengeTypes: setup.challengeTypes,
                keyType: setup.settings.keyType == .rsa ? .rsa2048 : .ecdsaP256)
            do {
                let pair = try await setup.client.obtain(order, accountKey: setup.accountKey, publisher: ChallengePublisher(feed: feed, plainListener: setup.plainListener))
                let info = try CertificateInfo(chainPEM: pair.chainPEM)
                try setup.store.save(pair, site: site)
                feed.send(.certificate(names: names, chainPEM: pair.chainPEM, keyPEM: pair.keyPEM))
                show(info, site: site)
                let now = WallClock.now()
                let dueAgain = scheduler.obtained(site: site, certificate: info, now: now)
                report(
                    site, renewal ? .changed : .succeeded,
                    "certificate \(renewal ? "renewed" : "obtained") for \(names.joined(separator: ", ")) from \(info.issuer), expires \(date(info.notAfter)) (expiry \(Int(info.notAfter)))",
                    action: renewal ? "renew" : "obtain")
                if dueAgain {
                    logger.warning("acme: '\(site)': 'renew before' is longer than the certificate's lifetime; next renewal in an hour")
                }
            } catch {
                let retry = scheduler.failed(site: site, now: WallClock.now())
                report(site, .failed, "certificate \(renewal ? "renewal" : "order") failed: \(error); next try at \(date(retry))", action: "alert")
            }
        }
    }

    /// The certificate the site now serves, for the status.
    private func show(_ info: CertificateInfo, site: String) {
        supervisor.certificates.set(SiteCertificate(site: site, issuer: info.issuer, names: info.names, notAfter: info.notAfter, source: .acme))
    }

    private func date(_ time: Double) -> String { TimeFormat.string(time, "%Y-%m-%d %H:%M:%S") }

    private func report(_ site: String, _ state: Event.State, _ message: String, action: String) {
        if state == .failed { logger.error("'\(site)' \(message)") } else { logger.info("'\(site)' \(message)") }
        supervisor.events.publish(Event(service: site, kind: .certificate, state: state, message: message, action: action))
    }
}
