extension Parser {
    static let setKeywords: Set<String> = [
        "daemon", "init", "logfile", "log", "pidfile", "idfile", "statefile", "eventqueue", "mailserver",
        "mail-format", "alert", "httpd", "limits", "onreboot", "ssl", "mmonit", "expectbuffer", "fips",
        "terminal", "hostname", "proxy", "metrics", "acme",
    ]

    func setStatement() throws {
        advance()
        let keyword = peek
        guard keyword.kind == .word, Self.setKeywords.contains(keyword.keyword) else {
            throw fail(
                .unknownStatement, "unknown setting 'set \(keyword.text)'", at: keyword,
                hint: suggestion(for: keyword.text, among: Self.setKeywords))
        }
        advance()
        switch keyword.keyword {
        case "daemon":
            configuration.daemon.interval = try integer("the cycle length in seconds", range: 1...86400 * 365)
            if at("start"), peekSecond.is("delay") {
                advance()
                advance()
                configuration.daemon.startDelay = try integer("the start delay in seconds", range: 0...86400 * 365)
            }
        case "init":
            configuration.initMode = true
        case "logfile", "log":
            if accept("syslog") {
                var facility = "log_user"
                if accept("facility") { facility = try value("a syslog facility").text }
                configuration.log = .syslog(facility: facility)
            } else {
                configuration.log = .file(try absolutePath("the log file"))
            }
        case "pidfile":
            configuration.pidfile = try absolutePath("the pid file")
        case "idfile":
            configuration.idfile = try absolutePath("the id file")
        case "statefile":
            configuration.statefile = try absolutePath("the state file")
        case "eventqueue":
            try eventQueue(keyword)
        case "mailserver":
            try mailServers()
        case "mail-format":
            configuration.mailFormat = try mailFormat()
        case "alert":
            configuration.alerts.append(try alertRecipient())
        case "httpd":
            try httpd()
        case "limits":
            try limits()
        case "onreboot":
            configuration.onReboot = try onReboot()
        case "ssl":
            _ = accept("options")
            configuration.ssl = try sslOptions(.global)
        case "mmonit":
            let target = try value("the M/Monit collector URL")
            report(
                .warning(
                    .invalidValue, "'set mmonit' is accepted but warden does not report to M/Monit",
                    at: location(of: keyword), length: keyword.length))
            _ = try url(target)
            while accept("timeout") { _ = try duration("a timeout") }
            if accept("register") {
                _ = accept("without")
                _ = accept("credentials")
            }
        case "expectbuffer":
            _ = try quantity("the expect buffer size")
        case "fips":
            break
        case "terminal":
            _ = try expectKeyword(["batch"], after: "set terminal")
        case "hostname":
            _ = try value("a host name")
        case "proxy":
            try proxySettings()
        case "metrics":
            try metricsListener()
        case "acme":
            try acmeSettings(keyword)
        default:
            break
        }
    }

    private func eventQueue(_ keyword: Token) throws {
        var basedir: String?
        var slots: Int?
        while true {
            if accept("basedir") {
                basedir = try absolutePath("the event queue directory")
            } else if accept("slots") {
                slots = try integer("the number of slots", range: 1...1_000_000)
            } else {
                break
            }
        }
        guard let basedir else {
            throw fail(.syntax, "expected 'basedir PATH' after 'set eventqueue', found \(peek.display)", at: peek)
        }
        configuration.eventQueue = EventQueueSettings(basedir: basedir, slots: slots)
    }

    private func mailServers() throws {
        repeat {
            let host = try value("a mail server host")
            if host.text.hasPrefix("<") {
                report(
                    .warning(
                        .invalidValue, "mail server '\(host.text)' looks like a placeholder; mail to it cannot be delivered",
                        at: location(of: host), length: host.length, hint: "write your SMTP server's host name, e.g. 'set mailserver smtp.example.com'"))
            }
            var server = MailServer(host: host.text)
            while true {
                if accept("port") {
                    server.port = try port()
                } else if accept("username") {
                    server.username = try value("a user name").text
                    try expect("password", after: "username")
                    server.password = try value("a password").text
                } else if accept("password") {
                    server.password = try value("a password").text
                } else if let security = accept(any: ["tls", "ssl", "tlsv1", "tlsv11", "tlsv12", "tlsv13", "sslv3", "auto"]) {
                    server.security = security.keyword == "ssl" || security.keyword == "sslv3" ? .implicitTLS : .startTLS
                    _ = accept("options")
                    if peek.kind == .leftBrace { server.ssl = try sslOptions(.mailServer) }
                } else if accept("timeout") {
                    server.timeout = try duration("a timeout")
                } else if accept("hostname") {
                    _ = try value("the host name to announce")
                } else {
                    break
                }
            }
            configuration.mailServers.append(server)
        } while acceptKind(.comma) != nil
        // monit reads `with timeout` after the last server as the timeout of every server.
        if let last = configuration.mailServers.last?.timeout {
            for index in configuration.mailServers.indices where configuration.mailServers[index].timeout == nil {
                configuration.mailServers[index].timeout = last
            }
        }
        while true {
            if accept("timeout") {
                let timeout = try duration("a timeout")
                for index in configuration.mailServers.indices where configuration.mailServers[index].timeout == nil {
                    configuration.mailServers[index].timeout = timeout
                }
            } else if accept("hostname") {
                _ = try value("the host name to announce")
            } else {
                break
            }
        }
    }

