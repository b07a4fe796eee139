import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOHPACK
import NIOHTTP2
import Testing

@testable import WardenProxy

/// An HTTP/2 stream in front of the byte-speaking ProxyHandler (issue 23): requests in, responses
/// out as HEADERS and DATA frames, the last one ending the stream.
@Suite("HTTP/2 stream codec")
struct HTTP2StreamCodecTests {
    func channel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(HTTP2StreamCodec())
        return channel
    }

    func request(_ method: String, endStream: Bool) -> HTTP2Frame.FramePayload {
        .headers(.init(headers: [":method": method, ":scheme": "https", ":path": "/a?b=1", ":authority": "app.test", "accept": "*/*"], endStream: endStream))
    }

    func frames(_ channel: EmbeddedChannel) throws -> [HTTP2Frame.FramePayload] {
        var frames: [HTTP2Frame.FramePayload] = []
        while let frame = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) { frames.append(frame) }
        return frames
    }

    @Test func aRequestBecomesHTTP1PartsWithItsAuthorityAsHost() throws {
        let channel = try channel()
        try channel.writeInbound(request("POST", endStream: false))
        try channel.writeInbound(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(ByteBuffer(string: "body")), endStream: true)))
        guard case .head(let head) = try channel.readInbound(as: HTTPServerRequestPart.self) else { Issue.record("no head"); return }
        #expect(head.method == .POST && head.uri == "/a?b=1" && head.version == .http2)
        #expect(head.headers.map { "\($0.name): \($0.value)" } == ["host: app.test", "accept: */*"])
        #expect(try channel.readInbound(as: HTTPServerRequestPart.self) == .body(ByteBuffer(string: "body")))
        #expect(try channel.readInbound(as: HTTPServerRequestPart.self) == .end(nil))
    }

    @Test func aSmallResponseIsHeadersAndOneDataFrameThatEndsTheStream() throws {
        let channel = try channel()
        try channel.writeInbound(request("GET", endStream: true))
        try channel.writeOutbound(
            IOData.byteBuffer(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: keep-alive\r\nX-Thing: Yes\r\n\r\npong")))
        let written = try frames(channel)
        #expect(written.count == 2, "\(written)")
        guard case .headers(let headers) = written.first, case .data(let data) = written.last else { Issue.record("\(written)"); return }
        #expect(!headers.endStream)
        #expect(headers.headers.map { "\($0.name): \($0.value)" } == [":status: 200", "content-length: 4", "x-thing: Yes"])
        #expect(data.endStream && data.data == .byteBuffer(ByteBuffer(string: "pong")))
    }

    @Test func aChunkedResponseEndsWithAnEmptyFrameAndAHeadResponseWithItsHeaders() throws {
        let channel = try channel()
        try channel.writeInbound(request("GET", endStream: true))
        try channel.writeOutbound(IOData.byteBuffer(ByteBuffer(string: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n")))
        try channel.writeOutbound(IOData.byteBuffer(ByteBuffer(string: "0\r\n\r\n")))
        let written = try frames(channel)
        #expect(written.count == 3, "\(written)")
        if case .data(let first) = written[1] { #expect(!first.endStream && first.data == .byteBuffer(ByteBuffer(string: "abcd"))) }
        if case .data(let last) = written[2] { #expect(last.endStream && last.data == .byteBuffer(ByteBuffer())) }

        let head = try self.channel()
        try head.writeInbound(request("HEAD", endStream: true))
        try head.writeOutbound(IOData.byteBuffer(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 150000\r\n\r\n")))
        let answer = try frames(head)
        guard answer.count == 1, case .headers(let headers) = answer[0] else { Issue.record("\(answer)"); return }
        #expect(headers.endStream && headers.headers["content-length"] == ["150000"])
    }
}

@Suite("TLS write coalescer")
struct TLSWriteCoalescerTests {
    @Test func writesBeforeAFlushGoOutAsOneBufferAndLargeOnesAsTheyAre() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(TLSWriteCoalescer())
        let first = channel.eventLoop.makePromise(of: Void.self), second = channel.eventLoop.makePromise(of: Void.self)
        channel.write(IOData.byteBuffer(ByteBuffer(string: "header")), promise: first)
        channel.write(IOData.byteBuffer(ByteBuffer(string: "payload")), promise: second)
        #expect(try channel.readOutbound(as: IOData.self) == nil, "held until the flush")
        channel.flush()
        #expect(try channel.readOutbound(as: IOData.self) == nil, "flushed once the loop is done with its I/O")
        channel.write(IOData.byteBuffer(ByteBuffer(string: "+another")), promise: nil)
        channel.flush()
        channel.embeddedEventLoop.run()
        #expect(try channel.readOutbound(as: IOData.self) == .byteBuffer(ByteBuffer(string: "headerpayload+another")))
        #expect(try channel.readOutbound(as: IOData.self) == nil)
        try first.futureResult.wait()
        try second.futureResult.wait()

        let large = ByteBuffer(repeating: 7, count: TLSWriteCoalescer.limit)
        channel.write(IOData.byteBuffer(ByteBuffer(string: "small")), promise: nil)
        channel.write(IOData.byteBuffer(large), promise: nil)
        channel.flush()
        channel.embeddedEventLoop.run()
        #expect(try channel.readOutbound(as: IOData.self) == .byteBuffer(ByteBuffer(string: "small")))
        #expect(try channel.readOutbound(as: IOData.self) == .byteBuffer(large))
        // A close (the connection's GOAWAY, then the TLS close) sends what is held first.
        channel.write(IOData.byteBuffer(ByteBuffer(string: "last")), promise: nil)
        channel.flush()
        try channel.close().wait()
        #expect(try channel.readOutbound(as: IOData.self) == .byteBuffer(ByteBuffer(string: "last")))
    }

    /// What the flush makes the HTTP/2 handler write (a window the socket write let in) is not lost
    /// when the buffer is made ready for the next flush.
    @Test func aWriteDuringTheFlushWaitsForTheNextOne() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([WritesDuringFlush(), TLSWriteCoalescer()])
        channel.write(IOData.byteBuffer(ByteBuffer(string: "first")), promise: nil)
        channel.flush()
        channel.embeddedEventLoop.run()
        #expect(try channel.readOutbound(as: IOData.self) == .byteBuffer(ByteBuffer(string: "first")))
        channel.flush()
        channel.embeddedEventLoop.run()
        #expect(try channel.readOutbound(as: IOData.self) == .byteBuffer(ByteBuffer(string: "late")))
    }

    /// On its first flush, writes through the whole pipeline (into the coalescer) without flushing.
    final class WritesDuringFlush: ChannelOutboundHandler {
        typealias OutboundIn = IOData
        private var done = false

        func flush(context: ChannelHandlerContext) {
            context.flush()
            guard !done else { return }
            done = true
            context.channel.write(IOData.byteBuffer(ByteBuffer(string: "late")), promise: nil)
        }
    }
}
