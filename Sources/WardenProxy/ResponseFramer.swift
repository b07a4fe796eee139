import NIOCore
import NIOHTTP1
import WardenConfig

/// Reads an upstream's HTTP/1.1 responses from raw bytes. The head is parsed and rewritten for the
/// client (hop-by-hop headers dropped; its URLs are the handler's, see `Head.hasURLFields`); the
/// body is passed through as it arrives, framed by `Content-Length`, chunked encoding or the end of the connection.
/// Working on bytes rather than NIO's decoded parts saves the proxy a decode and a re-encode per response.
struct ResponseFramer {
    enum Framing: Equatable {
        case none
        case length(Int)
        case chunked
        case untilClose
    }

    struct Head {
        var status: Int
        /// The status line and kept header lines, each ending in CRLF, without the blank line.
        var bytes: ByteBuffer
        var framing: Framing
        /// Whether the upstream lets the connection be reused after this response.
        var keepAlive: Bool
        /// A `Location`, `Content-Location` or `Refresh` is kept: it may point at the upstream (see
        /// `HeaderRules.reverseRewrite`). Rare, so the public host is not needed per response.
        var hasURLFields: Bool
    }

    enum Output {
        /// A 1xx other than 101: the complete head, to pass on as it is.
        case informational(ByteBuffer)
        case head(Head)
        case body(ByteBuffer)
        case end
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    private enum State {
        case head
        case body(remaining: Int)
        case chunked(ChunkScanner)
        case untilClose
        case done
    }

    private var state = State.done
    private var partialHead: ByteBuffer?
    private var isHeadRequest = false
    private var dechunk = false
    /// A buffer to write the next head into, handed back by whoever sent the last one.
    private var spareHead: ByteBuffer?
    /// The fields of the head being read; kept from one response to the next, so a head costs no
    /// allocation for them.
    private var fields: [Field] = []

    static let maximumHeadBytes = 65536
    /// A body up to this size goes out in the same buffer as its head.
    static let smallBodyBytes = 4096

    var isIdle: Bool {
        if case .done = state { return true }
        return false
    }

    /// Expects the response to a new request. `dechunk`: the client speaks HTTP/1.0, so chunked
    /// bodies are passed on as plain data. `headBuffer`: the last head's buffer, to write this
    /// one's into (see `ByteBuffer.head(reusing:capacity:)`).
    mutating func expectResponse(toHead: Bool, dechunk: Bool, headBuffer: ByteBuffer? = nil) {
        spareHead = headBuffer
        state = .head
        partialHead = nil
        isHeadRequest = toHead
        self.dechunk = dechunk
    }

    /// Consumes what it can of `buffer`. Bytes left over after the end of a response stay in it
    /// (after a 101 they belong to the upgraded protocol).
    mutating func parse(_ buffer: inout ByteBuffer, _ emit: (Output) -> Void) throws {
        while buffer.readableBytes > 0 {
            switch state {
            case .done:
                return
            case .head:
                let continued = partialHead != nil
                if var partial = partialHead {
                    partialHead = nil
                    partial.writeBuffer(&buffer)
                    buffer = partial
                }
                guard let (head, length) = try HeadBoundary.complete(buffer, continued: continued, read: { try makeHead(buffer) }) else {
                    guard buffer.readableBytes <= Self.maximumHeadBytes else { throw Failure(description: "upstream sent too big header") }
                    partialHead = buffer.readSlice(length: buffer.readableBytes)
                    return
                }
                guard length <= Self.maximumHeadBytes else { throw Failure(description: "upstream sent too big header") }
                buffer.moveReaderIndex(forwardBy: length)
                if (100..<200).contains(head.status), head.status != 101 {
                    var bytes = head.bytes
                    bytes.writeStaticString("\r\n")
                    emit(.informational(bytes))
                    continue
                }
                emit(.head(head))
                switch head.framing {
                case .none, .length(0):
                    state = .done
                    emit(.end)
                case .length(let count):
                    state = .body(remaining: count)
                case .chunked:
                    state = .chunked(ChunkScanner())
                case .untilClose:
                    state = .untilClose
                }
            case .body(let remaining):
                let count = min(remaining, buffer.readableBytes)
                emit(.body(buffer.readSlice(length: count)!))
                if count == remaining {
                    state = .done
                    emit(.end)
                } else {
                    state = .body(remaining: remaining - count)
                }
            case .chunked(var scanner):
                let start = buffer.readerIndex
                let (consumed, finished) = try buffer.withUnsafeReadableBytes { try scanner.scan($0) }
                if dechunk {
                    for range in scanner.takeData() {
                        emit(.body(buffer.getSlice(at: start + range.lowerBound, length: range.count)!))
                    }
                    buffer.moveReaderIndex(forwardBy: consumed)
                } else {
                    emit(.body(buffer.readSlice(length: consumed)!))
                }
                if finished {
                    state = .done
                    emit(.end)
                } else {
                    state = .chunked(scanner)
                }
            case .untilClose:
                emit(.body(buffer.readSlice(length: buffer.readableBytes)!))
            }
        }
    }

