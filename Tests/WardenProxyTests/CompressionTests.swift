import CompressNIO
import NIOCore
import Testing

@testable import WardenConfig
@testable import WardenProxy
import WardenTestSupport

@Suite("Compression: what is compressed, and how")
struct CompressionNegotiationTests {
    typealias Request = CompressionNegotiation.Request
    typealias Response = CompressionNegotiation.Response

    let both = CompressionNegotiation(settings: Site.Compression(codings: [.gzip, .deflate], level: 5, minimumBytes: 1024))
    let json = Response(status: 200, contentType: "application/json; charset=utf-8", contentLength: 100_000)

    @Test(arguments: [
        ("gzip, deflate, br", Site.Compression.Coding?.some(.gzip)),
        ("deflate", .deflate),
        ("deflate;q=1, gzip;q=0.5", .deflate),
        ("gzip;q=0.5, deflate;q=0.5", .gzip),  // a tie goes to the site's order
        ("GZIP", .gzip),
        ("x-gzip", .gzip),
        ("*", .gzip),
        ("*;q=0.5, gzip;q=0", .deflate),
        ("gzip;q=0, deflate;q=0", nil),
        ("br, zstd", nil),
        ("identity", nil),
        ("gzip;q=0.4, identity;q=0.8", nil),  // identity named and preferred
        ("gzip;q=0.4, identity", nil),
        ("gzip, identity;q=0", .gzip),
        ("gzip;q=0.5", .gzip),  // identity not named: not preferred over what the client names
        ("gzip;q=abc, deflate", .deflate),  // a q-value that is not a number makes its coding unacceptable
        ("gzip;q=2", nil),
        (" gzip ; q = 0.7 ", .gzip),
        ("", nil),
    ])
    func acceptEncodingIsHonoured(acceptEncoding: String, expected: Site.Compression.Coding?) {
        #expect(both.preferredCoding(acceptEncoding) == expected, "\(acceptEncoding)")
    }

    @Test func noAcceptEncodingMeansNoCompression() {
        #expect(both.preferredCoding(nil) == nil)
        #expect(both.decide(Request(acceptEncoding: nil), json) == .varies)
    }

    @Test func aSiteOffersOnlyItsCodings() {
        let deflateOnly = CompressionNegotiation(settings: Site.Compression(codings: [.deflate]))
        #expect(deflateOnly.preferredCoding("gzip") == nil)
        #expect(deflateOnly.preferredCoding("gzip, deflate") == .deflate)
    }

    @Test(arguments: [
        "text/html; charset=utf-8", "text/css", "text/plain", "text/csv", "application/json", "application/javascript",
        "text/javascript", "application/xml", "text/xml", "image/svg+xml", "application/ld+json", "application/problem+json",
        "application/atom+xml", "APPLICATION/JSON", "application/wasm",
    ])
    func textTypesAreCompressed(type: String) {
        #expect(CompressionNegotiation.isCompressible(type), "\(type)")
        #expect(both.decide(Request(acceptEncoding: "gzip"), Response(contentType: type, contentLength: 5000)) == .compress(.gzip))
    }

    @Test(arguments: [
        "image/png", "image/jpeg", "font/woff2", "application/octet-stream", "application/zip", "application/pdf",
        "video/mp4", "text/event-stream", "",
    ])
    func otherTypesAreNot(type: String) {
        #expect(!CompressionNegotiation.isCompressible(type), "\(type)")
        #expect(both.decide(Request(acceptEncoding: "gzip"), Response(contentType: type, contentLength: 5000)) == .unchanged)
    }

