/// One lexical unit of a control file.
struct Token: Sendable, Hashable {
    enum Kind: Sendable, Hashable {
        /// A bare word: keyword, path, URL, address, number with unit.
        case word
        /// A `"…"` or `'…'` string, quotes removed.
        case string
        /// Free text after `subject:`/`message:`/`from:`/`reply-to:` inside `mail-format { … }`.
        case raw
        case leftBrace, rightBrace, leftParen, rightParen, comma
        /// `=`, `==`, `!=`, `<`, `>`, `<=`, `>=`, `<>`.
        case op
        case endOfFile
    }

    var kind: Kind
    var text: String
    var line: Int
    var column: Int
    /// Length of the token in the source, in bytes (for the caret).
    var length: Int
    /// For `.raw` tokens: the mail-format key (`subject`, `from`, `reply-to`, `message`).
    var rawKey: String = ""
    /// The first word on its line (noise words included), where a new statement may begin.
    var startsLine = false

    /// Lowercased text, for keyword matching (monit's keywords are case-insensitive).
    var keyword: String { kind == .word ? text.lowercased() : "" }

    func `is`(_ word: String) -> Bool { kind == .word && text.lowercased() == word }

    func isAny(_ words: Set<String>) -> Bool { kind == .word && words.contains(text.lowercased()) }

    /// How the token is quoted in messages: `'foo'`, or a description for punctuation.
    var display: String {
        switch kind {
        case .endOfFile: "end of file"
        case .string: "\"\(text)\""
        default: "'\(text)'"
        }
    }
}
