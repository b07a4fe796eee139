import WardenPlatform

extension Parser {
    static let serviceTypes: Set<String> = [
        "process", "program", "file", "fifo", "directory", "filesystem", "host", "system", "network", "site",
    ]

    func checkStatement() throws {
        advance()
        let typeToken = peek
        guard typeToken.kind == .word, Self.serviceTypes.contains(typeToken.keyword) else {
            throw fail(
                .syntax,
                "expected a service type (process, program, file, directory, filesystem, host, system, network) after 'check', found \(typeToken.display)",
                at: typeToken, hint: suggestion(for: typeToken.text, among: Self.serviceTypes))
        }
        advance()
        if typeToken.is("site") { return try siteCheck() }
        currentSite = nil
        let nameToken = try value("a service name")
        var name = nameToken.text
        if name == "$HOST" { name = HostName.current }
        let kind: Service.Kind
        switch typeToken.keyword {
        case "process":
            if accept("pidfile") {
                kind = .process(.pidfile(try absolutePath("the pid file")))
            } else if let keyword = accept(any: ["matching", "match"]) {
                let pattern = try value("a regular expression after '\(keyword.text)'")
                try validateRegex(pattern)
                kind = .process(.matching(pattern.text))
            } else if accept("pid") {
                throw fail(.syntax, "'check process … pid N' is not supported; use 'pidfile PATH' or 'matching \"REGEX\"'", at: peek)
            } else {
                throw fail(
                    .syntax, "expected 'pidfile PATH' or 'matching \"REGEX\"' after 'check process \(name)', found \(peek.display)",
                    at: peek, hint: suggestion(for: peek.text, among: ["pidfile", "matching"]))
            }
        case "program":
            try expect("path", after: "check program \(name)")
            var spec = try program("program")
            if accept("timeout") { spec.timeout = try duration("a timeout") }
            kind = .program(spec)
        case "file", "fifo", "directory", "filesystem":
            try expect("path", after: "check \(typeToken.keyword) \(name)")
            let path = try value("a path")
            if typeToken.keyword != "filesystem", !path.text.hasPrefix("/") {
                throw fail(.relativePath, "the path must be absolute, found '\(path.text)'", at: path)
            }
            switch typeToken.keyword {
            case "file": kind = .file(path: path.text)
            case "fifo": kind = .fifo(path: path.text)
            case "directory": kind = .directory(path: path.text)
            default: kind = .filesystem(path: path.text)
            }
        case "host":
            try expect("address", after: "check host \(name)")
            kind = .host(address: try value("a host name or address").text)
        case "network":
            if accept("address") {
                kind = .network(.address(try value("an address").text))
            } else {
                try expect("interface", after: "check network \(name)")
                kind = .network(.interface(try value("an interface name").text))
            }
        default:
            kind = .system
        }
        let service = Service(name: name, kind: kind, location: location(of: nameToken))
        services.append(ServiceBuilder(service: service, checkToken: nameToken))
        current = services.count - 1
        if !checkSeenInFile {
            checkSeenInFile = true
            bindPendingAlerts(to: services.count - 1, checkToken: nameToken)
        }
    }

    func alertStatement() throws {
        let keyword = advance()
        if keyword.keyword == "noalert" {
            let address = try value("an e-mail address").text
            if checkSeenInFile, let current {
                services[current].service.noAlerts.append(address)
            } else {
                pendingNoAlerts.append(address)
            }
            return
        }
        let recipient = try alertRecipient()
        if checkSeenInFile, let current {
            services[current].service.alerts.append(recipient)
        } else {
            pendingAlerts.append((recipient, location(of: keyword), keyword))
        }
    }

    func serviceStatement() throws {
        guard let index = current else { return }
        let keyword = advance()
        switch keyword.keyword {
        case "restart" where at("delay"):
            try restartDelay(for: index)
        case "instances":
            try instances(for: index, keyword: keyword)
        case "deploy", "drain":
            try expect("timeout", after: keyword.text)
            let seconds = Duration.seconds(try duration("a timeout"))
            if keyword.is("deploy") { services[index].service.deployTimeout = seconds } else { services[index].service.drainTimeout = seconds }
        case "start", "stop", "restart":
            if !accept("program"), peek.kind == .word {
                throw fail(
                    .syntax, "expected 'program =' after '\(keyword.text)', found \(peek.display)", at: peek,
                    hint: suggestion(for: peek.text, among: ["program"]))
            }
            // monit makes the '=' optional.
            if let op = acceptKind(.op), op.text != "=" {
                throw fail(.syntax, "expected '=' after '\(keyword.text) program', found '\(op.text)'", at: op)
            }
            let spec = try program("\(keyword.keyword) program")
            switch keyword.keyword {
            case "start": services[index].service.start = spec
            case "stop": services[index].service.stop = spec
            default: services[index].service.restart = spec
            }
        case "if":
            try rule(for: index, ifToken: keyword)
        case "depends", "depend":
            repeat {
                let dependency = try value("a service name")
                services[index].service.dependencies.append(dependency.text)
                services[index].dependencyLocations[dependency.text] = location(of: dependency)
            } while acceptKind(.comma) != nil
        case "group":
            services[index].service.groups.append(try value("a group name").text)
        case "mode":
            let mode = try expectKeyword(["active", "passive", "manual"], after: "mode")
            services[index].service.mode = Service.Mode(rawValue: mode.keyword)!
        case "not":
            try expect("every", after: "not")
            services[index].service.every = .notCron(try cron())
        case "every":
            if peek.kind == .string {
                services[index].service.every = .cron(try cron())
            } else {
                let cycles = try integer("a number of cycles", range: 1...1_000_000)
                _ = try expectKeyword(["cycles", "cycle"], after: "every \(cycles)")
                services[index].service.every = .cycles(cycles)
            }
        case "onreboot":
            services[index].service.onReboot = try onReboot()
        case "log":
            services[index].service.log = try serviceLog()
        case "ignore":
            // `ignore content =|!= "REGEX"`: lines the content tests of a file skip.
            try expect("content", after: "ignore")
            let op = try comparisonOperator()
            guard op == .equal || op == .notEqual else {
                throw fail(.syntax, "'ignore content' takes '=' or '!='", at: peek)
            }
            let pattern = try value("a regular expression")
            try validateRegex(pattern)
            services[index].service.ignoredContent.append(Comparison(op, pattern.text))
        default:
            break
        }
    }

