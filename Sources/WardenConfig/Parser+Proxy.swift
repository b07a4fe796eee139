/// The proxy's statements, in the control file's own style:
///
///     set proxy
///         listen 0.0.0.0 port 80
///         listen 0.0.0.0 port 443 with ssl { certificate: /etc/warden/site.pem, key: /etc/warden/site.key }
///         user www-data group www-data
///
///     check site myapp with host "mydomain.com" alias "anothercooldomain.org"
///         pass / to http://127.0.0.1:8080/ for service myapp
///         serve /static from /srv/myapp/public
///         access log /var/log/warden/myapp-access.log combined
///         error log /var/log/warden/myapp-error.log
///         maintenance page /srv/myapp/maintenance.html hold 10 seconds
extension Parser {
    func proxySettings() throws {
        var settings = configuration.proxy ?? ProxySettings()
        while true {
            if accept("listen") {
                var address = "0.0.0.0"
                if !at("port") { address = try value("an address to listen on").text }
                try expect("port", after: "listen \(address)")
                var listen = ProxySettings.Listen(address: address, port: try port())
                if accept(any: ["ssl", "tls"]) != nil {
                    let options = try keyValueBlock("ssl")
                    guard let certificate = options["certificate"] ?? options["pemfile"] else {
                        throw fail(.syntax, "the ssl block of 'listen' needs 'certificate: PATH'", at: peek)
                    }
                    listen.certificate = certificate
                    listen.key = options["key"] ?? certificate
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
            guard url.scheme == "http" else {
                throw fail(.invalidURL, "the upstream must be an http:// URL", at: urlToken)
            }
            var service: String?
            if accept("service") { service = try value("a service name").text }
            configuration.sites[index].routes.append(.init(prefix: prefix, target: .upstream(url, service: service)))
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
        default:
            try expect("page", after: "maintenance")
            configuration.sites[index].maintenancePage = try absolutePath("the maintenance page")
            if accept("hold") { configuration.sites[index].hold = try duration("a hold time") }
        }
    }

    private func routePrefix() throws -> String {
        let token = try value("a path prefix such as /")
        guard token.text.hasPrefix("/") else {
            throw fail(.invalidValue, "a route prefix starts with '/', found '\(token.text)'", at: token)
        }
        return token.text
    }
}
