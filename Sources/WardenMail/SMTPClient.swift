import WardenCore
import WardenPlatform
import NIOCore
import NIOPosix
import NIOSSL
import WardenConfig

/// One SMTP reply: `250-first`, `250 last` lines folded into a code and its text.
public struct SMTPReply: Sendable, Equatable {
    public var code: Int
    public var lines: [String]
    public var text: String { lines.joined(separator: " ") }
    public var isPositive: Bool { (200..<400).contains(code) }
}

/// Turns bytes into SMTP replies, multi-line ones included. Lines over 4 KB are an error (a broken
/// server must not make warden buffer without end).
struct SMTPReplyDecoder: ByteToMessageDecoder {
    typealias InboundOut = SMTPReply
    private var pending: [String] = []

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > 4096 { throw SMTPError.malformedReply("line too long") }
            return .needMoreData
        }
        let length = newline - buffer.readerIndex + 1
        var bytes = buffer.readBytes(length: length) ?? []
        // Bytes, not Characters: "\r\n" is one Character and would survive a Character-wise trim.
        while let last = bytes.last, last == UInt8(ascii: "\n") || last == UInt8(ascii: "\r") { bytes.removeLast() }
        let line = String(decoding: bytes, as: UTF8.self)
        guard bytes.count >= 3, let code = Int(String(decoding: bytes[0..<3], as: UTF8.self)), (200..<600).contains(code) else {
            throw SMTPError.malformedReply(line)
        }
        let more = bytes.count > 3 && bytes[3] == UInt8(ascii: "-")
        pending.append(bytes.count > 4 ? String(decoding: bytes[4...], as: UTF8.self) : "")
        if more { return .continue }
        let reply = SMTPReply(code: code, lines: pending)
        pending = []
        context.fireChannelRead(NIOAny(reply))
        return .continue
    }
}

public enum SMTPError: Error, CustomStringConvertible, Equatable {
    case connect(String)
    case timeout
    case malformedReply(String)
    case rejected(command: String, SMTPReply)
    case startTLSUnavailable
    case authenticationUnavailable
    case closed
    /// The server's certificate was refused (`verify: enable`), or the TLS handshake failed.
    case tls(String)

    public var description: String {
        switch self {
        case .connect(let reason): "cannot connect: \(reason)"
        case .timeout: "timed out"
        case .malformedReply(let line): "malformed reply '\(line.prefix(80))'"
        case .rejected(let command, let reply): "\(command) rejected: \(reply.code) \(reply.text)"
        case .startTLSUnavailable: "the server does not offer STARTTLS, which 'using tls' requires"
        case .authenticationUnavailable: "the server offers neither AUTH PLAIN nor AUTH LOGIN"
        case .closed: "the server closed the connection"
        case .tls(let reason): reason
        }
    }
}

/// A small, strict SMTP client on SwiftNIO: EHLO (HELO as fallback), STARTTLS, implicit TLS,
/// AUTH PLAIN/LOGIN, MAIL/RCPT/DATA with dot-stuffing. One message per connection, as monit does.
public struct SMTPClient: Sendable {
    public let server: MailServer
    public let heloName: String
    public let group: any EventLoopGroup

    public init(server: MailServer, heloName: String, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.server = server
        self.heloName = heloName
        self.group = group
    }

