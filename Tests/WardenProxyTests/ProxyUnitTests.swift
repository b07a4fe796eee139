import NIOCore
import NIOEmbedded
import NIOHTTP1
import Synchronization
import Testing

@testable import WardenConfig
@testable import WardenProxy
import WardenTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// ProxyPassReverse as the `ProxyHandler` applies it to a framed head that has URL fields.
private struct Rewrite {
    var upstreamHost: String
    var upstreamPort: Int
    var publicBase: String

    func apply(_ head: ResponseFramer.Head) -> ResponseFramer.Head {
        guard head.hasURLFields else { return head }
        var head = head
        head.bytes = HeaderRules.reverseRewrite(head.bytes, upstreamHost: upstreamHost, upstreamPort: upstreamPort, publicBase: publicBase)
        return head
    }
}

/// Feeds `text` to a framer in pieces of `step` bytes and collects what it emits.
private func frame(
    _ text: String, step: Int = .max, toHead: Bool = false, dechunk: Bool = false,
    rewrite: Rewrite? = nil
) throws -> (heads: [ResponseFramer.Head], informational: [String], body: String, ended: Bool, leftover: String) {
    var framer = ResponseFramer()
    framer.expectResponse(toHead: toHead, dechunk: dechunk)
    var heads: [ResponseFramer.Head] = []
    var informational: [String] = []
    var body = ""
    var ended = false
    var leftover = ""
    let bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        var buffer = ByteBuffer(bytes: bytes[offset..<min(bytes.count, offset + step)])
        offset += buffer.readableBytes
        try framer.parse(&buffer) { output in
            switch output {
            case .head(let head): heads.append(rewrite?.apply(head) ?? head)
            case .informational(let bytes): informational.append(String(buffer: bytes))
            case .body(let bytes): body += String(buffer: bytes)
            case .end: ended = true
            }
        }
        leftover += String(buffer: buffer)
    }
    return (heads, informational, body, ended, leftover)
}

private func headText(_ head: ResponseFramer.Head) -> String { String(buffer: head.bytes) }

@Suite("Response framing")
struct ResponseFramerTests {
    @Test func contentLengthBodyIsPassedThroughAndHopByHopHeadersDropped() throws {
        let response = "HTTP/1.1 200 OK\r\nServer: up\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 4\r\n\r\npong"
        for step in [1, 3, 7, .max] {
            let result = try frame(response, step: step)
            #expect(result.heads.count == 1)
            #expect(headText(result.heads[0]) == "HTTP/1.1 200 OK\r\nServer: up\r\nContent-Length: 4\r\n")
            #expect(result.heads[0].framing == .length(4))
            #expect(result.heads[0].keepAlive)
            #expect(result.body == "pong")
            #expect(result.ended)
        }
    }

    @Test func chunkedBodiesArePassedThroughOrDechunkedForHTTP10Clients() throws {
        let response = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n"
        for step in [1, 2, 5, .max] {
            let raw = try frame(response, step: step)
            #expect(headText(raw.heads[0]) == "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n")
            #expect(raw.body == "4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n")
            #expect(raw.ended)
            let plain = try frame(response, step: step, dechunk: true)
            #expect(headText(plain.heads[0]) == "HTTP/1.1 200 OK\r\n")
            #expect(plain.body == "Wikipedia")
            #expect(plain.ended)
        }
    }

    @Test func bytesAfterTheEndStayInTheBuffer() throws {
        let result = try frame("HTTP/1.1 204 No Content\r\n\r\nEXTRA")
        #expect(result.heads[0].framing == .none)
        #expect(result.ended)
        #expect(result.leftover == "EXTRA")
    }

    @Test func headResponsesHaveNoBodyWhateverTheirLength() throws {
        let result = try frame("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", toHead: true)
        #expect(result.heads[0].framing == .none)
        #expect(headText(result.heads[0]).contains("Content-Length: 100"))
        #expect(result.ended)
    }

