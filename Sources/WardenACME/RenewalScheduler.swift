/// When each site's certificate is ordered: at once without one (or one that does not cover the
/// site's names), then when two thirds of its lifetime have passed or `renew before N days` says
/// so; after a failure, again with a back-off. Decides only: times in, actions out.
public struct RenewalScheduler: Sendable {
    public enum Action: Sendable, Hashable {
        case obtain(site: String)
        /// Under `expiryWarning` left and no renewal has succeeded: raised once per certificate.
        case expiring(site: String, notAfter: Double)
    }

    struct SiteState: Sendable {
        var names: [String]
        var certificate: CertificateInfo?
        var failures = 0
        var retryAt: Double?
        var warnedExpiry = false
    }

    /// `renew before N days`, in seconds; nil: at two thirds of the lifetime.
    public var renewBefore: Double?
    private var sites: [String: SiteState] = [:]

    public static let expiryWarning = 14.0 * 86400
    public static let firstRetry = 60.0
    public static let longestRetry = 6.0 * 3600
    /// A renewal whose new certificate is due already (`renew before` longer than the CA's
    /// lifetime) waits this long before the next, rather than ordering in a loop.
    public static let dueAgainDelay = 3600.0

    public init(renewBefore: Double?) {
        self.renewBefore = renewBefore
    }

    /// The sites as configured now (a reload may add or remove some); the certificate each has on disk.
    public mutating func configure(_ wanted: [(site: String, names: [String], stored: CertificateInfo?)]) {
        var next: [String: SiteState] = [:]
        for entry in wanted {
            var state = sites[entry.site] ?? SiteState(names: entry.names, certificate: entry.stored)
            if state.names != entry.names {
                state = SiteState(names: entry.names, certificate: entry.stored)
            }
            next[entry.site] = state
        }
        sites = next
    }

    public func renewalTime(of certificate: CertificateInfo) -> Double {
        if let renewBefore { return certificate.notAfter - renewBefore }
        return certificate.notBefore + certificate.lifetime * 2 / 3
    }

    public func certificate(of site: String) -> CertificateInfo? { sites[site]?.certificate }

    /// What is due at `now`, sites in name order.
    public mutating func due(now: Double) -> [Action] {
        var actions: [Action] = []
        for name in sites.keys.sorted() {
            guard var state = sites[name] else { continue }
            if let certificate = state.certificate, certificate.notAfter - now < Self.expiryWarning, !state.warnedExpiry {
                state.warnedExpiry = true
                actions.append(.expiring(site: name, notAfter: certificate.notAfter))
            }
            let wanted: Bool
            if let retryAt = state.retryAt {
                wanted = now >= retryAt
            } else if let certificate = state.certificate, certificate.covers(state.names) {
                wanted = now >= renewalTime(of: certificate)
            } else {
                wanted = true
            }
            if wanted { actions.append(.obtain(site: name)) }
            sites[name] = state
        }
        return actions
    }

    /// A new certificate for `site`. Returns true when it is due for renewal already.
    public mutating func obtained(site: String, certificate: CertificateInfo, now: Double) -> Bool {
        guard var state = sites[site] else { return false }
        state.certificate = certificate
        state.failures = 0
        state.warnedExpiry = false
        let dueAgain = renewalTime(of: certificate) <= now
        state.retryAt = dueAgain ? now + Self.dueAgainDelay : nil
        sites[site] = state
        return dueAgain
    }

    /// An order failed: the next try is 1 minute later, then 2, 4, … up to 6 hours. Returns its time.
    @discardableResult
    public mutating func failed(site: String, now: Double) -> Double {
        guard var state = sites[site] else { return now }
        state.failures += 1
        let delay = min(Self.firstRetry * Double(1 << min(state.failures - 1, 20)), Self.longestRetry)
        state.retryAt = now + delay
        sites[site] = state
        return now + delay
    }
}
