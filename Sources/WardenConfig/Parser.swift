#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Thrown after a diagnostic has been recorded, to abandon the current statement.
struct StatementAbandoned: Error {}

/// Reads files for the parser; injected so tests can parse from memory.
public protocol ControlFileReader: Sendable {
    func read(_ path: String) throws -> [UInt8]
    /// Paths matching a glob, sorted; an empty array when nothing matches.
    func glob(_ pattern: String) -> [String]
    func realPath(_ path: String) -> String
}

/// Parses monit's control-file language into a `Configuration`, collecting every diagnostic.
///
/// One parser handles a control file and everything it includes; `include` inside a service
/// continues that service, as Debian's `/etc/monit/templates` rely on.
final class Parser {
    static let maximumErrors = 20

    let reader: any ControlFileReader
    var configuration: Configuration
    var diagnostics: [Diagnostic] = []
    var sources: [String: SourceFile] = [:]

    /// Services in declaration order; `current` is the one service statements apply to.
    var services: [ServiceBuilder] = []
    var current: Int?
    var currentSite: Int?

    // Per-file state, saved and restored around an include.
    var tokens: [Token] = []
    var position = 0
    var file: SourceFile
    var includeStack: [(path: String, location: FileLocation?)] = []
    var openParens: [Token] = []
    var checkSeenInFile = false
    var pendingAlerts: [(recipient: AlertRecipient, location: FileLocation, keyword: Token)] = []
    var pendingNoAlerts: [String] = []

    var errorCount: Int { diagnostics.count { $0.severity == .error } }

    init(controlFile: String, reader: any ControlFileReader) {
        self.reader = reader
        self.configuration = Configuration(controlFile: controlFile)
        self.file = SourceFile(path: controlFile, bytes: [])
    }

    // MARK: - Files

    func parseFile(_ path: String, includedAt: FileLocation?) {
        let canonical = reader.realPath(path)
        if includeStack.contains(where: { reader.realPath($0.path) == canonical }) {
            report(.error(.includeCycle, "'\(path)' includes itself", at: includedAt))
            return
        }
        let bytes: [UInt8]
        do {
            bytes = try reader.read(path)
        } catch {
            if let includedAt {
                report(.warning(.includeNotFound, "cannot read included file '\(path)': \(error)", at: includedAt))
            } else {
                report(.error(.unreadableFile, "cannot read control file '\(path)': \(error)", at: nil))
            }
            return
        }
        let source = SourceFile(path: path, bytes: bytes)
        sources[path] = source
        let (fileTokens, lexerDiagnostics) = Lexer.tokenize(source)

        let saved = (tokens, position, file, openParens, checkSeenInFile, pendingAlerts, pendingNoAlerts)
        includeStack.append((path, includedAt))
        tokens = fileTokens
        position = 0
        file = source
        openParens = []
        checkSeenInFile = false
        pendingAlerts = []
        pendingNoAlerts = []
        for diagnostic in lexerDiagnostics { report(diagnostic) }

        while peek.kind != .endOfFile, errorCount < Self.maximumErrors {
            let start = position
            do {
                try statement()
                try closeParentheses()
            } catch {
                openParens = []
                synchronize(from: start)
            }
        }
        resolvePendingAlerts()

        includeStack.removeLast()
        (tokens, position, file, openParens, checkSeenInFile, pendingAlerts, pendingNoAlerts) = saved
    }

    func include() throws {
        let keyword = advance()
        let patternToken = peek
        guard patternToken.kind == .word || patternToken.kind == .string else {
            throw fail(.syntax, "expected a file or glob after 'include', found \(patternToken.display)", at: patternToken)
        }
        advance()
        var pattern = patternToken.text
        if !pattern.hasPrefix("/") {
            let directory = file.path.contains("/") ? String(file.path[..<file.path.lastIndex(of: "/")!]) : "."
            pattern = directory + "/" + pattern
        }
        let matches = reader.glob(pattern)
        let isGlob = pattern.contains { "*?[".contains($0) }
        if matches.isEmpty, !isGlob {
            report(
                .warning(
                    .includeNotFound, "included file '\(patternToken.text)' does not exist",
                    at: location(of: patternToken), length: patternToken.length))
        }
        for path in matches {
            parseFile(path, includedAt: location(of: keyword))
            if errorCount >= Self.maximumErrors { return }
        }
    }

