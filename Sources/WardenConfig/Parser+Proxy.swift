/// The proxy's statements, in the control file's own style:
///
///     set proxy
///         listen 0.0.0.0 port 80
///         listen 0.0.0.0 port 443 with ssl { certificate: /etc/warden/site.pem, key: /etc/warden/site.key }
///         listen 0.0.0.0 port 8443 tls auto
///         user www-data group www-data
///
///     set acme directory "https://acme-v02.api.letsencrypt.org/directory" email "ops@mydomain.com"
///         storage /var/lib/warden/acme trust "/etc/warden/acme-ca.pem" renew before 30 days
///
///     check site myapp with host "mydomain.com" alias "anothercooldomain.org"
///         pass / to http://127.0.0.1:8080/ for service myapp
///         pass /api to https://10.0.0.5:8443/ ca /etc/warden/api-ca.pem sni api.internal
///         serve /static from /srv/myapp/public
///         access log /var/log/warden/myapp-access.log combined
///         error log /var/log/warden/myapp-error.log
///         maintenance page /srv/myapp/maintenance.html hold 10 seconds
///         redirect to https
///         hsts max-age 1 year include subdomains
///         compress gzip deflate level 5 min-size 1 kB
extension Parser {
    func proxySettings() throws {
        var settings = configuration.proxy ?? ProxySettings()
        while true {
            if accept("listen") {
                var address = "0.0.0.0"
                if !at("port") { address = try value("an address to listen on").text }
                try expect("port", after: "listen \(address)")
                var listen = ProxySettings.Listen(address: address, port: try port())
                if let tls = accept(any: ["ssl", "tls"]) {
                    if accept("auto") {
                        listen.automaticTLS = true
                        listen.location = location(of: tls)
                    } else {
                        let options = try keyValueBlock("ssl")
                        guard let certificate = options["certificate"] ?? options["pemfile"] else {
                            throw fail(.syntax, "the ssl block of 'listen' needs 'certificate: PATH'", at: peek)
                        }
                        listen.certificate = certificate
                        listen.key = options["key"] ?? certificate
                    }
                }
                settings.listens.append(listen)
            } else if accept("user") {
                settings.user = try value("a user name").text
                if accept("group") { settings.group = try value("a group name").text }
            } else if accept("timeout") {
                let kind = try expectKeyword(["connect", "read", "send", "idle", "header"], after: "timeout")
                let seconds = try duration("a timeout")
                switch kind.keyword {
                case "connect": settings.connectTimeout = seconds
                case "read": settings.readTimeout = seconds
                case "send": settings.sendTimeout = seconds
                case "idle": settings.idleTimeout = seconds
                default: settings.headerTimeout = seconds
                }
            } else if accept("max") {
                let kind = try expectKeyword(["body", "connections"], after: "max")
                if kind.is("body") {
                    let (value, unit, token) = try quantity("a size")
                    settings.maximumBodyBytes = Int(try byteSize(value, unit: unit, token: token))
                } else {
                    settings.maximumConnections = try integer("a number of connections", range: 1...1_000_000)
                }
            } else {
                break
            }
        }
        if settings.listens.isEmpty {
            throw fail(.syntax, "expected 'listen [ADDRESS] port N' after 'set proxy', found \(peek.display)", at: peek)
        }
        configuration.proxy = settings
    }

    func siteCheck() throws {
        let nameToken = try value("a site name")
        var hosts: [String] = []
        while let keyword = accept(any: ["host", "alias", "default"]) {
            hosts.append(keyword.is("default") ? "*" : try value("a host name").text.lowercased())
        }
        current = nil
        configuration.sites.append(Site(name: nameToken.text, hosts: hosts, location: location(of: nameToken)))
        currentSite = configuration.sites.count - 1
    }