    /// The upstream closed the connection: true when that ends an until-close body (not a truncation).
    mutating func connectionClosed() -> Bool {
        guard case .untilClose = state else { return false }
        state = .done
        return true
    }

    /// The head at the start of `buffer`'s readable bytes (read in place: no slice of it is kept),
    /// and its length through the empty line. Throws when the bytes end before the head does, too.
    private mutating func makeHead(_ buffer: ByteBuffer) throws -> (Head, Int) {
        try buffer.withUnsafeReadableBytes { try makeHead($0) }
    }

    /// One pass over the lines to learn the framing and what to drop, then the kept lines are
    /// copied in runs: nothing is turned into a String.
    private mutating func makeHead(_ bytes: UnsafeRawBufferPointer) throws -> (Head, Int) {
        let statusEnd = HeadLines.lineEnd(bytes, from: 0)
        // The reason phrase may have tabs but no other control character: a CR in it would end the
        // line early for the client, and what followed would read as a header (nginx refuses it too).
        guard statusEnd >= 12, bytes[0] == UInt8(ascii: "H"), bytes[4] == UInt8(ascii: "/"), bytes[8] == UInt8(ascii: " "),
            let status = ASCII.decimal(bytes, 9..<12), !ASCII.containsControlByteOtherThanTab(bytes, 12..<statusEnd)
        else { throw Failure(description: "upstream sent an invalid status line") }
        let http10 = ASCII.equalsIgnoringCase(bytes, 0..<8, "http/1.0")

        var contentLength: Int?
        var chunked = false
        var otherCoding = false
        var close = http10
        var keepAliveToken = false
        var connectionNames: [Range<Int>] = []
        // An unusually long head's worth is not kept for the life of a pooled connection.
        if fields.capacity > 64 { fields = [] } else { fields.removeAll(keepingCapacity: true) }
        var start = statusEnd + 2
        while true {
            guard start < bytes.count else { throw Failure(description: "upstream sent an incomplete header") }
            if bytes[start] == 13 {
                // The empty line that ends the head; a CR alone starts no line.
                guard start + 1 < bytes.count, bytes[start + 1] == 10 else { throw Failure(description: "upstream sent an invalid header line") }
                break
            }
            guard let field = Self.field(bytes, from: start) else { throw Failure(description: "upstream sent an invalid header line") }
            fields.append(field)
            start = field.line.upperBound + 2
            switch field.kind {
            case .contentLength:
                guard let value = ASCII.decimal(bytes, field.value), contentLength == nil || contentLength == value else {
                    throw Failure(description: "upstream sent an invalid Content-Length")
                }
                contentLength = value
            case .transferEncoding:
                var last: Range<Int>?
                ASCII.forEachElement(bytes, field.value) { last = $0 }
                chunked = last.map { ASCII.equalsIgnoringCase(bytes, $0, "chunked") } ?? false
                otherCoding = !chunked
            case .connection:
                ASCII.forEachElement(bytes, field.value) { token in
                    if ASCII.equalsIgnoringCase(bytes, token, "close") {
                        close = true
                    } else if ASCII.equalsIgnoringCase(bytes, token, "keep-alive") {
                        keepAliveToken = true
                    } else {
                        connectionNames.append(token)
                    }
                }
            case .url, .upgrade, .hopByHop, .host, .forwardedFor, .forwardedOther, .other:
                break
            }
        }
        if http10, keepAliveToken { close = false }
        let length = start + 2

        let framing: Framing
        if isHeadRequest || status == 204 || status == 304 || (100..<200).contains(status) {
            framing = .none
        } else if chunked {
            framing = .chunked
        } else if otherCoding {
            framing = .untilClose
        } else if let contentLength {
            framing = .length(contentLength)
        } else {
            framing = .untilClose
        }

        // The client talks to warden, an HTTP/1.1 server, whatever version the upstream speaks.
        // Room for the handler's own lines, and for a small body sent in the same buffer.
        var smallBody = 0
        if case .length(let count) = framing, count <= Self.smallBodyBytes { smallBody = count }
        // Taken out of `spareHead`: the receiver of the head holds the only reference and can add to it in place.
        var out = ByteBuffer.head(reusing: spareHead.take(), capacity: length + 64 + smallBody)
        // What is written here: at most the upstream's head with "HTTP/1.1" for its version, and
        // `Connection: upgrade`.
        let capacity = length + 8 + 21
        // Kept lines are contiguous in the upstream's head: each run of them is one copy. The status
        // line is one of them when the upstream speaks HTTP/1.1 too.
        let sameVersion = ASCII.equals(bytes, 0..<8, "HTTP/1.1")
        var hasURLFields = false
        out.writeHead(capacity: capacity) { writer in
            if !sameVersion { writer.appendLiteral("HTTP/1.1") }
            var kept = HeadLines.Runs(from: sameVersion ? 0 : 8)
            kept.add((sameVersion ? 0 : 8)..<(statusEnd + 2), keep: true) { writer.append(bytes, $0) }
            for field in fields {
                let keep: Bool
                switch field.kind {
                case .transferEncoding where framing == .chunked && !dechunk, .upgrade where status == 101:
                    keep = true
                case .transferEncoding, .upgrade, .connection, .hopByHop:
                    keep = false
                case .contentLength, .url, .host, .forwardedFor, .forwardedOther, .other:
                    keep = !connectionNames.contains { ASCII.equalsIgnoringCase(bytes, field.name, $0) }
                }
                kept.add(field.line.lowerBound..<(field.line.upperBound + 2), keep: keep) { writer.append(bytes, $0) }
                if keep, field.kind == .url { hasURLFields = true }
            }
            kept.finish { writer.append(bytes, $0) }
            if status == 101 { writer.appendLiteral("Connection: upgrade\r\n") }
        }
        let head = Head(status: status, bytes: out, framing: framing, keepAlive: !close && framing != .untilClose, hasURLFields: hasURLFields)
        return (head, length)
    }

