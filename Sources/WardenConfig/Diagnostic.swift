/// A problem found in a control file, printed the way compilers print them:
/// `file:line:col: error: message`, the line, and a caret under the column.
public struct Diagnostic: Sendable, Hashable, Error {
    public enum Severity: String, Sendable, Hashable, Comparable {
        case error, warning, note

        private var rank: Int {
            switch self {
            case .error: 0
            case .warning: 1
            case .note: 2
            }
        }

        public static func < (lhs: Severity, rhs: Severity) -> Bool { lhs.rank < rhs.rank }
    }

    /// A stable identifier so tests and tools don't depend on wording.
    public struct ID: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let syntax = ID(rawValue: "syntax")
        public static let unknownStatement = ID(rawValue: "unknown-statement")
        public static let unterminatedString = ID(rawValue: "unterminated-string")
        public static let unbalancedParenthesis = ID(rawValue: "unbalanced-parenthesis")
        public static let expectedNumber = ID(rawValue: "expected-number")
        public static let numberOutOfRange = ID(rawValue: "number-out-of-range")
        public static let portOutOfRange = ID(rawValue: "port-out-of-range")
        public static let relativePath = ID(rawValue: "relative-path")
        public static let invalidURL = ID(rawValue: "invalid-url")
        public static let invalidRegex = ID(rawValue: "invalid-regex")
        public static let duplicateService = ID(rawValue: "duplicate-service")
        public static let unknownDependency = ID(rawValue: "unknown-dependency")
        public static let dependencyCycle = ID(rawValue: "dependency-cycle")
        public static let restartWindow = ID(rawValue: "restart-window")
        public static let missingStartProgram = ID(rawValue: "missing-start-program")
        public static let programNotFound = ID(rawValue: "program-not-found")
        public static let includeNotFound = ID(rawValue: "include-not-found")
        public static let includeCycle = ID(rawValue: "include-cycle")
        public static let alertBeforeCheck = ID(rawValue: "alert-before-check")
        public static let statementOutsideService = ID(rawValue: "statement-outside-service")
        public static let obfuscatedAddress = ID(rawValue: "obfuscated-address")
        public static let unreadableFile = ID(rawValue: "unreadable-file")
        public static let insecurePermissions = ID(rawValue: "insecure-permissions")
        public static let duplicateSetting = ID(rawValue: "duplicate-setting")
        public static let invalidValue = ID(rawValue: "invalid-value")
        /// A test warden parses but does not run (or that does not apply to its service).
        public static let unsupportedTest = ID(rawValue: "unsupported-test")
        public static let unknownKey = ID(rawValue: "unknown-key")
        public static let tooManyErrors = ID(rawValue: "too-many-errors")
        public static let includedFrom = ID(rawValue: "included-from")
        public static let firstDefined = ID(rawValue: "first-defined")
    }

    public var id: ID
    public var severity: Severity
    public var message: String
    public var location: FileLocation?
    /// How many bytes the caret marks (1 = a single `^`).
    public var length: Int
    public var hint: String?
    public var notes: [Diagnostic]

    public init(
        _ severity: Severity, _ id: ID, _ message: String, at location: FileLocation?,
        length: Int = 1, hint: String? = nil, notes: [Diagnostic] = []
    ) {
        self.id = id
        self.severity = severity
        self.message = message
        self.location = location
        self.length = max(1, length)
        self.hint = hint
        self.notes = notes
    }

    public static func error(
        _ id: ID, _ message: String, at location: FileLocation?, length: Int = 1, hint: String? = nil,
        notes: [Diagnostic] = []
    ) -> Diagnostic {
        Diagnostic(.error, id, message, at: location, length: length, hint: hint, notes: notes)
    }

    public static func warning(
        _ id: ID, _ message: String, at location: FileLocation?, length: Int = 1, hint: String? = nil,
        notes: [Diagnostic] = []
    ) -> Diagnostic {
        Diagnostic(.warning, id, message, at: location, length: length, hint: hint, notes: notes)
    }

    public static func note(_ id: ID, _ message: String, at location: FileLocation?) -> Diagnostic {
        Diagnostic(.note, id, message, at: location)
    }
}

extension Diagnostic {
    /// Renders the diagnostic with its source line, caret and notes.
    /// `sources` maps a path to its text so the offending line can be quoted.
    public func rendered(sources: [String: SourceFile]) -> String {
        var out = ""
        let prefix = location.map { "\($0): " } ?? ""
        out += "\(prefix)\(severity.rawValue): \(message)\n"
        if let location, let source = sources[location.file], severity != .note {
            let line = source.lineText(location.line)
            if !line.isEmpty {
                out += "    \(line)\n"
                // The caret must line up under a byte column; tabs stay tabs so it also lines up visually.
                let lineBytes = Array(line.utf8)
                var pad = ""
                for index in 0..<min(location.column - 1, lineBytes.count) {
                    pad += lineBytes[index] == UInt8(ascii: "\t") ? "\t" : " "
                }
                out += "    \(pad)^\(String(repeating: "~", count: max(0, length - 1)))\n"
            }
        }
        if let hint {
            out += "    hint: \(hint)\n"
        }
        for note in notes {
            out += note.rendered(sources: sources)
        }
        return out
    }
}

extension Array where Element == Diagnostic {
    public var hasErrors: Bool { contains { $0.severity == .error } }
    public var errors: [Diagnostic] { filter { $0.severity == .error } }
    public var warnings: [Diagnostic] { filter { $0.severity == .warning } }
}
