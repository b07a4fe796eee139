import NIOCore
import NIOHTTP1

/// Decodes HTTP/1.x requests on the proxy's plain and TLS HTTP/1 connections into request parts.
/// It is as strict as llhttp, which NIO's decoder wraps, and refuses what cannot be framed
/// without guessing: two different lengths, a length with chunked encoding, an encoding other than
/// chunked, folded or malformed header lines, control characters in a field. The refusal is an
/// `HTTPParserError`; the `ProxyHandler` answers it with 400 (431 for an oversized head) and closes.
///
/// Written for the proxy because NIO's decoder (llhttp callbacks building the head field by field)
/// took about a sixth of the proxy's instructions per request.
final class RequestDecoder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = RequestPart

    private enum State {
        case head
        case body(remaining: Int, then: After)
        case chunked(ChunkScanner, then: After)
        /// After an upgrade request the bytes belong to the next protocol: held until removal.
        case upgraded
        case failed
    }

    enum After {
        case nextRequest, upgrade
    }

    enum Framing: Equatable {
        case none
        case length(Int)
        case chunked
    }

    /// NIO's decoder allows 80 KB of head.
    static let maximumHeadBytes = 81920

    private var state = State.head
    private var held: ByteBuffer?
    /// The handler right behind this one, which gets the parts directly.
    private let proxy: ProxyHandler?
    private var proxyContext: ChannelHandlerContext?
    /// How much of a held partial head has been searched for its end.
    private var scanned = 0
    /// Cleared by `channelInactive`, which NIO fires within the `close` that ends the connection:
    /// cheaper to read per part than asking the channel.
    private var isActive = true

    /// `proxy`: the `ProxyHandler` added right after this decoder, if the parts should skip the
    /// pipeline on their way to it.
    init(deliveringTo proxy: ProxyHandler? = nil) {
        self.proxy = proxy
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = unwrapInboundIn(data)
        if case .failed = state { return }
        if var earlier = held {
            held = nil
            earlier.writeBuffer(&input)
            input = earlier
        }
        do {
            try decode(&input, context: context)
            // A client must wait for 101 before it speaks the new protocol: a few bytes early are
            // kept, a stream of them is refused rather than held in memory.
            if case .upgraded = state, input.readableBytes > Self.maximumHeadBytes { throw HTTPParserError.headerOverflow }
        } catch {
            state = .failed
            context.fireErrorCaught(error)
            return
        }
        if input.readableBytes > 0 { held = input }
    }

    /// Straight to the proxy too, like the parts: a pipeline hop less per read.
    func channelReadComplete(context: ChannelHandlerContext) {
        if let proxy, let proxyContext {
            proxy.channelReadComplete(context: proxyContext)
        } else {
            context.fireChannelReadComplete()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        isActive = false
        context.fireChannelInactive()
    }

    /// Bytes that arrived after an upgrade request go on to the handler that takes over (the
    /// tunnel, once the upstream switched protocols). Not when the pipeline is being torn down after
    /// a close: the `ProxyHandler`, which takes request parts only, may still be there.
    func handlerRemoved(context: ChannelHandlerContext) {
        if let held, held.readableBytes > 0, case .upgraded = state, isActive { context.fireChannelRead(NIOAny(held)) }
        held = nil
        proxyContext = nil
    }

    private func decode(_ input: inout ByteBuffer, context: ChannelHandlerContext) throws {
        // A handler behind may close the connection while it handles a part (after refusing a
        // request): nothing after that part is passed on.
        while input.readableBytes > 0, isActive {
            switch state {
            case .head:
                // Empty lines before a request line are ignored (RFC 9112, 2.2).
                while input.readableBytes >= 2, input.getInteger(at: input.readerIndex, as: UInt16.self) == 0x0D0A {
                    input.moveReaderIndex(forwardBy: 2)
                    scanned = max(0, scanned - 2)
                }
                // A head arriving in pieces is searched from where the last search stopped, not
                // from its start again: a byte-by-byte sender costs linear time, not quadratic.
                let parsed: RequestHead?
                do {
                    parsed = try HeadBoundary.complete(input, continued: scanned > 0, searched: scanned, read: { try Self.parseHead(input) })
                } catch where (HeadBoundary.length(input) ?? 0) > Self.maximumHeadBytes {
                    throw HTTPParserError.headerOverflow  // too big comes first, whatever else is wrong with it
                }
                guard let head = parsed else {
                    if input.readableBytes > Self.maximumHeadBytes { throw HTTPParserError.headerOverflow }
                    // Lines must end in CRLF: a head with a bare LF would never be complete here,
                    // so it is refused now rather than left to the header timeout.
                    if Self.containsBareLF(input, from: scanned) { throw HTTPParserError.lfExpected }
                    scanned = input.readableBytes
                    return
                }
                scanned = 0
                guard head.bytes.readableBytes <= Self.maximumHeadBytes else { throw HTTPParserError.headerOverflow }
                input.moveReaderIndex(forwardBy: head.bytes.readableBytes)
                let after: After = head.upgrade || head.isCONNECT ? .upgrade : .nextRequest
                let framing = head.framing
                let complete = framing == .none || framing == .length(0)
                // The head's last use: moved into the part, not copied.
                deliver(context: context, .head(consume head, complete: complete))
                switch framing {
                case .none, .length(0):
                    state = after == .upgrade ? .upgraded : .head
                case .length(let count):
                    state = .body(remaining: count, then: after)
                case .chunked:
                    state = .chunked(ChunkScanner(), then: after)
                }
            case .body(let remaining, let after):
                let count = min(remaining, input.readableBytes)
                deliver(context: context, .body(input.readSlice(length: count)!))
                if count == remaining {
                    finish(after, context: context)
                } else {
                    state = .body(remaining: remaining - count, then: after)
                }
            case .chunked(var scanner, let after):
                let start = input.readerIndex
                let (consumed, finished): (Int, Bool)
                do {
                    (consumed, finished) = try input.withUnsafeReadableBytes { try scanner.scan($0) }
                } catch {
                    throw HTTPParserError.invalidChunkSize
                }
                for range in scanner.takeData() {
                    deliver(context: context, .body(input.getSlice(at: start + range.lowerBound, length: range.count)!))
                }
                input.moveReaderIndex(forwardBy: consumed)
                if finished {
                    finish(after, context: context)
                } else {
                    state = .chunked(scanner, then: after)
                }
            case .upgraded, .failed:
                return
            }
        }
    }

    private func deliver(context: ChannelHandlerContext, _ part: RequestPart) {
        guard isActive else { return }
        if let proxy {
            if proxyContext == nil { proxyContext = try? context.pipeline.syncOperations.context(handler: proxy) }
            if let proxyContext {
                proxy.receive(part, context: proxyContext)
                return
            }
        }
        context.fireChannelRead(wrapInboundOut(part))
    }

    private func finish(_ after: After, context: ChannelHandlerContext) {
        state = after == .upgrade ? .upgraded : .head
        deliver(context: context, .end)
    }

    private static func containsBareLF(_ buffer: ByteBuffer, from start: Int) -> Bool {
        buffer.withUnsafeReadableBytes { bytes in
            (start..<bytes.count).contains { bytes[$0] == 10 && ($0 == 0 || bytes[$0 - 1] != 13) }
        }
    }

    /// The request line and header fields of the head at the start of `buffer`'s readable bytes,
    /// through the empty line that ends it (its `bytes`: what follows is not part of it). Throws
    /// when the bytes end before the head does, too. `version`: the one an HTTP/2 stream's head
    /// came as, instead of the 1.x its bytes say.
    static func parseHead(_ buffer: ByteBuffer, version: HTTPVersion? = nil) throws -> RequestHead {
        try buffer.withUnsafeReadableBytes { bytes in
            var index = 0
            while index < bytes.count, ASCII.isTokenByte(bytes[index]) { index += 1 }
            guard index > 0, index < bytes.count, bytes[index] == 32 else { throw HTTPParserError.invalidMethod }
            let method = 0..<index
            index += 1
            let uriStart = index
            var query: Int?
            while index < bytes.count, bytes[index] > 32, bytes[index] != 127 {
                if bytes[index] == UInt8(ascii: "?"), query == nil { query = index }
                index += 1
            }
            guard index > uriStart, index < bytes.count, bytes[index] == 32 else { throw HTTPParserError.invalidURL }
            let uri = uriStart..<index
            index += 1
            guard index + 10 <= bytes.count, ASCII.equalsIgnoringCase(bytes, index..<(index + 7), "http/1."), bytes[index + 7] &- 48 < 2,
                bytes[index + 8] == 13, bytes[index + 9] == 10
            else { throw HTTPParserError.invalidVersion }
            let minor = Int(bytes[index + 7] &- 48)
            index += 10
            let fieldsStart = index

            var fieldCount = 0
            var fieldBytes = 0
            var host: String?
            var hostValue: Range<Int>?
            var reviewFields = false
            var contentLength: Int?
            var chunked = false
            var connectionUpgrade = false
            var close = false
            var keepAliveToken = false
            var upgradeField = false
            var dropped = HeadLines.List()
            while index + 1 < bytes.count, !(bytes[index] == 13 && bytes[index + 1] == 10) {
                // No control characters in a value: a bare CR or LF could end the line for another parser.
                guard let (name, value, end) = ASCII.headerLine(bytes, from: index, name: .token, value: { ($0 >= 32 || $0 == 9) && $0 != 127 })
                else { throw HTTPParserError.invalidHeaderToken }
                let kind = FieldName(bytes, name)
                switch kind {
                case .host where host == nil:
                    host = ASCII.string(bytes, value)
                    hostValue = value
                case .upgrade:
                    // Kept upstream or not by what the whole head says.
                    upgradeField = true
                    reviewFields = true
                case .forwardedFor:
                    reviewFields = true
                case .connection:
                    ASCII.forEachElement(bytes, value) { token in
                        if ASCII.equalsIgnoringCase(bytes, token, "upgrade") {
                            connectionUpgrade = true
                        } else if ASCII.equalsIgnoringCase(bytes, token, "close") {
                            close = true
                        } else if ASCII.equalsIgnoringCase(bytes, token, "keep-alive") {
                            keepAliveToken = true
                        } else {
                            reviewFields = true
                        }
                    }
                case .contentLength:
                    guard let length = ASCII.decimal(bytes, value) else { throw HTTPParserError.invalidContentLength }
                    guard contentLength == nil || contentLength == length else { throw HTTPParserError.unexpectedContentLength }
                    contentLength = length
                case .transferEncoding:
                    // Only `chunked`, once: anything else cannot be framed the way the upstream would.
                    guard !chunked, ASCII.equalsIgnoringCase(bytes, value, "chunked") else { throw HTTPParserError.invalidHeaderToken }
                    chunked = true
                default:
                    break
                }
                // The lines the upstream does not get, unless the fields are reviewed anyway.
                if kind.isDroppedUpstream, !reviewFields, !dropped.append(index..<(end + 2)) { reviewFields = true }
                fieldCount += 1
                fieldBytes += name.count + value.count
                index = end + 2
            }
            guard index + 1 < bytes.count else { throw HTTPParserError.invalidEOFState }
            let length = index + 2
            if chunked, contentLength != nil { throw HTTPParserError.unexpectedContentLength }
            return RequestHead(
                method: Self.method(bytes, method), uriBytes: uri, pathEnd: query ?? uri.upperBound,
                version: version ?? HTTPVersion(major: 1, minor: minor),
                host: host, hostValue: hostValue,
                bytes: length == bytes.count ? buffer : buffer.getSlice(at: buffer.readerIndex, length: length)!, fieldsStart: fieldsStart,
                droppedLines: dropped, reviewFields: reviewFields, framing: chunked ? .chunked : contentLength.map { .length($0) } ?? .none,
                upgrade: connectionUpgrade && upgradeField, keepAlive: minor == 1 ? !close : keepAliveToken && !close,
                fieldCount: fieldCount, fieldBytes: fieldBytes)
        }
    }

    /// The common methods without making a String first (methods are case-sensitive).
    private static func method(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> HTTPMethod {
        func named(_ literal: StaticString) -> Bool { ASCII.equals(bytes, range, literal) }
        switch range.count {
        case 3 where named("GET"): return .GET
        case 3 where named("PUT"): return .PUT
        case 4 where named("POST"): return .POST
        case 4 where named("HEAD"): return .HEAD
        default: return HTTPMethod(rawValue: ASCII.string(bytes, range))
        }
    }
}

@available(*, unavailable)
extension RequestDecoder: Sendable {}

/// A request head as the proxy handles it: what routing needs, decoded; the HTTP/1 bytes it came
/// as, edited into the upstream's head rather than encoded again, and searched for the few other
/// fields a static file or a log line asks for; and what the parse learned about its framing.
/// A class: one reference passes through the decoder, the queue and the handler instead of a
/// copy of every field at each step.
final class RequestHead: Sendable {
    let method: HTTPMethod
    /// Where the URI is in `bytes`, and where its path ends (at the query).
    let uriBytes: Range<Int>
    let pathEnd: Int
    let version: HTTPVersion
    /// The first `Host`.
    let host: String?
    /// Where that `Host`'s value is in `bytes`.
    let hostValue: Range<Int>?
    /// The request line and header lines, through the empty line.
    let bytes: ByteBuffer
    /// Where the first header line starts in `bytes`.
    let fieldsStart: Int
    /// The lines the upstream does not get (hop-by-hop and the proxy's own), when the fields need
    /// no review: the upstream's head is the client's without them.
    let droppedLines: HeadLines.List
    /// An `X-Forwarded-For` to extend, a `Connection` that names fields to drop, an `Upgrade`, or
    /// more lines to drop than `droppedLines` holds: writing the upstream's head takes a look at
    /// all fields first.
    let reviewFields: Bool
    let framing: RequestDecoder.Framing
    /// `Upgrade` with `Connection: upgrade`: the client asks to switch protocols (a WebSocket handshake).
    let upgrade: Bool
    /// Whether the client lets the connection stay open after the response (by its version and `Connection`).
    let keepAlive: Bool
    let fieldCount: Int
    /// The bytes of all names and values, for the head size limit.
    let fieldBytes: Int

    init(
        method: HTTPMethod, uriBytes: Range<Int>, pathEnd: Int, version: HTTPVersion, host: String?, hostValue: Range<Int>?,
        bytes: ByteBuffer, fieldsStart: Int, droppedLines: HeadLines.List, reviewFields: Bool, framing: RequestDecoder.Framing,
        upgrade: Bool, keepAlive: Bool, fieldCount: Int, fieldBytes: Int
    ) {
        self.method = method
        self.uriBytes = uriBytes
        self.pathEnd = pathEnd
        self.version = version
        self.host = host
        self.hostValue = hostValue
        self.bytes = bytes
        self.fieldsStart = fieldsStart
        self.droppedLines = droppedLines
        self.reviewFields = reviewFields
        self.framing = framing
        self.upgrade = upgrade
        self.keepAlive = keepAlive
        self.fieldCount = fieldCount
        self.fieldBytes = fieldBytes
    }

    /// The URI as a String (invalid UTF-8 replaced), made only when asked: a request passed to a
    /// site's `/` route goes upstream as the client's own bytes.
    var uri: String {
        bytes.withUnsafeReadableBytes { ASCII.string($0, uriBytes) }
    }

    /// The URI without its query, for routing. (Invalid UTF-8 cannot take in the ASCII `?`, so
    /// this is the start of `uri` too.)
    var path: Substring {
        Substring(bytes.withUnsafeReadableBytes { ASCII.string($0, uriBytes.lowerBound..<pathEnd) })
    }

    // Told by the enum case: `HTTPMethod`'s `==` compares the methods' names as Strings.
    var isHEAD: Bool {
        if case .HEAD = method { return true }
        return false
    }

    var isGETOrHEAD: Bool {
        switch method {
        case .GET, .HEAD: true
        default: false
        }
    }

    var isCONNECT: Bool {
        if case .CONNECT = method { return true }
        return false
    }

    /// The value of the first field called `name` (a lowercase literal).
    func field(_ name: StaticString) -> String? {
        bytes.withUnsafeReadableBytes { bytes in
            var found: String?
            HeadLines.forEachField(bytes, from: fieldsStart) { fieldName, value, _ in
                if found == nil, ASCII.equalsIgnoringCase(bytes, fieldName, name) {
                    found = ASCII.string(bytes, value)
                }
            }
            return found
        }
    }
}

enum RequestPart {
    /// `complete`: the head is the whole request (no body), and no `.end` follows it: one part
    /// for most requests instead of two.
    case head(RequestHead, complete: Bool)
    case body(ByteBuffer)
    case end

    var isHead: Bool {
        if case .head = self { return true }
        return false
    }
}
