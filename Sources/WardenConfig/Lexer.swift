/// Splits a control file into tokens, as monit's `l.l` does, minus its context-dependent quirks:
/// noise words are dropped, parentheses are kept so the parser can check they balance
/// (monit silently ignores them), and an unterminated string is reported at its opening quote.
struct Lexer {
    /// Words monit accepts anywhere for readability and ignores ("check process x *with* pidfile …").
    static let noiseWords: Set<String> = [
        "and", "with", "has", "using", "use", "on", "only", "is", "as", "are", "the", "of", "than",
        "sum", "usage", "was", "but", "for",
    ]

    private let source: SourceFile
    private let bytes: [UInt8]
    private var index = 0
    private var line = 1
    private var lineStart = 0
    private var braceDepth = 0
    private var atLineStart = true
    private(set) var diagnostics: [Diagnostic] = []

    init(source: SourceFile) {
        self.source = source
        self.bytes = source.bytes
    }

    static func tokenize(_ source: SourceFile) -> (tokens: [Token], diagnostics: [Diagnostic]) {
        var lexer = Lexer(source: source)
        var tokens: [Token] = []
        tokens.reserveCapacity(source.bytes.count / 4)
        while true {
            let token = lexer.next()
            tokens.append(token)
            if token.kind == .endOfFile { break }
        }
        return (tokens, lexer.diagnostics)
    }

    private func location(_ offset: Int) -> FileLocation {
        FileLocation(file: source.path, line: line, column: offset - lineStart + 1)
    }

    private func token(_ kind: Token.Kind, _ text: String, from start: Int) -> Token {
        Token(kind: kind, text: text, line: line, column: start - lineStart + 1, length: index - start)
    }

    private static func isSpace(_ b: UInt8) -> Bool {
        b == UInt8(ascii: " ") || b == UInt8(ascii: "\t") || b == UInt8(ascii: "\r") || b == 0x0C || b == 0x0B
    }

    private static func isOperator(_ b: UInt8) -> Bool {
        b == UInt8(ascii: "=") || b == UInt8(ascii: "!") || b == UInt8(ascii: "<") || b == UInt8(ascii: ">")
    }

    /// Characters that end a bare word.
    private static func endsWord(_ b: UInt8) -> Bool {
        isSpace(b) || b == UInt8(ascii: "\n") || b == UInt8(ascii: "{") || b == UInt8(ascii: "}")
            || b == UInt8(ascii: "(") || b == UInt8(ascii: ")") || b == UInt8(ascii: ",")
            || b == UInt8(ascii: "\"") || b == UInt8(ascii: "'") || b == UInt8(ascii: "<")
            || b == UInt8(ascii: ">")
    }

    mutating func next() -> Token {
        while true {
            skipSpaceAndComments()
            guard index < bytes.count else {
                return Token(kind: .endOfFile, text: "", line: line, column: index - lineStart + 1, length: 1)
            }
            let start = index
            let byte = bytes[index]
            let firstOnLine = atLineStart
            atLineStart = false
            switch byte {
            case UInt8(ascii: "{"):
                index += 1
                braceDepth += 1
                return token(.leftBrace, "{", from: start)
            case UInt8(ascii: "}"):
                index += 1
                braceDepth = max(0, braceDepth - 1)
                return token(.rightBrace, "}", from: start)
            case UInt8(ascii: "("):
                index += 1
                return token(.leftParen, "(", from: start)
            case UInt8(ascii: ")"):
                index += 1
                return token(.rightParen, ")", from: start)
            case UInt8(ascii: ","):
                index += 1
                return token(.comma, ",", from: start)
            case UInt8(ascii: "\""), UInt8(ascii: "'"):
                return string(quote: byte)
            default:
                break
            }
            if byte == UInt8(ascii: "<"), let placeholder = placeholder() {
                return placeholder
            }
            if Self.isOperator(byte) {
                return op()
            }
            var word = scanWord()
            // `program="/x"`: a keyword glued to `=` is the keyword and the operator.
            if word.text.count > 1, word.text.hasSuffix("="), !word.text.contains("/"), !word.text.contains("?") {
                index -= 1
                word = token(.word, String(word.text.dropLast()), from: start)
            }
            word.startsLine = firstOnLine
            if Self.noiseWords.contains(word.text.lowercased()) { continue }
            if braceDepth > 0, let raw = rawValue(after: word) { return raw }
            return word
        }
    }

