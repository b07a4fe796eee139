import Crypto

/// The database servers' handshakes as monit makes them without credentials: what a test without
/// `username` proves is that the server greets in its own protocol.
enum DatabaseProtocols {
    /// The server's first packet must be a protocol 10 handshake; an error packet (e.g. "Host is not
    /// allowed to connect") fails the test with the server's message. With a `username`, a login as
    /// monit makes it (mysql_native_password), then COM_QUIT.
    static func mysql(_ stream: ProbeStream, username: String?, password: String?) async throws {
        let greeting = try await mysqlPacket(stream, first: true)
        let payload = greeting.payload
        switch payload[0] {
        case 0xff:
            throw mysqlError(payload, protocol41: false)
        case 0x00, 0x01, 0xfe:
            throw ProtocolFailure("Invalid server greeting, the server didn't sent a handshake packet -- not MySQL protocol")
        case 10:
            break
        default:
            throw ProtocolFailure("Invalid protocol version \(payload[0])")
        }
        // version NUL, connection id (4), salt part 1 (8), filler, capabilities (2), charset, status (2),
        // capabilities (2), salt length, reserved (10), salt part 2 (NUL-terminated), plugin name.
        guard let versionEnd = payload.dropFirst().firstIndex(of: 0), payload.count >= versionEnd + 1 + 4 + 8 + 1 + 2 else {
            throw ProtocolFailure("Data not available -- EOF")
        }
        guard let username else { return }
        var at = versionEnd + 1 + 4
        var salt = Array(payload[at..<at + 8])
        at += 9
        var capabilities = UInt32(payload[at]) | UInt32(payload[at + 1]) << 8
        at += 2 + 1 + 2
        if payload.count >= at + 2 + 1 + 10 {
            capabilities |= (UInt32(payload[at]) | UInt32(payload[at + 1]) << 8) << 16
            at += 2 + 1 + 10
            salt += payload[at...].prefix { $0 != 0 }.prefix(12)
        }
        let pluginAuth: UInt32 = 0x0008_0000
        var response = withUnsafeBytes(of: (0x0000_8201 | (capabilities & pluginAuth)).littleEndian, Array.init)  // long password, 4.1, secure connection
        response += withUnsafeBytes(of: UInt32(8192).littleEndian, Array.init) + [8] + [UInt8](repeating: 0, count: 23)
        response += Array(username.utf8) + [0]
        let token = scramble(password ?? "", salt: salt)
        response += [UInt8(token.count)] + token
        if capabilities & pluginAuth != 0 { response += Array("mysql_native_password".utf8) + [0] }
        var sequence = greeting.sequence &+ 1
        try await stream.write(mysqlHeader(response.count, sequence) + response, "Cannot send handshake response")
        for _ in 0..<2 {
            let answer = try await mysqlPacket(stream, first: false)
            switch answer.payload[0] {
            case 0x00:
                try await stream.write(mysqlHeader(1, 0) + [0x01], "Cannot send handshake response")  // COM_QUIT
                return
            case 0xff:
                throw mysqlError(answer.payload, protocol41: true)
            case 0xfe:
                // Authentication switch: the plugin's name and a new salt.
                let fields = answer.payload.dropFirst().split(separator: 0, maxSplits: 1, omittingEmptySubsequences: false)
                guard fields.count == 2, String(decoding: fields[0], as: UTF8.self) == "mysql_native_password" else {
                    throw ProtocolFailure("MYSQL: unsupported authentication plugin: \(String(decoding: fields.first ?? [], as: UTF8.self))")
                }
                let switched = scramble(password ?? "", salt: Array(fields[1].prefix { $0 != 0 }))
                sequence = answer.sequence &+ 1
                try await stream.write(mysqlHeader(switched.count, sequence) + switched, "Cannot send handshake response")
            default:
                throw ProtocolFailure("Unexpected response 0x\(String(answer.payload[0], radix: 16)) to the login")
            }
        }
        throw ProtocolFailure("MYSQL: authentication did not complete")
    }

    /// SHA1(password) XOR SHA1(salt + SHA1(SHA1(password))); nothing for an empty password.
    static func scramble(_ password: String, salt: [UInt8]) -> [UInt8] {
        guard !password.isEmpty else { return [] }
        // SHA-1, which MySQL's native password scramble is made of; nothing secret rests on it.
        let stage1 = Array(Insecure.SHA1.hash(data: Array(password.utf8)))
        let stage3 = Array(Insecure.SHA1.hash(data: salt + Array(Insecure.SHA1.hash(data: stage1))))
        return zip(stage1, stage3).map { $0 ^ $1 }
    }

    private static func mysqlHeader(_ length: Int, _ sequence: UInt8) -> [UInt8] {
        [UInt8(length & 0xff), UInt8(length >> 8 & 0xff), UInt8(length >> 16 & 0xff), sequence]
    }

    private static func mysqlPacket(_ stream: ProbeStream, first: Bool) async throws -> (payload: [UInt8], sequence: UInt8) {
        let context = "Error receiving server response"
        let header = try await stream.read(exactly: 4, context)
        let length = Int(header[0]) | Int(header[1]) << 8 | Int(header[2]) << 16
        if first {
            guard length > 0, length <= 4096 else { throw ProtocolFailure("Invalid handshake packet length -- not MySQL protocol") }
            guard header[3] <= 1 else { throw ProtocolFailure("Invalid handshake packet sequence id -- not MySQL protocol") }
        }
        guard length > 0, length <= 65_536 else { throw ProtocolFailure("Invalid packet length \(length)") }
        return (try await stream.read(exactly: length, context), header[3])
    }

