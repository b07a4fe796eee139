import NIOCore
import NIOHTTP1
import WardenConfig

/// How request and response heads change on their way through the proxy. Everything here runs
/// once per request, so it works on the head's bytes: header names are told apart by their length
/// first, kept lines are copied in runs, and nothing becomes a String but what is added.
enum HeaderRules {
    /// Requests that must not reach an upstream because of their size. (What cannot be framed
    /// safely, the decoder has refused already.)
    static func reject(_ request: RequestHead, maximumBody: Int) -> HTTPResponseStatus? {
        if request.uriBytes.count > 8192 { return .uriTooLong }
        if request.fieldCount > 100 || request.fieldBytes > 32768 { return .requestHeaderFieldsTooLarge }
        if case .length(let length) = request.framing, length > maximumBody { return .payloadTooLarge }
        return nil
    }

    /// The request head as the upstream gets it: Host preserved, `X-Forwarded-For`, `-Proto`,
    /// `-Host` and `X-Real-IP` set, hop-by-hop headers and those `Connection` names dropped. An
    /// upgrade keeps `Upgrade` and says `Connection: upgrade` (a WebSocket handshake crossing the
    /// proxy). A chunked body stays chunked: the decoder hands it over de-chunked and the handler
    /// chunks it again. `uri`: the one to send instead of the client's. Written into `spare` when
    /// given (see `ByteBuffer.head(reusing:capacity:)`).
    static func upstreamHead(
        _ request: RequestHead, uri: String? = nil, client: ClientFields, reusing spare: consuming ByteBuffer? = nil
    ) -> ByteBuffer {
        var spare = spare.take()
        return request.bytes.withUnsafeReadableBytes { bytes in
            let fieldsStart = request.fieldsStart
            // A first pass, when the decoder saw fields that need one: which values
            // `X-Forwarded-For` extends, and which names `Connection` makes hop-by-hop.
            var forwardedFor: [Range<Int>] = []
            var named: [Range<Int>] = []
            if request.reviewFields {
                HeadLines.forEachField(bytes, from: fieldsStart) { name, value, _ in
                    switch FieldName(bytes, name) {
                    case .forwardedFor:
                        forwardedFor.append(value)
                    case .connection:
                        ASCII.forEachElement(bytes, value) { token in
                            let meansThisHop = ASCII.equalsIgnoringCase(bytes, token, "keep-alive") || ASCII.equalsIgnoringCase(bytes, token, "close")
                            if !meansThisHop, !(request.upgrade && ASCII.equalsIgnoringCase(bytes, token, "upgrade")) { named.append(token) }
                        }
                    default:
                        break
                    }
                }
            }
            let method = 0..<(bytes.firstIndex(of: 32) ?? 0)
            // The literals below come to 160 bytes at most; the kept lines and forwarded values are
            // within the client's head.
            let capacity = 160 + 2 * bytes.count + (uri?.utf8.count ?? 0) + client.bytes.count
            var out = ByteBuffer.head(reusing: spare.take(), capacity: capacity)
            out.writeHead(capacity: capacity) { writer in
                writer.append(bytes, method)
                writer.appendLiteral(" ")
                if let uri { writer.append(uri) } else { writer.append(bytes, request.uriBytes) }
                writer.appendLiteral(" HTTP/1.1\r\n")
                if request.reviewFields {
                    var kept = HeadLines.Runs(from: fieldsStart)
                    HeadLines.forEachField(bytes, from: fieldsStart) { name, _, line in
                        let keep: Bool
                        switch FieldName(bytes, name) {
                        case .upgrade where request.upgrade:
                            keep = true
                        case let kind where kind.isDroppedUpstream:
                            keep = false
                        default:
                            keep = named.isEmpty || !named.contains { ASCII.equalsIgnoringCase(bytes, name, $0) }
                        }
                        kept.add(line, keep: keep) { writer.append(bytes, $0) }
                    }
                    kept.finish { writer.append(bytes, $0) }
                } else {
                    // The lines between those the decoder found to drop, without reading them again
                    // (the head ends with the empty line's CRLF).
                    var start = fieldsStart
                    request.droppedLines.forEach { line in
                        writer.append(bytes, start..<line.lowerBound)
                        start = line.upperBound
                    }
                    writer.append(bytes, start..<(bytes.count - 2))
                }
                if request.framing == .chunked { writer.appendLiteral("Transfer-Encoding: chunked\r\n") }
                if request.upgrade { writer.appendLiteral("Connection: upgrade\r\n") }
                writer.appendLiteral("X-Forwarded-For: ")
                for value in forwardedFor {
                    writer.append(bytes, value)
                    writer.appendLiteral(", ")
                }
                client.bytes.withUnsafeBytes { writer.append($0) }
                if let host = request.hostValue {
                    writer.appendLiteral("\r\nX-Forwarded-Host: ")
                    writer.append(bytes, host)
                }
                writer.appendLiteral("\r\n\r\n")
            }
            return out
        }
    }

