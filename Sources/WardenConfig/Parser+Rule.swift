import WardenPlatform

extension Parser {
    static let actionKeywords: Set<String> = ["alert", "restart", "start", "stop", "unmonitor", "timeout", "exec", "monitor"]

    /// `if …` inside a service.
    func rule(for index: Int, ifToken: Token) throws {
        let ruleLocation = location(of: ifToken)
        // `if N restarts within M cycles then ACTION`
        if atInteger, peekSecond.isAny(["restart", "restarts"]) {
            let countToken = peek
            let restarts = try integer("a number of restarts", range: 1...1_000_000)
            advance()
            _ = accept("within")
            let cyclesToken = peek
            let cycles = try integer("a number of cycles", range: 1...1_000_000)
            _ = try expectKeyword(["cycles", "cycle"], after: "within \(cycles)")
            try expect("then", after: "\(restarts) restarts within \(cycles) cycles")
            let action = try self.action()
            if restarts > cycles {
                report(
                    .error(
                        .restartWindow,
                        "'\(restarts) restarts within \(cycles) cycles' asks for more restarts than cycles; monit rejects it too",
                        at: location(of: countToken), length: countToken.length,
                        hint: "use a window of at least \(restarts) cycles"))
            }
            if cycles > 64 {
                report(
                    .error(
                        .restartWindow, "a restart window of \(cycles) cycles is longer than the 64 cycles warden remembers",
                        at: location(of: cyclesToken), length: cyclesToken.length))
            }
            services[index].service.restartLimits.append(
                RestartLimit(restarts: restarts, cycles: cycles, action: action, location: ruleLocation))
            return
        }
        let condition = try self.condition(for: services[index].service)
        var window = try failureWindow() ?? .once
        try expect("then", after: "the condition")
        let action = try self.action()
        var recovery: Action?
        if accept("else") {
            _ = accept("if")
            _ = try expectKeyword(["succeeded", "success", "passed", "recovered"], after: "else if")
            _ = try failureWindow()
            try expect("then", after: "else if succeeded")
            recovery = try self.action()
        }
        if window.cycles > 64 {
            report(
                .error(
                    .restartWindow, "a window of \(window.cycles) cycles is longer than the 64 cycles warden remembers",
                    at: ruleLocation))
            window.cycles = 64
        }
        services[index].service.rules.append(
            Rule(condition: condition, window: window, action: action, recoveryAction: recovery, location: ruleLocation))
    }

    /// `[for] N cycles` or `[for] N times within M cycles`.
    func failureWindow() throws -> FailureWindow? {
        guard atInteger, peekSecond.isAny(["cycle", "cycles", "time", "times"]) else { return nil }
        let countToken = peek
        let count = try integer("a number", range: 1...1_000_000)
        let unit = advance()
        if unit.isAny(["cycle", "cycles"]) {
            return FailureWindow(times: count, cycles: count)
        }
        _ = accept("within")
        let cycles = try integer("a number of cycles", range: 1...1_000_000)
        _ = try expectKeyword(["cycles", "cycle"], after: "within \(cycles)")
        if count > cycles {
            throw fail(
                .invalidValue, "'\(count) times within \(cycles) cycles' can never happen", at: countToken,
                hint: "the number of times must not exceed the number of cycles")
        }
        return FailureWindow(times: count, cycles: cycles)
    }

    func action() throws -> Action {
        let token = peek
        guard token.kind == .word, Self.actionKeywords.contains(token.keyword) else {
            throw fail(
                .syntax, "expected an action (alert, restart, start, stop, exec, unmonitor, timeout), found \(token.display)",
                at: token, hint: suggestion(for: token.text, among: Self.actionKeywords))
        }
        advance()
        switch token.keyword {
        case "alert": return .alert
        case "restart": return .restart
        case "start", "monitor": return .start
        case "stop": return .stop
        case "unmonitor": return .unmonitor
        case "timeout": return .timeout
        default:
            let spec = try program("exec", allowTimeout: true)
            var repeatEvery: Int?
            if accept("repeat") {
                try expect("every", after: "repeat")
                repeatEvery = try integer("a number of cycles", range: 1...1_000_000)
                _ = accept(any: ["cycle", "cycles"])
            }
            return .exec(spec, repeatEvery: repeatEvery)
        }
    }

