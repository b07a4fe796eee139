/// The database servers' handshakes as monit makes them without credentials: what a test without
/// `username` proves is that the server greets in its own protocol.
enum DatabaseProtocols {
    /// The server's first packet must be a protocol 10 handshake; an error packet (e.g. "Host is not
    /// allowed to connect") fails the test with the server's message.
    static func mysql(_ stream: ProbeStream) async throws {
        let context = "Error receiving server response"
        let header = try await stream.read(exactly: 4, context)
        let length = Int(header[0]) | Int(header[1]) << 8 | Int(header[2]) << 16
        guard length > 0, length <= 4096 else { throw ProtocolFailure("Invalid handshake packet length -- not MySQL protocol") }
        guard header[3] <= 1 else { throw ProtocolFailure("Invalid handshake packet sequence id -- not MySQL protocol") }
        let payload = try await stream.read(exactly: length, context)
        switch payload[0] {
        case 0xff:
            guard payload.count >= 3 else { throw ProtocolFailure("Data not available -- EOF") }
            let code = Int(payload[1]) | Int(payload[2]) << 8
            let message = String(decoding: payload[3...].prefix { $0 != 0 }, as: UTF8.self)
            throw ProtocolFailure("Server returned error code \(code) -- \(message)")
        case 0x00, 0x01, 0xfe:
            throw ProtocolFailure("Invalid server greeting, the server didn't sent a handshake packet -- not MySQL protocol")
        case 10:
            // The server version, NUL-terminated, then the connection id and the first part of the salt.
            guard let end = payload.dropFirst().firstIndex(of: 0), payload.count >= end + 1 + 4 + 9 + 2 else {
                throw ProtocolFailure("Data not available -- EOF")
            }
        default:
            throw ProtocolFailure("Invalid protocol version \(payload[0])")
        }
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
