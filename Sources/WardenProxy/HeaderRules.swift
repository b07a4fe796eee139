import NIOCore
import NIOHTTP1
import WardenConfig

/// How request and response heads change on their way through the proxy. Everything here runs
/// once per request, so the common case (no hop-by-hop header, nothing to rewrite) compares header
/// names by length first and allocates nothing but the bytes it writes.
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
            switch RequestField(name) {
            case .contentLength:
                lengths += 1
                guard let value = Int(value), value >= 0 else { return .badRequest }
                if value > maximumBody { return .payloadTooLarge }
            case .transferEncoding:
                encodings += 1
                // Only `chunked` on its own: `gzip, chunked`, ` chunked` or `xchunked` are smuggling vectors.
                guard ASCII.equalsIgnoringCase(value, "chunked") else { return .badRequest }
            default:
                break
            }
        }
        if size > 32768 { return .requestHeaderFieldsTooLarge }
        if lengths > 1 || encodings > 1 || (lengths > 0 && encodings > 0) { return .badRequest }
        return nil
    }

    /// Whether the client asks to switch protocols (a WebSocket handshake).
    static func isUpgrade(_ head: HTTPRequestHead) -> Bool {
        head.headers.contains(name: "Upgrade") && head.headers[canonicalForm: "Connection"].contains { ASCII.equalsIgnoringCase($0, "upgrade") }
    }

    /// The request head as the upstream gets it: Host preserved, `X-Forwarded-For`, `-Proto`,
    /// `-Host` and `X-Real-IP` set, hop-by-hop headers and those `Connection` names dropped. `upgrade`
    /// keeps `Upgrade` and says `Connection: upgrade` (a WebSocket handshake crossing the proxy). A
    /// chunked body stays chunked: NIO hands it over de-chunked and the handler chunks it again.
    static func writeUpstreamHead(
        _ head: HTTPRequestHead, uri: String, client: String, scheme: String, upgrade: Bool, into out: inout ByteBuffer
    ) {
        var host: String?
        var forwardedFor: String?
        var chunked = false
        var named: [String] = []
        var fieldBytes = 0
        for (name, value) in head.headers {
            fieldBytes += name.utf8.count + value.utf8.count + 4
            switch RequestField(name) {
            case .host where host == nil:
                host = value
            case .forwardedFor:
                forwardedFor = forwardedFor.map { "\($0), \(value)" } ?? value
            case .transferEncoding:
                chunked = true
            case .connection:
                for token in value.split(separator: ",") {
                    let token = token.trimming(" \t")
                    let meansThisHop = ASCII.equalsIgnoringCase(token, "keep-alive") || ASCII.equalsIgnoringCase(token, "close")
                    if !meansThisHop, !(upgrade && ASCII.equalsIgnoringCase(token, "upgrade")), !token.isEmpty { named.append(token) }
                }
            default:
                break
            }
        }
        let method = head.method.rawValue
        let forwardedForValue = forwardedFor.map { "\($0), \(client)" } ?? client
        // The literals below come to 160 bytes at most.
        let capacity =
            160 + method.utf8.count + uri.utf8.count + fieldBytes + forwardedForValue.utf8.count + client.utf8.count
            + scheme.utf8.count + (host?.utf8.count ?? 0)
        out.writeHead(capacity: capacity) { writer in
            writer.append(method)
            writer.appendLiteral(" ")
            writer.append(uri)
            writer.appendLiteral(" HTTP/1.1\r\n")
            for (name, value) in head.headers {
                switch RequestField(name) {
                case .upgrade where upgrade:
                    break
                case .connection, .transferEncoding, .upgrade, .hopByHop, .forwardedFor, .replaced:
                    continue
                case .host, .contentLength, .other:
                    if !named.isEmpty, named.contains(where: { ASCII.sameIgnoringCase($0, name) }) { continue }
                }
                writer.appendField(name, value)
            }
            if chunked { writer.appendLiteral("Transfer-Encoding: chunked\r\n") }
            if upgrade { writer.appendLiteral("Connection: upgrade\r\n") }
            writer.appendField("X-Forwarded-For", forwardedForValue)
            writer.appendField("X-Real-IP", client)
            writer.appendField("X-Forwarded-Proto", scheme)
            if let host { writer.appendField("X-Forwarded-Host", host) }
            writer.appendLiteral("\r\n")
        }
    }

    /// What a request header means to the proxy.
    private enum RequestField {
        case host, contentLength, transferEncoding, connection, upgrade, hopByHop
        case forwardedFor
        /// Set by the proxy itself: `X-Real-IP`, `X-Forwarded-Proto`, `X-Forwarded-Host`.
        case replaced
        case other

        init(_ name: String) {
            // Most names are told apart by their length alone.
            switch name.utf8.count {
            case 4 where ASCII.equalsIgnoringCase(name, "host"): self = .host
            case 7 where ASCII.equalsIgnoringCase(name, "upgrade"): self = .upgrade
            case 9 where ASCII.equalsIgnoringCase(name, "x-real-ip"): self = .replaced
            case 10 where ASCII.equalsIgnoringCase(name, "connection"): self = .connection
            case 14 where ASCII.equalsIgnoringCase(name, "content-length"): self = .contentLength
            case 15 where ASCII.equalsIgnoringCase(name, "x-forwarded-for"): self = .forwardedFor
            case 16 where ASCII.equalsIgnoringCase(name, "x-forwarded-host"): self = .replaced
            case 17 where ASCII.equalsIgnoringCase(name, "transfer-encoding"): self = .transferEncoding
            case 17 where ASCII.equalsIgnoringCase(name, "x-forwarded-proto"): self = .replaced
            default: self = HeaderRules.isHopByHop(name) ? .hopByHop : .other
            }
        }
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

    private static let hopByHop: [StaticString] = [
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
        "transfer-encoding", "upgrade", "proxy-connection",
    ]

    static func isHopByHop(_ name: String) -> Bool {
        hopByHop.contains { ASCII.equalsIgnoringCase(name, $0) }
    }

    static func isHopByHop(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>) -> Bool {
        hopByHop.contains { ASCII.equalsIgnoringCase(bytes, name, $0) }
    }
}

/// HTTP/1.1 heads written straight into a buffer (the proxy's pipelines carry bytes, not parts).
enum HeadEncoding {
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
        for (name, value) in headers { buffer.writeHeaderField(name, value) }
    }
}