    // MARK: - Statements

    static let statementKeywords: Set<String> = [
        "set", "check", "include", "if", "start", "stop", "restart", "depends", "depend", "group", "mode",
        "every", "not", "alert", "noalert", "onreboot", "ignore", "pass", "serve", "access", "error", "maintenance",
        "instances", "deploy", "drain", "balance", "redirect", "hsts", "log", "compress",
    ]

    static let siteKeywords: Set<String> = ["pass", "serve", "access", "error", "maintenance", "balance", "redirect", "hsts", "compress"]

    func statement() throws {
        let token = peek
        guard token.kind == .word else {
            throw fail(.syntax, "expected a statement, found \(token.display)", at: token)
        }
        switch token.keyword {
        case "set": try setStatement()
        case "check": try checkStatement()
        case "include": try include()
        case "alert", "noalert": try alertStatement()
        case _ where Self.siteKeywords.contains(token.keyword):
            guard currentSite != nil else {
                throw fail(
                    .statementOutsideService, "'\(token.text)' must follow a 'check site' statement", at: token)
            }
            try siteStatement()
        default:
            guard Self.statementKeywords.contains(token.keyword) else {
                throw fail(
                    .unknownStatement, "unknown statement '\(token.text)'", at: token,
                    hint: suggestion(for: token.text, among: Self.statementKeywords))
            }
            guard current != nil else {
                throw fail(
                    .statementOutsideService,
                    "'\(token.text)' must follow a 'check' statement; no service is being defined here", at: token)
            }
            try serviceStatement()
        }
    }

    /// Skips to the next token that can begin a statement, so one mistake yields one error.
    func synchronize(from start: Int) {
        if position == start { position += 1 }
        while position < tokens.count, tokens[position].kind != .endOfFile {
            let token = tokens[position]
            if token.startsLine, Self.statementKeywords.contains(token.keyword) { return }
            position += 1
        }
    }

    // MARK: - Alerts before a check (the seed chapter's trap)

    func resolvePendingAlerts() {
        guard !pendingAlerts.isEmpty else { return }
        if let current, includeStack.count > 1 {
            // A template included inside a service: its alerts belong to that service.
            services[current].service.alerts += pendingAlerts.map(\.recipient)
            services[current].service.noAlerts += pendingNoAlerts
        } else {
            for pending in pendingAlerts {
                report(
                    .error(
                        .statementOutsideService,
                        "'alert \(pending.recipient.address)' is not inside a service and no 'check' follows it in this file",
                        at: pending.location, length: pending.keyword.length,
                        hint: "write 'set alert \(pending.recipient.address)' to alert on every service"))
            }
        }
        pendingAlerts = []
        pendingNoAlerts = []
    }

    /// Binds alerts written before the first check of a file to that check, as the chapter intends.
    func bindPendingAlerts(to index: Int, checkToken: Token) {
        guard !pendingAlerts.isEmpty else { return }
        let name = services[index].service.name
        for pending in pendingAlerts {
            services[index].service.alerts.append(pending.recipient)
            report(
                .warning(
                    .alertBeforeCheck,
                    "'alert \(pending.recipient.address)' comes before any 'check' in this file; warden binds it to '\(name)', the check that follows",
                    at: pending.location, length: pending.keyword.length,
                    hint: "monit 5.33 rejects this file, or gives the alert to the service defined before it; move the line below 'check … \(name)' or write 'set alert' for every service",
                    notes: [.note(.firstDefined, "'\(name)' is defined here", at: location(of: checkToken))]))
        }
        services[index].service.noAlerts += pendingNoAlerts
        pendingAlerts = []
        pendingNoAlerts = []
    }

    // MARK: - Token access

    var peek: Token {
        skipParentheses()
        return tokens[position]
    }

