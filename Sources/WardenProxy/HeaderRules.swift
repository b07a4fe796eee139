import NIOCore
import NIOHTTP1
import WardenConfig

/// How request and response heads change on their way through the proxy. Everything here runs
/// once per request, so the common case (no hop-by-hop header, nothing to rewrite) allocates nothing.
enum HeaderRules {
    /// Requests that must not reach an upstream: smuggling attempts and oversized parts.
    static func reject(_ head: HTTPRequestHead, maximumBody: Int) -> HTTPResponseStatus? {
        if head.uri.utf8.count > 8192 { return .uriTooLong }
        if head.headers.count > 100 { return .requestHeaderFieldsTooLarge }
        var size = 0
        var lengths = 0
        var encodings = 0
        for (name, value) in head.headers {
            size += name.utf8.count + value.utf8.count
            if value.utf8.contains(where: { $0 == 13 || $0 == 10 || $0 == 0 }) || name.utf8.contains(where: { $0 == 13 || $0 == 10 }) {
                return .badRequest
            }
            if equalsIgnoringCase(name, "content-length") {
                lengths += 1
                guard let value = Int(value), value >= 0 else { return .badRequest }
                if value > maximumBody { return .payloadTooLarge }
            } else if equalsIgnoringCase(name, "transfer-encoding") {
                encodings += 1
                // Only `chunked` on its own: `gzip, chunked`, ` chunked` or `xchunked` are smuggling vectors.
                guard equalsIgnoringCase(value, "chunked") else { return .badRequest }
            }
        }
        if size > 32768 { return .requestHeaderFieldsTooLarge }
        if lengths > 1 || encodings > 1 || (lengths > 0 && encodings > 0) { return .badRequest }
        return nil
    }

    /// Whether the client asks to switch protocols (a WebSocket handshake).
    static func isUpgrade(_ head: HTTPRequestHead) -> Bool {
        head.headers.contains(name: "Upgrade") && head.headers[canonicalForm: "Connection"].contains { equalsIgnoringCase($0, "upgrade") }
    }

    /// Removes hop-by-hop headers and those that `Connection` names; `keepUpgrade` keeps `Upgrade`
    /// and says `Connection: upgrade` (a WebSocket handshake crossing the proxy).
    static func withoutHopByHop(_ headers: HTTPHeaders, keepUpgrade: Bool = false) -> HTTPHeaders {
        guard headers.contains(where: { isHopByHop($0.name) }) else { return headers }
        var result = headers
        for token in headers[canonicalForm: "Connection"] where !(keepUpgrade && equalsIgnoringCase(token, "upgrade")) {
            result.remove(name: String(token))
        }
        for name in hopByHop where !(keepUpgrade && name == "upgrade") {
            result.remove(name: name)
        }
        if keepUpgrade { result.add(name: "Connection", value: "upgrade") }
        return result
    }

    /// The request as the upstream gets it: Host preserved, X-Forwarded-*, no hop-by-hop headers.
    static func upstreamHead(_ head: HTTPRequestHead, client: String, scheme: String, upgrade: Bool) -> HTTPRequestHead {
        var headers = withoutHopByHop(head.headers, keepUpgrade: upgrade)
        let forwardedFor = head.headers.first(name: "X-Forwarded-For").map { "\($0), \(client)" } ?? client
        headers.replaceOrAdd(name: "X-Forwarded-For", value: forwardedFor)
        headers.replaceOrAdd(name: "X-Real-IP", value: client)
        headers.replaceOrAdd(name: "X-Forwarded-Proto", value: scheme)
        if let host = head.headers.first(name: "Host") { headers.replaceOrAdd(name: "X-Forwarded-Host", value: host) }
        // The body is re-framed by NIO's encoder; it must know the request was chunked.
        if head.headers.contains(name: "Transfer-Encoding") { headers.add(name: "Transfer-Encoding", value: "chunked") }
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: head.uri, headers: headers)
    }

    /// ProxyPassReverse: an absolute URL that points at the upstream points at the public host instead.
    static func reverseRewrite(_ value: String, upstream: HTTPURL, publicBase: String) -> String {
        let bases = ["http://\(upstream.host):\(upstream.port)", upstream.port == 80 ? "http://\(upstream.host)" : nil].compactMap { $0 }
        for base in bases {
            if let range = value.firstRange(of: base) {
                return String(value[..<range.lowerBound]) + publicBase + String(value[range.upperBound...])
            }
        }
        return value
    }

    static func path(of uri: String) -> Substring {
        uri.utf8.firstIndex(of: UInt8(ascii: "?")).map { uri[..<$0] } ?? uri[...]
    }

    private static let hopByHop = [
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
        "transfer-encoding", "upgrade", "proxy-connection",
    ]

    static func isHopByHop(_ name: String) -> Bool {
        isHopByHop(name.utf8)
    }

    static func isHopByHop(_ name: some Collection<UInt8>) -> Bool {
        hopByHop.contains { equalsIgnoringCase(name, $0) }
    }

    /// ASCII case-insensitive equality with a lowercase `lower`, without allocating.
    static func equalsIgnoringCase(_ text: some StringProtocol, _ lower: String) -> Bool {
        equalsIgnoringCase(text.utf8, lower)
    }

    static func equalsIgnoringCase(_ bytes: some Collection<UInt8>, _ lower: String) -> Bool {
        guard bytes.count == lower.utf8.count else { return false }
        return zip(bytes, lower.utf8).allSatisfy { a, b in a == b || (a >= 65 && a <= 90 && a + 32 == b) }
    }
}

/// HTTP/1.1 heads written straight into a buffer (the proxy's pipelines carry bytes, not parts).
enum HeadEncoding {
    static func request(_ head: HTTPRequestHead, into buffer: inout ByteBuffer) {
        buffer.writeString(head.method.rawValue)
        buffer.writeStaticString(" ")
        buffer.writeString(head.uri)
        buffer.writeStaticString(" HTTP/1.1\r\n")
        fields(head.headers, into: &buffer)
        buffer.writeStaticString("\r\n")
    }

    static func response(_ status: HTTPResponseStatus, _ headers: HTTPHeaders, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("HTTP/1.1 ")
        buffer.writeString(String(status.code))
        buffer.writeStaticString(" ")
        buffer.writeString(status.reasonPhrase)
        buffer.writeStaticString("\r\n")
        fields(headers, into: &buffer)
        buffer.writeStaticString("\r\n")
    }

    private static func fields(_ headers: HTTPHeaders, into buffer: inout ByteBuffer) {
        for (name, value) in headers {
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
    }
}
