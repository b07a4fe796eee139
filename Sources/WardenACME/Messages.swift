import FoundationEssentials

/// The server's resources, as RFC 8555 §7.1 describes them; only the members warden reads.
public enum ACME {
    public struct Directory: Sendable, Decodable, Hashable {
        public var newNonce: String
        public var newAccount: String
        public var newOrder: String
    }

    public struct Identifier: Sendable, Codable, Hashable {
        public var type = "dns"
        public var value: String
    }

    public struct Order: Sendable, Decodable, Hashable {
        public var status: String
        public var authorizations: [String]
        public var finalize: String
        public var certificate: String?
        public var error: Problem?
    }

    public struct Authorization: Sendable, Decodable, Hashable {
        public var status: String
        public var identifier: Identifier
        public var challenges: [Challenge]
    }

    public struct Challenge: Sendable, Decodable, Hashable {
        public var type: String
        public var url: String
        public var status: String
        public var token: String?
        public var error: Problem?
    }

    /// A problem document (RFC 7807, RFC 8555 §6.7): reported with its type and detail.
    public struct Problem: Sendable, Decodable, Hashable, Error, CustomStringConvertible {
        public var type: String
        public var detail: String?
        public var subproblems: [Subproblem]?

        public struct Subproblem: Sendable, Decodable, Hashable {
            public var type: String
            public var detail: String?
            public var identifier: Identifier?
        }

        public init(type: String, detail: String?) {
            self.type = type
            self.detail = detail
        }

        public var isBadNonce: Bool { type == "urn:ietf:params:acme:error:badNonce" }

        public var description: String {
            var text = "\(type.replacing("urn:ietf:params:acme:error:", with: "acme:")): \(detail ?? "no detail")"
            for sub in subproblems ?? [] {
                text += "; \(sub.identifier?.value ?? "?"): \(sub.type.replacing("urn:ietf:params:acme:error:", with: "acme:")) \(sub.detail ?? "")"
            }
            return text
        }
    }

    /// The challenge types warden answers.
    public enum ChallengeType: String, Sendable, Hashable, CaseIterable, Codable {
        case http01 = "http-01"
        case tlsALPN01 = "tls-alpn-01"
    }

    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws -> T {
        try JSONDecoder().decode(type, from: Data(bytes))
    }

    static func encode(_ value: some Encodable) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(value)) ?? Data())
    }
}

/// One HTTP request of the conversation; `body` is a signed JWS for a POST, nil for a GET or HEAD.
public struct ACMERequest: Sendable, Hashable {
    public enum Method: String, Sendable { case get = "GET", head = "HEAD", post = "POST" }
    public var method: Method
    public var url: String
    public var body: [UInt8]?
}

/// One HTTP response: status, the headers ACME uses (names lowercased), body.
public struct ACMEResponse: Sendable, Hashable {
    public var status: Int
    public var headers: [String: String]
    public var body: [UInt8]

    public init(status: Int, headers: [String: String], body: [UInt8]) {
        self.status = status
        self.headers = Dictionary(headers.map { ($0.key.lowercased(), $0.value) }, uniquingKeysWith: { first, _ in first })
        self.body = body
    }

    var isProblem: Bool { status >= 400 }

    var problem: ACME.Problem {
        (try? ACME.decode(ACME.Problem.self, body))
            ?? ACME.Problem(type: "http \(status)", detail: String(decoding: body.prefix(200), as: UTF8.self))
    }

    /// `Retry-After` in seconds (RFC 9110 §10.2.3): a number, or an HTTP date compared with `now`.
    func retryAfter(now: Double) -> Double? {
        guard let value = headers["retry-after"]?.split(separator: " ").joined(separator: " ") else { return nil }
        if let seconds = Double(value), seconds >= 0 { return seconds }
        guard let date = HTTPDate.parse(value) else { return nil }
        return max(0, date - now)
    }
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only date form servers still send.
enum HTTPDate {
    static func parse(_ text: String) -> Double? {
        let parts = text.split(separator: " ")
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard parts.count == 6, parts[5] == "GMT", let day = Int(parts[1]), let month = months.firstIndex(of: String(parts[2])),
            let year = Int(parts[3])
        else { return nil }
        let clock = parts[4].split(separator: ":").compactMap { Int($0) }
        guard clock.count == 3 else { return nil }
        return Double(daysFromCivil(year: year, month: month + 1, day: day) * 86400 + clock[0] * 3600 + clock[1] * 60 + clock[2])
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }
}
