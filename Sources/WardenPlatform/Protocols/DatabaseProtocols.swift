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

    /// A startup message for user and database `root` (monit's choice when no user is given): the
    /// server answers with an authentication request or an error, and either proves it speaks PostgreSQL.
    static func pgsql(_ stream: ProbeStream) async throws {
        let parameters = Array("user\u{0}root\u{0}database\u{0}root\u{0}\u{0}".utf8)
        let length = UInt32(8 + parameters.count)
        let startup = withUnsafeBytes(of: length.bigEndian, Array.init) + [0x00, 0x03, 0x00, 0x00] + parameters
        try await stream.write(startup, "PGSQL: error sending startup message")
        let header = try await stream.read(exactly: 5, "PGSQL: response header read error")
        let payloadLength = Int(header[1]) << 24 | Int(header[2]) << 16 | Int(header[3]) << 8 | Int(header[4])
        guard payloadLength >= 4, payloadLength - 4 <= 1024 else {
            throw ProtocolFailure("PGSQL: response message is too large: \(payloadLength - 4) bytes received (maximum 1024)")
        }
        let payload = try await stream.read(exactly: payloadLength - 4, "PGSQL: response payload read error")
        switch header[0] {
        case UInt8(ascii: "R"):
            // Authentication ok (trust): end the session politely.
            if payload.count >= 4, payload[0...3].allSatisfy({ $0 == 0 }) {
                try await stream.write([UInt8(ascii: "X"), 0, 0, 0, 4], "PGSQL: error sending terminate message")
            }
        case UInt8(ascii: "E"):
            break  // monit accepts an error to root/root as the server's answer.
        default:
            throw ProtocolFailure("PGSQL: unexpected response type '\(Character(Unicode.Scalar(header[0])))' -- not PostgreSQL protocol")
        }
    }
}