    func port() throws -> Int {
        let token = peek
        // An instance's own port (`instances … ports …`); the validator checks the service has them.
        if token.kind == .word, token.text == "$PORT" {
            advance()
            return Service.instancePort
        }
        let value = try integer("a port number", range: 0...Int(Int32.max))
        guard (1...65535).contains(value) else {
            throw fail(.portOutOfRange, "port \(value) is out of range (1...65535)", at: token)
        }
        return value
    }

    func mailFormat() throws -> MailFormat {
        let open = peek
        guard acceptKind(.leftBrace) != nil else {
            throw fail(.syntax, "expected '{' after 'mail-format', found \(open.display)", at: open)
        }
        var format = MailFormat()
        while let raw = acceptKind(.raw) {
            switch raw.rawKey {
            case "from": format.from = raw.text
            case "reply-to": format.replyTo = raw.text
            case "subject": format.subject = raw.text
            case "message": format.message = raw.text
            default: break
            }
        }
        guard acceptKind(.rightBrace) != nil else {
            throw fail(
                .syntax, "expected 'from:', 'reply-to:', 'subject:', 'message:' or '}' in mail-format, found \(peek.display)",
                at: peek)
        }
        return format
    }

    /// `ADDR [[not] { events }] [mail-format { … }] [reminder [on] N [cycles]]`, or
    /// `webhook|alertmanager URL [[not] { events }]`.
    func alertRecipient() throws -> AlertRecipient {
        if let channel = try alertEndpoint() { return channel }
        let addressToken = try value("an e-mail address")
        var address = addressToken.text
        if address.lowercased() == "[email", at("protected]") {
            // The chapter's text went through a web page that hides addresses ("[email protected]").
            let rest = advance()
            address = "[email \(rest.text)"
            report(
                .warning(
                    .obfuscatedAddress,
                    "'\(address)' is how a web page hides an e-mail address; alerts to it cannot be delivered",
                    at: location(of: addressToken), length: rest.column + rest.length - addressToken.column,
                    hint: "write the real address, e.g. 'alert me@example.com'"))
        } else if !address.contains("@") {
            throw fail(
                .invalidValue, "expected an e-mail address, found '\(address)'", at: addressToken,
                hint: address == "set" ? nil : "alert takes an address such as 'ops@example.com'")
        }
        var recipient = AlertRecipient(address: address)
        while true {
            if let filter = try eventFilter() {
                recipient.filter = filter
            } else if accept("mail-format") {
                recipient.mailFormat = try mailFormat()
            } else if accept("reminder") {
                recipient.reminder = try integer("the reminder interval in cycles", range: 1...1_000_000)
                _ = accept(any: ["cycle", "cycles"])
            } else {
                break
            }
        }
        return recipient
    }

    /// `{ EVENTS }` (only these) or `not { EVENTS }` after an alert's target, if there.
    private func eventFilter() throws -> AlertRecipient.Filter? {
        if at("not") && peekSecond.kind == .leftBrace {
            advance()
            return .except(try eventSet())
        }
        return peek.kind == .leftBrace ? .only(try eventSet()) : nil
    }

    /// `webhook "URL"` or `alertmanager "URL"` with an optional event filter; nil when the alert is a mail.
    private func alertEndpoint() throws -> AlertRecipient? {
        guard at(any: ["webhook", "alertmanager"]), peekSecond.text.contains("://") else { return nil }
        let keyword = advance()
        let target = try value("a URL")
        var recipient = AlertRecipient(
            address: target.text, channel: keyword.keyword == "webhook" ? .webhook : .alertmanager, endpoint: try url(target))
        while true {
            if let filter = try eventFilter() {
                recipient.filter = filter
            } else if at(any: ["mail-format", "reminder"]) {
                throw fail(.syntax, "'\(peek.text)' applies to mail alerts, not to '\(keyword.text)'", at: peek)
            } else {
                return recipient
            }
        }
    }

