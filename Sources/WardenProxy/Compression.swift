import CompressNIO
import NIOCore
import NIOHTTP1
import WardenConfig

/// A response body compressed as it streams through: each piece the upstream (or a file) gives is
/// fed to zlib's deflate stream, what zlib has ready goes out as one chunk, and nothing waits for
/// the whole body. zlib keeps back what it has not yet coded until `flush` (once per read from the
/// upstream, so a slow stream is not held up) or `finish`.
///
/// Why compress-nio's zlib stream and not swift-nio-extras' `NIOHTTPResponseCompressor`: that
/// handler compresses `HTTPServerResponsePart`s, and the proxy writes the upstream's bytes as they
/// come (`ResponseFramer`), with no parts to hand it; its zlib stream (`NIOCompression.Compressor`)
/// is internal to the module. It also flushes at every write, which costs ratio on small reads.
/// compress-nio exposes the stream itself, over the system's zlib.
///
/// One per response, as nginx does (a compressor kept per connection would hold zlib's state, up to
/// 256 KB, for every idle kept-alive client).
final class BodyCompressor {
    private let zlib: ZlibCompressor
    /// The output is framed as HTTP/1.1 chunks (else it ends with the connection: HTTP/1.0).
    private let chunkedOutput: Bool
    /// The input is an HTTP/1.1 chunked body, whose data is taken out of its framing here.
    private var input: ChunkScanner?
    /// Input went in since the last flush.
    private var pending = false

    /// `expectedBytes`: the body's length when known; a small body gets a smaller window and hash
    /// table (less memory to allocate and clear), as nginx's `gzip_window` sizing does.
    init(coding: Site.Compression.Coding, level: Int, expectedBytes: Int? = nil, chunkedInput: Bool = false, chunkedOutput: Bool) throws {
        var windowBits: Int32 = 15
        var memoryLevel: Int32 = 8
        if let expectedBytes {
            while windowBits > 9, expectedBytes < 1 << (windowBits - 1) {
                windowBits -= 1
                memoryLevel = max(1, memoryLevel - 1)
            }
        }
        // HTTP's `deflate` is the zlib format (RFC 9110 §8.4.1.2), not raw deflate.
        zlib = try ZlibCompressor(
            algorithm: coding == .gzip ? .gzip : .zlib,
            configuration: ZlibConfiguration(windowSize: windowBits, compressionLevel: Int32(level), memoryLevel: memoryLevel, strategy: .default))
        input = chunkedInput ? ChunkScanner() : nil
        self.chunkedOutput = chunkedOutput
    }

    /// Compresses the body bytes of `buffer`; returns what is ready to send (often nothing: zlib
    /// gathers input into blocks).
    func compress(_ buffer: ByteBuffer, allocator: ByteBufferAllocator) throws -> ByteBuffer? {
        guard buffer.readableBytes > 0 else { return nil }
        pending = true
        var out = Self.output(allocator, capacity: buffer.readableBytes / 2)
        if var scanner = input {
            let ranges = try buffer.withUnsafeReadableBytes { bytes -> [Range<Int>] in
                _ = try scanner.scan(bytes)
                return scanner.takeData()
            }
            input = scanner
            for range in ranges {
                var data = buffer.getSlice(at: buffer.readerIndex + range.lowerBound, length: range.count)!
                try deflate(&data, .no, into: &out)
            }
        } else {
            var data = buffer
            try deflate(&data, .no, into: &out)
        }
        return frame(&out, last: false)
    }

    /// Everything given so far, coded and sent (a sync flush: the client can decode it all now).
    func flush(allocator: ByteBufferAllocator) throws -> ByteBuffer? {
        guard pending else { return nil }
        pending = false
        var out = Self.output(allocator, capacity: 64)
        var nothing = ByteBuffer()
        try deflate(&nothing, .sync, into: &out)
        return frame(&out, last: false)
    }

