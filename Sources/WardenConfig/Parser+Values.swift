#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Parser {
    // MARK: - Numbers

    /// Parses a whole number token; reports and abandons the statement otherwise.
    func integer(_ what: String, range: ClosedRange<Int> = 0...Int(Int32.max)) throws -> Int {
        let token = peek
        guard token.kind == .word, !token.text.isEmpty, token.text.allSatisfy(\.isASCIIDigit) else {
            throw fail(.expectedNumber, "expected \(what), found \(token.display)", at: token)
        }
        advance()
        guard let value = Int(token.text), range.contains(value) else {
            throw fail(
                .numberOutOfRange,
                "\(what) '\(token.text)' is out of range (\(range.lowerBound)...\(range.upperBound))", at: token)
        }
        return value
    }

    var atInteger: Bool {
        let token = peek
        return token.kind == .word && !token.text.isEmpty && token.text.allSatisfy(\.isASCIIDigit)
    }

    /// A number that may carry its unit glued on (`80%`, `200.0MB`, `500kb/s`) or as the next word.
    func quantity(_ what: String) throws -> (value: Double, unit: String, token: Token) {
        let token = peek
        guard token.kind == .word else {
            throw fail(.expectedNumber, "expected \(what), found \(token.display)", at: token)
        }
        let text = token.text
        var numberEnd = text.startIndex
        var seenDot = false
        while numberEnd < text.endIndex, text[numberEnd].isASCIIDigit || (!seenDot && text[numberEnd] == ".") {
            if text[numberEnd] == "." { seenDot = true }
            numberEnd = text.index(after: numberEnd)
        }
        guard numberEnd > text.startIndex, let value = Double(text[..<numberEnd]), value.isFinite else {
            throw fail(.expectedNumber, "expected \(what), found \(token.display)", at: token)
        }
        advance()
        var unit = String(text[numberEnd...]).lowercased()
        if unit.isEmpty, peek.kind == .word, Self.unitWords.contains(peek.keyword) || peek.keyword.contains("/") {
            unit = advance().keyword
        }
        if unit.isEmpty, peek.kind == .word, peek.keyword == "%" {
            unit = advance().keyword
        }
        guard unit.isEmpty || Self.unitWords.contains(unit) || Self.isRateUnit(unit) else {
            throw fail(.expectedNumber, "expected \(what), found \(token.display)", at: token)
        }
        return (value, unit, token)
    }

    static let sizeUnits: [String: Double] = [
        "b": 1, "byte": 1, "bytes": 1,
        "k": 1024, "kb": 1024, "kilobyte": 1024, "kilobytes": 1024,
        "m": 1_048_576, "mb": 1_048_576, "megabyte": 1_048_576, "megabytes": 1_048_576,
        "g": 1_073_741_824, "gb": 1_073_741_824, "gigabyte": 1_073_741_824, "gigabytes": 1_073_741_824,
        "t": 1_099_511_627_776, "tb": 1_099_511_627_776,
    ]

    static let timeUnits: [String: Double] = [
        "ms": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
        "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
        "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
        "h": 3600, "hour": 3600, "hours": 3600,
        "d": 86400, "day": 86400, "days": 86400,
    ]

    static let unitWords: Set<String> = Set(sizeUnits.keys).union(timeUnits.keys).union([
        "%", "operations/s", "packets/s", "ops/s", "packet", "packets",
    ])

    static func isRateUnit(_ unit: String) -> Bool {
        guard let slash = unit.firstIndex(of: "/") else { return false }
        let base = String(unit[..<slash])
        let per = String(unit[unit.index(after: slash)...])
        return (sizeUnits[base] != nil || ["operations", "packets", "ops"].contains(base))
            && ["s", "sec", "second"].contains(per)
    }

    /// `N seconds|minutes|…`, the unit defaulting to seconds as monit's does.
    func duration(_ what: String) throws -> Int {
        let (value, unit, token) = try quantity(what)
        let factor: Double
        if unit.isEmpty {
            factor = 1
        } else if let time = Self.timeUnits[unit] {
            factor = time
        } else {
            throw fail(.expectedNumber, "expected a time unit after \(what), found '\(unit)'", at: token)
        }
        let seconds = value * factor
        guard seconds <= Double(Int32.max) else {
            throw fail(.numberOutOfRange, "\(what) '\(token.text)' is out of range", at: token)
        }
        return Int(seconds.rounded(.up))
    }

    func byteSize(_ value: Double, unit: String, token: Token) throws -> Double {
        if unit.isEmpty { return value }
        guard let factor = Self.sizeUnits[unit] else {
            throw fail(.expectedNumber, "expected a size unit (B, KB, MB, GB), found '\(unit)'", at: token)
        }
        return value * factor
    }

    /// `[for|with] N cycles`, consumed only when present.
    func optionalCycles() throws -> Int? {
        guard atInteger, peekSecond.isAny(["cycle", "cycles"]) else { return nil }
        let value = try integer("a number of cycles", range: 1...Int(Int32.max))
        advance()
        return value
    }

    // MARK: - Words

    /// A name, path or address: a bare word or a quoted string.
    func value(_ what: String) throws -> Token {
        let token = peek
        guard token.kind == .word || token.kind == .string, !token.text.isEmpty else {
            throw fail(.syntax, "expected \(what), found \(token.display)", at: token)
        }
        advance()
        return token
    }

    func absolutePath(_ what: String) throws -> String {
        let token = try value(what)
        guard token.text.hasPrefix("/") else {
            throw fail(
                .relativePath, "\(what) must be an absolute path, found '\(token.text)'", at: token,
                hint: "monit resolves nothing relative to the control file here; write the full path")
        }
        return token.text
    }

    func comparisonOperator() throws -> ComparisonOperator {
        let token = peek
        if token.kind == .op {
            advance()
            switch token.text {
            case ">": return .greater
            case "<": return .less
            case "=", "==": return .equal
            case "!=", "<>": return .notEqual
            case ">=": return .greaterOrEqual
            case "<=": return .lessOrEqual
            default: break
            }
        }
        if token.kind == .word {
            let words: [String: ComparisonOperator] = [
                "gt": .greater, "greater": .greater, "lt": .less, "less": .less, "eq": .equal, "equal": .equal,
                "ne": .notEqual, "notequal": .notEqual, "not": .notEqual,
            ]
            if let op = words[token.keyword] {
                advance()
                if op == .notEqual, at("equal") { advance() }
                return op
            }
        }
        throw fail(.syntax, "expected a comparison ('>', '<', '=', '!=') , found \(token.display)", at: token)
    }

    /// A program string: `"CMD args"` split into arguments, then `as uid U and gid G`, `with timeout N seconds`.
    func program(_ role: String, allowTimeout: Bool = true) throws -> ProgramSpec {
        let token = peek
        guard token.kind == .string || token.kind == .word else {
            throw fail(.syntax, "expected the \(role) command in quotes, found \(token.display)", at: token)
        }
        advance()
        let arguments = ProgramSpec.split(token.text)
        guard let executable = arguments.first else {
            throw fail(.syntax, "the \(role) command is empty", at: token)
        }
        var spec = ProgramSpec(arguments: arguments)
        while true {
            if accept("uid") {
                spec.uid = try value("a user name or uid").text
            } else if accept("gid") {
                spec.gid = try value("a group name or gid").text
            } else if allowTimeout, at("timeout"), !peekSecond.isAny(["then"]) {
                advance()
                spec.timeout = try duration("a timeout")
            } else {
                break
            }
        }
        if !executable.hasPrefix("/") {
            report(
                .warning(
                    .programNotFound,
                    "program '\(executable)' is not an absolute path; warden runs it without a shell or PATH lookup",
                    at: location(of: token), length: token.length, hint: "write the full path, e.g. '/usr/bin/\(executable)'"))
        } else if access(executable, X_OK) != 0 {
            report(
                .warning(
                    .programNotFound, "program '\(executable)' does not exist or is not executable (yet)",
                    at: location(of: token), length: token.length))
        }
        return spec
    }

    // MARK: - URLs

    func url(_ token: Token) throws -> HTTPURL {
        let text = token.text
        guard let schemeEnd = text.firstRange(of: "://") else {
            throw fail(.invalidURL, "expected a URL such as 'http://localhost:8080/ping', found '\(text)'", at: token)
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else {
            throw fail(
                .invalidURL, "URL scheme '\(scheme)' is not supported; use http or https", at: token,
                hint: suggestion(for: scheme, among: ["http", "https"]))
        }
        var rest = text[schemeEnd.upperBound...]
        var path = "/"
        if let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) {
            path = String(rest[slash...])
            if path.hasPrefix("?") { path = "/" + path }
            rest = rest[..<slash]
        }
        var user: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                user = String(credentials[..<colon])
                password = String(credentials[credentials.index(after: colon)...])
            } else {
                user = String(credentials)
            }
        }
        var host = String(rest)
        var port = scheme == "https" ? 443 : 80
        if let colon = rest.lastIndex(of: ":"), !rest.hasSuffix("]") {
            host = String(rest[..<colon])
            let portText = rest[rest.index(after: colon)...]
            guard let value = portText == "$PORT" ? Service.instancePort : Int(portText),
                value == Service.instancePort && portText == "$PORT" || (1...65535).contains(value)
            else {
                throw fail(.portOutOfRange, "port '\(portText)' in URL is not between 1 and 65535", at: token)
            }
            port = value
        }
        guard !host.isEmpty else {
            throw fail(.invalidURL, "URL '\(text)' has no host", at: token)
        }
        return HTTPURL(scheme: scheme, host: host, port: port, path: path, user: user, password: password)
    }
}

extension Character {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