    @Test func informationalResponsesComeBeforeTheFinalOne() throws {
        let result = try frame("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
        #expect(result.informational == ["HTTP/1.1 100 Continue\r\n\r\n"])
        #expect(result.heads.map(\.status) == [201])
        #expect(result.body == "ok")
    }

    @Test func http10AndUntilCloseResponsesAreNotReusable() throws {
        let old = try frame("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        #expect(headText(old.heads[0]).hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(!old.heads[0].keepAlive)
        let open = try frame("HTTP/1.1 200 OK\r\n\r\nsome")
        #expect(open.heads[0].framing == .untilClose)
        #expect(!open.heads[0].keepAlive)
        #expect(!open.ended)
        #expect(open.body == "some")
    }

    @Test func headersNamedByConnectionAreDroppedAndLocationRewritten() throws {
        let rewrite = Rewrite(upstreamHost: "127.0.0.1", upstreamPort: 8080, publicBase: "https://mydomain.com")
        let result = try frame(
            "HTTP/1.1 302 Found\r\nConnection: X-Secret\r\nX-Secret: 1\r\nLocation: http://127.0.0.1:8080/landing\r\nContent-Length: 0\r\n\r\n",
            rewrite: rewrite)
        #expect(headText(result.heads[0]) == "HTTP/1.1 302 Found\r\nLocation: https://mydomain.com/landing\r\nContent-Length: 0\r\n")
    }

    /// URL lines that grow the most (the shortest upstream base, no space after the colon, a long
    /// public host) come out whole.
    @Test func rewrittenURLsThatGrowTheHeadFitItsRoom() throws {
        let publicHost = String(repeating: "long-public-host.", count: 8) + "example.org"
        let rewrite = Rewrite(upstreamHost: "h", upstreamPort: 80, publicBase: "https://" + publicHost)
        let result = try frame("HTTP/1.0 301 Moved\r\nLocation:http://h\r\nContent-Location:http://h\r\nRefresh:0;url=http://h\r\n\r\n", rewrite: rewrite)
        let base = "https://" + publicHost
        #expect(
            headText(result.heads[0])
                == "HTTP/1.1 301 Moved\r\nLocation: \(base)\r\nContent-Location: \(base)\r\nRefresh: 0;url=\(base)\r\n")
        // Invalid UTF-8 in a URL value comes back as replacement characters, three bytes each.
        var invalid = ByteBuffer(string: "HTTP/1.1 302 Found\r\nLocation:http://h/")
        invalid.writeBytes([UInt8](repeating: 0xFF, count: 300))
        invalid.writeString("\r\nContent-Length: 0\r\n\r\n")
        var framer = ResponseFramer()
        framer.expectResponse(toHead: false, dechunk: false)
        var heads: [ResponseFramer.Head] = []
        try framer.parse(&invalid) { if case .head(let head) = $0 { heads.append(rewrite.apply(head)) } }
        #expect(headText(heads[0]) == "HTTP/1.1 302 Found\r\nLocation: \(base)/\(String(repeating: "\u{FFFD}", count: 300))\r\nContent-Length: 0\r\n")
    }

    /// Upstream responses mutated at random (bytes flipped, removed, repeated, cut; CR, LF, NUL,
    /// colons and bytes of 128 and up put in) never crash the framer: each is refused, or its head
    /// comes out as lines that each end in CRLF, with URLs rewritten, in whatever pieces it arrives.
    @Test func mutatedResponsesAreRefusedOrFramedIntoCleanLines() throws {
        let rewrite = Rewrite(upstreamHost: "127.0.0.1", upstreamPort: 8080, publicBase: "https://mydomain.com")
        let responses = [
            "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Thu, 26 Nov 2026 04:51:41 GMT\r\nContent-Type: text/plain\r\nContent-Length: 4\r\nConnection: keep-alive\r\n\r\npong",
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:8080/a?b=c\r\nContent-Location:http://127.0.0.1:8080/\r\nRefresh: 3;url=http://127.0.0.1:8080/x\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: X-Drop, keep-alive\r\nX-Drop: 1\r\n\r\n4\r\nabcd\r\n0\r\nT: 1\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\u{81}\u{02}hi",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nKeep-Alive: timeout=5\r\n\r\n",
        ].map { Array($0.utf8) }
        let inserts: [[UInt8]] = [[13], [10], [13, 10], [0], [58], [32], [0xFF], [0xC3, 0xA9], Array("Location: http://127.0.0.1:8080/".utf8)]
        var rng = SplitMix(seedOr: 0xF4A3)
        var refused = 0
        var framed = 0
        for _ in 0..<5_000 {
            var bytes = responses.randomElement(using: &rng)!
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let position = Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: bytes[position] = UInt8.random(in: 0...255, using: &rng)
                case 1: bytes.remove(at: position)
                case 2: bytes.insert(contentsOf: inserts.randomElement(using: &rng)!, at: position)
                default: bytes.insert(contentsOf: bytes[position..<min(bytes.count, position + Int.random(in: 1...40, using: &rng))], at: position)
                }
                if bytes.isEmpty { bytes = [0] }
            }
            var framer = ResponseFramer()
            framer.expectResponse(toHead: false, dechunk: Bool.random(using: &rng))
            let step = [1, 5, 64, bytes.count].randomElement(using: &rng)!
            var heads: [[UInt8]] = []
            do {
                var offset = 0
                while offset < bytes.count {
                    var piece = ByteBuffer(bytes: bytes[offset..<min(bytes.count, offset + step)])
                    offset += piece.readableBytes
                    try framer.parse(&piece) { output in
                        if case .head(let head) = output { heads.append(Array(rewrite.apply(head).bytes.readableBytesView)) }
                    }
                }
            } catch is ResponseFramer.Failure {
                refused += 1
                continue
            }
            framed += 1
            for head in heads {
                #expect(head.suffix(2) == [13, 10])
                for (index, byte) in head.enumerated() where byte == 10 || byte == 13 {
                    let paired = byte == 13 ? index + 1 < head.count && head[index + 1] == 10 : index > 0 && head[index - 1] == 13
                    #expect(paired, "a bare CR or LF in \(String(decoding: head, as: UTF8.self).debugDescription)")
                }
                for line in String(decoding: head, as: UTF8.self).split(separator: "\r\n") {
                    let name = line.prefix { $0 != ":" }.lowercased()
                    guard ["location", "content-location", "refresh"].contains(name), line.contains("http://127.0.0.1:8080") else { continue }
                    #expect(line.contains("https://mydomain.com"), "an upstream URL not rewritten: \(line)")
                }
            }
        }
        #expect(refused > 500 && framed > 500, "both outcomes should be common: \(refused) refused, \(framed) framed")
    }

    @Test func switchingProtocolsKeepsUpgradeAndLeavesTheRestForTheTunnel() throws {
        let result = try frame("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\u{81}\u{02}hi")
        #expect(headText(result.heads[0]) == "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n")
        #expect(result.leftover == "\u{81}\u{02}hi")
    }

    @Test(arguments: [
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\n Folded: header\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        "HTTP/1.1 2x0 OK\r\n\r\n",
        "garbage\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
    ])
    func malformedResponsesAreRefused(_ response: String) {
        #expect(throws: ResponseFramer.Failure.self) { try frame(response) }
    }

    /// A CR, LF or other control character in the reason phrase would end the status line early for
    /// the client; a tab is allowed.
    @Test func controlCharactersInTheReasonPhraseAreRefused() throws {
        for reason in ["Switching\rUpgrade: x", "O\u{0}K", "OK\u{7F}", "A rather long reason phrase\rX: 1"] {
            #expect(throws: ResponseFramer.Failure.self) { try frame("HTTP/1.1 200 \(reason)\r\nContent-Length: 0\r\n\r\n") }
        }
        let tab = try frame("HTTP/1.1 200 Fine\tThanks and a long phrase\r\nContent-Length: 0\r\n\r\n")
        #expect(headText(tab.heads[0]) == "HTTP/1.1 200 Fine\tThanks and a long phrase\r\nContent-Length: 0\r\n")
    }

    @Test func oversizedHeadsAreRefused() {
        let huge = "HTTP/1.1 200 OK\r\nX: " + String(repeating: "a", count: ResponseFramer.maximumHeadBytes) + "\r\n\r\n"
        #expect(throws: ResponseFramer.Failure.self) { try frame(huge, step: 4096) }
    }

    @Test func theLastHeadsBufferIsWrittenAgainOnlyWhenNothingElseHoldsIt() throws {
        func storage(_ buffer: ByteBuffer) -> UnsafeRawPointer? { buffer.withVeryUnsafeBytes { $0.baseAddress } }
        func head(_ framer: inout ResponseFramer, reusing spare: consuming ByteBuffer?) throws -> ByteBuffer {
            framer.expectResponse(toHead: false, dechunk: false, headBuffer: spare.take())
            var response = ByteBuffer(string: "HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n")
            var bytes: ByteBuffer?
            try framer.parse(&response) { if case .head(let head) = $0 { bytes = head.bytes } }
            return try #require(bytes)
        }
        var framer = ResponseFramer()
        let first = try head(&framer, reusing: nil)
        let address = storage(first)
        // Handed back with no other reference: the next head is written over it, in place.
        let second = try head(&framer, reusing: consume first)
        #expect(storage(second) == address)
        #expect(String(buffer: second) == "HTTP/1.1 204 No Content\r\nServer: x\r\n")
        // Still held elsewhere (a write not done yet): the held bytes stay as they were.
        let third = try head(&framer, reusing: second)
        #expect(storage(third) != address)
        #expect(String(buffer: second) == "HTTP/1.1 204 No Content\r\nServer: x\r\n")
        // An unusually large buffer is not kept for the next head.
        var large = ByteBuffer()
        large.reserveCapacity(ByteBuffer.maximumSpareCapacity + 1)
        let largeAddress = storage(large)
        #expect(storage(try head(&framer, reusing: consume large)) != largeAddress)
    }
}