    @Test func responsesThatMustNotBeTouched() {
        let accepts = Request(acceptEncoding: "gzip")
        var cases: [(String, Request, Response)] = []
        var response = json
        response.contentEncoding = "gzip"
        cases.append(("already encoded", accepts, response))
        response = json
        response.contentEncoding = "br"
        cases.append(("already encoded, another coding", accepts, response))
        response = json
        response.cacheControl = "public, No-Transform"
        cases.append(("no-transform", accepts, response))
        for status in [101, 103, 204, 206, 304] {
            response = json
            response.status = status
            cases.append(("status \(status)", accepts, response))
        }
        response = json
        response.hasContentRange = true
        cases.append(("a range", accepts, response))
        response = json
        response.contentLength = 1023
        cases.append(("below the minimum", accepts, response))
        response = json
        response.contentType = nil
        cases.append(("no type", accepts, response))
        cases.append(("HEAD", Request(isHEAD: true, acceptEncoding: "gzip"), json))
        cases.append(("an upgrade", Request(upgrade: true, acceptEncoding: "gzip"), json))
        for (name, request, response) in cases {
            #expect(both.decide(request, response) == .unchanged, "\(name)")
        }
    }

    @Test func bodiesOfUnknownLengthAndAtTheMinimumAreCompressed() {
        var response = json
        response.contentLength = nil
        #expect(both.decide(Request(acceptEncoding: "gzip"), response) == .compress(.gzip))
        response.contentLength = 1024
        #expect(both.decide(Request(acceptEncoding: "gzip"), response) == .compress(.gzip))
        response.contentEncoding = "identity"
        #expect(both.decide(Request(acceptEncoding: "gzip"), response) == .compress(.gzip))
    }

    @Test func aClientThatAcceptsNoneOfTheCodingsGetsVary() {
        #expect(both.decide(Request(acceptEncoding: "br"), json) == .varies)
    }
}

@Suite("Compression: the streaming encoder")
struct BodyCompressorTests {
    let allocator = ByteBufferAllocator()

    /// Inflates `compressed` (gzip or zlib) whole.
    func inflate(_ compressed: [UInt8], _ coding: Site.Compression.Coding) throws -> [UInt8] {
        var input = ByteBuffer(bytes: compressed)
        let decompressor = try ZlibDecompressor(algorithm: coding == .gzip ? .gzip : .zlib)
        var output = allocator.buffer(capacity: max(1 << 16, compressed.count * 20))
        try decompressor.inflate(from: &input, to: &output)
        #expect(input.readableBytes == 0, "nothing after the end of the stream")
        return Array(output.readableBytesView)
    }

    /// The data of a chunked body, checked for well-formed framing and its last chunk.
    func dechunk(_ bytes: [UInt8]) throws -> [UInt8] {
        var data: [UInt8] = []
        var index = 0
        while true {
            let lineEnd = try #require((index..<(bytes.count - 1)).first { bytes[$0] == 13 && bytes[$0 + 1] == 10 })
            let size = try #require(Int(String(decoding: bytes[index..<lineEnd], as: UTF8.self), radix: 16))
            index = lineEnd + 2
            if size == 0 {
                #expect(Array(bytes[index...]) == [13, 10], "the last chunk ends the body")
                return data
            }
            data += bytes[index..<(index + size)]
            #expect(Array(bytes[(index + size)..<(index + size + 2)]) == [13, 10])
            index += size + 2
        }
    }

    /// Random, partly repetitive text: compressible, but not trivially.
    func sample(_ count: Int, seed: UInt64) -> [UInt8] {
        var random = SplitMix(state: seed)
        let words = ["{\"id\": ", "\"name\": \"", "warden", "\", ", "true", "false", "null", "}, ", "[", "]"]
        var out: [UInt8] = []
        while out.count < count {
            if random.next() % 4 == 0 {
                out.append(UInt8(truncatingIfNeeded: random.next()))
            } else {
                out += Array(words[Int(random.next() % UInt64(words.count))].utf8)
            }
        }
        return Array(out.prefix(count))
    }

