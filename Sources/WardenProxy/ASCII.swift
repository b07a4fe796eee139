import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Byte-level comparisons and copies for header names and values. The per-request paths use these
/// instead of building and comparing Strings: a header name is mostly rejected by its length alone.
enum ASCII {
    /// `bytes[range]` equals `literal`, byte for byte.
    static func equals(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ literal: StaticString) -> Bool {
        guard range.count == literal.utf8CodeUnitCount else { return false }
        guard let base = bytes.baseAddress else { return range.isEmpty }
        return memcmp(base + range.lowerBound, literal.utf8Start, range.count) == 0
    }

    /// `bytes[range]` equals `lower` (a lowercase literal), ignoring ASCII case. Eight bytes at a
    /// time where there are eight (the last word may overlap the one before). Inlined so the
    /// literal's words and case bits become constants.
    @inline(__always)
    static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ lower: StaticString) -> Bool {
        let count = lower.utf8CodeUnitCount
        guard range.count == count else { return false }
        let literal = UnsafeRawPointer(lower.utf8Start)
        guard count >= 8 else {
            for offset in 0..<count where lowercased(bytes[range.lowerBound + offset]) != literal.load(fromByteOffset: offset, as: UInt8.self) {
                return false
            }
            return true
        }
        var offset = 0
        while true {
            let expected = literal.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            let word = bytes.loadUnaligned(fromByteOffset: range.lowerBound + offset, as: UInt64.self)
            if word | caseBits(of: expected) != expected { return false }
            if offset == count - 8 { return true }
            offset = min(offset + 8, count - 8)
        }
    }

    /// 0x20 in each byte of `lower` (ASCII) that is a lowercase letter: OR-ed into a byte of a
    /// name, it makes an uppercase letter match and changes nothing else.
    @inline(__always)
    private static func caseBits(of lower: UInt64) -> UInt64 {
        // The top bit of each byte: at least "a" (0x61), and at least "{" (0x7B), the byte after "z".
        let fromA = (lower &+ ones &* 0x1F) & tops
        let pastZ = (lower &+ ones &* 0x05) & tops
        return (fromA & ~pastZ) >> 2
    }

    /// `bytes[range]` as a String.
    static func string(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
    }

    /// `bytes[first]` equals `bytes[second]`, ignoring ASCII case.
    static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ first: Range<Int>, _ second: Range<Int>) -> Bool {
        guard first.count == second.count else { return false }
        return zip(first, second).allSatisfy { lowercased(bytes[$0]) == lowercased(bytes[$1]) }
    }

    @inline(__always)
    static func lowercased(_ byte: UInt8) -> UInt8 {
        byte &- 65 < 26 ? byte | 0x20 : byte
    }

    static func isBlank(_ byte: UInt8) -> Bool { byte == 32 || byte == 9 }

    /// `range` without the spaces and tabs at either end.
    static func trimmed(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Range<Int> {
        var start = range.lowerBound
        var end = range.upperBound
        while start < end, isBlank(bytes[start]) { start += 1 }
        while end > start, isBlank(bytes[end - 1]) { end -= 1 }
        return start..<end
    }

    /// Which bytes a field name may have.
    enum FieldNameRule {
        /// RFC 9110 `tchar`: what a client's request may use.
        case token
        /// Visible ASCII but `(`, `)` and `"`: what an upstream's response may use (nginx reads
        /// them as leniently), and what heads checked before have.
        case visible

        @inline(__always)
        func admits(_ byte: UInt8) -> Bool {
            switch self {
            case .token: ASCII.isTokenByte(byte)
            case .visible: byte > 32 && byte < 127 && byte != UInt8(ascii: "(") && byte != UInt8(ascii: ")") && byte != UInt8(ascii: "\"")
            }
        }
    }

    /// RFC 9110 `tchar`.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
            UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
            UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            true
        default:
            false
        }
    }

    /// The `name: value` line at `start` of a request or response head: a name of bytes `nameRule`
    /// admits, a value of bytes `isValueByte` admits, and CRLF. `end` is where its CR is; `value` is
    /// trimmed. nil for anything else: an empty name, a leading blank (obsolete folding), a CR
    /// without LF, no CRLF at all.
    @inline(__always)
    static func headerLine(
        _ bytes: UnsafeRawBufferPointer, from start: Int, name nameRule: FieldNameRule, value isValueByte: (UInt8) -> Bool
    ) -> (name: Range<Int>, value: Range<Int>, end: Int)? {
        // Eight bytes at a time up to the first that ends or breaks a `.visible` name.
        var colon = nameRule == .visible ? wordsBefore(bytes, from: start, to: bytes.count, stop: firstVisibleNameStop(in:)) : start
        while colon < bytes.count, bytes[colon] != UInt8(ascii: ":") {
            guard nameRule.admits(bytes[colon]) else { return nil }
            colon += 1
        }
        guard colon > start, colon < bytes.count else { return nil }
        // Only control characters and DEL need a look: every value admits the other bytes, and the
        // CR that ends the line is one of them.
        let end = firstControlByte(bytes, from: colon + 1, to: bytes.count) { bytes[$0] == 13 || !isValueByte(bytes[$0]) }
        guard end + 1 < bytes.count, bytes[end] == 13, bytes[end + 1] == 10 else { return nil }
        return (start..<colon, trimmed(bytes, (colon + 1)..<end), end)
    }

    /// Where the first byte below 32 or of 127 (DEL) is among the eight (in memory order), if any.
    /// Subtracting 32 from each byte sets its top bit where the byte was below 32 (bytes of 128 and
    /// up are masked out by `~word`); a borrow only spreads to the bytes after such a byte, so the
    /// lowest bit set marks the first one exactly. DEL is found the same way, as a zero in
    /// `word ^ 0x7F…`.
    @inline(__always)
    static func firstControlByte(in word: UInt64) -> Int? {
        let little = UInt64(littleEndian: word)
        let del = little ^ (ones &* 127)
        let found = ((little &- ones &* 32) & ~little & tops) | ((del &- ones) & ~del & tops)
        return found == 0 ? nil : found.trailingZeroBitCount >> 3
    }

    /// Where the first byte below 32 or of 127 whose index `isWanted` accepts is in
    /// `bytes[start..<end]`, or `end`: from one such byte to the next, eight bytes at a time where
    /// there are eight.
    @inline(__always)
    static func firstControlByte(
        _ bytes: UnsafeRawBufferPointer, from start: Int, to end: Int, where isWanted: (Int) -> Bool = { _ in true }
    ) -> Int {
        var index = start
        while true {
            index = wordsBefore(bytes, from: index, to: end, stop: firstControlByte(in:))
            while index < end, bytes[index] >= 32, bytes[index] != 127 { index += 1 }
            guard index < end, !isWanted(index) else { return index }
            index += 1
        }
    }

    /// Reads `bytes[start..<end]` eight bytes at a time: where the first byte `stop` finds in a
    /// word is, or where fewer than eight bytes are left (the caller goes on a byte at a time).
    @inline(__always)
    private static func wordsBefore(_ bytes: UnsafeRawBufferPointer, from start: Int, to end: Int, stop: (UInt64) -> Int?) -> Int {
        var index = start
        while index + 8 <= end {
            if let offset = stop(bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)) { return index + offset }
            index += 8
        }
        return index
    }

    /// Whether `bytes[range]` has a byte below 32 other than a tab, or DEL.
    static func containsControlByteOtherThanTab(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        firstControlByte(bytes, from: range.lowerBound, to: range.upperBound) { bytes[$0] != 9 } < range.upperBound
    }

    /// Where the first byte a `.visible` name cannot have, or the colon after it, is among the
    /// eight (in memory order), if any: below 33, 127 and up, `:`, `(`, `)` or `"`. Each test marks
    /// the first such byte exactly (a borrow only spreads to the bytes after it), so the lowest bit
    /// set of them all is the first stop.
    @inline(__always)
    static func firstVisibleNameStop(in word: UInt64) -> Int? {
        let little = UInt64(littleEndian: word)
        let below33 = (little &- ones &* 33) & ~little & tops
        let high = little & tops
        let found = below33 | high | zeroByte(little ^ ones &* 127) | zeroByte(little ^ ones &* 0x3A)
            | zeroByte(little ^ ones &* 0x28) | zeroByte(little ^ ones &* 0x29) | zeroByte(little ^ ones &* 0x22)
        return found == 0 ? nil : found.trailingZeroBitCount >> 3
    }

    /// The top bit of each zero byte of `word`, exact up to the first one.
    @inline(__always)
    private static func zeroByte(_ word: UInt64) -> UInt64 {
        (word &- ones) & ~word & tops
    }

    private static let ones: UInt64 = 0x0101_0101_0101_0101
    private static let tops: UInt64 = 0x8080_8080_8080_8080

    /// The comma-separated elements of a header value, trimmed; empty ones skipped.
    static func forEachElement(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ body: (Range<Int>) -> Void) {
        var start = range.lowerBound
        while start < range.upperBound {
            var end = start
            while end < range.upperBound, bytes[end] != UInt8(ascii: ",") { end += 1 }
            let element = trimmed(bytes, start..<end)
            if !element.isEmpty { body(element) }
            start = end + 1
        }
    }

    /// A decimal number of at most 18 digits and nothing else.
    static func decimal(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int? {
        guard !range.isEmpty, range.count <= 18 else { return nil }
        var value = 0
        for index in range {
            let digit = bytes[index] &- 48
            guard digit < 10 else { return nil }
            value = value * 10 + Int(digit)
        }
        return value
    }
}