    // MARK: - Conditions

    func condition(for service: Service) throws -> Condition {
        let token = peek
        switch token.keyword {
        case "failed":
            advance()
            return try failedCondition()
        case "changed":
            advance()
            return try changedCondition()
        case "does", "not":
            advance()
            if token.is("does") { try expect("not", after: "does") }
            _ = try expectKeyword(["exist", "exists"], after: "not")
            return .nonexistence
        case "exist", "exists":
            advance()
            return .existence
        case "timestamp", "ctime", "mtime", "atime":
            advance()
            let op = try comparisonOperator()
            return .timestamp(op, seconds: try duration("an age"))
        case "size":
            advance()
            let op = try comparisonOperator()
            let (value, unit, sizeToken) = try quantity("a size")
            return .size(op, bytes: Int64(try byteSize(value, unit: unit, token: sizeToken)))
        case "uptime":
            advance()
            let op = try comparisonOperator()
            return .uptime(op, seconds: try duration("an uptime"))
        case "status":
            advance()
            let op = try comparisonOperator()
            return .programStatus(op, try integer("an exit status", range: 0...255))
        case "content":
            advance()
            let op = try comparisonOperator()
            let pattern = try value("a regular expression")
            try validateRegex(pattern)
            return .content(op, regex: pattern.text)
        case "link":
            advance()
            let state = try expectKeyword(["up", "down"], after: "link")
            return .link(up: state.is("up"))
        case "saturation":
            advance()
            let op = try comparisonOperator()
            return .saturation(op, percent: try quantity("a percentage").value)
        case "total" where peekSecond.isAny(["upload", "uploaded", "download", "downloaded"]):
            advance()
            return .transferred(try trafficTotal(upload: advance().keyword.hasPrefix("up")))
        default:
            if let metric = try resourceMetric() {
                let op = try comparisonOperator()
                let (value, unit, valueToken) = try quantity("a limit")
                return .resource(metric, op, try resourceQuantity(value, unit: unit, token: valueToken))
            }
            throw fail(
                .syntax, "expected a condition (failed, changed, does not exist, cpu, memory, …) after 'if', found \(token.display)",
                at: token,
                hint: suggestion(
                    for: token.text,
                    among: ["failed", "changed", "does", "cpu", "memory", "totalmem", "children", "loadavg", "timestamp", "size", "status", "uptime"]))
        }
    }

    /// `OP N unit|packets in last [N] minute(s)|hour(s)|day`, after `total upload|download`.
    private func trafficTotal(upload: Bool) throws -> TrafficTotal {
        let op = try comparisonOperator()
        let (value, unit, valueToken) = try quantity("an amount")
        let packets = ["packet", "packets"].contains(unit)
        guard packets || Self.sizeUnits[unit] != nil else {
            throw fail(.invalidValue, "expected an amount in bytes (B, kB, MB, GB) or packets, found '\(valueToken.text)'", at: valueToken)
        }
        _ = accept("in")
        _ = accept("last")
        var count = 1
        if atInteger { count = try integer("a number", range: 1...1440) }
        let spanToken = try expectKeyword(["minute", "minutes", "hour", "hours", "day", "days"], after: "in last")
        let span: TrafficTotal.Span = spanToken.keyword.hasPrefix("minute") ? .minute : spanToken.keyword.hasPrefix("hour") ? .hour : .day
        let total = TrafficTotal(
            upload: upload, op: op, limit: packets ? value : value * Self.sizeUnits[unit]!, packets: packets, count: count, span: span)
        if total.seconds > 86400 {
            report(.error(.invalidValue, "traffic is counted for the last 24 hours only, as in monit", at: location(of: spanToken), length: spanToken.length))
        }
        return total
    }