@Suite("Header rules and routing")
struct HeaderRuleTests {
    /// A request as the decoder hands it over.
    private func request(_ raw: String) throws -> RequestHead {
        try RequestDecoder.parseHead(ByteBuffer(string: raw))
    }

    @Test func oversizedPartsAreRejected() throws {
        let fields = (0..<101).map { "X-\($0): v\r\n" }.joined()
        #expect(HeaderRules.reject(try request("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n"), maximumBody: 10) == .payloadTooLarge)
        #expect(HeaderRules.reject(try request("GET /\(String(repeating: "a", count: 9000)) HTTP/1.1\r\n\r\n"), maximumBody: 10) == .uriTooLong)
        #expect(HeaderRules.reject(try request("GET / HTTP/1.1\r\n\(fields)\r\n"), maximumBody: 10) == .requestHeaderFieldsTooLarge)
        let large = "X-Large: \(String(repeating: "a", count: 20000))\r\n"
        #expect(HeaderRules.reject(try request("GET / HTTP/1.1\r\n\(large)\(large)\r\n"), maximumBody: 10) == .requestHeaderFieldsTooLarge)
        #expect(HeaderRules.reject(try request("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"), maximumBody: 10) == nil)
        #expect(HeaderRules.reject(try request("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n"), maximumBody: 10) == nil)
    }

    /// Routing takes the path the decoder marked: the URI up to its first `?`, with invalid UTF-8
    /// in it replaced.
    @Test func thePathEndsAtTheFirstQuestionMark() throws {
        #expect(try request("GET /a/b?x=1?y HTTP/1.1\r\n\r\n").path == "/a/b")
        #expect(try request("GET /a/b HTTP/1.1\r\n\r\n").path == "/a/b")
        #expect(try request("GET /? HTTP/1.1\r\n\r\n").path == "/")
        #expect(try request("GET http://h/p?q HTTP/1.1\r\n\r\n").path == "http://h/p")
        var bytes = ByteBuffer(string: "GET /caf")
        bytes.writeBytes([0xC3, 0xFF, 0xE9])
        bytes.writeString("/x?q=\u{e9} HTTP/1.1\r\n\r\n")
        let repaired = try RequestDecoder.parseHead(bytes)
        #expect(repaired.path == "/caf\u{FFFD}\u{FFFD}\u{FFFD}/x")
        #expect(try http2Path("/h2/p?q") == "/h2/p")
    }

    private func http2Path(_ uri: String) throws -> Substring {
        try RequestHead.http2(HTTPRequestHead(version: .http2, method: .GET, uri: uri, headers: [:])).path
    }

    /// HTTP/2 heads are written as HTTP/1 and parsed by the decoder's rules; what would be read
    /// back as more lines is refused before that.
    @Test func http2HeadsAreHeldToTheDecodersRules() throws {
        func http2(_ headers: HTTPHeaders, method: HTTPMethod = .POST, uri: String = "/") throws -> RequestHead {
            try RequestHead.http2(HTTPRequestHead(version: .http2, method: method, uri: uri, headers: headers))
        }
        #expect(throws: HTTPParserError.self) { try http2(["X": "a\r\nInjected: 1"]) }
        #expect(throws: HTTPParserError.self) { try http2(["X\r\nInjected": "1"]) }
        #expect(throws: HTTPParserError.self) { try http2([:], uri: "/ HTTP/1.1\r\nInjected: 1\r\nX:") }
        #expect(throws: HTTPParserError.self) { try http2([:], method: .RAW(value: "GET / HTTP/1.1\r\nInjected: 1\r\nX:")) }
        #expect(throws: HTTPParserError.self) { try http2(["Content-Length": "1", "Transfer-Encoding": "chunked"]) }
        #expect(throws: HTTPParserError.self) { try http2(["Content-Length": "1", "content-length": "2"]) }
        #expect(throws: HTTPParserError.self) { try http2(["Transfer-Encoding": "gzip, chunked"]) }
        let accepted = try http2(["host": "mydomain.com", "content-length": "3"])
        #expect(accepted.version == .http2)
        #expect(accepted.host == "mydomain.com")
        #expect(accepted.framing == .length(3))
    }

    /// A request passed on under the same path goes with the client's URI bytes, invalid UTF-8 and
    /// all, as nginx passes it; only a rewritten prefix makes a new URI.
    @Test func theClientsURIGoesUpstreamAsItCame() throws {
        var raw = ByteBuffer(string: "GET /caf")
        raw.writeBytes([0xC3, 0xFF])
        raw.writeString("?q=%20 HTTP/1.1\r\nHost: a\r\n\r\n")
        let head = HeaderRules.upstreamHead(try RequestDecoder.parseHead(raw), client: ClientFields(client: "127.0.0.1", scheme: "http"))
        let requestLine = Array("GET /caf".utf8) + [0xC3, 0xFF] + Array("?q=%20 HTTP/1.1\r\n".utf8)
        #expect(Array(head.readableBytesView.prefix(requestLine.count)) == requestLine)
        #expect(try forwarded("GET /app/x?y HTTP/1.1\r\n\r\n", uri: "/base/x?y").0 == "GET /base/x?y HTTP/1.1")
    }