    /// `set metrics listen ADDRESS port N [allow HOST|NETWORK …]`.
    private func metricsListener() throws {
        try expect("listen", after: "set metrics")
        let address = try value("an address to bind")
        try expect("port", after: "set metrics listen \(address.text)")
        var settings = MetricsListenerSettings(address: address.text, port: try port())
        while at("allow") {
            let token = advance()
            let rule = try allowRule()
            switch rule {
            case .host, .network:
                settings.allow.append(rule)
            case .user, .htpasswd, .group:
                throw fail(
                    .invalidValue, "the metrics listener admits hosts and networks only; it asks for no password", at: token,
                    hint: "write 'allow 127.0.0.1' or 'allow 10.0.0.0/8'")
            }
        }
        configuration.metricsListener = settings
    }

    private func eventSet() throws -> Set<EventKind> {
        advance()  // {
        var events = Set<EventKind>()
        while peek.kind != .rightBrace {
            let token = peek
            if acceptKind(.comma) != nil { continue }
            guard token.kind == .word else {
                throw fail(.syntax, "expected an event name or '}', found \(token.display)", at: token)
            }
            advance()
            if let event = EventKind(rawValue: token.keyword) ?? EventKind.synonyms[token.keyword] {
                events.insert(event)
            } else {
                let names = Set(EventKind.allCases.map(\.rawValue))
                throw fail(
                    .invalidValue, "unknown event '\(token.text)'", at: token,
                    hint: suggestion(for: token.text, among: names))
            }
        }
        advance()  // }
        return events
    }

    private func httpd() throws {
        var settings = configuration.httpd ?? HTTPDSettings()
        var sslToken: Token?
        while true {
            if accept("port") {
                settings.port = try port()
            } else if accept("unixsocket") {
                settings.unixSocket = try absolutePath("the unix socket")
                while let key = accept(any: ["uid", "gid", "permission"]) {
                    _ = try value("a value for '\(key.text)'")
                }
            } else if accept("address") {
                settings.address = try value("an address to bind").text
            } else if accept("allow") {
                settings.allow.append(try allowRule())
            } else if at("ssl") {
                sslToken = advance()
                _ = accept("options")
                if peek.kind == .leftBrace {
                    settings.ssl = try sslOptions(.httpd)
                } else {
                    _ = accept(any: ["enable", "disable"])
                    settings.ssl = settings.ssl ?? SSLSettings()
                }
            } else if accept("pemfile") {
                var ssl = settings.ssl ?? SSLSettings()
                ssl.pemfile = try absolutePath("the PEM file")
                settings.ssl = ssl
            } else if accept("signature") {
                _ = try expectKeyword(["enable", "disable"], after: "signature")
            } else {
                break
            }
        }
        if settings.port == nil, settings.unixSocket == nil {
            settings.port = 2812  // monit's default port
        }
        if let sslToken, settings.ssl?.clientPemfile != nil, settings.unixSocket == nil {
            report(
                .warning(
                    .invalidValue, "with 'clientpemfile' the CLI cannot reach the daemon over TCP: it has no client certificate",
                    at: location(of: sslToken), length: sslToken.length, hint: "add 'unixsocket /run/warden.sock' to 'set httpd' for the CLI"))
        }
        configuration.httpd = settings
    }

    private func allowRule() throws -> AllowRule {
        let token = peek
        if let hash = accept(any: ["md5", "crypt", "cleartext"]) {
            let path = try absolutePath("the htpasswd file")
            var users: [String] = []
            while peek.kind == .word || peek.kind == .string, !peek.startsLine,
                !peek.isAny(["read-only", "readonly", "allow", "ssl", "port", "address"])
            {
                users.append(advance().text)
            }
            let readOnly = accept(any: ["read-only", "readonly"]) != nil
            return .htpasswd(path: path, hash: AllowRule.PasswordHash(rawValue: hash.keyword)!, users: users, readOnly: readOnly)
        }
        let entry = try value("a host, network, 'user:password' or htpasswd file")
        let text = entry.text
        if text.hasPrefix("@") {
            let readOnly = accept(any: ["read-only", "readonly"]) != nil
            return .group(String(text.dropFirst()), readOnly: readOnly)
        }
        if let colon = text.firstIndex(of: ":"), !text.contains("/"), text.filter({ $0 == ":" }).count == 1 || peek.kind == .string {
            var password = String(text[text.index(after: colon)...])
            if password.isEmpty, peek.kind == .string { password = advance().text }
            let readOnly = accept(any: ["read-only", "readonly"]) != nil
            return .user(name: String(text[..<colon]), password: password, readOnly: readOnly)
        }
        if let slash = text.firstIndex(of: "/") {
            let address = String(text[..<slash])
            let mask = String(text[text.index(after: slash)...])
            if let bits = Int(mask), (0...128).contains(bits) {
                return .network(address: address, prefix: bits)
            }
            if let bits = Self.prefixLength(ofMask: mask) {
                return .network(address: address, prefix: bits)
            }
            throw fail(.invalidValue, "'\(mask)' is not a network mask or prefix length", at: token)
        }
        return .host(text)
    }

