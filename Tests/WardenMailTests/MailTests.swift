import Logging
import NIOCore
import NIOEmbedded
import Synchronization
import Testing
import WardenConfig
@testable import WardenMail

@Suite("Mail: replies, messages, recipients")
struct MailTests {
    @Test func replyDecoderFoldsMultilineRepliesAndRejectsGarbage() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(SMTPReplyDecoder()))
        try channel.writeInbound(ByteBuffer(string: "250-mail.example.com\r\n250-STARTTLS\r\n"))
        #expect(try channel.readInbound(as: SMTPReply.self) == nil, "incomplete until the last line")
        try channel.writeInbound(ByteBuffer(string: "250 AUTH PLAIN LOGIN\r\n220 ready"))
        let reply = try #require(try channel.readInbound(as: SMTPReply.self))
        #expect(reply.code == 250)
        #expect(reply.lines == ["mail.example.com", "STARTTLS", "AUTH PLAIN LOGIN"], "no CR left on any line")
        #expect(throws: SMTPError.self) { try channel.writeInbound(ByteBuffer(string: "\r\nhello there\r\n")) }
    }

    @Test func messageIsDotStuffedWithCRLFAndEncodedHeaders() {
        let message = MailMessage(
            from: "warden@vm", to: ["a@example.com", "b@example.com"], replyTo: "ops@example.com", subject: "Dienst läuft nicht",
            body: "line one\n.starts with a dot\n..two dots\nlast", date: 0, messageID: "1.abc@vm")
        let text = message.rendered(mailer: "warden 0.1.0")
        #expect(text.contains("To: a@example.com, b@example.com\r\n"))
        #expect(text.contains("Reply-To: ops@example.com\r\n"))
        #expect(text.contains("Subject: =?UTF-8?B?"))
        #expect(text.contains("Message-Id: <1.abc@vm>\r\n"))
        #expect(text.contains("\r\n\r\nline one\r\n..starts with a dot\r\n...two dots\r\nlast\r\n"))
        #expect(!text.replacingOccurrences("\r\n", "").contains("\n"), "only CRLF line ends")
        #expect(MailMessage.address("Warden <warden@vm>") == "warden@vm")
    }

    func service(_ config: String) throws -> AlertService {
        let result = ControlFile.parse(config)
        let configuration = try #require(result.configuration, "\(result.renderedDiagnostics())")
        return AlertService(configuration: configuration, hostName: "vm", mailer: "warden", logger: Logger(label: "test"), transport: { _, _ in })
    }

    func event(_ kind: EventKind, _ state: AlertEvent.State = .failed) -> AlertEvent {
        AlertEvent(service: "app", kind: kind, state: state, title: "Does not exist", message: "process is not running", action: "restart", date: 1_800_000_000)
    }

    @Test func recipientsHonourFiltersAndNoalert() async throws {
        let alerts = try service(
            """
            set alert all@example.com
            set alert timeouts@example.com only on { timeout }
            set alert quiet@example.com but not on { nonexist }
            set alert muted@example.com
            check process app with pidfile /run/app.pid
              start program = "/bin/true"
              alert own@example.com
              noalert muted@example.com
            """)
        let nonexist = await alerts.recipients(for: event(.nonexist)).map(\.address)
        #expect(nonexist == ["all@example.com", "own@example.com"])
        let timeout = await alerts.recipients(for: event(.timeout)).map(\.address)
        #expect(Set(timeout) == ["all@example.com", "timeouts@example.com", "quiet@example.com", "own@example.com"])
    }

    @Test func mailFormatVariablesAreSubstituted() async throws {
        let alerts = try service(
            """
            set mail-format {
              from: Warden <warden@$HOST>
              subject: [$HOST] $SERVICE: $EVENT
              message: $EVENT on $HOST, action $ACTION: $DESCRIPTION
            }
            set alert ops@example.com
            """)
        let message = await alerts.compose(event(.nonexist), to: ["ops@example.com"], format: MailFormat())
        #expect(message.from == "Warden <warden@vm>")
        #expect(message.subject == "[vm] app: Does not exist")
        #expect(message.body == "Does not exist on vm, action restart: process is not running")
    }

    @Test func defaultMailIsMonitsLayout() async throws {
        let alerts = try service("set alert ops@example.com\n")
        let message = await alerts.compose(event(.nonexist), to: ["ops@example.com"], format: MailFormat())
        #expect(message.subject == "warden alert --  Does not exist app")
        #expect(message.body.hasPrefix("Does not exist Service app \n\n\tDate:        "))
        #expect(message.body.contains("\tAction:      restart\n\tHost:        vm\n\tDescription: process is not running\n\nYour faithful employee,\nwarden"))
    }

    @Test func failedDeliveryIsRetriedAndNothingIsSentTwice() async throws {
        let attempts = Mutex<[String]>([])
        let failing = Mutex(true)
        let configuration = try #require(ControlFile.parse("set mailserver a.example, b.example\nset alert ops@example.com\n").configuration)
        let alerts = AlertService(configuration: configuration, hostName: "vm", mailer: "warden", logger: Logger(label: "test")) { message, server in
            attempts.withLock { $0.append("\(server.host):\(message.messageID)") }
            if failing.withLock({ $0 }) { throw SMTPError.closed }
        }
        await alerts.handle(event(.nonexist))
        #expect(attempts.withLock { $0.count } == 2, "both servers tried in order")
        #expect(await alerts.queuedCount == 1)
        failing.withLock { $0 = false }
        await alerts.tick()
        #expect(await alerts.queuedCount == 0)
        await alerts.tick()
        let sent = attempts.withLock { $0 }
        #expect(sent.count == 3)
        #expect(sent[2].hasPrefix("a.example:"), "the first server that accepts wins")
    }
}

extension String {
    func replacingOccurrences(_ target: String, _ replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
