/// monit's SSL options block, `{ verify: enable, cacertificatefile: /etc/ssl/ca.pem, … }`, read for
/// one of the three places it appears. An option that would change nothing where it is written is an
/// error, never silently dropped: a `verify: enable` that verified nothing would be worse than none.
extension Parser {
    enum SSLContext {
        /// `set ssl {…}`: the client options every mail server takes unless its own say otherwise.
        case global
        /// `set mailserver … using ssl {…}`: warden is the client.
        case mailServer
        /// `set httpd … ssl {…}`: warden is the server.
        case httpd
        /// `if failed port N ssl options {…}`: warden is the client.
        case portTest

        var name: String {
            switch self {
            case .global: "set ssl"
            case .mailServer: "set mailserver … ssl"
            case .httpd: "set httpd … ssl"
            case .portTest: "port … ssl options"
            }
        }

        /// The options that mean something here, with why each other one does not.
        func refusal(of key: String) -> String? {
            switch (self, key) {
            case (_, "version"), (_, "ciphers"): nil
            case (.httpd, "pemfile"), (.httpd, "pemchain"), (.httpd, "pemkey"), (.httpd, "clientpemfile"), (.httpd, "verify"): nil
            case (.httpd, "selfsigned"): nil
            case (.httpd, _): "'\(key)' checks a server's certificate; the dashboard is the server (client certificates are checked against 'clientpemfile')"
            case (_, "pemfile"), (_, "pemchain"), (_, "pemkey"): "'\(key)' is the dashboard's certificate: set it in 'set httpd … ssl {…}'"
            case (.global, "clientpemfile"): "give the client certificate in the mail server's own 'ssl {…}', or the dashboard's in 'set httpd … ssl {…}'"
            case (_, "selfsigned"): "warden does not accept a self-signed server certificate on its own; give that certificate as 'cacertificatefile' to trust it"
            default: nil
            }
        }
    }

    static let sslKeys: Set<String> = [
        "version", "verify", "selfsigned", "ciphers", "pemfile", "pemchain", "pemkey", "clientpemfile", "cacertificatefile",
        "cacertificatepath",
    ]

    func sslOptions(_ context: SSLContext) throws -> SSLSettings {
        let open = peek
        let options = try keyValueBlock(context.name, knownKeys: Self.sslKeys)
        var ssl = SSLSettings()
        func refuse(_ message: String) { report(.error(.invalidValue, message, at: location(of: open), length: 1)) }
        func flag(_ key: String, _ on: String, _ off: String) -> Bool? {
            guard let value = options[key]?.lowercased() else { return nil }
            if value == on { return true }
            if value == off { return false }
            refuse("expected '\(on)' or '\(off)' for '\(key)' in '\(context.name)', found '\(value)'")
            return nil
        }
        ssl.verify = flag("verify", "enable", "disable")
        ssl.selfSigned = flag("selfsigned", "allow", "reject")
        // Rejecting a self-signed server certificate is what verification does anyway.
        for key in options.keys.sorted() where Self.sslKeys.contains(key) && !(key == "selfsigned" && ssl.selfSigned != true) {
            if let refusal = context.refusal(of: key) { refuse("warden cannot apply '\(key)' here: \(refusal)") }
        }
        ssl.pemfile = options["pemfile"]
        ssl.pemchain = options["pemchain"]
        ssl.pemkey = options["pemkey"]
        ssl.clientPemfile = options["clientpemfile"]
        ssl.caCertificateFile = options["cacertificatefile"]
        ssl.caCertificatePath = options["cacertificatepath"]
        ssl.ciphers = options["ciphers"]
        if let version = options["version"] {
            switch Self.tlsVersions(version) {
            case .success(let range): ssl.versions = range
            case .failure(let problem): refuse("'version: \(version)' in '\(context.name)': \(problem.message)")
            }
        }
        if context == .httpd {
            if (ssl.pemchain == nil) != (ssl.pemkey == nil) { refuse("'pemchain' and 'pemkey' go together in '\(context.name)'") }
            if ssl.verify == true, ssl.clientPemfile == nil {
                refuse("'verify: enable' on the dashboard checks client certificates: it needs 'clientpemfile: FILE' with the allowed certificates and their CAs")
            }
            if ssl.verify == false, ssl.clientPemfile != nil {
                refuse("'verify: disable' contradicts 'clientpemfile', which makes the dashboard require client certificates")
            }
        }
        return ssl
    }

    struct TLSVersionProblem: Error {
        let message: String
    }

    /// monit's `version:` list: `auto` (TLS 1.2 and 1.3), names to allow, `-name` to leave out. warden
    /// speaks TLS 1.0 to 1.3, one contiguous range of them.
    static func tlsVersions(_ text: String) -> Result<ClosedRange<SSLSettings.TLSVersion>, TLSVersionProblem> {
        let names: [String: SSLSettings.TLSVersion] = ["tlsv1": .v1_0, "tlsv11": .v1_1, "tlsv12": .v1_2, "tlsv13": .v1_3]
        var allowed = Set<SSLSettings.TLSVersion>()
        var excluded = Set<SSLSettings.TLSVersion>()
        var auto = true
        for word in text.lowercased().split(separator: " ").map(String.init) {
            let name = word.hasPrefix("-") ? String(word.dropFirst()) : word
            if name == "auto" { continue }
            if name == "sslv2" || name == "sslv3" {
                if word.hasPrefix("-") { continue }
                return .failure(TLSVersionProblem(message: "warden never speaks \(name.uppercased())"))
            }
            guard let version = names[name] else {
                return .failure(TLSVersionProblem(message: "unknown version '\(name)'; expected auto, tlsv1, tlsv11, tlsv12 or tlsv13"))
            }
            if word.hasPrefix("-") {
                excluded.insert(version)
            } else {
                allowed.insert(version)
                auto = false
            }
        }
        let versions = (auto ? [.v1_2, .v1_3] : allowed).subtracting(excluded)
        guard let low = versions.min(), let high = versions.max() else {
            return .failure(TLSVersionProblem(message: "no TLS version is left"))
        }
        guard versions.count == high.rawValue - low.rawValue + 1 else {
            return .failure(TLSVersionProblem(message: "warden allows one range of versions, without a gap"))
        }
        return .success(low...high)
    }
}