    private mutating func skipSpaceAndComments() {
        while index < bytes.count {
            let b = bytes[index]
            if b == UInt8(ascii: "\n") {
                index += 1
                line += 1
                lineStart = index
                atLineStart = true
            } else if Self.isSpace(b) {
                index += 1
            } else if b == UInt8(ascii: "#") {
                while index < bytes.count, bytes[index] != UInt8(ascii: "\n") { index += 1 }
            } else {
                return
            }
        }
    }

    private mutating func scanWord() -> Token {
        let start = index
        while index < bytes.count, !Self.endsWord(bytes[index]) { index += 1 }
        return token(.word, String(decoding: bytes[start..<index], as: UTF8.self), from: start)
    }

    /// `<smtp.domain>`: a placeholder as documentation writes them; monit takes it as a word.
    private mutating func placeholder() -> Token? {
        let start = index
        var probe = index + 1
        guard probe < bytes.count, !Self.endsWord(bytes[probe]), !Self.isOperator(bytes[probe]) else { return nil }
        while probe < bytes.count, bytes[probe] != UInt8(ascii: ">") {
            if Self.isSpace(bytes[probe]) || bytes[probe] == UInt8(ascii: "\n") { return nil }
            probe += 1
        }
        guard probe < bytes.count else { return nil }
        index = probe + 1
        return token(.word, String(decoding: bytes[start..<index], as: UTF8.self), from: start)
    }

    private mutating func op() -> Token {
        let start = index
        let first = bytes[index]
        index += 1
        if index < bytes.count {
            let second = bytes[index]
            let pair = (first, second)
            switch pair {
            case (UInt8(ascii: "="), UInt8(ascii: "=")), (UInt8(ascii: "!"), UInt8(ascii: "=")),
                (UInt8(ascii: "<"), UInt8(ascii: "=")), (UInt8(ascii: ">"), UInt8(ascii: "=")),
                (UInt8(ascii: "<"), UInt8(ascii: ">")):
                index += 1
            default:
                break
            }
        }
        return token(.op, String(decoding: bytes[start..<index], as: UTF8.self), from: start)
    }

    private mutating func string(quote: UInt8) -> Token {
        let start = index
        index += 1
        var content: [UInt8] = []
        while index < bytes.count {
            let b = bytes[index]
            if b == quote {
                index += 1
                return token(.string, String(decoding: content, as: UTF8.self), from: start)
            }
            if b == UInt8(ascii: "\n") { break }
            if b == UInt8(ascii: "\\"), index + 1 < bytes.count, bytes[index + 1] == quote {
                content.append(quote)
                index += 2
                continue
            }
            content.append(b)
            index += 1
        }
        diagnostics.append(
            .error(
                .unterminatedString, "unterminated string", at: location(start),
                hint: "add the closing \(quote == UInt8(ascii: "\"") ? "\"" : "'") before the end of the line"))
        return token(.string, String(decoding: content, as: UTF8.self), from: start)
    }

    /// Inside `mail-format { … }`, header values run to the end of the line and the message runs to `}`.
    private mutating func rawValue(after word: Token) -> Token? {
        var key = word.text.lowercased()
        let hasColon = key.hasSuffix(":")
        if hasColon { key.removeLast() }
        let lineKeys: Set<String> = ["subject", "from", "reply-to"]
        guard lineKeys.contains(key) || key == "message" else { return nil }
        var probe = index
        while probe < bytes.count, Self.isSpace(bytes[probe]) { probe += 1 }
        if !hasColon {
            guard probe < bytes.count, bytes[probe] == UInt8(ascii: ":") else { return nil }
            probe += 1
        }
        index = probe
        while index < bytes.count, Self.isSpace(bytes[index]) { index += 1 }
        var content: [UInt8] = []
        while index < bytes.count {
            let b = bytes[index]
            if b == UInt8(ascii: "}") { break }
            if b == UInt8(ascii: "\n") {
                if key != "message" { break }
                line += 1
                lineStart = index + 1
            }
            content.append(b)
            index += 1
        }
        // Trim surrounding whitespace; the message keeps its inner line breaks.
        var text = String(decoding: content, as: UTF8.self)
        while let last = text.last, last.isWhitespace { text.removeLast() }
        return Token(kind: .raw, text: text, line: word.line, column: word.column, length: word.length, rawKey: key)
    }
}
