import NIOCore
import NIOHTTP1
import NIOHPACK
import NIOHTTP2
import WardenConfig

/// Lets the byte-speaking `ProxyHandler` serve an HTTP/2 stream (TLS listeners offer `h2` by ALPN).
/// Inbound, a request's HEADERS and DATA become the HTTP/1 parts the handler reads. Outbound, the
/// HTTP/1.1 response it writes is framed again by a `ResponseFramer` (chunks undone) and goes out as
/// HEADERS and DATA frames, without the connection-specific headers HTTP/2 forbids, the last frame
/// written with the end of the response carrying END_STREAM. (NIO's HTTP/2-to-HTTP/1 codec took a
/// response head through `HTTPHeaders` to `HPACKHeaders`, and ended each response with an empty DATA
/// frame of its own: a TLS record more per response.)
final class HTTP2StreamCodec: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = IOData
    typealias OutboundOut = HTTP2Frame.FramePayload

    private var framer = ResponseFramer()
    /// A HEADERS frame after the request's head: its trailers.
    private var headReceived = false
    /// Promises of writes that produced no frame yet, completed once what came before is flushed.
    private var waiting: [EventLoopPromise<Void>] = []
    /// The frames of one write, kept between writes for its capacity.
    private var frames: [HTTP2Frame.FramePayload] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .headers(let headers) where headReceived:
            context.fireChannelRead(wrapInboundOut(.end(HTTPHeaders(headers.headers.filter { !$0.name.hasPrefix(":") }.map { ($0.name, $0.value) }))))
        case .headers(let headers):
            headReceived = true
            let head: HTTPRequestHead
            do {
                head = try Self.requestHead(headers.headers)
            } catch {
                context.fireErrorCaught(error)
                return
            }
            framer.expectResponse(toHead: head.method == .HEAD, dechunk: true)
            context.fireChannelRead(wrapInboundOut(.head(head)))
            if headers.endStream { context.fireChannelRead(wrapInboundOut(.end(nil))) }
        case .data(let data):
            guard case .byteBuffer(let bytes) = data.data else { return }
            if bytes.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(.body(bytes))) }
            if data.endStream { context.fireChannelRead(wrapInboundOut(.end(nil))) }
        default:
            break
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        frames.removeAll(keepingCapacity: true)
        do {
            guard case .byteBuffer(var buffer) = unwrapOutboundIn(data) else {
                // The ProxyHandler sends no FileRegion into TLS (`ProxyContext.sendsFileRegions`).
                throw ResponseFramer.Failure(description: "a file region cannot cross HTTP/2")
            }
            try framer.parse(&buffer) { output in
                switch output {
                case .head(let head):
                    frames.append(.headers(.init(headers: Self.responseHeaders(head.bytes))))
                case .informational:
                    break  // 100 Continue and the like: HTTP/2 clients do without
                case .body(let bytes):
                    frames.append(.data(.init(data: .byteBuffer(bytes))))
                case .end:
                    frames.append(Self.endingStream(frames.popLast()))
                }
            }
        } catch {
            promise?.fail(error)
            context.close(promise: nil)
            return
        }
        guard let last = frames.popLast() else {
            if let promise { waiting.append(promise) }
            return
        }
        for frame in frames { context.write(wrapOutboundOut(frame), promise: nil) }
        context.write(wrapOutboundOut(last), promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        context.flush()
        let done = waiting
        waiting = []
        for promise in done { promise.succeed(()) }
    }

    /// `frame` (the last of this write) with END_STREAM set, or an empty DATA frame that carries it.
    static func endingStream(_ frame: HTTP2Frame.FramePayload?) -> HTTP2Frame.FramePayload {
        switch frame {
        case .headers(var headers):
            headers.endStream = true
            return .headers(headers)
        case .data(var data):
            data.endStream = true
            return .data(data)
        default:
            return .data(.init(data: .byteBuffer(ByteBuffer()), endStream: true))
        }
    }

    /// The request head of a HEADERS frame, as NIO's codec made it: `:authority` as the first field,
    /// `Host`, and the other pseudo-header fields left out. NIO's HTTP/2 handler has checked the block
    /// (pseudo-header fields present, once, first; names in lowercase).
    static func requestHead(_ block: HPACKHeaders) throws -> HTTPRequestHead {
        var method: String?
        var path: String?
        var headers = HTTPHeaders()
        headers.reserveCapacity(block.count)
        for (name, value, _) in block {
            guard name.utf8.first == UInt8(ascii: ":") else {
                headers.add(name: name, value: value)
                continue
            }
            switch name {
            case ":method": method = value
            case ":path": path = value
            case ":authority": headers.replaceOrAdd(name: "host", value: value)
            default: break
            }
        }
        guard let method, let path else { throw NIOHTTP2Errors.missingPseudoHeader(method == nil ? ":method" : ":path") }
        return HTTPRequestHead(version: .http2, method: HTTPMethod(rawValue: method), uri: path, headers: headers)
    }

    /// `:status` and the fields of an HTTP/1.1 response head (status line and field lines,
    /// CRLF-separated), names in lowercase, hop-by-hop fields left out.
    static func responseHeaders(_ buffer: ByteBuffer) -> HPACKHeaders {
        buffer.withUnsafeReadableBytes { bytes in
            let status = bytes.count >= 12 ? ASCII.decimal(bytes, 9..<12) ?? 502 : 502
            var headers = HPACKHeaders()
            headers.reserveCapacity(12)
            headers.add(name: ":status", value: String(status))
            HeadLines.forEachField(bytes, from: HeadLines.firstField(bytes)) { name, value, _ in
                guard !FieldName(bytes, name).isHopByHop else { return }
                let lowercased = String(unsafeUninitializedCapacity: name.count) { out in
                    for (index, byte) in bytes[name].enumerated() { out[index] = ASCII.lowercased(byte) }
                    return name.count
                }
                headers.add(name: lowercased, value: ASCII.string(bytes, value))
            }
            return headers
        }
    }
}