    /// Feeds `body` in pieces of random sizes, flushing now and then as a read from the upstream
    /// ends, and collects what would go to the client.
    func run(
        _ body: [UInt8], coding: Site.Compression.Coding, chunkedOutput: Bool, expectedBytes: Int? = nil, seed: UInt64 = 1
    ) throws -> [UInt8] {
        let compressor = try BodyCompressor(coding: coding, level: 5, expectedBytes: expectedBytes, chunkedOutput: chunkedOutput)
        var random = SplitMix(state: seed)
        var out: [UInt8] = []
        var offset = 0
        while offset < body.count {
            let count = min(body.count - offset, 1 + Int(random.next() % 20_000))
            if let bytes = try compressor.compress(ByteBuffer(bytes: body[offset..<(offset + count)]), allocator: allocator) {
                out += bytes.readableBytesView
            }
            offset += count
            if random.next() % 3 == 0, let bytes = try compressor.flush(allocator: allocator) { out += bytes.readableBytesView }
        }
        out += try compressor.finish(allocator: allocator).readableBytesView
        return out
    }

    @Test(arguments: [Site.Compression.Coding.gzip, .deflate], [0, 1, 100, 65_536, 300_001])
    func randomBodiesRoundTrip(coding: Site.Compression.Coding, size: Int) throws {
        let body = sample(size, seed: UInt64(size) + 7)
        let chunked = try run(body, coding: coding, chunkedOutput: true, seed: UInt64(size))
        #expect(try inflate(dechunk(chunked), coding) == body)
        // Sized for the body, as for a known Content-Length: a smaller window for a small one.
        let plain = try run(body, coding: coding, chunkedOutput: false, expectedBytes: size, seed: UInt64(size))
        #expect(try inflate(plain, coding) == body)
        if size >= 65_536 { #expect(plain.count < size * 3 / 4, "compressed: \(plain.count) of \(size) bytes") }
    }

    @Test func anEmptyBodyIsAValidStreamAndOneLastChunk() throws {
        let chunked = try run([], coding: .gzip, chunkedOutput: true)
        #expect(try inflate(dechunk(chunked), .gzip) == [])
        #expect(chunked.suffix(5) == Array("0\r\n\r\n".utf8))
    }

    @Test func aFlushMakesEverythingSoFarDecodable() throws {
        let compressor = try BodyCompressor(coding: .gzip, level: 5, chunkedOutput: false)
        let first = Array("data: the first event\n\n".utf8)
        var out: [UInt8] = []
        if let bytes = try compressor.compress(ByteBuffer(bytes: first), allocator: allocator) { out += bytes.readableBytesView }
        out += try #require(try compressor.flush(allocator: allocator)).readableBytesView
        // A stream cut here (no finish) still gives all the input so far.
        var input = ByteBuffer(bytes: out)
        let decompressor = try ZlibDecompressor(algorithm: .gzip)
        var output = allocator.buffer(capacity: 1024)
        try decompressor.inflate(from: &input, to: &output)
        #expect(Array(output.readableBytesView) == first)
        #expect(try compressor.flush(allocator: allocator) == nil, "nothing new: no empty flush")
    }

    @Test func aChunkedUpstreamBodyIsTakenOutOfItsChunks() throws {
        let body = sample(40_000, seed: 3)
        var upstream: [UInt8] = []
        var offset = 0
        var random = SplitMix(state: 9)
        while offset < body.count {
            let count = min(body.count - offset, 1 + Int(random.next() % 5000))
            upstream += Array("\(String(count, radix: 16));ext=1\r\n".utf8) + body[offset..<(offset + count)] + [13, 10]
            offset += count
        }
        upstream += Array("0\r\nTrailer: x\r\n\r\n".utf8)
        let compressor = try BodyCompressor(coding: .gzip, level: 5, chunkedInput: true, chunkedOutput: true)
        var out: [UInt8] = []
        // Pieces that cut size lines, data and CRLFs anywhere.
        offset = 0
        while offset < upstream.count {
            let count = min(upstream.count - offset, 1 + Int(random.next() % 700))
            if let bytes = try compressor.compress(ByteBuffer(bytes: upstream[offset..<(offset + count)]), allocator: allocator) {
                out += bytes.readableBytesView
            }
            offset += count
        }
        out += try compressor.finish(allocator: allocator).readableBytesView
        #expect(try inflate(dechunk(out), .gzip) == body)
    }

    @Test func eachResponseOfAConnectionIsAStreamOfItsOwn() throws {
        var connection = ResponseCompression()
        try connection.begin(.gzip, level: 5, expectedBytes: nil, chunkedOutput: false)
        let first = sample(10_000, seed: 4)
        var out = try connection.compress(ByteBuffer(bytes: first), allocator: allocator).map { Array($0.readableBytesView) } ?? []
        out += try #require(try connection.finish(allocator: allocator)).readableBytesView
        #expect(try inflate(out, .gzip) == first)
        #expect(!connection.isActive)
        try connection.begin(.deflate, level: 1, expectedBytes: 5_000, chunkedOutput: false)
        let second = sample(5_000, seed: 5)
        out = try connection.compress(ByteBuffer(bytes: second), allocator: allocator).map { Array($0.readableBytesView) } ?? []
        out += try #require(try connection.finish(allocator: allocator)).readableBytesView
        #expect(try inflate(out, .deflate) == second)
    }
}

@Suite("Compression: proxied heads")
struct CompressedHeadTests {
    let settings = Site.Compression(codings: [.gzip, .deflate], level: 5, minimumBytes: 100)