/// Writes a head's pieces back to back into memory reserved once: a `writeString` per piece would
/// check capacity and take an exclusive access of the buffer each time.
struct HeadWriter {
    private let out: UnsafeMutableRawBufferPointer
    private(set) var count = 0

    fileprivate init(_ out: UnsafeMutableRawBufferPointer) { self.out = out }

    @inline(__always)
    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        precondition(count + bytes.count <= out.count, "head longer than reserved")
        if let source = bytes.baseAddress, let base = out.baseAddress { (base + count).copyMemory(from: source, byteCount: bytes.count) }
        count += bytes.count
    }

    mutating func append(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) {
        append(UnsafeRawBufferPointer(rebasing: bytes[range]))
    }

    mutating func append(_ text: String) {
        // Native strings (and small ones) lend their bytes without a copy of the String.
        if text.utf8.withContiguousStorageIfAvailable({ append(UnsafeRawBufferPointer($0)) }) == nil {
            var text = text
            text.withUTF8 { append(UnsafeRawBufferPointer($0)) }
        }
    }

    /// A literal (a separate name: given a literal, `append` would pick the `String` overload).
    /// Inlined so the copy has a constant length: a few moves instead of a call to `memmove`.
    @inline(__always)
    mutating func appendLiteral(_ literal: StaticString) {
        append(UnsafeRawBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    /// `name: value` and CRLF.
    mutating func appendField(_ name: String, _ value: String) {
        append(name)
        appendLiteral(": ")
        append(value)
        appendLiteral("\r\n")
    }
}

extension ByteBuffer {
    /// A buffer kept for the next head is dropped above this size, so an idle connection does not
    /// hold an unusually large one.
    static let maximumSpareCapacity = 16384

    /// `spare`, emptied, when it is there and small enough to keep; else a new buffer. A spare that
    /// is still referenced elsewhere (a write not yet done) gets new storage from `clear()`.
    /// (Consumed, so the spare's storage stays uniquely referenced and is emptied in place.)
    static func head(reusing spare: consuming ByteBuffer?, capacity: Int) -> ByteBuffer {
        guard var buffer = spare.take(), buffer.capacity <= maximumSpareCapacity else {
            return ByteBufferAllocator().buffer(capacity: capacity)
        }
        buffer.clear()
        return buffer
    }

    /// Lets `body` write up to `capacity` bytes (more traps) with one reservation.
    mutating func writeHead(capacity: Int, _ body: (inout HeadWriter) -> Void) {
        writeWithUnsafeMutableBytes(minimumWritableBytes: capacity) { out in
            var writer = HeadWriter(out)
            body(&writer)
            return writer.count
        }
    }

    mutating func writeHeaderField(_ name: String, _ value: String) {
        writeHead(capacity: name.utf8.count + value.utf8.count + 4) { $0.appendField(name, value) }
    }
}
