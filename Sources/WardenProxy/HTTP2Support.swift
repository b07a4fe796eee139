import NIOCore
import NIOHTTP1
import NIOHTTP2
import WardenConfig

/// Lets the byte-speaking `ProxyHandler` serve an HTTP/2 stream (TLS listeners offer `h2` by ALPN):
/// the HTTP/1.1 response it writes is framed again by a `ResponseFramer` (chunks undone) and handed
/// to NIO's HTTP/2-to-HTTP/1 codec as parts, without the connection-specific headers HTTP/2 forbids.
final class HTTP2ResponseAdapter: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = IOData
    typealias OutboundOut = HTTPServerResponsePart

    private var framer = ResponseFramer()
    /// Promises of writes that produced no part yet, completed once what came before is flushed.
    private var waiting: [EventLoopPromise<Void>] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data) {
            framer.expectResponse(toHead: head.method == .HEAD, dechunk: true)
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var parts: [HTTPServerResponsePart] = []
        do {
            guard case .byteBuffer(var buffer) = unwrapOutboundIn(data) else {
                // The ProxyHandler sends no FileRegion into TLS (`ProxyContext.sendsFileRegions`).
                throw ResponseFramer.Failure(description: "a file region cannot cross HTTP/2")
            }
            try frame(&buffer, into: &parts)
        } catch {
            promise?.fail(error)
            context.close(promise: nil)
            return
        }
        guard let last = parts.popLast() else {
            if let promise { waiting.append(promise) }
            return
        }
        for part in parts { context.write(wrapOutboundOut(part), promise: nil) }
        context.write(wrapOutboundOut(last), promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        context.flush()
        let done = waiting
        waiting = []
        for promise in done { promise.succeed(()) }
    }

    private func frame(_ buffer: inout ByteBuffer, into parts: inout [HTTPServerResponsePart]) throws {
        try framer.parse(&buffer) { output in
            switch output {
            case .head(let head):
                parts.append(.head(Self.responseHead(head.bytes)))
            case .informational:
                break  // 100 Continue and the like: HTTP/2 clients do without
            case .body(let bytes):
                parts.append(.body(.byteBuffer(bytes)))
            case .end:
                parts.append(.end(nil))
            }
        }
    }

    /// The status and headers of an HTTP/1.1 head (status line and header lines, CRLF-separated).
    static func responseHead(_ buffer: ByteBuffer) -> HTTPResponseHead {
        buffer.withUnsafeReadableBytes { bytes in
            let status = bytes.count >= 12 ? ASCII.decimal(bytes, 9..<12) ?? 502 : 502
            var headers = HTTPHeaders()
            HeadLines.forEachField(bytes, from: HeadLines.firstField(bytes)) { name, value, _ in
                guard !FieldName(bytes, name).isHopByHop else { return }
                headers.add(name: ASCII.string(bytes, name), value: ASCII.string(bytes, value))
            }
            return HTTPResponseHead(version: .http2, status: HTTPResponseStatus(statusCode: status), headers: headers)
        }
    }
}

@available(*, unavailable)
extension HTTP2ResponseAdapter: Sendable {}

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
                channel.configureHTTP2Pipeline(mode: .server, inboundStreamInitializer: { stream in
                    stream.eventLoop.makeCompletedFuture {
                        try stream.pipeline.syncOperations.addHandlers([
                            HTTP2FramePayloadToHTTP1ServerCodec(), HTTP2ResponseAdapter(), ProxyHandler(shared: shared),
                        ])
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