    /// ProxyPassReverse on a response head as the framer wrote it (status line and header lines):
    /// in `Location`, `Content-Location` and `Refresh`, a URL that points at the upstream points at
    /// `publicBase` (`scheme://host`) instead.
    static func reverseRewrite(_ head: ByteBuffer, upstreamHost: String, upstreamPort: Int, publicBase: String) -> ByteBuffer {
        head.withUnsafeReadableBytes { bytes in
            var out = ByteBufferAllocator().buffer(capacity: bytes.count + 256)
            let fieldsStart = HeadLines.firstField(bytes)
            out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[..<fieldsStart]))
            HeadLines.forEachField(bytes, from: fieldsStart) { name, value, line in
                guard FieldName(bytes, name) == .url else {
                    out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[line]))
                    return
                }
                let url = reverseRewrite(ASCII.string(bytes, value), upstreamHost: upstreamHost, upstreamPort: upstreamPort, publicBase: publicBase)
                out.writeHeaderField(ASCII.string(bytes, name), url)
            }
            return out
        }
    }

    /// ProxyPassReverse: an absolute URL that points at the upstream points at the public host instead.
    static func reverseRewrite(_ value: String, upstreamHost: String, upstreamPort: Int, publicBase: String) -> String {
        let bases = ["http://\(upstreamHost):\(upstreamPort)", upstreamPort == 80 ? "http://\(upstreamHost)" : nil].compactMap { $0 }
        for base in bases {
            if let range = value.firstRange(of: base) {
                return String(value[..<range.lowerBound]) + publicBase + String(value[range.upperBound...])
            }
        }
        return value
    }
}

/// What the proxy says about a connection's client in each request it forwards: the end of
/// `X-Forwarded-For`, `X-Real-IP` and `X-Forwarded-Proto`, written once per connection.
struct ClientFields {
    let bytes: [UInt8]

    init(client: String, scheme: String) {
        bytes = Array("\(client)\r\nX-Real-IP: \(client)\r\nX-Forwarded-Proto: \(scheme)".utf8)
    }
}

/// What a header name means to the proxy, in a request or a response.
enum FieldName {
    case host, contentLength, transferEncoding, connection, upgrade
    /// The other hop-by-hop names: Keep-Alive, TE, Trailer, Proxy-Authenticate, Proxy-Authorization, Proxy-Connection.
    case hopByHop
    case forwardedFor
    /// Set by the proxy itself: `X-Real-IP`, `X-Forwarded-Proto`, `X-Forwarded-Host`.
    case forwardedOther
    /// `Location`, `Content-Location`, `Refresh`: may point at the upstream.
    case url
    case other