    /// The head `upstreamHead` writes for `raw`, as its request line and header lines.
    private func forwarded(_ raw: String, uri: String? = "/x", scheme: String = "http") throws -> (String, [String]) {
        let text = String(buffer: HeaderRules.upstreamHead(try request(raw), uri: uri, client: ClientFields(client: "127.0.0.1", scheme: scheme)))
        #expect(text.hasSuffix("\r\n\r\n"))
        let lines = text.split(separator: "\r\n").map(String.init)
        return (lines[0], Array(lines.dropFirst()))
    }

    @Test func forwardedHeadPreservesHostAndDropsHopByHop() throws {
        let (requestLine, fields) = try forwarded(
            "GET /x HTTP/1.0\r\nHost: mydomain.com\r\nConnection: keep-alive, X-Private\r\nX-Private: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n"
                + "X-Forwarded-For: 10.0.0.1\r\nx-real-ip: 6.6.6.6\r\nAccept: */*\r\nX-Forwarded-For: 10.0.0.2\r\n\r\n",
            uri: "/base/x", scheme: "https")
        #expect(requestLine == "GET /base/x HTTP/1.1")
        #expect(
            fields == [
                "Host: mydomain.com", "Accept: */*", "X-Forwarded-For: 10.0.0.1, 10.0.0.2, 127.0.0.1", "X-Real-IP: 127.0.0.1",
                "X-Forwarded-Proto: https", "X-Forwarded-Host: mydomain.com",
            ])
        // Without fields to review, the decoder's Host is used and every line is copied in one pass.
        let plain = "GET /p HTTP/1.1\r\nUser-Agent: t\r\nhost: a.example:8080\r\nConnection: keep-alive\r\n\r\n"
        #expect(try !request(plain).reviewFields)
        #expect(try request("GET / HTTP/1.1\r\nConnection: close, X-Private\r\n\r\n").reviewFields)
        #expect(
            try forwarded(plain).1 == [
                "User-Agent: t", "host: a.example:8080", "X-Forwarded-For: 127.0.0.1", "X-Real-IP: 127.0.0.1", "X-Forwarded-Proto: http",
                "X-Forwarded-Host: a.example:8080",
            ])
        // Lines to drop first and last are cut out as the decoder found them; more than it holds
        // are found again by reviewing the fields, to the same effect.
        let few = "GET / HTTP/1.1\r\nKeep-Alive: 5\r\nHost: a\r\nTE: x\r\nAccept: */*\r\nX-Forwarded-Proto: ftp\r\n\r\n"
        let many = "GET / HTTP/1.1\r\nKeep-Alive: 5\r\nHost: a\r\nTE: x\r\nTrailer: y\r\nAccept: */*\r\nX-Real-IP: 6.6.6.6\r\nProxy-Connection: z\r\n\r\n"
        #expect(try !request(few).reviewFields)
        #expect(try request(many).reviewFields)
        for raw in [few, many] {
            #expect(
                try forwarded(raw).1 == [
                    "Host: a", "Accept: */*", "X-Forwarded-For: 127.0.0.1", "X-Real-IP: 127.0.0.1", "X-Forwarded-Proto: http", "X-Forwarded-Host: a",
                ], "\(raw.debugDescription)")
        }
        #expect(
            try forwarded("POST /up HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n").1 == [
                "Transfer-Encoding: chunked", "X-Forwarded-For: 127.0.0.1", "X-Real-IP: 127.0.0.1", "X-Forwarded-Proto: http",
            ])
        let upgrade = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        #expect(try request(upgrade).upgrade)
        let tunnelled = try forwarded(upgrade).1
        #expect(tunnelled.contains("Upgrade: websocket"))
        #expect(tunnelled.contains("Connection: upgrade"))
        let notUpgrade = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"
        #expect(try !request(notUpgrade).upgrade)
        #expect(try !forwarded(notUpgrade).1.contains { $0.hasPrefix("Upgrade") || $0.hasPrefix("Connection") })
    }

    @Test func fieldsAreFoundByNameIgnoringCase() throws {
        let head = try request("GET / HTTP/1.1\r\nhost: a\r\nRANGE: bytes=0-1\r\nRange: bytes=2-3\r\nReferer:  http://x/ \r\n\r\n")
        #expect(head.host == "a")
        #expect(head.field("range") == "bytes=0-1")
        #expect(head.field("referer") == "http://x/")
        #expect(head.field("user-agent") == nil)
    }

    @Test func keepAliveFollowsTheVersionAndConnection() throws {
        #expect(try request("GET / HTTP/1.1\r\n\r\n").keepAlive)
        #expect(try !request("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").keepAlive)
        #expect(try !request("GET / HTTP/1.0\r\n\r\n").keepAlive)
        #expect(try request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keepAlive)
    }

    @Test func upstreamURIReplacesThePrefixOnlyForAURLWithAPath() {
        // A bare http://host/ has no base path: the client's URI goes as it came.
        #expect(SiteTable.Upstream(url: HTTPURL(scheme: "http", host: "h", port: 80, path: "/"), service: nil, traffic: nil).basePath == nil)
        #expect(SiteTable.Upstream(url: HTTPURL(scheme: "http", host: "h", port: 80, path: "/base/"), service: nil, traffic: nil).basePath == "/base/")
        #expect(ProxyHandler.upstreamURI("/app/x?q=1", prefix: "/app", base: "/base/") == "/base/x?q=1")
        #expect(ProxyHandler.upstreamURI("/app/x", prefix: "/app/", base: "/base") == "/base/x")
        #expect(ProxyHandler.upstreamURI("/app", prefix: "/app", base: "/base/") == "/base/")
    }

    @Test func sitesAreFoundByHostAliasAndDefaultAndLongestPrefix() {
        let here = FileLocation(file: "test", line: 1, column: 1)
        var shop = Site(name: "shop", hosts: ["shop.example", "www.shop.example"], location: here)
        shop.routes = [
            .init(prefix: "/", target: .directory("/srv/shop")),
            .init(prefix: "/api", target: .directory("/srv/api")),
        ]
        var fallback = Site(name: "fallback", hosts: ["*"], location: here)
        fallback.routes = [.init(prefix: "/", target: .directory("/srv/default"))]
        let table = SiteTable(sites: [shop, fallback], availability: ServiceAvailability()).snapshot
        #expect(table.entry(forHost: "WWW.Shop.Example:8080")?.site.name == "shop")
        #expect(table.entry(forHost: "other.example")?.site.name == "fallback")
        #expect(table.entry(forHost: nil)?.site.name == "fallback")
        let entry = table.entry(forHost: "shop.example")!
        #expect(entry.route(for: "/api/items")?.prefix == "/api")
        #expect(entry.route(for: "/api")?.prefix == "/api")
        #expect(entry.route(for: "/apix")?.prefix == "/")
        #expect(SiteTable.Snapshot.hostName("[::1]:80") == "[::1]")
    }

    @Test func reloadKeepsOpenLogFilesAndSwapsRoutes() {
        let directory = "/tmp/warden-proxy-unit-\(getpid())"
        mkdir(directory, 0o755)
        defer {
            unlink(directory + "/access.log")
            rmdir(directory)
        }
        let here = FileLocation(file: "test", line: 1, column: 1)
        var site = Site(name: "a", hosts: ["a.example"], location: here)
        site.accessLog = directory + "/access.log"
        let table = SiteTable(sites: [site], availability: ServiceAvailability())
        let before = table.snapshot.entries[0].accessLog
        site.hosts = ["b.example"]
        table.load([site])
        #expect(table.snapshot.entry(forHost: "b.example")?.site.name == "a")
        #expect(table.snapshot.entries[0].accessLog === before)
    }

    /// A connection keeps its view of the table until a reload, then sees the new sites.
    @Test func aConnectionsViewFollowsReloads() {
        let here = FileLocation(file: "test", line: 1, column: 1)
        let table = SiteTable(sites: [Site(name: "a", hosts: ["a.example"], location: here)], availability: ServiceAvailability())
        var view = SiteTable.View()
        #expect(view.entry(forHost: "a.example", in: table)?.site.name == "a")
        #expect(view.entry(forHost: "b.example", in: table)?.site.name == "a")
        table.load([Site(name: "a", hosts: ["a.example"], location: here), Site(name: "b", hosts: ["b.example"], location: here)])
        #expect(view.entry(forHost: "b.example", in: table)?.site.name == "b")
        table.load([Site(name: "c", hosts: ["*"], location: here)])
        #expect(view.entry(forHost: "b.example", in: table)?.site.name == "c")
    }

    /// A route's count of requests in flight is its service's, whichever load made the route: a
    /// drain waits for requests that started before a reload too. A hold marks the service down
    /// until it is reported up again.
    @Test func inFlightCountsAreSharedAcrossReloadsAndAHoldMarksTheServiceDown() throws {
        let here = FileLocation(file: "test", line: 1, column: 1)
        var site = Site(name: "a", hosts: ["*"], location: here)
        site.routes = [.init(prefix: "/", target: .upstream(HTTPURL(scheme: "http", host: "127.0.0.1", port: 8080, path: "/"), service: "app"))]
        let availability = ServiceAvailability()
        let table = SiteTable(sites: [site], availability: availability)
        struct NoServiceRoute: Error {}
        func traffic() throws -> ServiceTraffic {
            guard case .upstream(let upstream)? = table.snapshot.entries.first?.routes.first?.target, let traffic = upstream.traffic else {
                throw NoServiceRoute()
            }
            return traffic
        }
        let before = try traffic()
        table.load([site])
        let after = try traffic()
        before.enter()
        after.enter()
        #expect(availability.requestsInFlight("app") == 2)
        before.leave()
        #expect(availability.requestsInFlight("app") == 1)
        #expect(availability.requestsInFlight("other") == 0)
        #expect(availability.isUp("app"))
        availability.hold("app")
        #expect(!availability.isUp("app") && availability.isUp("other"))
        availability.set("app", up: true)
        #expect(availability.isUp("app"))
    }

    /// The counts that let requests skip the lock follow every change, including a service
    /// going down twice and coming back once.
    @Test func availabilityFollowsServicesAndMaintenance() {
        let availability = ServiceAvailability()
        #expect(availability.isUp("app") && availability.isUp("never-heard-of"))
        availability.set("app", up: false)
        availability.set("app", up: false)
        availability.set("db", up: true)
        #expect(!availability.isUp("app") && availability.isUp("db") && availability.isUp("never-heard-of"))
        availability.set("app", up: true)
        #expect(availability.isUp("app"))
        #expect(!availability.inMaintenance("shop"))
        availability.setMaintenance(["shop"])
        #expect(availability.inMaintenance("shop") && !availability.inMaintenance("blog"))
        availability.setMaintenance([])
        #expect(!availability.inMaintenance("shop"))
    }
}