    /// The end of the stream (and of the chunks).
    func finish(allocator: ByteBufferAllocator) throws -> ByteBuffer {
        var out = Self.output(allocator, capacity: 64)
        var nothing = ByteBuffer()
        try deflate(&nothing, .finish, into: &out)
        return frame(&out, last: true) ?? ByteBuffer()
    }

    /// Room before the data for a chunk's size line, written once the size is known.
    private static let sizeLineRoom = 10

    private static func output(_ allocator: ByteBufferAllocator, capacity: Int) -> ByteBuffer {
        var out = allocator.buffer(capacity: sizeLineRoom + max(capacity, 64) + 7)
        out.moveWriterIndex(forwardBy: sizeLineRoom)
        out.moveReaderIndex(forwardBy: sizeLineRoom)
        return out
    }

    /// Runs deflate until it has taken all of `data` and, for a flush or the finish, written all
    /// it has (zlib stops when the output is full: it then gets more room and is called again).
    private func deflate(_ data: inout ByteBuffer, _ flush: CompressNIOFlush, into out: inout ByteBuffer) throws {
        while true {
            if out.writableBytes < 64 { out.reserveCapacity(minimumWritableBytes: max(out.capacity, 4096)) }
            let before = out.writerIndex
            var full = false
            do {
                try zlib.deflate(from: &data, to: &out, flush: flush)
            } catch let error as CompressNIOError where error == .bufferOverflow {
                // No room to finish, or (a flush with nothing new) nothing to do.
                full = true
            }
            let done = data.readableBytes == 0 && out.writableBytes > 0 && !(flush == .finish && full)
            if done { return }
            guard out.writerIndex > before || out.writableBytes == 0 || data.readableBytes > 0 else {
                throw CompressNIOError.internalError
            }
        }
    }

    /// `out`'s data as a chunk: its size line written into the room left before it, and CRLF after.
    private func frame(_ out: inout ByteBuffer, last: Bool) -> ByteBuffer? {
        guard chunkedOutput else { return out.readableBytes > 0 || last ? out : nil }
        if out.readableBytes > 0 {
            let sizeLine = String(out.readableBytes, radix: 16) + "\r\n"
            let start = out.readerIndex - sizeLine.utf8.count
            out.setString(sizeLine, at: start)
            out.moveReaderIndex(to: start)
            out.writeStaticString("\r\n")
        } else if !last {
            return nil
        }
        if last { out.writeStaticString("0\r\n\r\n") }
        return out
    }
}

@available(*, unavailable)
extension BodyCompressor: Sendable {}

/// One connection's compression: the body being compressed, if any.
struct ResponseCompression {
    private var active: BodyCompressor?

    var isActive: Bool { active != nil }

    /// Starts compressing a body; `chunkedOutput` false for an HTTP/1.0 client (the body then ends
    /// with the connection).
    mutating func begin(
        _ coding: Site.Compression.Coding, level: Int, expectedBytes: Int?, chunkedInput: Bool = false, chunkedOutput: Bool
    ) throws {
        active = try BodyCompressor(
            coding: coding, level: level, expectedBytes: expectedBytes, chunkedInput: chunkedInput, chunkedOutput: chunkedOutput)
    }

    func compress(_ buffer: ByteBuffer, allocator: ByteBufferAllocator) throws -> ByteBuffer? {
        try active?.compress(buffer, allocator: allocator)
    }

    func flush(allocator: ByteBufferAllocator) throws -> ByteBuffer? {
        try active?.flush(allocator: allocator)
    }

    /// The last bytes of the body.
    mutating func finish(allocator: ByteBufferAllocator) throws -> ByteBuffer? {
        try active.take()?.finish(allocator: allocator)
    }

    /// A body cut short (the upstream failed, the client left): nothing more is sent.
    mutating func abandon() {
        active = nil
    }