    /// `instances N ports A-B`: at least two ports per instance, so a deploy's new generation fits beside the old.
    private func instances(for index: Int, keyword: Token) throws {
        let count = try integer("a number of instances", range: 1...1000)
        try expect("ports", after: "instances \(count)")
        let rangeToken = peek
        let bounds = try value("a port range such as 8080-8085").text.split(separator: "-", omittingEmptySubsequences: false)
        guard bounds.count == 2, let low = Int(bounds[0]), let high = Int(bounds[1]), 1 <= low, low <= high, high <= 65535 else {
            throw fail(.portOutOfRange, "expected a port range such as 8080-8085, found \(rangeToken.display)", at: rangeToken)
        }
        guard high - low + 1 >= 2 * count else {
            throw fail(
                .invalidValue,
                "\(count) instances need at least \(2 * count) ports (\(high - low + 1) given): a deploy starts the new instances beside the old ones",
                at: rangeToken, hint: "use 'ports \(low)-\(low + 2 * count - 1)'")
        }
        guard case .process = services[index].service.kind else {
            throw fail(.invalidValue, "'instances' applies to 'check process' only", at: keyword)
        }
        services[index].service.instances = InstanceSettings(count: count, ports: low...high, location: location(of: keyword))
    }

    /// `log [PATH] [rotate at SIZE [keep N]]`.
    private func serviceLog() throws -> ServiceLogSettings {
        var settings = ServiceLogSettings()
        if !at("rotate") { settings.path = try absolutePath("the log file") }
        guard accept("rotate") else { return settings }
        try expect("at", after: "rotate")
        let (value, unit, token) = try quantity("a size such as 10 MB")
        let limit = try byteSize(value, unit: unit, token: token)
        guard limit >= 1024, limit <= Double(Int.max / 2) else {
            throw fail(.invalidValue, "a log is rotated at 1 KB or more, found \(token.display)", at: token)
        }
        var keep = ServiceLogSettings.defaultKeep
        if accept("keep") { keep = try integer("a number of old files to keep", range: 1...1000) }
        settings.rotation = LogRotation(limit: Int(limit), keep: keep)
        return settings
    }

    /// `restart delay MIN to MAX [reset after N]`, each a duration (seconds by default).
    private func restartDelay(for index: Int) throws {
        try expect("delay", after: "restart")
        var backoff = RestartBackoff()
        let initialToken = peek
        backoff.initial = .seconds(try duration("the first restart delay"))
        try expect("to", after: "restart delay")
        backoff.maximum = .seconds(try duration("the longest restart delay"))
        if accept("reset") {
            try expect("after", after: "reset")
            backoff.reset = .seconds(try duration("the reset period"))
        }
        guard backoff.initial >= .seconds(1), backoff.initial <= backoff.maximum else {
            throw fail(.invalidValue, "the first restart delay must be at least 1 second and no longer than the longest", at: initialToken)
        }
        services[index].service.restartBackoff = backoff
    }

    private func cron() throws -> CronSchedule {
        let token = advance()
        guard token.kind == .string else { throw fail(.syntax, "expected a cron specification in quotes, found \(token.display)", at: token) }
        do {
            return try CronSchedule(token.text)
        } catch {
            throw fail(.invalidValue, error.description, at: token)
        }
    }

    func validateRegex(_ token: Token) throws {
        if let problem = RegexValidator.problem(in: token.text) {
            throw fail(.invalidRegex, "invalid regular expression \(token.display): \(problem)", at: token)
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// POSIX extended regular expressions, as monit compiles them with `regcomp(REG_EXTENDED)`.
public enum RegexValidator {
    public static func problem(in pattern: String) -> String? {
        var regex = regex_t()
        let status = regcomp(&regex, pattern, REG_EXTENDED | REG_NOSUB)
        defer { if status == 0 { regfree(&regex) } }
        guard status != 0 else { return nil }
        var buffer = [CChar](repeating: 0, count: 256)
        regerror(status, &regex, &buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).lowercased()
    }
}