@Suite("Request decoding")
struct RequestDecoderTests {
    /// The eight-bytes-at-a-time search against the byte-at-a-time rule: each byte value in each
    /// position, followed by bytes a borrow from it could make look like control bytes (0x20 is
    /// one below 0x21, 0x80 has the top bit set) and a real one further on.
    @Test func theFirstControlByteIsFoundInAnyPositionOfAWord() {
        let isControl = { (byte: UInt8) in byte < 32 || byte == 127 }
        let tails: [[UInt8]] = [
            [UInt8](repeating: UInt8(ascii: "a"), count: 7),
            [0x20, 0x20, 0x80, 0xFF, 0x21, 0x7E, 0x00],
            [0x00, 0x20, 0x7F, 0x20, 0x0D, 0x0A, 0x20],
        ]
        expectWordSearch(ASCII.firstControlByte(in:), agreesWith: isControl, tails: tails)
        let high: [UInt8] = [0x80, 0xFF, 0xC3, 0xA9, 0x20, 0x7E, 0x21, 0x41]
        #expect(ASCII.firstControlByte(in: high.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }) == nil)
    }

    /// The same for the first byte that ends or breaks a response's field name: each of the 256
    /// values in each position, before tails with bytes a borrow could make look like stops and
    /// with real stops; and a name scanned by words agrees with one scanned a byte at a time.
    @Test func theFirstNameStopIsFoundInAnyPositionOfAWord() {
        let isStop = { (byte: UInt8) in byte < 33 || byte >= 127 || Array(":()\"".utf8).contains(byte) }
        let tails: [[UInt8]] = [
            [UInt8](repeating: UInt8(ascii: "a"), count: 7),
            [0x21, 0x3B, 0x29 + 1, 0x28 - 1, 0x23, 0x7E, 0x41],
            [0x3A, 0x20, 0x80, 0x28, 0x00, 0x22, 0x7F],
        ]
        expectWordSearch(ASCII.firstVisibleNameStop(in:), agreesWith: isStop, tails: tails)
        for line in ["Content-Type: text/plain\r\n", "X-A-Rather-Long-Name-Of-Many-Words:v\r\n", "Bad(Name): v\r\n", "Spaced Name: v\r\n", "Caf\u{e9}-Name: v\r\n"] {
            let bytes = Array(line.utf8)
            let byWords = bytes.withUnsafeBytes { ASCII.headerLine($0, from: 0, name: .visible, value: { _ in true }) }
            let colon = bytes.firstIndex(of: UInt8(ascii: ":"))!
            let valid = bytes[..<colon].allSatisfy { !isStop($0) }
            #expect(byWords?.name == (valid ? 0..<colon : nil), "\(line)")
        }
    }