    private func resourceQuantity(_ value: Double, unit: String, token: Token) throws -> Quantity {
        if unit == "%" { return .percent(value) }
        if unit == "packet" || unit == "packets" { return .rate(value, unit: "packets/s") }
        if unit.isEmpty { return .count(value) }
        if Self.isRateUnit(unit) || unit.hasSuffix("/s") { return .rate(value, unit: unit) }
        if let size = Self.sizeUnits[unit] { return .bytes(value * size) }
        if let time = Self.timeUnits[unit] { return .seconds(value * time) }
        throw fail(.expectedNumber, "unknown unit '\(unit)'", at: token)
    }

    /// The metric names of monit's resource tests; nil when the next token starts none.
    private func resourceMetric() throws -> ResourceMetric? {
        let token = peek
        switch token.keyword {
        case "cpu":
            advance()
            let kinds: [String: ResourceMetric] = [
                "user": .cpuUser, "system": .cpuSystem, "wait": .cpuWait, "nice": .cpuNice,
                "hardirq": .cpuHardIRQ, "softirq": .cpuSoftIRQ, "steal": .cpuSteal, "guest": .cpuGuest,
            ]
            if let kind = kinds[peek.keyword] {
                advance()
                return kind
            }
            return .cpu
        case "totalcpu": advance(); return .totalCPU
        case "memory", "mem": advance(); return .memory
        case "totalmem", "totalmemory": advance(); return .totalMemory
        case "swap": advance(); return .swap
        case "threads": advance(); return .threads
        case "children": advance(); return .children
        case "filedescriptors": advance(); return .fileDescriptors
        case "total":
            advance()
            let next = advance()
            switch next.keyword {
            case "cpu": return .totalCPU
            case "memory", "mem": return .totalMemory
            case "filedescriptors": return .totalFileDescriptors
            default:
                throw fail(.syntax, "expected 'cpu', 'memory' or 'filedescriptors' after 'total', found \(next.display)", at: next)
            }
        case "loadavg":
            advance()
            var minutes = 1
            if let window = accept(any: ["1min", "5min", "15min"]) {
                minutes = Int(window.keyword.dropLast(3))!
            }
            let perCore = accept("per")
            if perCore { try expect("core", after: "per") }
            switch (minutes, perCore) {
            case (5, false): return .loadAverage5
            case (15, false): return .loadAverage15
            case (1, true): return .loadAveragePerCore1
            case (5, true): return .loadAveragePerCore5
            case (15, true): return .loadAveragePerCore15
            default: return .loadAverage1
            }
        case "disk":
            advance()
            let direction = try expectKeyword(["read", "write"], after: "disk")
            if accept("operations") { return direction.is("read") ? .readOperations : .writeOperations }
            return direction.is("read") ? .diskReadBytes : .diskWriteBytes
        case "read", "write":
            advance()
            _ = accept("rate")
            _ = accept("bytes")
            return token.is("read") ? .readBytes : .writeBytes
        case "space", "inode", "inodes":
            advance()
            let free = accept("free")
            if token.is("space") { return free ? .spaceFree : .spaceUsage }
            return free ? .inodeFree : .inodeUsage
        case "service":
            advance()
            try expect("time", after: "service")
            return .serviceTime
        case "upload", "uploaded": advance(); return .upload
        case "download", "downloaded": advance(); return .download
        default:
            return nil
        }
    }

    private func changedCondition() throws -> Condition {
        let token = try expectKeyword(
            ["pid", "ppid", "timestamp", "ctime", "mtime", "size", "checksum", "status", "link", "fsflags", "fsflag"],
            after: "changed")
        switch token.keyword {
        case "pid": return .changedPID
        case "ppid": return .changedPPID
        case "size": return .changedSize
        case "checksum": return .changedChecksum
        case "status": return .changedProgramStatus
        case "link":
            _ = accept("capacity")
            return .changedLink
        case "fsflags", "fsflag": return .filesystemFlags
        default: return .changedTimestamp
        }
    }

