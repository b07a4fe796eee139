
#if canImport(Glibc)
import Glibc
#endif

/// monit's generic protocol: `send "…"` writes a string (with `\0x00` escapes for bytes), `expect "…"`
/// reads what the server sends and matches a POSIX extended regex against it.
enum GenericDialogue {
    /// monit's send/expect buffer (`set limits { sendExpectBuffer }`, 256 B by default).
    static let expectBuffer = 256

    static func run(_ steps: [DialogueStep], on stream: ProbeStream) async throws {
        for step in steps {
            switch step {
            case .send(let text):
                try await stream.write(unescape(text), "GENERIC: error sending data")
            case .expect(let pattern):
                let bytes = try await stream.readBurst("GENERIC: error receiving data", limit: expectBuffer)
                // A NUL would end the text the regex sees; monit shows it as \0.
                let text = String(decoding: bytes.flatMap { $0 == 0 ? Array("\\0".utf8) : [$0] }, as: UTF8.self)
                if let error = match(pattern, text) {
                    let shown = text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
                    throw ProtocolFailure("GENERIC: received unexpected data [\(shown)] -- \(error)")
                }
            }
        }
    }

    /// nil when `pattern` matches; otherwise regerror's reason.
    private static func match(_ pattern: String, _ text: String) -> String? {
        var regex = regex_t()
        let compiled = regcomp(&regex, pattern, REG_EXTENDED)
        guard compiled == 0 else { return "invalid regular expression" }
        defer { regfree(&regex) }
        let result = regexec(&regex, text, 0, nil, 0)
        guard result != 0 else { return nil }
        var reason = [CChar](repeating: 0, count: 256)
        regerror(result, &regex, &reason, reason.count)
        return String(decoding: reason.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// A send string's escapes as monit reads them: `\r`, `\n`, `\t`, `\\`, and `\0xHH` for the byte HH.
    static func unescape(_ text: String) -> [UInt8] {
        let bytes = Array(text.utf8)
        let simple: [UInt8: UInt8] = [UInt8(ascii: "r"): 13, UInt8(ascii: "n"): 10, UInt8(ascii: "t"): 9, UInt8(ascii: "\\"): UInt8(ascii: "\\")]
        var result: [UInt8] = []
        var index = 0
        while index < bytes.count {
            guard bytes[index] == UInt8(ascii: "\\"), index + 1 < bytes.count else {
                result.append(bytes[index])
                index += 1
                continue
            }
            if let byte = simple[bytes[index + 1]] {
                result.append(byte)
                index += 2
            } else if index + 4 < bytes.count, bytes[index + 1] == UInt8(ascii: "0"), bytes[index + 2] | 0x20 == UInt8(ascii: "x"),
                let value = UInt8(String(decoding: bytes[(index + 3)...(index + 4)], as: UTF8.self), radix: 16)
            {
                result.append(value)
                index += 5
            } else {
                result.append(bytes[index])
                index += 1
            }
        }
        return result
    }
}
