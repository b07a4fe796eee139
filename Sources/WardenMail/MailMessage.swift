import WardenPlatform
import WardenConfig
#if canImport(Glibc)
import Glibc
#endif

/// One mail: envelope and content, rendered as RFC 5322 text with CRLF line ends.
public struct MailMessage: Sendable, Codable, Hashable {
    public var from: String
    public var to: [String]
    public var replyTo: String?
    public var subject: String
    public var body: String
    public var date: Double
    public var messageID: String

    public init(from: String, to: [String], replyTo: String? = nil, subject: String, body: String, date: Double, messageID: String) {
        self.from = from
        self.to = to
        self.replyTo = replyTo
        self.subject = subject
        self.body = body
        self.date = date
        self.messageID = messageID
    }

    /// The bare address of `Name <a@b>` or `a@b`, for the envelope.
    public static func address(_ text: String) -> String {
        if let open = text.lastIndex(of: "<"), let close = text.lastIndex(of: ">"), open < close {
            return String(text[text.index(after: open)..<close])
        }
        return text.trimming(" \t")
    }

    /// Headers and body, dot-stuffed, ready to follow SMTP's DATA (without the final ".").
    public func rendered(mailer: String) -> String {
        var headers = [
            "From: \(Self.encodeHeader(from))",
            "To: \(to.joined(separator: ", "))",
            "Subject: \(Self.encodeHeader(subject))",
            "Date: \(Self.rfc5322Date(date))",
            "Message-Id: <\(messageID)>",
            "X-Mailer: \(mailer)",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
        ]
        if let replyTo { headers.insert("Reply-To: \(replyTo)", at: 2) }
        let lines = body.replacingLineEnds().split(separator: "\n", omittingEmptySubsequences: false).map { line in
            line.hasPrefix(".") ? "." + line : String(line)
        }
        return headers.joined(separator: "\r\n") + "\r\n\r\n" + lines.joined(separator: "\r\n") + "\r\n"
    }

    /// RFC 2047 for a header with non-ASCII text.
    static func encodeHeader(_ text: String) -> String {
        guard text.utf8.contains(where: { $0 >= 0x80 }) else { return text }
        return "=?UTF-8?B?\(Base64.encode(Array(text.utf8)))?="
    }

    static func rfc5322Date(_ time: Double) -> String {
        TimeFormat.string(time, "%a, %d %b %Y %H:%M:%S %z")
    }
}

extension String {
    func replacingLineEnds() -> String {
        var out = ""
        var previousCR = false
        for character in self {
            if character == "\r\n" {
                out.append("\n")
            } else if character == "\r" {
                previousCR = true
                out.append("\n")
                continue
            } else if !(character == "\n" && previousCR) {
                out.append(character)
            }
            previousCR = false
        }
        return out
    }
}