    /// Sends one message; returns the server's reply to the end of DATA (the `250` that makes it delivered).
    public func send(_ message: MailMessage, mailer: String) async throws -> SMTPReply {
        let timeout = Duration.seconds(server.timeout ?? 5)
        let channel: NIOAsyncChannel<SMTPReply, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(Int64(server.timeout ?? 5)))
                .connect(host: server.host, port: server.effectivePort) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if server.security == .implicitTLS {
                            let context = try NIOSSLContext(configuration: server.ssl.clientTLSConfiguration())
                            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: TLSOptions.serverName(for: server.host)))
                        }
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(SMTPReplyDecoder()))
                        return try NIOAsyncChannel<SMTPReply, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw SMTPError.connect("[\(server.host)]:\(server.effectivePort) -- \(error)")
        }
        let underlying = channel.channel
        return try await withThrowingTaskGroup(of: SMTPReply?.self) { group in
            group.addTask {
                try await channel.executeThenClose { inbound, outbound in
                    var session = Session(inbound: inbound.makeAsyncIterator(), outbound: outbound, channel: underlying)
                    return try await dialogue(&session, message: message, mailer: mailer)
                }
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                underlying.close(promise: nil)
                throw SMTPError.timeout
            }
            defer { group.cancelAll() }
            do {
                guard let reply = try await group.next() ?? nil else { throw SMTPError.closed }
                return reply
            } catch where TLSFailure.isTLS(error) {
                throw SMTPError.tls(TLSFailure.describe(error))
            }
        }
    }

    struct Session {
        var inbound: NIOAsyncChannelInboundStream<SMTPReply>.AsyncIterator
        let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
        let channel: any Channel

        mutating func read() async throws -> SMTPReply {
            guard let reply = try await inbound.next() else { throw SMTPError.closed }
            return reply
        }

        func write(_ line: String) async throws {
            try await outbound.write(ByteBuffer(string: line + "\r\n"))
        }

        /// Sends a command and requires a reply with the expected first digit.
        mutating func command(_ line: String, expect: Int, shown: String? = nil) async throws -> SMTPReply {
            try await write(line)
            let reply = try await read()
            guard reply.code / 100 == expect else { throw SMTPError.rejected(command: shown ?? line, reply) }
            return reply
        }
    }

    private func dialogue(_ session: inout Session, message: MailMessage, mailer: String) async throws -> SMTPReply {
        let greeting = try await session.read()
        guard greeting.code == 220 else { throw SMTPError.rejected(command: "greeting", greeting) }
        var capabilities = try await hello(&session)
        let offersStartTLS = capabilities.contains { $0.uppercased() == "STARTTLS" }
        if server.security == .startTLS {
            guard offersStartTLS else { throw SMTPError.startTLSUnavailable }
            _ = try await session.command("STARTTLS", expect: 2)
            let context = try NIOSSLContext(configuration: server.ssl.clientTLSConfiguration())
            let channel = session.channel
            let hostname = TLSOptions.serverName(for: server.host)
            // The TLS handler goes below the reply decoder; it is made on the channel's event loop.
            try await channel.eventLoop.submit {
                try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: hostname), position: .first)
            }.get()
            capabilities = try await hello(&session)
        }
        if let user = server.username {
            let password = server.password ?? ""
            let auth = capabilities.first { $0.uppercased().hasPrefix("AUTH") }?.uppercased().split(separator: " ").map(String.init) ?? []
            if auth.contains("PLAIN") {
                let token = Base64.encode(Array("\u{0}\(user)\u{0}\(password)".utf8))
                _ = try await session.command("AUTH PLAIN \(token)", expect: 2, shown: "AUTH PLAIN")
            } else if auth.contains("LOGIN") {
                _ = try await session.command("AUTH LOGIN", expect: 3)
                _ = try await session.command(Base64.encode(Array(user.utf8)), expect: 3, shown: "AUTH LOGIN user")
                _ = try await session.command(Base64.encode(Array(password.utf8)), expect: 2, shown: "AUTH LOGIN password")
            } else {
                throw SMTPError.authenticationUnavailable
            }
        }
        _ = try await session.command("MAIL FROM:<\(MailMessage.address(message.from))>", expect: 2)
        for recipient in message.to {
            _ = try await session.command("RCPT TO:<\(MailMessage.address(recipient))>", expect: 2)
        }
        _ = try await session.command("DATA", expect: 3)
        try await session.outbound.write(ByteBuffer(string: message.rendered(mailer: mailer) + ".\r\n"))
        let accepted = try await session.read()
        guard accepted.code / 100 == 2 else { throw SMTPError.rejected(command: "end of DATA", accepted) }
        try? await session.write("QUIT")
        return accepted
    }

    /// EHLO, falling back to HELO for servers that don't speak ESMTP; returns the capabilities.
    private func hello(_ session: inout Session) async throws -> [String] {
        try await session.write("EHLO \(heloName)")
        let reply = try await session.read()
        if reply.code == 250 { return Array(reply.lines.dropFirst()) }
        _ = try await session.command("HELO \(heloName)", expect: 2)
        return []
    }

}