    func siteStatement() throws {
        guard let index = currentSite else { return }
        let keyword = advance()
        switch keyword.keyword {
        case "pass":
            let prefix = try routePrefix()
            try expect("to", after: "pass \(prefix)")
            if accept("service") {
                let service = try value("a service name").text
                configuration.sites[index].routes.append(.init(prefix: prefix, target: .instances(service: service)))
                return
            }
            let urlToken = try value("an upstream URL such as http://127.0.0.1:8080/")
            let url = try self.url(urlToken)
            var service: String?
            if accept("service") { service = try value("a service name").text }
            let tls = try upstreamTLS(url.scheme == "https", after: urlToken)
            configuration.sites[index].routes.append(.init(prefix: prefix, target: .upstream(url, service: service), tls: tls))
        case "serve":
            let prefix = try routePrefix()
            try expect("from", after: "serve \(prefix)")
            let directory = try absolutePath("the directory to serve")
            configuration.sites[index].routes.append(.init(prefix: prefix, target: .directory(directory)))
        case "balance":
            let kind = try expectKeyword(["round-robin", "least-connections", "sticky"], after: "balance")
            switch kind.keyword {
            case "round-robin": configuration.sites[index].balance = .roundRobin
            case "least-connections": configuration.sites[index].balance = .leastConnections
            default:
                if accept("ip") {
                    configuration.sites[index].balance = .stickyIP
                } else {
                    try expect("cookie", after: "balance sticky")
                    let name = try value("a cookie name")
                    guard !name.text.isEmpty, name.text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) else {
                        throw fail(.invalidValue, "'\(name.text)' cannot be a cookie name", at: name)
                    }
                    configuration.sites[index].balance = .stickyCookie(name.text)
                }
            }
        case "access":
            try expect("log", after: "access")
            configuration.sites[index].accessLog = try absolutePath("the access log")
            _ = accept("combined")
        case "error":
            try expect("log", after: "error")
            configuration.sites[index].errorLog = try absolutePath("the error log")
        case "redirect":
            try expect("to", after: "redirect")
            try expect("https", after: "redirect to")
            configuration.sites[index].redirectToHTTPS = true
        case "hsts":
            try expect("max-age", after: "hsts")
            let maxAge = try hstsAge()
            var includeSubdomains = false
            if accept("include") {
                try expect("subdomains", after: "include")
                includeSubdomains = true
            }
            configuration.sites[index].hsts = Site.HSTS(maxAge: maxAge, includeSubdomains: includeSubdomains)
        case "compress":
            configuration.sites[index].compression = try compression()
        default:
            try expect("page", after: "maintenance")
            configuration.sites[index].maintenancePage = try absolutePath("the maintenance page")
            if accept("hold") { configuration.sites[index].hold = try duration("a hold time") }
        }
    }

    /// `set acme directory URL [email ADDRESS] storage DIR [trust CAFILE] [renew before N days]
    /// [challenge http-01|tls-alpn-01] [key ecdsa|rsa]`.
    func acmeSettings(_ keyword: Token) throws {
        var directory: String?
        var storage: String?
        var settings = ACMESettings(directory: "", storage: "", location: location(of: keyword))
        while true {
            if accept("directory") {
                let token = try value("the ACME directory URL")
                guard try url(token).scheme == "https" else {
                    throw fail(.invalidURL, "the ACME directory must be an https:// URL", at: token)
                }
                directory = token.text
            } else if accept("email") {
                let token = try value("an email address")
                guard token.text.contains("@") else { throw fail(.invalidValue, "expected an email address, found '\(token.text)'", at: token) }
                settings.email = token.text
            } else if accept("storage") {
                storage = try absolutePath("the ACME storage directory")
            } else if accept("trust") {
                settings.trust = try absolutePath("the CA file for the ACME server")
            } else if accept("renew") {
                try expect("before", after: "renew")
                settings.renewBefore = try duration("the renewal time before expiry")
            } else if accept("challenge") {
                let token = try expectKeyword(ACMESettings.Challenge.allCases.map(\.rawValue), after: "challenge")
                settings.challenge = ACMESettings.Challenge(rawValue: token.keyword)
            } else if accept("key") {
                let token = try expectKeyword(ACMESettings.KeyType.allCases.map(\.rawValue), after: "key")
                settings.keyType = ACMESettings.KeyType(rawValue: token.keyword) ?? .ecdsa
            } else {
                break
            }
        }
        guard let directory else {
            throw fail(.syntax, "expected 'directory \"https://…\"' in 'set acme', found \(peek.display)", at: peek)
        }
        guard let storage else {
            throw fail(.syntax, "expected 'storage /PATH' in 'set acme', found \(peek.display)", at: peek)
        }
        settings.directory = directory
        settings.storage = storage
        configuration.acme = settings
    }

    static let upstreamTLSKeywords: Set<String> = ["verify", "ca", "sni", "certificate"]

    /// The options after an `https://` upstream: `[verify off] [ca FILE] [sni NAME] [certificate FILE
    /// [key FILE]]`, in any order. Verification is on unless `verify off` says otherwise, which `-t`
    /// warns about; on an `http://` upstream the options are an error, not silently unused.
    private func upstreamTLS(_ https: Bool, after urlToken: Token) throws -> UpstreamTLS? {
        var tls = UpstreamTLS()
        while let keyword = accept(any: Self.upstreamTLSKeywords) {
            guard https else {
                throw fail(
                    .invalidValue, "'\(keyword.text)' applies to an https:// upstream only", at: keyword,
                    hint: "write the upstream as https://\(urlToken.text.drop { $0 != ":" }.dropFirst(3))")
            }
            switch keyword.keyword {
            case "verify":
                let choice = try expectKeyword(["on", "off"], after: "verify")
                tls.verify = choice.is("on")
                if !tls.verify {
                    report(
                        .warning(
                            .invalidValue, "'verify off': the upstream's certificate is not checked, so anyone on the path to it can read and change its traffic",
                            at: location(of: keyword), length: keyword.length + 1 + choice.length,
                            hint: "give the upstream's CA with 'ca /path/to/ca.pem' instead"))
                }
            case "ca": tls.caFile = try absolutePath("the CA file for the upstream")
            case "sni":
                let name = try value("a server name")
                guard !name.text.isEmpty, name.text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-.".contains($0)) }) else {
                    throw fail(.invalidValue, "'\(name.text)' cannot be a server name", at: name)
                }
                tls.serverName = name.text.lowercased()
            default:
                tls.certificate = try absolutePath("the client certificate (PEM)")
                if accept("key") { tls.key = try absolutePath("the client certificate's key (PEM)") }
            }
        }
        if https, !tls.verify, let file = tls.caFile {
            report(.warning(.invalidValue, "'ca \(file)' is unused: 'verify off' checks no certificate", at: location(of: urlToken), length: urlToken.length))
        }
        return https ? tls : nil
    }

    /// `compress [gzip] [deflate] [level 1-9] [min-size SIZE]`, options in any order on the
    /// statement's line; codings in the site's order of preference, gzip alone when none is named.
    private func compression() throws -> Site.Compression {
        var settings = Site.Compression(codings: [])
        let options: Set<String> = Set(Site.Compression.Coding.allCases.map(\.rawValue)).union(["level", "min-size"])
        while !peek.startsLine, peek.kind == .word {
            if let coding = Site.Compression.Coding(rawValue: peek.keyword) {
                advance()
                if !settings.codings.contains(coding) { settings.codings.append(coding) }
            } else if accept("level") {
                settings.level = try integer("a compression level", range: 1...9)
            } else if accept("min-size") {
                let (value, unit, token) = try quantity("a size")
                let bytes = try byteSize(value, unit: unit, token: token)
                guard bytes <= Double(Int32.max) else { throw fail(.numberOutOfRange, "a size '\(token.text)' is out of range", at: token) }
                settings.minimumBytes = Int(bytes)
            } else if Self.statementKeywords.contains(peek.keyword) {
                break
            } else {
                let token = peek
                let hint = ["br", "brotli", "zstd"].contains(token.keyword)
                    ? "warden compresses with 'gzip' and 'deflate' only" : suggestion(for: token.text, among: options)
                throw fail(.invalidValue, "unknown 'compress' option '\(token.text)'", at: token, hint: hint)
            }
        }
        if settings.codings.isEmpty { settings.codings = [.gzip] }
        return settings
    }

    /// `N seconds|minutes|hours|days|weeks|months|years`: HSTS ages run to years.
    private func hstsAge() throws -> Int {
        let long: [String: Double] = ["week": 604_800, "weeks": 604_800, "month": 2_592_000, "months": 2_592_000, "year": 31_536_000, "years": 31_536_000]
        if atInteger, let factor = long[peekSecond.keyword] {
            let count = try integer("the max-age", range: 0...100)
            advance()
            return Int(Double(count) * factor)
        }
        return try duration("the max-age")
    }

    private func routePrefix() throws -> String {
        let token = try value("a path prefix such as /")
        guard token.text.hasPrefix("/") else {
            throw fail(.invalidValue, "a route prefix starts with '/', found '\(token.text)'", at: token)
        }
        return token.text
    }
}