    /// The compression of a proxied response, decided from its head and the request: the head is
    /// rewritten for it (`Content-Encoding`, `Vary`, a weak `ETag`, chunked instead of a length)
    /// and the compressor started. Returns whether the body is compressed.
    mutating func start(
        _ head: inout ByteBuffer, status: Int, framing: ResponseFramer.Framing, request: RequestHead, settings: Site.Compression
    ) throws -> Bool {
        guard framing != .none else { return false }
        let fields = ResponseFields(head)
        let requestFacts = CompressionNegotiation.Request(
            isHEAD: request.isHEAD, upgrade: request.upgrade || request.isCONNECT, acceptEncoding: request.field("accept-encoding"))
        var response = fields.facts
        response.status = status
        let http10 = request.version == .http1_0
        switch CompressionNegotiation(settings: settings).decide(requestFacts, response) {
        case .unchanged:
            return false
        case .varies:
            if !fields.variesByEncoding { head.writeHeaderField("Vary", "Accept-Encoding") }
            return false
        case .compress(let coding):
            try begin(
                coding, level: settings.level, expectedBytes: response.contentLength, chunkedInput: framing == .chunked && !http10,
                chunkedOutput: !http10)
            head = fields.compressedHead(head, coding: coding, chunked: !http10)
            return true
        }
    }
}

/// What compression needs to know of a response head (the status line and field lines, without
/// the blank line), read in one pass.
struct ResponseFields {
    var facts = CompressionNegotiation.Response()
    /// A `Vary` already names `Accept-Encoding` (or `*`).
    var variesByEncoding = false

    init(_ head: ByteBuffer) {
        var facts = CompressionNegotiation.Response()
        var varies = false
        head.withUnsafeReadableBytes { bytes in
            HeadLines.forEachField(bytes, from: HeadLines.firstField(bytes)) { name, value, _ in
                @inline(__always) func named(_ lower: StaticString) -> Bool { ASCII.equalsIgnoringCase(bytes, name, lower) }
                if named("content-type") {
                    facts.contentType = ASCII.string(bytes, value)
                } else if named("content-encoding") {
                    facts.contentEncoding = ASCII.string(bytes, value)
                } else if named("cache-control") {
                    facts.cacheControl = [facts.cacheControl, ASCII.string(bytes, value)].compactMap { $0 }.joined(separator: ",")
                } else if named("content-length") {
                    facts.contentLength = ASCII.decimal(bytes, value)
                } else if named("content-range") {
                    facts.hasContentRange = true
                } else if named("vary") {
                    let vary = ASCII.string(bytes, value)
                    varies = varies || CompressionNegotiation.hasToken(vary, "accept-encoding") || CompressionNegotiation.hasToken(vary, "*")
                }
            }
        }
        self.facts = facts
        variesByEncoding = varies
    }

    /// The head for the compressed body: its length and transfer coding dropped (the compressed
    /// length is known only at its end), a strong `ETag` made weak (the bytes differ from the
    /// upstream's; nginx does the same), `Content-Encoding` and `Vary` added, and chunked framing
    /// for an HTTP/1.1 client.
    func compressedHead(_ head: ByteBuffer, coding: Site.Compression.Coding, chunked: Bool) -> ByteBuffer {
        head.withUnsafeReadableBytes { bytes in
            var out = ByteBufferAllocator().buffer(capacity: bytes.count + 96)
            let fieldsStart = HeadLines.firstField(bytes)
            out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[..<fieldsStart]))
            HeadLines.forEachField(bytes, from: fieldsStart) { name, value, line in
                @inline(__always) func named(_ lower: StaticString) -> Bool { ASCII.equalsIgnoringCase(bytes, name, lower) }
                if named("content-length") || named("transfer-encoding") { return }
                if named("etag"), value.count > 0, bytes[value.lowerBound] == UInt8(ascii: "\"") {
                    out.writeHeaderField("ETag", "W/" + ASCII.string(bytes, value))
                    return
                }
                out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[line]))
            }
            out.writeHeaderField("Content-Encoding", coding.rawValue)
            if !variesByEncoding { out.writeHeaderField("Vary", "Accept-Encoding") }
            if chunked { out.writeStaticString("Transfer-Encoding: chunked\r\n") }
            return out
        }
    }
}