    /// `search` finds the first byte `rule` picks in words of every byte value in every position,
    /// each followed by the bytes of each tail.
    private func expectWordSearch(_ search: (UInt64) -> Int?, agreesWith rule: (UInt8) -> Bool, tails: [[UInt8]]) {
        for position in 0..<8 {
            for byte in UInt8.min...UInt8.max {
                for tail in tails {
                    var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: position) + [byte] + tail
                    bytes.removeLast(bytes.count - 8)
                    let word = bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                    #expect(search(word) == bytes.firstIndex(where: rule), "\(bytes)")
                }
            }
        }
    }

    /// The word-at-a-time comparison folds the case of letters only: each byte of a name that
    /// differs from the literal's by anything but the case of a letter is a mismatch.
    @Test func namesMatchLiteralsIgnoringTheCaseOfLettersOnly() {
        func equal(_ name: [UInt8], _ literal: StaticString) -> Bool {
            name.withUnsafeBytes { ASCII.equalsIgnoringCase($0, 0..<name.count, literal) }
        }
        for literal: StaticString in ["te", "host", "http/1.", "location", "x-forwarded-for", "content-length", "proxy-authorization"] {
            let lower = Array(UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
            #expect(equal(lower, literal))
            #expect(equal(lower.map { $0 >= 0x61 && $0 <= 0x7A ? $0 - 0x20 : $0 }, literal), "uppercase \(literal)")
            #expect(!equal(lower.dropLast(), literal))
            for position in lower.indices {
                for byte in UInt8.min...UInt8.max where byte != lower[position] && !(lower[position] >= 0x61 && lower[position] <= 0x7A && byte == lower[position] - 0x20) {
                    var name = lower
                    name[position] = byte
                    #expect(!equal(name, literal), "\(literal) with byte \(byte) at \(position)")
                }
            }
        }
    }

    /// What the decoder makes of `raw` fed in pieces of `step` bytes: a line per part, and the error.
    private func decode(_ raw: String, step: Int = .max) throws -> (parts: [String], error: (any Error)?) {
        let channel = EmbeddedChannel(handler: RequestDecoder())
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 80)).wait()
        var parts: [String] = []
        var error: (any Error)?
        let bytes = Array(raw.utf8)
        var offset = 0
        while offset < bytes.count, error == nil {
            let piece = bytes[offset..<min(bytes.count, offset + step)]
            offset += piece.count
            do { try channel.writeInbound(ByteBuffer(bytes: piece)) } catch let caught { error = caught }
        }
        while let part = try channel.readInbound(as: RequestPart.self) {
            switch part {
            case .head(let head, let complete):
                let fields = head.bytes.withUnsafeReadableBytes { bytes in
                    var fields: [String] = []
                    HeadLines.forEachField(bytes, from: HeadLines.firstField(bytes)) { name, value, _ in
                        fields.append("\(ASCII.string(bytes, name))=\(ASCII.string(bytes, value))")
                    }
                    return fields.joined(separator: ",")
                }
                parts.append("\(head.method.rawValue) \(head.uri) \(head.version.major).\(head.version.minor) [\(fields)]")
                if complete { parts.append("end") }
            case .body(let body):
                // Body pieces depend on how the bytes arrived: adjacent ones are joined.
                if let last = parts.last, last.hasPrefix("body ") { parts[parts.count - 1] = last + String(buffer: body) }
                else { parts.append("body " + String(buffer: body)) }
            case .end:
                parts.append("end")
            }
        }
        _ = try? channel.finish()
        return (parts, error)
    }

    @Test func pipelinedRequestsDecodeTheSameWhateverPiecesTheyArriveIn() throws {
        let raw =
            "\r\nGET /a?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Empty:\r\nX-Pad:  spaced value \t\r\n\r\n"
            + "POST /b HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello"
            + "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n"
            + "GET / HTTP/1.0\r\n\r\n"
        let expected = [
            "GET /a?x=1 1.1 [Host=example.com,X-Empty=,X-Pad=spaced value]", "end",
            "POST /b 1.1 [Host=example.com,Content-Length=5]", "body hello", "end",
            "POST /c 1.1 [Transfer-Encoding=chunked]", "body abcde", "end",
            "GET / 1.0 []", "end",
        ]
        for step in [Int.max, 1, 2, 3, 7, 16, 50] {
            let result = try decode(raw, step: step)
            #expect(result.error == nil, "step \(step): \(String(describing: result.error))")
            #expect(result.parts == expected, "step \(step)")
        }
    }

    @Test(arguments: [
        "POST / HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n1\r\nG\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nAB",
        "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\nA",
        "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "GET / HTTP/1.1\r\nX-A: a\rX-B: b\r\n\r\n",
        "GET / HTTP/1.1\r\nX-A: a\u{0}b\r\n\r\n",
        "GET / HTTP/1.1\r\nX-A: a\nX-B: b\r\n\r\n",
        "GET / HTTP/1.1\r\nX-A: a\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : example.com\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET /\r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\nHost: example.com\n\n",
    ])
    func requestsThatCannotBeFramedSafelyAreRefused(_ raw: String) throws {
        for step in [Int.max, 1] {
            let result = try decode(raw, step: step)
            #expect(result.error is HTTPParserError, "\(raw.debugDescription) step \(step)")
            #expect(!result.parts.contains { $0.hasPrefix("body") }, "\(raw.debugDescription): nothing of the body is passed on")
        }
    }

    @Test func anOversizedHeadIsRefusedEvenInSmallPieces() throws {
        let raw = "GET / HTTP/1.1\r\n" + String(repeating: "X-Long: \(String(repeating: "a", count: 1000))\r\n", count: 90)
        let result = try decode(raw, step: 1460)
        #expect(result.error as? HTTPParserError == .headerOverflow)
        #expect(result.parts.isEmpty)
        // Whole, or completed by a piece that takes it over the limit, a head too big is that
        // before it is malformed.
        for step in [Int.max, 50_000] {
            let malformed = try decode(raw + "Bad Name: x\r\n\r\n", step: step)
            #expect(malformed.error as? HTTPParserError == .headerOverflow, "step \(step)")
            #expect(malformed.parts.isEmpty)
        }
    }

    @Test func bytesAfterAnUpgradeRequestAreHeldForTheNextProtocol() throws {
        let decoder = RequestDecoder()
        let channel = EmbeddedChannel(handler: decoder)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 80)).wait()
        try channel.writeInbound(ByteBuffer(string: "GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n\u{81}\u{02}hi"))
        guard case .head(let request, let complete) = try channel.readInbound(as: RequestPart.self) else {
            Issue.record("no head")
            return
        }
        #expect(request.uri == "/ws")
        #expect(complete, "the request has no body: its head is all of it")
        try channel.writeInbound(ByteBuffer(string: "more"))
        #expect(try channel.readInbound(as: RequestPart.self) == nil)
        try channel.pipeline.syncOperations.removeHandler(decoder).wait()
        #expect(try channel.readInbound(as: ByteBuffer.self).map { String(buffer: $0) } == "\u{81}\u{02}himore")
        _ = try channel.finish()
    }

    @Test func aStreamOfBytesBeforeTheUpgradeIsAnsweredIsRefused() throws {
        let channel = EmbeddedChannel(handler: RequestDecoder())
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 80)).wait()
        try channel.writeInbound(ByteBuffer(string: "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"))
        let early = ByteBuffer(repeating: 0x81, count: 16384)
        var refused: (any Error)?
        for _ in 0..<10 where refused == nil {
            do { try channel.writeInbound(early) } catch { refused = error }
        }
        #expect(refused as? HTTPParserError == .headerOverflow)
    }

    /// Closes the connection at the first request head, as the proxy does after refusing one.
    private final class CloseAtFirstHead: ChannelInboundHandler {
        typealias InboundIn = RequestPart
        var parts = 0

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            parts += 1
            context.close(promise: nil)
        }
    }

    @Test func nothingIsDecodedAfterTheHandlerBehindClosedTheConnection() throws {
        let closer = CloseAtFirstHead()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([RequestDecoder(), closer])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 80)).wait()
        try channel.writeInbound(ByteBuffer(string: "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n"))
        #expect(closer.parts == 1)
        #expect(!channel.isActive)
    }

    /// Found by the HTTP fuzzer: held bytes passed on while a closed connection's pipeline was torn
    /// down reached the ProxyHandler, which takes request parts only, and crashed warden.
    @Test func heldBytesAreDroppedWhenTheConnectionIsNoLongerActive() throws {
        let decoder = RequestDecoder()
        let channel = EmbeddedChannel(handler: decoder)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 80)).wait()
        try channel.writeInbound(ByteBuffer(string: "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nframes"))
        guard case .head(_, complete: true) = try channel.readInbound(as: RequestPart.self) else {
            Issue.record("no complete head")
            return
        }
        try channel.close().wait()
        #expect(!channel.isActive)
        try? channel.pipeline.syncOperations.removeHandler(decoder).wait()
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil)
    }
}