    /// An ERR packet: code, then (in protocol 4.1) '#' and a 5-character SQL state, then the message.
    private static func mysqlError(_ payload: [UInt8], protocol41: Bool) -> ProtocolFailure {
        guard payload.count >= 3 else { return ProtocolFailure("Data not available -- EOF") }
        let code = Int(payload[1]) | Int(payload[2]) << 8
        let skip = protocol41 && payload.count > 3 && payload[3] == UInt8(ascii: "#") ? 9 : 3
        let message = String(decoding: payload.dropFirst(skip).prefix { $0 != 0 }, as: UTF8.self)
        return ProtocolFailure("Server returned error code \(code) -- \(message)")
    }

    /// A startup message, as monit sends it: without credentials for user and database `root`, where
    /// the server's authentication request or its error both prove it speaks PostgreSQL. With a
    /// `username` (and a `database`, by default the user's own), a login: a cleartext or MD5 password
    /// when the server asks for one, and any error fails the test. An authentication neither speaks
    /// (SCRAM, …) ends the session and passes, as in monit: the server has answered in its protocol.
    static func pgsql(_ stream: ProbeStream, username: String?, password: String?, database: String?) async throws {
        var parameters = "user\u{0}\(username ?? "root")\u{0}"
        if let database = database ?? (username == nil ? "root" : nil) { parameters += "database\u{0}\(database)\u{0}" }
        let body = Array(parameters.utf8) + [0]
        try await stream.write(bigEndian(UInt32(8 + body.count)) + [0x00, 0x03, 0x00, 0x00] + body, "PGSQL: error sending startup message")
        let loggingIn = username != nil || database != nil
        var authenticated = false
        // A login's answers: at most two authentication requests, then a few parameters before ReadyForQuery.
        for _ in 0..<64 {
            let (type, payload) = try await pgsqlMessage(stream)
            switch type {
            case UInt8(ascii: "S") where authenticated, UInt8(ascii: "K") where authenticated, UInt8(ascii: "N") where authenticated:
                continue
            case UInt8(ascii: "Z") where authenticated:
                // Ready for a query: the login, the database included, is done.
                try await stream.write([UInt8(ascii: "X")] + bigEndian(4), "PGSQL: error sending terminate message")
                return
            case UInt8(ascii: "R"):
                guard payload.count >= 4 else { throw ProtocolFailure("PGSQL: authentication message too short") }
                let method = Int(payload[0]) << 24 | Int(payload[1]) << 16 | Int(payload[2]) << 8 | Int(payload[3])
                switch method {
                case 3 where loggingIn:
                    try await pgsqlPassword(stream, Array((password ?? "").utf8))
                case 5 where loggingIn && payload.count >= 8:
                    // md5(md5(password + user) as hex + salt), as hex, after "md5".
                    let inner = Hex.string(Insecure.MD5.hash(data: Array(((password ?? "") + (username ?? "")).utf8)))
                    let outer = Hex.string(Insecure.MD5.hash(data: Array(inner.utf8) + payload[4..<8]))
                    try await pgsqlPassword(stream, Array(("md5" + outer).utf8))
                case 0 where loggingIn:
                    // The database is opened after this: its error, or ReadyForQuery, comes next.
                    authenticated = true
                default:
                    // A method warden does not answer, or no login asked for: end the session politely.
                    try await stream.write([UInt8(ascii: "X")] + bigEndian(4), "PGSQL: error sending terminate message")
                    return
                }
            case UInt8(ascii: "E"):
                guard loggingIn else { return }  // monit accepts an error to root/root as the server's answer.
                throw ProtocolFailure("PGSQL: startup message error -- \(pgsqlErrorFields(payload))")
            default:
                throw ProtocolFailure("PGSQL: unexpected response type '\(Character(Unicode.Scalar(type)))' -- not PostgreSQL protocol")
            }
        }
        throw ProtocolFailure("PGSQL: no end to the server's answers to the login")
    }

    private static func pgsqlMessage(_ stream: ProbeStream) async throws -> (type: UInt8, payload: [UInt8]) {
        let header = try await stream.read(exactly: 5, "PGSQL: response header read error")
        let payloadLength = Int(header[1]) << 24 | Int(header[2]) << 16 | Int(header[3]) << 8 | Int(header[4])
        guard payloadLength >= 4, payloadLength - 4 <= 1024 else {
            throw ProtocolFailure("PGSQL: response message is too large: \(payloadLength - 4) bytes received (maximum 1024)")
        }
        return (header[0], try await stream.read(exactly: payloadLength - 4, "PGSQL: response payload read error"))
    }

    private static func pgsqlPassword(_ stream: ProbeStream, _ password: [UInt8]) async throws {
        try await stream.write([UInt8(ascii: "p")] + bigEndian(UInt32(4 + password.count + 1)) + password + [0], "PGSQL: error sending password message")
    }

    /// An ErrorResponse's severity, code and message, as monit reports them.
    private static func pgsqlErrorFields(_ payload: [UInt8]) -> String {
        var fields: [UInt8: String] = [:]
        var rest = payload[...]
        while let type = rest.first, type != 0 {
            let value = rest.dropFirst().prefix { $0 != 0 }
            fields[type] = String(decoding: value, as: UTF8.self)
            rest = rest.dropFirst(value.count + 2)
        }
        func field(_ type: Character) -> String { fields[type.asciiValue!] ?? "N/A" }
        return "Severity=\(fields[UInt8(ascii: "V")] ?? field("S")), Code=\(field("C")), Message=\(field("M"))"
    }

    private static func bigEndian(_ value: UInt32) -> [UInt8] {
        withUnsafeBytes(of: value.bigEndian, Array.init)
    }
}