    private func failedCondition() throws -> Condition {
        let token = peek
        switch token.keyword {
        case "url":
            advance()
            return .connection(try urlTest())
        case "host", "port", "unixsocket", "unix":
            return .connection(try portTest())
        case "ping", "ping4", "ping6":
            advance()
            var test = PingTest()
            if token.is("ping4") { test.family = 4 } else if token.is("ping6") { test.family = 6 }
            while true {
                if accept("count") {
                    test.count = try integer("a ping count", range: 1...20)
                } else if accept("size") {
                    test.size = try integer("a packet size", range: 8...1492)
                } else if accept("timeout") {
                    test.timeout = try duration("a timeout")
                } else if accept(any: ["responsetime", "response"]) != nil {
                    test.responseTime = try responseTimeLimit()
                } else if accept("address") {
                    test.sourceAddress = try value("an address").text
                } else {
                    break
                }
            }
            return .ping(test)
        case "checksum":
            advance()
            var hashName: String?
            if let hash = accept(any: ["md5", "sha1"]) { hashName = hash.keyword }
            var expected: String?
            if accept("expect") {
                if let hash = accept(any: ["md5", "sha1"]) { hashName = hash.keyword }
                expected = try value("a checksum").text
            }
            return .checksum(expected: expected, hash: hashName)
        case "permission", "perm":
            advance()
            let modeToken = try value("an octal mode")
            guard let mode = Int(modeToken.text, radix: 8), modeToken.text.count <= 4 else {
                throw fail(.invalidValue, "expected an octal permission such as 755, found '\(modeToken.text)'", at: modeToken)
            }
            return .permission(mode)
        case "uid":
            advance()
            return .uid(try value("a user name or uid").text)
        case "euid":
            advance()
            return .euid(try value("a user name or uid").text)
        case "gid":
            advance()
            return .gid(try value("a group name or gid").text)
        case "link":
            advance()
            return .link(up: false)
        default:
            throw fail(
                .syntax, "expected 'url', 'host', 'port', 'unixsocket', 'ping', 'checksum', 'permission', 'uid' or 'gid' after 'failed', found \(token.display)",
                at: token, hint: suggestion(for: token.text, among: ["url", "host", "port", "unixsocket", "ping", "checksum", "permission", "uid", "gid"]))
        }
    }

    /// `url URL [content ==|!= "REGEX"] [ssl [options] {…}] [timeout N seconds] [retry N]`.
    private func urlTest() throws -> ConnectionTest {
        let urlToken = try value("a URL")
        let url = try self.url(urlToken)
        var test = ConnectionTest(target: .url(url))
        var check = HTTPCheck()
        check.request = url.path
        while true {
            if accept("content") {
                let op = try comparisonOperator()
                guard op == .equal || op == .notEqual else {
                    throw fail(.syntax, "content takes '==' or '!='", at: peek)
                }
                let pattern = try value("a regular expression")
                try validateRegex(pattern)
                check.content = Comparison(op, pattern.text)
            } else if accept("timeout") {
                test.timeout = try duration("a timeout")
            } else if accept("retry") {
                test.retry = try integer("a number of retries", range: 0...100)
            } else if accept(any: ["responsetime", "response"]) != nil {
                test.responseTime = try responseTimeLimit()
            } else if accept("status") {
                let op = try comparisonOperator()
                check.status = Comparison(op, try integer("an HTTP status", range: 100...999))
            } else if accept("certificate") {
                try certificateTest(&test)
            } else if let keyword = accept(any: ["ssl", "tls"]) {
                guard url.scheme == "https" else { throw fail(.invalidValue, "'\(keyword.text)' needs an https URL", at: keyword) }
                _ = accept("options")
                if peek.kind == .leftBrace { test.ssl = try sslOptions(.portTest) }
            } else {
                break
            }
        }
        test.proto = .http(check)
        return test
    }