    /// `255.255.255.0` → 24; nil when the mask is not contiguous.
    static func prefixLength(ofMask mask: String) -> Int? {
        let parts = mask.split(separator: ".").compactMap { UInt8($0) }
        guard parts.count == 4 else { return nil }
        let value = parts.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let bits = value.nonzeroBitCount
        return value == (bits == 0 ? 0 : UInt32.max << (32 - bits)) ? bits : nil
    }

    static let limitKeys: Set<String> = [
        "programoutput", "sendexpectbuffer", "filecontentbuffer", "httpcontentbuffer", "networktimeout", "programtimeout",
        "stoptimeout", "starttimeout", "restarttimeout",
    ]

    private func limits() throws {
        let options = try keyValueBlock("set limits", knownKeys: Self.limitKeys)
        var limits = configuration.limits
        for (key, raw) in options {
            let number = Double(raw.prefix { $0.isASCIIDigit || $0 == "." }) ?? 0
            let unit = raw.drop { $0.isASCIIDigit || $0 == "." || $0 == " " }.lowercased()
            let bytes = Int(number * (Self.sizeUnits[unit] ?? 1))
            let seconds = Int(number * (Self.timeUnits[unit] ?? 1))
            switch key {
            case "programoutput": limits.programOutput = bytes
            case "sendexpectbuffer": limits.sendExpectBuffer = bytes
            case "filecontentbuffer": limits.fileContentBuffer = bytes
            case "httpcontentbuffer": limits.httpContentBuffer = bytes
            case "networktimeout": limits.networkTimeout = seconds
            case "programtimeout": limits.programTimeout = seconds
            case "stoptimeout": limits.stopTimeout = seconds
            case "starttimeout": limits.startTimeout = seconds
            case "restarttimeout": limits.restartTimeout = seconds
            default: continue  // reported by keyValueBlock
            }
        }
        configuration.limits = limits
    }

    func onReboot() throws -> OnReboot {
        let token = try expectKeyword(["start", "nostart", "laststate"], after: "onreboot")
        return OnReboot(rawValue: token.keyword)!
    }

    /// `{ key: value[,] … }` as in `set limits`, `set ssl` and `with ssl { … }`; keys lowercased.
    /// `knownKeys`: any other key is an error (a limit misspelt would otherwise silently keep its default).
    func keyValueBlock(_ context: String, knownKeys: Set<String>? = nil) throws -> [String: String] {
        let open = peek
        guard acceptKind(.leftBrace) != nil else {
            throw fail(.syntax, "expected '{' after '\(context)', found \(open.display)", at: open)
        }
        var result: [String: String] = [:]
        while peek.kind != .rightBrace {
            if acceptKind(.comma) != nil { continue }
            let keyToken = peek
            guard keyToken.kind == .word else {
                throw fail(.syntax, "expected 'key: value' or '}' in '\(context)', found \(keyToken.display)", at: keyToken)
            }
            advance()
            var key = keyToken.keyword
            if key.hasSuffix(":") {
                key.removeLast()
            } else if peek.is(":") {
                advance()
            }
            if let knownKeys, !knownKeys.contains(key) {
                report(
                    .error(
                        .unknownKey, "unknown key '\(key)' in '\(context)'", at: location(of: keyToken), length: key.utf8.count,
                        hint: suggestion(for: key, among: knownKeys)))
            }
            var values: [String] = []
            while peek.kind == .word || peek.kind == .string, !peek.keyword.hasSuffix(":") {
                if peekSecond.is(":") { break }
                values.append(advance().text)
            }
            guard !values.isEmpty else {
                throw fail(.syntax, "expected a value for '\(key)' in '\(context)', found \(peek.display)", at: peek)
            }
            result[key] = values.joined(separator: " ")
        }
        advance()
        return result
    }
}