    func request(_ raw: String) throws -> RequestHead {
        try RequestDecoder.parseHead(ByteBuffer(string: raw))
    }

    func start(_ head: String, framing: ResponseFramer.Framing = .length(5000), request raw: String) throws -> (compressed: Bool, head: String) {
        var bytes = ByteBuffer(string: head)
        var compression = ResponseCompression()
        let status = Int(head.dropFirst(9).prefix(3)) ?? 0
        let compressed = try compression.start(&bytes, status: status, framing: framing, request: try request(raw), settings: settings)
        #expect(compression.isActive == compressed)
        return (compressed, String(buffer: bytes))
    }

    @Test func aCompressedHeadLosesItsLengthAndGainsEncodingVaryAndChunks() throws {
        let (compressed, head) = try start(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\nETag: \"abc\"\r\nX-App: 1\r\n",
            request: "GET / HTTP/1.1\r\nAccept-Encoding: deflate, gzip\r\n\r\n")
        #expect(compressed)
        #expect(
            head == "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: W/\"abc\"\r\nX-App: 1\r\n"
                + "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\nTransfer-Encoding: chunked\r\n")
    }

    @Test func aChunkedHeadForAnHTTP10ClientEndsWithTheConnection() throws {
        let (compressed, head) = try start(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\nETag: W/\"weak\"\r\nVary: Cookie, accept-encoding\r\n",
            framing: .chunked, request: "GET / HTTP/1.0\r\nAccept-Encoding: deflate\r\n\r\n")
        #expect(compressed)
        #expect(head == "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nETag: W/\"weak\"\r\nVary: Cookie, accept-encoding\r\nContent-Encoding: deflate\r\n")
    }

    @Test func aHeadLeftAsItIsGetsVaryOnlyWhenTheClientMadeTheDifference() throws {
        let json = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n"
        #expect(try start(json, request: "GET / HTTP/1.1\r\n\r\n") == (false, json + "Vary: Accept-Encoding\r\n"))
        let png = "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 5000\r\n"
        #expect(try start(png, request: "GET / HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n") == (false, png))
        let encoded = json + "Content-Encoding: gzip\r\n"
        #expect(try start(encoded, request: "GET / HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n") == (false, encoded))
        let partial = "HTTP/1.1 206 Partial Content\r\nContent-Type: application/json\r\nContent-Range: bytes 0-99/5000\r\n"
        #expect(try start(partial, request: "GET / HTTP/1.1\r\nAccept-Encoding: gzip\r\nRange: bytes=0-99\r\n\r\n") == (false, partial))
        #expect(try start(json, framing: .none, request: "HEAD / HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n") == (false, json))
    }
}
