import NIOCore
import NIOHTTP1

/// An HTTP request as a Zinc handler sees it: the whole body already read (within the server's limit).
public struct ZnRequest: Sendable {
    public var method: String
    /// Path and query as sent, e.g. `/image?raw=true`.
    public var uri: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(method: String, uri: String, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.method = method
        self.uri = uri
        self.headers = headers
        self.body = body
    }

    public var path: String { String(uri.prefix { $0 != "?" }) }

    /// The query parameters, percent-decoded; a key without `=` has an empty value.
    public var query: [String: String] {
        guard let mark = uri.firstIndex(of: "?") else { return [:] }
        var result: [String: String] = [:]
        for pair in uri[uri.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            result[ZnRequest.percentDecode(String(parts[0]))] = parts.count > 1 ? ZnRequest.percentDecode(String(parts[1])) : ""
        }
        return result
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// The first path segment without the slash: the key Zinc's dispatcher matches.
    public var firstSegment: String {
        path.split(separator: "/", omittingEmptySubsequences: true).first.map(String.init) ?? ""
    }

    static func percentDecode(_ text: String) -> String {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%"), let high = iterator.next(), let low = iterator.next(),
                let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
            {
                bytes.append(value)
            } else if byte == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// A response with Zinc's defaults: `text/plain;charset=utf-8` bodies with a trailing CRLF.
public struct ZnResponse: Sendable {
    public var status: Int
    public var reason: String
    public var contentType: String?
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, reason: String, contentType: String? = nil, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.reason = reason
        self.contentType = contentType
        self.headers = headers
        self.body = body
    }

    public static func ok(_ text: String, contentType: String = "text/plain;charset=utf-8") -> ZnResponse {
        ZnResponse(status: 200, reason: "OK", contentType: contentType, body: Array(text.utf8))
    }

    public static func ok(bytes: [UInt8], contentType: String) -> ZnResponse {
        ZnResponse(status: 200, reason: "OK", contentType: contentType, body: bytes)
    }

    public static func html(_ html: String) -> ZnResponse { ok(html, contentType: "text/html;charset=utf-8") }

    /// Zinc's `ZnResponse redirect: 'image'`: 302 with the target as given and `Redirect image` + CRLF.
    public static func redirect(_ target: String) -> ZnResponse {
        ZnResponse(
            status: 302, reason: "Found", contentType: "text/plain;charset=utf-8", headers: [("Location", target)],
            body: Array("Redirect \(target)\r\n".utf8))
    }

    public static func notFound(_ uri: String) -> ZnResponse {
        ZnResponse(status: 404, reason: "Not Found", contentType: "text/plain;charset=utf-8", body: Array("Not Found \(uri)\r\n".utf8))
    }

    public static func badRequest(_ message: String) -> ZnResponse {
        ZnResponse(status: 400, reason: "Bad Request", contentType: "text/plain;charset=utf-8", body: Array("\(message)\r\n".utf8))
    }

    /// `ZnResponse(302 Found text/plain;charset=utf-8 16B)`, as Zinc logs it.
    var logDescription: String {
        var parts = ["\(status) \(reason)"]
        if let contentType { parts.append(contentType) }
        if !body.isEmpty { parts.append("\(body.count)B") }
        return "ZnResponse(\(parts.joined(separator: " ")))"
    }
}