extension Validator {
    /// `tls auto`, `set acme`, `redirect to https` and `hsts` checked against each other.
    static func automaticTLS(_ configuration: Configuration) -> [Diagnostic] {
        var diagnostics: [Diagnostic] = []
        let listens = configuration.proxy?.listens ?? []
        let automatic = listens.filter(\.automaticTLS)
        if let first = automatic.first, configuration.acme == nil {
            diagnostics.append(
                .error(
                    .invalidValue, "'tls auto' needs 'set acme' to know where to get certificates", at: first.location,
                    hint: "add 'set acme directory \"https://…/directory\" email \"you@example.com\" storage /var/lib/warden/acme'"))
        }
        if let acme = configuration.acme, acme.challenge == .http01, !automatic.isEmpty, !listens.contains(where: { !$0.isTLS }) {
            diagnostics.append(
                .error(
                    .invalidValue, "'challenge http-01' needs a listener without TLS (port 80) to answer on", at: acme.location,
                    hint: "add 'listen 0.0.0.0 port 80' to 'set proxy', or use 'challenge tls-alpn-01'"))
        }
        if let acme = configuration.acme, automatic.isEmpty {
            diagnostics.append(.warning(.invalidValue, "'set acme' without a 'listen … tls auto': no certificate will be ordered", at: acme.location))
        }
        if !automatic.isEmpty {
            for site in configuration.sites where site.certificateNames.isEmpty {
                diagnostics.append(
                    .warning(
                        .invalidValue, "site '\(site.name)' has no host name: 'tls auto' orders no certificate for it", at: site.location,
                        hint: "add 'with host \"example.com\"' to the 'check site' line"))
            }
        }
        if !listens.contains(where: \.isTLS) {
            for site in configuration.sites where site.redirectToHTTPS || site.hsts != nil {
                diagnostics.append(
                    .error(
                        .invalidValue, "site '\(site.name)' redirects to HTTPS or sends HSTS, but the proxy has no TLS listener",
                        at: site.location, hint: "add 'listen 0.0.0.0 port 443 tls auto' to 'set proxy'"))
            }
        }
        return diagnostics
    }
}