    /// `[host H] port N [type tcp|udp|tcpssl] [ssl [options] {…}] [address A] [ipv4|ipv6] [protocol P …] [timeout N s]
    /// [retry N]`, or `unixsocket PATH …`.
    private func portTest() throws -> ConnectionTest {
        var host = "localhost"
        var target: ConnectionTest.Target?
        var transport = ConnectionTest.Transport.tcp
        if accept("host") { host = try value("a host name or address").text }
        if accept("port") {
            target = .port(host: host, port: try port(), transport: .tcp)
        } else if accept(any: ["unixsocket", "unix"]) != nil {
            target = .unixSocket(try absolutePath("the unix socket"))
        } else {
            throw fail(.syntax, "expected 'port N' or 'unixsocket PATH', found \(peek.display)", at: peek)
        }
        var test = ConnectionTest(target: target!)
        while true {
            if accept("type") {
                let type = try expectKeyword(["tcp", "udp", "tcpssl"], after: "type")
                transport = ConnectionTest.Transport(rawValue: type.keyword)!
            } else if accept(any: ["ssl", "tls"]) != nil {
                transport = .tcpSSL
                _ = accept("options")
                if peek.kind == .leftBrace { test.ssl = try sslOptions(.portTest) }
            } else if accept(any: ["protocol", "proto"]) != nil {
                test.proto = try protocolSpec(&transport, options: &test.protocolOptions)
            } else if accept("timeout") {
                test.timeout = try duration("a timeout")
            } else if accept("retry") {
                test.retry = try integer("a number of retries", range: 0...100)
            } else if accept(any: ["responsetime", "response"]) != nil {
                test.responseTime = try responseTimeLimit()
            } else if let family = accept(any: ["ipv4", "ipv6"]) {
                test.family = family.is("ipv6") ? 6 : 4
            } else if accept("address") {
                test.sourceAddress = try value("an address").text
            } else if let step = accept(any: ["send", "expect"]) {
                // monit's generic protocol: the dialogue alone makes it (`port 4001 send "…" expect "…"`).
                let text = try value(step.is("send") ? "a string to send" : "a regular expression")
                if step.is("send") {
                    test.dialogue.append(.send(text.text))
                } else {
                    try validateRegex(text)
                    test.dialogue.append(.expect(text.text))
                }
                if test.proto == .generic { test.proto = .named("generic") }
            } else if accept("certificate") {
                try certificateTest(&test)
            } else if case .http(var check) = test.proto, try httpOption(&check) {
                test.proto = .http(check)
            } else {
                break
            }
        }
        if case .port(let host, let port, _) = test.target {
            test.target = .port(host: host, port: port, transport: transport)
        }
        return test
    }

    private func protocolSpec(_ transport: inout ConnectionTest.Transport, options: inout [String: String]) throws -> ConnectionProtocol {
        let name = try value("a protocol name")
        switch name.keyword {
        case "http", "https":
            if name.is("https") { transport = .tcpSSL }
            var check = HTTPCheck()
            while try httpOption(&check) {}
            return .http(check)
        default:
            let known: Set<String> = [
                "apache-status", "clamav", "dns", "dwp", "fail2ban", "ftp", "gps", "imap", "imaps", "ldap2", "ldap3",
                "lmtp", "memcache", "mongodb", "mqtt", "mysql", "mysqls", "nntp", "ntp3", "pgsql", "pop", "pops",
                "postfix-policy", "radius", "redis", "rdate", "rsync", "sieve", "sip", "smtp", "smtps", "spamassassin",
                "ssh", "tns", "websocket", "default", "generic",
            ]
            guard known.contains(name.keyword) else {
                throw fail(.invalidValue, "unknown protocol '\(name.text)'", at: name, hint: suggestion(for: name.text, among: known.union(["http", "https"])))
            }
            // Kept so that a test warden would run without them (a login, a request path) is refused, not weakened.
            while let option = accept(any: ["username", "password", "database", "secret", "appname", "path", "origin", "version", "request"]) {
                options[option.keyword] = try value("a value").text
            }
            return .named(name.keyword)
        }
    }

