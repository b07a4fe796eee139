import NIOCore

/// Byte-level comparisons and copies for header names and values. The per-request paths use these
/// instead of building and comparing Strings: a header name is mostly rejected by its length alone.
enum ASCII {
    /// `bytes[range]` equals `lower` (a lowercase literal), ignoring ASCII case.
    static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ lower: StaticString) -> Bool {
        guard range.count == lower.utf8CodeUnitCount else { return false }
        let literal = lower.utf8Start
        var offset = 0
        for index in range {
            if lowercased(bytes[index]) != literal[offset] { return false }
            offset += 1
        }
        return true
    }

    /// `text` equals `lower` (a lowercase literal), ignoring ASCII case.
    static func equalsIgnoringCase(_ text: some StringProtocol, _ lower: StaticString) -> Bool {
        let utf8 = text.utf8
        guard utf8.count == lower.utf8CodeUnitCount else { return false }
        return utf8.withContiguousStorageIfAvailable { equalsIgnoringCase(UnsafeRawBufferPointer($0), 0..<$0.count, lower) }
            ?? zip(utf8, UnsafeBufferPointer(start: lower.utf8Start, count: lower.utf8CodeUnitCount)).allSatisfy { lowercased($0) == $1 }
    }

    /// `first` equals `second`, ignoring ASCII case.
    static func equalsIgnoringCase(_ first: some StringProtocol, _ second: some StringProtocol) -> Bool {
        first.utf8.count == second.utf8.count && zip(first.utf8, second.utf8).allSatisfy { lowercased($0) == lowercased($1) }
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

extension ByteBuffer {
    /// `name: value` and CRLF, in one write.
    mutating func writeHeaderField(_ name: String, _ value: String) {
        var name = name
        var value = value
        let count = name.utf8.count + value.utf8.count + 4
        writeWithUnsafeMutableBytes(minimumWritableBytes: count) { out in
            var at = out.copy(&name, at: 0)
            out[at] = UInt8(ascii: ":")
            out[at + 1] = UInt8(ascii: " ")
            at = out.copy(&value, at: at + 2)
            out[at] = 13
            out[at + 1] = 10
            return count
        }
    }
}

extension ByteBuffer {
    /// `METHOD URI HTTP/1.1` and CRLF, in one write.
    mutating func writeRequestLine(_ method: String, _ uri: String) {
        var method = method
        var uri = uri
        let count = method.utf8.count + 1 + uri.utf8.count + Self.versionSuffix.utf8CodeUnitCount
        writeWithUnsafeMutableBytes(minimumWritableBytes: count) { out in
            var at = out.copy(&method, at: 0)
            out[at] = 32
            at = out.copy(&uri, at: at + 1)
            UnsafeMutableRawBufferPointer(rebasing: out[at...]).copyMemory(from: UnsafeRawBufferPointer(start: Self.versionSuffix.utf8Start, count: Self.versionSuffix.utf8CodeUnitCount))
            return count
        }
    }

    private static let versionSuffix: StaticString = " HTTP/1.1\r\n"
}

extension UnsafeMutableRawBufferPointer {
    /// Copies the UTF-8 of `text` to `offset`; returns the offset after it.
    fileprivate func copy(_ text: inout String, at offset: Int) -> Int {
        text.withUTF8 { UnsafeMutableRawBufferPointer(rebasing: self[offset...]).copyMemory(from: UnsafeRawBufferPointer($0)) }
        return offset + text.utf8.count
    }
}
