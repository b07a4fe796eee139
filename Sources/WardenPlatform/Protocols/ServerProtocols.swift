/// The handshakes of monit's other server protocols: each sends what monit sends and checks the answer
/// as monit does, so a port held by the wrong server (or by one that answers garbage) fails the test.
enum ServerProtocols {
    /// The server's identification `SSH-…` echoed back, as monit does so that sshd logs no broken client.
    static func ssh(_ stream: ProbeStream) async throws {
        let identification = try await stream.readLine("SSH: error receiving identification string", limit: 255)
        guard identification.hasPrefix("SSH-") else { throw ProtocolFailure("SSH: protocol error \(identification)") }
        try await stream.write(identification + "\r\n", "SSH: error sending identification string")
    }

    /// `PING` answered `+PONG`.
    static func redis(_ stream: ProbeStream) async throws {
        try await stream.write("PING\r\n", "REDIS: PING error")
        let answer = try await stream.readLine("REDIS: PING error")
        guard answer == "+PONG" else { throw ProtocolFailure("REDIS: PING response error -- \(answer)") }
    }

    /// A binary protocol no-op, answered by a binary response header with status 0.
    static func memcache(_ stream: ProbeStream) async throws {
        var request = [UInt8](repeating: 0, count: 24)
        request[0] = 0x80  // request magic
        request[1] = 0x0a  // NOOP
        try await stream.write(request, "MEMCACHE: error sending data")
        let header = try await stream.read(exactly: 24, "MEMCACHE: error receiving data")
        guard header[0] == 0x81 else {
            throw ProtocolFailure("MEMCACHE: invalid response magic 0x\(String(header[0], radix: 16)) -- not memcached binary protocol")
        }
        let status = Int(header[6]) << 8 | Int(header[7])
        guard status == 0 else { throw ProtocolFailure("MEMCACHE: invalid response code -- status \(status)") }
    }

    /// The NS records of the root, as monit asks; a refusal is an answer too.
    static func dns(_ stream: ProbeStream, overUDP: Bool) async throws {
        let query: [UInt8] = [
            0x00, 0x01,  // id
            0x01, 0x00,  // recursion desired
            0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // one question
            0x00,  // the root
            0x00, 0x02,  // NS
            0x00, 0x01,  // IN
        ]
        let context = "DNS: error receiving response"
        let response: [UInt8]
        if overUDP {
            try await stream.write(query, "DNS: error sending query")
            response = try await stream.readSome(context, limit: 4096)
        } else {
            try await stream.write([0x00, UInt8(query.count)] + query, "DNS: error sending query")
            let length = try await stream.read(exactly: 2, context)
            response = try await stream.read(exactly: Int(length[0]) << 8 | Int(length[1]), context)
        }
        guard response.count >= 12 else { throw ProtocolFailure("\(context) -- \(response.count) bytes, a DNS header has 12") }
        guard response[0] == 0x00, response[1] == 0x01 else {
            throw ProtocolFailure("DNS: response transaction ID mismatch -- received 0x\(String(Int(response[0]) << 8 | Int(response[1]), radix: 16)), expected 0x1")
        }
        guard response[2] & 0x80 != 0 else { throw ProtocolFailure("DNS: invalid response type: 0x\(String(response[2] & 0x80, radix: 16))") }
        let code = response[3] & 0x0f
        guard code == 0 || code == 5 else { throw ProtocolFailure("DNS: invalid response code: 0x\(String(code, radix: 16))") }
        guard response[4] == 0, response[5] == 1 else {
            throw ProtocolFailure("DNS: invalid query count in response -- received \(Int(response[4]) << 8 | Int(response[5])), expected 1")
        }
        if code == 0, response[6...9].allSatisfy({ $0 == 0 }) { throw ProtocolFailure("DNS: no answer or authority records returned") }
    }

    /// An NTP v3 client request (48 bytes), answered by a synchronized server in server mode.
    static func ntp3(_ stream: ProbeStream) async throws {
        var request = [UInt8](repeating: 0, count: 48)
        request[0] = 0x1b  // leap 0, version 3, mode 3 (client)
        try await stream.write(request, "NTP: error sending NTP request")
        let answer = try await stream.readSome("NTP: did not receive answer from server", limit: 1024)
        guard answer.count == 48 else { throw ProtocolFailure("NTP: Received \(answer.count) bytes from server, expected 48 bytes") }
        guard answer[0] & 0x07 == 4 else { throw ProtocolFailure("NTP: Server mode error") }
        guard (answer[0] >> 3) & 0x07 == 3 else { throw ProtocolFailure("NTP: Server protocol version error") }
        guard answer[0] >> 6 != 3 else { throw ProtocolFailure("NTP: Server not synchronized") }
    }

