
/// The line protocols of mail and file servers, as monit speaks them: read the greeting, say goodbye,
/// and check each reply's code.
enum MailProtocols {
    /// Greeting 220, `EHLO localhost` answered 250, with `username` and `password` an AUTH (PLAIN if
    /// offered, else LOGIN) answered 235, `QUIT` answered 221: monit's check_smtp.
    static func smtp(_ stream: ProbeStream, username: String?, password: String?) async throws {
        try await reply(stream, code: 220, "SMTP")
        try await stream.write("EHLO localhost\r\n", "SMTP: error sending data")
        let extensions = try await reply(stream, code: 250, "SMTP")
        if let username, let password {
            let mechanisms = Set(
                extensions.filter { $0.uppercased().dropFirst(4).hasPrefix("AUTH") }
                    .flatMap { $0.uppercased().dropFirst(9).split(separator: " ").map(String.init) })
            if mechanisms.contains("PLAIN") {
                let token = Base64.encode(Array("\u{0}\(username)\u{0}\(password)".utf8))
                try await stream.write("AUTH PLAIN \(token)\r\n", "SMTP: error sending data")
            } else if mechanisms.contains("LOGIN") {
                try await stream.write("AUTH LOGIN\r\n", "SMTP: error sending data")
                try await reply(stream, code: 334, "SMTP")
                try await stream.write(Base64.encode(Array(username.utf8)) + "\r\n", "SMTP: error sending data")
                try await reply(stream, code: 334, "SMTP")
                try await stream.write(Base64.encode(Array(password.utf8)) + "\r\n", "SMTP: error sending data")
            } else {
                throw ProtocolFailure("SMTP: authentication failed -- no supported authentication method found")
            }
            try await reply(stream, code: 235, "SMTP")
        }
        try await stream.write("QUIT\r\n", "SMTP: error sending data")
        try await reply(stream, code: 221, "SMTP")
    }

    /// Greeting 220, `QUIT` answered 221.
    static func ftp(_ stream: ProbeStream) async throws {
        let greeting = try await multiline(stream, "FTP: greeting read error").last ?? ""
        guard greeting.hasPrefix("220") else { throw ProtocolFailure("FTP: invalid greeting -- \(greeting)") }
        try await stream.write("QUIT\r\n", "FTP: QUIT command error")
        let bye = try await multiline(stream, "FTP: QUIT response read error").last ?? ""
        guard bye.hasPrefix("221") else { throw ProtocolFailure("FTP: invalid QUIT response -- \(bye)") }
    }

    /// Greeting `* OK`, `001 LOGOUT` answered `* BYE`.
    static func imap(_ stream: ProbeStream) async throws {
        let greeting = try await stream.readLine("IMAP: greeting read error")
        guard greeting.hasPrefix("* OK") else { throw ProtocolFailure("IMAP: invalid greeting -- \(greeting)") }
        try await stream.write("001 LOGOUT\r\n", "IMAP: logout command error")
        let bye = try await stream.readLine("IMAP: logout response read error")
        guard bye.uppercased().hasPrefix("* BYE") else { throw ProtocolFailure("IMAP: invalid logout response: \(bye)") }
    }

    /// Greeting `+OK`, `QUIT` answered `+OK`.
    static func pop(_ stream: ProbeStream) async throws {
        let greeting = try await stream.readLine("POP: greeting read error")
        guard greeting.hasPrefix("+OK") else { throw ProtocolFailure("POP: invalid greeting -- \(greeting)") }
        try await stream.write("QUIT\r\n", "POP: QUIT command error")
        let bye = try await stream.readLine("POP: QUIT response read error")
        guard bye.hasPrefix("+OK") else { throw ProtocolFailure("POP: invalid QUIT response -- \(bye)") }
    }

    /// An SMTP reply (its continuation lines `250-…` read through) whose code must be `code`; its lines.
    @discardableResult
    private static func reply(_ stream: ProbeStream, code: Int, _ name: String) async throws -> [String] {
        let lines = try await multiline(stream, "\(name): error receiving data")
        let line = lines.last ?? ""
        guard line.count >= 3, Int(line.prefix(3)) == code else {
            throw ProtocolFailure("\(name) error: \(line.isEmpty ? "empty reply" : line)")
        }
        return lines
    }

    /// A reply whose continuation lines read `NNN-…`, the last line last; bounded, so a server that
    /// never ends its reply fails on the test's deadline or after 100 lines.
    private static func multiline(_ stream: ProbeStream, _ context: String) async throws -> [String] {
        var lines: [String] = []
        for _ in 0..<100 {
            let line = try await stream.readLine(context)
            lines.append(line)
            let bytes = Array(line.utf8)
            if bytes.count >= 4, bytes[3] == UInt8(ascii: "-"), bytes[0..<3].allSatisfy({ (48...57).contains($0) }) { continue }
            return lines
        }
        throw ProtocolFailure("\(context) -- reply longer than 100 lines")
    }
}