    private struct Field {
        var line: Range<Int>
        var name: Range<Int>
        var value: Range<Int>
        var kind: FieldName
    }

    /// The `name: value` line at `start`, with a name of visible characters, no obsolete line
    /// folding, and no CR, LF or NUL in the value; one pass over its bytes.
    private static func field(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Field? {
        guard let line = ASCII.headerLine(bytes, from: start, name: .visible, value: { $0 != 0 && $0 != 10 }) else { return nil }
        return Field(line: start..<line.end, name: line.name, value: line.value, kind: FieldName(bytes, line.name))
    }
}

/// Finds where a chunked body ends (size lines, data, CRLFs, the last chunk and trailers), so the
/// bytes can be forwarded untouched, and where the data is, for clients that cannot take chunks.
struct ChunkScanner {
    private enum State {
        case size(value: Int, digits: Int)
        case extensionPart
        case sizeLF
        case data(remaining: Int)
        case dataCR
        case dataLF
        case trailerLineStart
        case trailerLine
        case trailerLF(empty: Bool)
    }

    private var state = State.size(value: 0, digits: 0)
    private var last = false
    private var data: [Range<Int>] = []

    /// Returns how many bytes belong to the body and whether it ended there.
    mutating func scan(_ bytes: UnsafeRawBufferPointer) throws -> (consumed: Int, finished: Bool) {
        data.removeAll(keepingCapacity: true)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            switch state {
            case .size(let value, let digits):
                if let digit = Self.hexValue(byte) {
                    guard digits < 15 else { throw ResponseFramer.Failure(description: "upstream sent a chunk size that is too big") }
                    state = .size(value: value * 16 + digit, digits: digits + 1)
                } else if digits > 0, byte == 13 {
                    last = value == 0
                    pendingSize = value
                    state = .sizeLF
                } else if digits > 0, byte == UInt8(ascii: ";") || byte == 32 || byte == 9 {
                    last = value == 0
                    pendingSize = value
                    state = .extensionPart
                } else {
                    throw ResponseFramer.Failure(description: "upstream sent an invalid chunk size")
                }
                index += 1
            case .extensionPart:
                if byte == 13 { state = .sizeLF } else if byte == 10 { throw ResponseFramer.Failure(description: "upstream sent a bare LF in a chunk") }
                index += 1
            case .sizeLF:
                guard byte == 10 else { throw ResponseFramer.Failure(description: "upstream sent an invalid chunk size line") }
                index += 1
                state = last ? .trailerLineStart : .data(remaining: pendingSize)
            case .data(let remaining):
                let count = min(remaining, bytes.count - index)
                data.append(index..<(index + count))
                index += count
                state = count == remaining ? .dataCR : .data(remaining: remaining - count)
            case .dataCR:
                guard byte == 13 else { throw ResponseFramer.Failure(description: "upstream sent a chunk longer than its size") }
                index += 1
                state = .dataLF
            case .dataLF:
                guard byte == 10 else { throw ResponseFramer.Failure(description: "upstream sent a chunk longer than its size") }
                index += 1
                state = .size(value: 0, digits: 0)
            case .trailerLineStart:
                index += 1
                state = byte == 13 ? .trailerLF(empty: true) : .trailerLine
            case .trailerLine:
                index += 1
                if byte == 13 { state = .trailerLF(empty: false) }
            case .trailerLF(let empty):
                guard byte == 10 else { throw ResponseFramer.Failure(description: "upstream sent an invalid trailer") }
                index += 1
                if empty { return (index, true) }
                state = .trailerLineStart
            }
        }
        return (index, false)
    }

    private var pendingSize = 0

    /// Data ranges of the last `scan`, relative to the bytes it was given.
    mutating func takeData() -> [Range<Int>] {
        defer { data.removeAll(keepingCapacity: true) }
        return data
    }

    private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case 48...57: Int(byte - 48)
        case 65...70: Int(byte - 55)
        case 97...102: Int(byte - 87)
        default: nil
        }
    }
}
