#if canImport(Glibc)
import Glibc
#endif

/// Small text helpers shared by every module (WardenZinc, independent by design, keeps its own).

/// Bytes as lowercase hexadecimal (digests, MACs).
public enum Hex {
    public static func string(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}
public enum PercentEncoding {
    /// Decodes `%XX` escapes (and `+` as a space in forms). Strict mode returns nil for a broken
    /// escape or invalid UTF-8, where paths must be refused rather than guessed.
    public static func decode(_ text: String, plusAsSpace: Bool = false, strict: Bool = false) -> String? {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next(), let low = iterator.next(),
                    let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
                else {
                    if strict { return nil }
                    bytes.append(byte)
                    continue
                }
                bytes.append(value)
            } else {
                bytes.append(plusAsSpace && byte == UInt8(ascii: "+") ? UInt8(ascii: " ") : byte)
            }
        }
        return strict ? String(validating: bytes, as: UTF8.self) : String(decoding: bytes, as: UTF8.self)
    }
}

/// strftime(3) on a time in seconds since the epoch, in local time or UTC.
public enum TimeFormat {
    public static func string(_ seconds: Double, _ format: String, utc: Bool = false) -> String {
        var time = time_t(seconds)
        var parts = tm()
        if utc { gmtime_r(&time, &parts) } else { localtime_r(&time, &parts) }
        var buffer = [CChar](repeating: 0, count: 128)
        strftime(&buffer, buffer.count, format, &parts)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `Wed, 25 Nov 2026 12:49:54 GMT`, as HTTP and monit's environment write dates.
    public static func http(_ seconds: Double) -> String { string(seconds, "%a, %d %b %Y %H:%M:%S GMT", utc: true) }
}

extension StringProtocol {
    /// The text without the given characters at either end.
    public func trimming(_ characters: String) -> String {
        var result = Substring(self)
        while let first = result.first, characters.contains(first) { result.removeFirst() }
        while let last = result.last, characters.contains(last) { result.removeLast() }
        return String(result)
    }

    /// The text without white space (line breaks included) at either end.
    public var trimmed: String {
        var result = Substring(self)
        while let first = result.first, first.isWhitespace { result.removeFirst() }
        while let last = result.last, last.isWhitespace { result.removeLast() }
        return String(result)
    }
}

/// The machine's host name (`$HOST` in control files and mails, the dashboard's title).
public enum HostName {
    public static var current: String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