    /// Most names are told apart by their length alone.
    init(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>) {
        @inline(__always) func named(_ lower: StaticString) -> Bool { ASCII.equalsIgnoringCase(bytes, name, lower) }
        switch name.count {
        case 2 where named("te"): self = .hopByHop
        case 4 where named("host"): self = .host
        case 7 where named("upgrade"): self = .upgrade
        case 7 where named("trailer"): self = .hopByHop
        case 7 where named("refresh"): self = .url
        case 8 where named("location"): self = .url
        case 8 where named("trailers"): self = .hopByHop
        case 9 where named("x-real-ip"): self = .forwardedOther
        case 10 where named("connection"): self = .connection
        case 10 where named("keep-alive"): self = .hopByHop
        case 14 where named("content-length"): self = .contentLength
        case 15 where named("x-forwarded-for"): self = .forwardedFor
        case 16 where named("x-forwarded-host"): self = .forwardedOther
        case 16 where named("content-location"): self = .url
        case 16 where named("proxy-connection"): self = .hopByHop
        case 17 where named("transfer-encoding"): self = .transferEncoding
        case 17 where named("x-forwarded-proto"): self = .forwardedOther
        case 18 where named("proxy-authenticate"): self = .hopByHop
        case 19 where named("proxy-authorization"): self = .hopByHop
        default: self = .other
        }
    }

    /// Never forwarded as it is: it describes one connection, not the message.
    var isHopByHop: Bool {
        switch self {
        case .connection, .transferEncoding, .upgrade, .hopByHop: true
        case .host, .contentLength, .forwardedFor, .forwardedOther, .url, .other: false
        }
    }

    /// Not passed upstream as the client sent it: hop-by-hop (an `Upgrade` only outside an upgrade
    /// request), or one the proxy writes itself (`X-Forwarded-For` extended, the others replaced).
    var isDroppedUpstream: Bool {
        isHopByHop || self == .forwardedFor || self == .forwardedOther
    }
}

/// The lines of a head whose fields are already known to be well formed.
enum HeadLines {
    /// Where the line starting at `start` ends (its CR), or the end of the bytes. The CR is a
    /// control byte, so only those need a look.
    static func lineEnd(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
        ASCII.firstControlByte(bytes, from: start, to: bytes.count) { $0 + 1 < bytes.count && bytes[$0] == 13 && bytes[$0 + 1] == 10 }
    }

    /// Where the first field line starts: after the start line.
    static func firstField(_ bytes: UnsafeRawBufferPointer) -> Int {
        lineEnd(bytes, from: 0) + 2
    }

    /// Each `name: value` line from `start` to the empty line: its name, trimmed value, and the
    /// whole line with its CRLF.
    static func forEachField(_ bytes: UnsafeRawBufferPointer, from start: Int, _ body: (Range<Int>, Range<Int>, Range<Int>) -> Void) {
        var start = start
        while start + 1 < bytes.count, bytes[start] != 13,
            let line = ASCII.headerLine(bytes, from: start, name: .visible, value: { _ in true })
        {
            body(line.name, line.value, start..<(line.end + 2))
            start = line.end + 2
        }
    }

    /// A few lines of a head, held in place: no allocation for them per request.
    struct List: Sendable {
        private var lines = InlineArray<4, Range<Int>>(repeating: 0..<0)
        private var count = 0

        /// False, and nothing added, when the list is full.
        mutating func append(_ line: Range<Int>) -> Bool {
            guard count < lines.count else { return false }
            lines[count] = line
            count += 1
            return true
        }

        func forEach(_ body: (Range<Int>) -> Void) {
            for index in 0..<count { body(lines[index]) }
        }
    }

    /// Copies the kept lines of a head: adjacent kept lines go out as one copy.
    struct Runs {
        private var run: Range<Int>

        init(from start: Int) { run = start..<start }

        /// `line` follows the one added before it.
        mutating func add(_ line: Range<Int>, keep: Bool, copy: (Range<Int>) -> Void) {
            if keep {
                run = run.lowerBound..<line.upperBound
            } else {
                finish(copy)
                run = line.upperBound..<line.upperBound
            }
        }

        /// Copies the run in progress, if any.
        mutating func finish(_ copy: (Range<Int>) -> Void) {
            if !run.isEmpty { copy(run) }
            run = run.upperBound..<run.upperBound
        }
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