@Suite("Handler lifetimes")
struct HandlerLifetimeTests {
    /// A handler that keeps its context must let it go when it is removed: the context holds the
    /// handler, so otherwise both, and the channel behind them, outlive the connection.
    @Test func handlersAreFreedWithTheirClosedChannel() throws {
        weak var upstream: UpstreamHandler?
        weak var proxy: ProxyHandler?
        try {
            let upstreamChannel = EmbeddedChannel()
            let pool = UpstreamPool()
            let upstreamHandler = UpstreamHandler(host: "127.0.0.1", port: 8080, tls: nil, pool: pool.local(on: upstreamChannel.eventLoop))
            upstream = upstreamHandler
            try upstreamChannel.pipeline.syncOperations.addHandler(upstreamHandler)
            try upstreamChannel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 8080)).wait()
            _ = try upstreamChannel.finish()

            let clientChannel = EmbeddedChannel()
            let shared = ProxyContext(
                settings: ProxySettings(), sites: SiteTable(sites: [], availability: ServiceAvailability()), pool: pool, availability: ServiceAvailability(), scheme: "http",
                sendsFileRegions: false)
            let proxyHandler = ProxyHandler(shared: shared)
            proxy = proxyHandler
            try clientChannel.pipeline.syncOperations.addHandler(RequestDecoder(deliveringTo: proxyHandler))
            try clientChannel.pipeline.syncOperations.addHandler(proxyHandler)
            try clientChannel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 80)).wait()
            try clientChannel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
            _ = try clientChannel.finish(acceptAlreadyClosed: true)
        }()
        #expect(upstream == nil)
        #expect(proxy == nil)
    }
}

/// How a request picks one of a service's instances.
@Suite("Balancing over instances")
struct BalancingTests {
    static func set(_ ports: [Int], availability: ServiceAvailability = ServiceAvailability()) -> BackendSet {
        let set = BackendSet()
        set.replace(backends(ports), traffic: availability.traffic(for:), isUp: availability.isUp)
        return set
    }

    static func backends(_ ports: [Int]) -> [Backend] {
        ports.map { Backend(instance: "app@\($0)", host: "127.0.0.1", port: $0) }
    }

    static func pick(_ set: BackendSet, _ balance: Site.Balance, pinned: Int? = nil, client: String = "10.0.0.1", down: Set<String> = []) -> Int? {
        set.pick(balance, pinned: pinned, client: client, isUp: { !down.contains($0) })?.backend.port
    }