    /// An anonymous LDAPv3 bind answered with success, then an unbind.
    static func ldap3(_ stream: ProbeStream) async throws {
        // SEQUENCE { messageID 1, [APPLICATION 0] bindRequest { version 3, name "", simple "" } }
        let bind: [UInt8] = [0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00]
        try await stream.write(bind, "LDAP: error sending data")
        let context = "LDAP: error receiving data"
        let head = try await stream.read(exactly: 2, context)
        guard head[0] == 0x30 else { throw ProtocolFailure("LDAP: invalid response -- not an LDAP message") }
        var length = Int(head[1])
        if length & 0x80 != 0 {
            let octets = length & 0x7f
            guard (1...3).contains(octets) else { throw ProtocolFailure("LDAP: invalid response -- bad length") }
            length = try await stream.read(exactly: octets, context).reduce(0) { $0 << 8 | Int($1) }
        }
        guard length <= 65_536 else { throw ProtocolFailure("LDAP: invalid response -- bad length") }
        let body = try await stream.read(exactly: length, context)
        // messageID 1, then bindResponse [APPLICATION 1] whose first element is the ENUMERATED result code.
        guard body.count >= 3, body[0] == 0x02, body[1] == 1, body[2] == 1 else {
            throw ProtocolFailure("LDAP: invalid response -- message ID mismatch")
        }
        var index = 3
        guard body.count > index + 1, body[index] == 0x61 else { throw ProtocolFailure("LDAP: invalid response -- not a bind response") }
        index += 2
        if body[index - 1] & 0x80 != 0 { index += Int(body[index - 1] & 0x7f) }
        guard body.count > index + 2, body[index] == 0x0a, body[index + 1] == 1 else {
            throw ProtocolFailure("LDAP: invalid response -- no result code")
        }
        guard body[index + 2] == 0 else { throw ProtocolFailure("LDAP: anonymous bind failed -- result code \(body[index + 2])") }
        try await stream.write([0x30, 0x05, 0x02, 0x01, 0x02, 0x42, 0x00], "LDAP: error sending data")
    }

    /// MQTT 3.1.1 CONNECT answered by a CONNACK that accepts it, then DISCONNECT.
    static func mqtt(_ stream: ProbeStream) async throws {
        let clientID = Array("warden".utf8)
        let variable: [UInt8] = [0x00, 0x04] + Array("MQTT".utf8) + [0x04, 0x02, 0x00, 0x3c]  // level 4, clean session, keep-alive 60 s
        let payload = [0x00, UInt8(clientID.count)] + clientID
        try await stream.write([0x10, UInt8(variable.count + payload.count)] + variable + payload, "MQTT: error sending CONNECT")
        let ack = try await stream.read(exactly: 4, "MQTT: error receiving CONNACK")
        guard ack[0] == 0x20, ack[1] == 0x02 else {
            throw ProtocolFailure("MQTT: unexpected response -- 0x\(ack.map { String($0, radix: 16) }.joined(separator: " 0x"))")
        }
        let reasons = [1: "unacceptable protocol version", 2: "identifier rejected", 3: "server unavailable", 4: "bad user name or password", 5: "not authorized"]
        guard ack[3] == 0 else { throw ProtocolFailure("MQTT: connection refused -- \(reasons[Int(ack[3])] ?? "code \(ack[3])")") }
        try await stream.write([0xe0, 0x00], "MQTT: error sending DISCONNECT")
    }

    /// The HTTP upgrade (`request`, `origin` and `version` as the test gives them) answered 101, then a
    /// ping answered by a pong, then a close.
    static func websocket(_ stream: ProbeStream, host: String?, options: [String: String]) async throws {
        let request = """
            GET \(options["request"] ?? "/") HTTP/1.1\r
            Host: \(host ?? "localhost")\r
            Upgrade: websocket\r
            Connection: Upgrade\r
            Origin: \(options["origin"] ?? "http://localhost")\r
            Pragma: no-cache\r
            Cache-Control: no-cache\r
            Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r
            Sec-WebSocket-Version: \(options["version"] ?? "13")\r
            \r

            """
        try await stream.write(request, "WEBSOCKET: error sending data")
        let status = try await stream.readLine("WEBSOCKET: error receiving data")
        guard status.hasPrefix("HTTP/1.1 101") else { throw ProtocolFailure("WEBSOCKET: invalid status -- \(status)") }
        var headers = 0
        while !(try await stream.readLine("WEBSOCKET: error receiving data")).isEmpty {
            headers += 1
            guard headers < 100 else { throw ProtocolFailure("WEBSOCKET: response header longer than 100 lines") }
        }
        // A client's frames are masked; a zero mask leaves the (empty) payload as it is.
        try await stream.write([0x89, 0x80, 0, 0, 0, 0], "WEBSOCKET: error sending ping")
        for _ in 0..<16 {
            let head = try await stream.read(exactly: 2, "WEBSOCKET: error receiving pong")
            var length = Int(head[1] & 0x7f)
            guard length != 127 else { throw ProtocolFailure("WEBSOCKET: frame too long") }
            if length == 126 { length = try await stream.read(exactly: 2, "WEBSOCKET: error receiving pong").reduce(0) { $0 << 8 | Int($1) } }
            _ = try await stream.read(exactly: length, "WEBSOCKET: error receiving pong")
            switch head[0] & 0x0f {
            case 0x0a:
                try await stream.write([0x88, 0x80, 0, 0, 0, 0], "WEBSOCKET: error sending close")
                return
            case 0x08:
                throw ProtocolFailure("WEBSOCKET: the server closed the connection instead of answering the ping")
            default:
                continue  // a data frame the server sends on its own
            }
        }
        throw ProtocolFailure("WEBSOCKET: no pong among the first 16 frames")
    }
}