@available(*, unavailable)
extension HTTP2StreamCodec: Sendable {}

/// Between TLS and the HTTP/2 handler: the frames written before a flush reach TLS as one buffer, so
/// they go out as one TLS record rather than one per frame header and per payload (a response was
/// five). Writes over 16 KB, a TLS record's most, pass as they are, after what is held.
///
/// A flush is carried out once the event loop is done with the I/O it is handling: the responses of
/// every stream whose upstream answered in that round go out in one record and one system call, not
/// one each (a stream's flush reaches the connection at once outside its own reads). A close writes
/// what is held first.
final class TLSWriteCoalescer: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    static let limit = 16384
    private var held: ByteBuffer?
    private var promise: EventLoopPromise<Void>?
    private var flushScheduled = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .byteBuffer(var buffer) = unwrapOutboundIn(data), buffer.readableBytes + (held?.readableBytes ?? 0) <= Self.limit else {
            writeHeld(context: context)
            context.write(data, promise: promise)
            return
        }
        if held == nil {
            held = context.channel.allocator.buffer(capacity: 1024)
        }
        held!.writeBuffer(&buffer)
        if let promise {
            if let earlier = self.promise { earlier.futureResult.cascade(to: promise) } else { self.promise = promise }
        }
    }

    func flush(context: ChannelHandlerContext) {
        guard !flushScheduled else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute {
            self.flushScheduled = false
            self.flushNow(context: context)
        }
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        flushNow(context: context)
        context.close(mode: mode, promise: promise)
    }

    private func flushNow(context: ChannelHandlerContext) {
        writeHeld(context: context)
        context.flush()
        // TLS has taken the bytes by now: the buffer is ours again, no copy. Not if the flush made the
        // HTTP/2 handler write again (a window opened) before flushing: those bytes wait for their flush.
        if held?.readableBytes == 0 { held?.clear() }
    }

    private func writeHeld(context: ChannelHandlerContext) {
        guard let bytes = held, bytes.readableBytes > 0 else { return }
        let promise = self.promise
        self.promise = nil
        held!.moveReaderIndex(forwardBy: bytes.readableBytes)
        context.write(wrapOutboundOut(.byteBuffer(bytes)), promise: promise)
    }
}

@available(*, unavailable)
extension TLSWriteCoalescer: Sendable {}

extension RequestHead {
    /// An HTTP/2 request as the proxy's HTTP/1 side sees it: written as HTTP/1 bytes and parsed by
    /// the same rules as a request that came that way (its version stays 2 for the logs).
    /// CR, LF or NUL in a field, or a blank or control character in the method or path, is refused
    /// first: written out, it would be read as more lines.
    static func http2(_ head: HTTPRequestHead) throws -> RequestHead {
        let lineBreak: (UInt8) -> Bool = { $0 == 13 || $0 == 10 || $0 == 0 }
        let blank: (UInt8) -> Bool = { $0 <= 32 }
        if head.method.rawValue.utf8.contains(where: blank) || head.uri.utf8.contains(where: blank)
            || head.headers.contains(where: { $0.name.utf8.contains(where: lineBreak) || $0.value.utf8.contains(where: lineBreak) })
        {
            throw HTTPParserError.invalidHeaderToken
        }
        var bytes = ByteBuffer()
        bytes.writeString("\(head.method.rawValue) \(head.uri) HTTP/1.1\r\n")
        for (name, value) in head.headers { bytes.writeHeaderField(name, value) }
        bytes.writeStaticString("\r\n")
        return try RequestDecoder.parseHead(bytes, version: head.version)
    }
}

extension ProxyServer {
    /// A TLS connection: HTTP/2 when the client offers it by ALPN, else HTTP/1.1 as on plain listeners.
    static func configureNegotiated(_ channel: any Channel, shared: ProxyContext) -> EventLoopFuture<Void> {
        channel.configureHTTP2SecureUpgrade(
            h2ChannelConfigurator: { channel in
                do {
                    try channel.pipeline.syncOperations.addHandler(TLSWriteCoalescer())
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
                return channel.configureHTTP2Pipeline(mode: .server, inboundStreamInitializer: { stream in
                    stream.eventLoop.makeCompletedFuture {
                        try stream.pipeline.syncOperations.addHandlers([HTTP2StreamCodec(), ProxyHandler(shared: shared)])
                    }
                }).map { _ in }
            },
            http1ChannelConfigurator: { channel in
                channel.eventLoop.makeCompletedFuture { try configureHTTP1(channel, shared: shared) }
            })
    }

    /// Requests are decoded; responses are written as bytes by the ProxyHandler. Bytes after an
    /// upgrade request come out of the decoder into the tunnel.
    static func configureHTTP1(_ channel: any Channel, shared: ProxyContext) throws {
        let pipeline = channel.pipeline.syncOperations
        let proxy = ProxyHandler(shared: shared)
        try pipeline.addHandler(RequestDecoder(deliveringTo: proxy))
        try pipeline.addHandler(proxy)
    }
}