    /// The token after `peek`, ignoring parentheses.
    var peekSecond: Token {
        skipParentheses()
        var index = position + 1
        while index < tokens.count, tokens[index].kind == .leftParen || tokens[index].kind == .rightParen {
            index += 1
        }
        return tokens[min(index, tokens.count - 1)]
    }

    /// monit ignores parentheses; warden accepts them anywhere but insists they balance within a statement.
    private func skipParentheses() {
        while position < tokens.count - 1 {
            let token = tokens[position]
            if token.kind == .leftParen {
                openParens.append(token)
            } else if token.kind == .rightParen {
                if openParens.popLast() == nil {
                    report(
                        .error(.unbalancedParenthesis, "')' has no matching '('", at: location(of: token)))
                }
            } else {
                return
            }
            position += 1
        }
    }

    private func closeParentheses() throws {
        _ = peek
        if let open = openParens.first {
            openParens = []
            throw fail(.unbalancedParenthesis, "'(' is never closed", at: open, hint: "add ')' at the end of the condition")
        }
    }

    @discardableResult
    func advance() -> Token {
        let token = peek
        if position < tokens.count - 1 { position += 1 }
        return token
    }

    func at(_ word: String) -> Bool { peek.is(word) }

    func at(any words: Set<String>) -> Bool { peek.isAny(words) }

    func accept(_ word: String) -> Bool {
        if at(word) {
            advance()
            return true
        }
        return false
    }

    func accept(any words: Set<String>) -> Token? {
        if at(any: words) { return advance() }
        return nil
    }

    func acceptKind(_ kind: Token.Kind) -> Token? {
        if peek.kind == kind { return advance() }
        return nil
    }

    @discardableResult
    func expect(_ word: String, after context: String) throws -> Token {
        if at(word) { return advance() }
        let found = peek
        throw fail(
            .syntax, "expected '\(word)' after '\(context)', found \(found.display)", at: found,
            hint: suggestion(for: found.text, among: [word]))
    }

    func expectKeyword(_ choices: [String], after context: String) throws -> Token {
        if let token = accept(any: Set(choices)) { return token }
        let found = peek
        let list = choices.map { "'\($0)'" }.joined(separator: ", ")
        throw fail(
            .syntax, "expected \(choices.count == 1 ? list : "one of \(list)") after '\(context)', found \(found.display)",
            at: found, hint: suggestion(for: found.text, among: Set(choices)))
    }

    // MARK: - Diagnostics

    func location(of token: Token) -> FileLocation {
        FileLocation(file: file.path, line: token.line, column: token.column)
    }

    func report(_ diagnostic: Diagnostic) {
        var diagnostic = diagnostic
        // Errors in an included file name the include lines that brought it in.
        if let file = diagnostic.location?.file, file == self.file.path {
            for entry in includeStack.reversed() {
                guard let includedAt = entry.location else { continue }
                diagnostic.notes.append(.note(.includedFrom, "included from here", at: includedAt))
            }
        }
        diagnostics.append(diagnostic)
    }

    func fail(_ id: Diagnostic.ID, _ message: String, at token: Token, hint: String? = nil) -> StatementAbandoned {
        report(.error(id, message, at: location(of: token), length: token.length, hint: hint))
        return StatementAbandoned()
    }

    func suggestion(for word: String, among candidates: Set<String>) -> String? {
        guard !word.isEmpty else { return nil }
        let lower = word.lowercased()
        var best: (word: String, distance: Int)?
        for candidate in candidates.sorted() {
            let distance = editDistance(lower, candidate)
            guard distance > 0, distance <= Swift.max(1, candidate.count / 3) else { continue }
            if best == nil || distance < best!.distance { best = (candidate, distance) }
        }
        return best.map { "did you mean '\($0.word)'?" }
    }
}

/// Levenshtein distance, for "did you mean" hints.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.utf8)
    let b = Array(b.utf8)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            let deletion = previous[j] + 1
            let insertion = current[j - 1] + 1
            current[j] = Swift.min(deletion, insertion, previous[j - 1] + cost)
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}

/// A service under construction, with where its parts were written for later checks.
struct ServiceBuilder {
    var service: Service
    var checkToken: Token
    var dependencyLocations: [String: FileLocation] = [:]
}