    /// `responsetime [OP] N ms|s` (after `responsetime`), in seconds: the round trip must compare so.
    /// Without an operator, monit's default (equal), which fails nearly every reply, as monit 5.33 does.
    private func responseTimeLimit() throws -> Comparison<Double> {
        _ = accept("time")
        var op = ComparisonOperator.equal
        if peek.text.first?.isASCIIDigit != true { op = try comparisonOperator() }
        let (value, unit, valueToken) = try quantity("a response time")
        let scales: [String: Double] = ["": 0.001, "ms": 0.001, "millisecond": 0.001, "milliseconds": 0.001, "s": 1, "second": 1, "seconds": 1]
        guard let scale = scales[unit] else {
            throw fail(.invalidValue, "expected a response time in milliseconds or seconds, found '\(valueToken.text)'", at: valueToken)
        }
        return Comparison(op, value * scale)
    }

    /// After `certificate`: `valid > N days`, or `checksum [md5|sha1] [=] HASH` (the server certificate's digest).
    private func certificateTest(_ test: inout ConnectionTest) throws {
        guard accept("checksum") else {
            test.certificateMinimumDays = try certificateValidity()
            return
        }
        let kind = accept(any: ["md5", "sha1"]).map { HashKind(rawValue: $0.keyword)! }
        if peek.kind == .op, peek.text == "=" || peek.text == "==" { advance() }
        let hash = try value("the certificate's MD5 or SHA-1 checksum")
        let digits = hash.text.filter { $0 != ":" }
        guard digits.allSatisfy(\.isHexDigit), digits.count == (kind == .sha1 ? 40 : kind == .md5 ? 32 : digits.count), [32, 40].contains(digits.count) else {
            throw fail(.invalidValue, "a certificate checksum is 32 (MD5) or 40 (SHA-1) hexadecimal digits", at: hash)
        }
        test.certificateChecksum = CertificateChecksum(kind: kind, expected: digits)
    }

    /// `valid > N days` after `certificate`: the days the server's certificate must still be valid for.
    private func certificateValidity() throws -> Int {
        try expect("valid", after: "certificate")
        let op = try comparisonOperator()
        guard op == .greater || op == .greaterOrEqual else {
            throw fail(.syntax, "'certificate valid' takes '>' and a number of days", at: peek)
        }
        let days = try integer("a number of days", range: 1...100_000)
        _ = accept(any: ["day", "days"])
        return op == .greater ? days : days - 1
    }

    /// One HTTP protocol option; false when the next token is not one.
    private func httpOption(_ check: inout HTTPCheck) throws -> Bool {
        if accept("request") {
            let request = try value("a request path")
            guard request.text.hasPrefix("/") else {
                throw fail(.invalidValue, "the request must start with '/', found '\(request.text)'", at: request)
            }
            check.request = request.text
        } else if accept("status") {
            let op = try comparisonOperator()
            check.status = Comparison(op, try integer("an HTTP status", range: 100...999))
        } else if accept("hostheader") {
            check.hostHeader = try value("a host header").text
        } else if accept("content") {
            let op = try comparisonOperator()
            let pattern = try value("a regular expression")
            try validateRegex(pattern)
            check.content = Comparison(op, pattern.text)
        } else if accept("checksum") {
            check.checksum = try value("a checksum").text
        } else if accept("username") {
            check.user = try value("a user name").text
        } else if accept("password") {
            check.password = try value("a password").text
        } else if accept("http") {
            // `protocol http` given twice (`with http` noise in some files).
        } else {
            return false
        }
        return true
    }
}