    @Test func roundRobinTakesEachInTurnAndSkipsWhatCannotTakeRequests() {
        let set = Self.set([1, 2, 3])
        #expect((0..<6).map { _ in Self.pick(set, .roundRobin) } == [1, 2, 3, 1, 2, 3])
        #expect(Set((0..<4).map { _ in Self.pick(set, .roundRobin, down: ["app@2"]) }) == [1, 3])
        set.pick(.roundRobin, pinned: 3, client: "", isUp: { _ in true })?.failed.store(true, ordering: .relaxed)
        #expect(Set((0..<4).map { _ in Self.pick(set, .roundRobin) }) == [1, 2])
        #expect(Self.pick(set, .roundRobin, down: ["app@1", "app@2"]) == nil)
        // A report of the instances clears what requests saw fail.
        set.replace(Self.backends([1, 2, 3]), traffic: { ServiceTraffic(service: $0) }, isUp: { _ in true })
        #expect(Set((0..<6).map { _ in Self.pick(set, .roundRobin) }) == [1, 2, 3])
    }

    @Test func leastConnectionsPrefersTheInstanceWithFewestRequestsInFlight() {
        let availability = ServiceAvailability()
        let set = Self.set([1, 2, 3], availability: availability)
        availability.traffic(for: "app@1").enter()
        availability.traffic(for: "app@3").enter()
        availability.traffic(for: "app@3").enter()
        #expect((0..<3).map { _ in Self.pick(set, .leastConnections) } == [2, 2, 2])
    }

    /// A deploy's switch behind `balance sticky cookie`: clients pinned to an old instance keep reaching
    /// it while it drains, new clients go to the new generation, and once the drain has held it (its
    /// pinned clients quiet) a pinned client is served by a new instance.
    @Test func pinnedClientsFollowAnInstanceThatDrainsAfterASwitch() throws {
        let availability = ServiceAvailability()
        let set = availability.backends(for: "app")
        set.keepsPins.store(true, ordering: .relaxed)
        availability.setBackends("app", Self.backends([1, 2]))
        availability.setBackends("app", Self.backends([3, 4]))
        #expect(Set((0..<4).map { _ in Self.pick(set, .stickyCookie("S")) }) == [3, 4])
        #expect(set.pick(.stickyCookie("S"), pinned: 1, client: "", isUp: availability.isUp)?.backend.port == 1)

        let start = NIODeadline.now()
        let drain = availability.beginDrain("app@1", timeout: .seconds(30), now: start)
        #expect(availability.isUp("app@1"), "a pinned instance is not held while its clients may come")
        #expect(availability.finished(drain, now: start + .seconds(4)) == nil, "a client may come within the quiet time after the drain began")
        availability.set("app@1", up: false)  // the supervisor reports a stopping instance down
        let pinnedAgain = set.pick(.stickyCookie("S"), pinned: 1, client: "", isUp: availability.isUp)
        #expect(pinnedAgain?.backend.port == 1)
        #expect(pinnedAgain?.takesRequests(isUp: availability.isUp) == true)
        availability.traffic(for: "app@1").enter()
        let lastPinned = NIODeadline.uptimeNanoseconds(try #require(pinnedAgain).lastPinned.load(ordering: .relaxed))
        #expect(availability.finished(drain, now: lastPinned + .seconds(4)) == nil, "its clients are not quiet yet")
        #expect(availability.finished(drain, now: lastPinned + .seconds(5)) == nil, "quiet, but a request is in flight")
        #expect(pinnedAgain?.takesRequests(isUp: availability.isUp) == false, "closed to new pinned requests")
        availability.traffic(for: "app@1").leave()
        #expect(availability.finished(drain, now: lastPinned + .seconds(5)) == 1, "the pinned request since the drain began")
        #expect(!availability.isUp("app@1"))
        #expect(set.pick(.stickyCookie("S"), pinned: 1, client: "", isUp: availability.isUp)?.backend.port ?? 0 >= 3)

        // Without sticky cookies an old instance is held as its drain begins.
        availability.setBackends("plain", Self.backends([5, 6]))
        availability.setBackends("plain", Self.backends([7, 8]))
        let plain = availability.beginDrain("app@5", timeout: .seconds(30), now: start)
        #expect(!availability.isUp("app@5"))
        #expect(availability.finished(plain, now: start) == 0)
    }

    /// Passive health: the first request that cannot reach an instance tells the supervisor (once,
    /// not once per request) and keeps the others away until the next report of the instances.
    @Test func anUnreachableInstanceIsReportedOnceAndAvoided() throws {
        let availability = ServiceAvailability()
        let reported = Mutex<[String]>([])
        availability.onUnreachableInstance { name in reported.withLock { $0.append(name) } }
        let set = Self.set([1, 2], availability: availability)
        let target = try #require(set.pick(.roundRobin, pinned: 2, client: "", isUp: { _ in true }))
        availability.unreachable(target)
        availability.unreachable(target)
        #expect(reported.withLock { $0 } == ["app@2"])
        #expect(Set((0..<4).map { _ in Self.pick(set, .roundRobin) }) == [1])
        // The supervisor routes without it while it checks it, then with it once the check passed.
        set.replace(Self.backends([1]), traffic: availability.traffic(for:), isUp: availability.isUp)
        set.replace(Self.backends([1, 2]), traffic: availability.traffic(for:), isUp: availability.isUp)
        #expect(Set((0..<4).map { _ in Self.pick(set, .roundRobin) }) == [1, 2], "reported ready again after its check")
    }

    @Test func stickyIPKeepsAClientOnOneInstanceAndAPinWins() {
        let set = Self.set([1, 2, 3])
        let first = Self.pick(set, .stickyIP, client: "192.0.2.7")
        #expect((0..<10).allSatisfy { _ in Self.pick(set, .stickyIP, client: "192.0.2.7") == first })
        #expect(Set((1...40).map { Self.pick(set, .stickyIP, client: "192.0.2.\($0)") }).count == 3)
        #expect(Self.pick(set, .stickyCookie("S"), pinned: 2) == 2)
        #expect(Self.pick(set, .stickyCookie("S"), pinned: 2, down: ["app@2"]) != 2)
        #expect(Self.pick(set, .stickyCookie("S"), pinned: 9) != nil)
    }
}
