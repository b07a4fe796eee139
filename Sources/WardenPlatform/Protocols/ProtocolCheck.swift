import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

#if canImport(Glibc)
import Glibc
#endif

/// A protocol test to make: `port N [type tcp|udp|tcpssl] protocol P`, or `unixsocket PATH protocol P`.
public struct ProtocolCheckRequest: Sendable {
    public enum Target: Sendable, Hashable {
        case tcp(host: String, port: Int)
        case udp(host: String, port: Int)
        case unixSocket(String)
    }


    /// monit's protocol name, lowercase: smtp, ssh, mysql, …
    public var protocolName: String
    public var target: Target
    /// Implicit TLS from the first byte (`type tcpssl`, smtps, imaps, pops), with `tlsConfiguration`
    /// (nil: the certificate is not verified, as monit by default).
    public var tls: Bool
    public var tlsConfiguration: TLSConfiguration?
    /// `address A`: the numeric local address to connect from.
    public var source: String?
    /// Covers the connection and the whole dialogue.
    public var timeout: Duration
    public var dialogue: [DialogueStep]
    /// `certificate valid > N days`: the server's certificate must be valid for more than N days.
    public var certificateMinimumDays: Int?
    /// `certificate checksum [md5|sha1] HASH`.
    public var certificateChecksum: CertificateChecksum?
    /// The protocol's options by keyword, as parsed: `username` and `password` (mysql, smtp), `request`,
    /// `origin` and `version` (websocket).
    public var options: [String: String]

    public init(
        protocolName: String, target: Target, tls: Bool = false, timeout: Duration, dialogue: [DialogueStep] = [],
        certificateMinimumDays: Int? = nil, certificateChecksum: CertificateChecksum? = nil, options: [String: String] = [:],
        tlsConfiguration: TLSConfiguration? = nil, source: String? = nil
    ) {
        self.tlsConfiguration = tlsConfiguration
        self.source = source
        self.certificateChecksum = certificateChecksum
        self.protocolName = protocolName
        self.target = target
        self.tls = tls
        self.timeout = timeout
        self.dialogue = dialogue
        self.certificateMinimumDays = certificateMinimumDays
        self.options = options
    }

    /// Whether the protocol runs over TLS from the first byte whatever the port's type says.
    public static func impliesTLS(_ name: String) -> Bool { ["smtps", "imaps", "pops"].contains(name) }
}

extension ConnectionProbe {
    /// Connects, speaks the protocol as monit does, and reports what failed in monit's words.
    public func check(_ request: ProtocolCheckRequest) async -> ProbeResult {
        let started = ContinuousClock.now
        let tls = request.tls || ProtocolCheckRequest.impliesTLS(request.protocolName)
        let inbox = ProbeInbox()
        let expired = NIOLockedValueBox(false)
        let channel: any Channel
        do {
            channel = try await connect(request, tls: tls, inbox: inbox)
        } catch {
            return ProbeResult(
                succeeded: false, message: "cannot connect to \(Self.name(request.target)) -- \(Self.describe(error))",
                responseTime: .now - started)
        }
        let deadline = channel.eventLoop.scheduleTask(in: TimeAmount(request.timeout)) {
            expired.withLockedValue { $0 = true }
            channel.close(promise: nil)
        }
        defer {
            deadline.cancel()
            channel.close(promise: nil)
        }
        let stream = ProbeStream(channel: channel, inbox: inbox, expired: expired, timeout: request.timeout)
        do {
            // The handshake first: a protocol that waits for the client (or none, `type tcpssl` alone)
            // must still prove the server speaks TLS, as monit's connect does.
            if tls { try await stream.handshake("cannot connect to \(Self.name(request.target))") }
            try await Self.speak(request, on: stream)
            // After the dialogue the TLS handshake is surely over and the certificate known.
            if tls {
                try Self.checkCertificate(stream.certificate, minimumDays: request.certificateMinimumDays, checksum: request.certificateChecksum)
            }
            return ProbeResult(succeeded: true, message: "connection succeeded", responseTime: .now - started)
        } catch let failure as ProtocolFailure {
            return ProbeResult(succeeded: false, message: failure.message, responseTime: .now - started)
        } catch {
            return ProbeResult(succeeded: false, message: Self.describe(error), responseTime: .now - started)
        }
    }

    private static func speak(_ request: ProtocolCheckRequest, on stream: ProbeStream) async throws {
        // `-t` refuses these too; a test must not pass while ignoring what it was told to check.
        if let unused = request.options.keys.sorted().first(where: { !(SpokenProtocols.options[request.protocolName] ?? []).contains($0) }) {
            throw ProtocolFailure("warden does not use option '\(unused)' of protocol '\(request.protocolName)'")
        }
        switch request.protocolName {
        case "smtp", "smtps": try await MailProtocols.smtp(stream, username: request.options["username"], password: request.options["password"])
        case "imap", "imaps": try await MailProtocols.imap(stream)
        case "pop", "pops": try await MailProtocols.pop(stream)
        case "ftp": try await MailProtocols.ftp(stream)
        case "ssh": try await ServerProtocols.ssh(stream)
        case "redis": try await ServerProtocols.redis(stream)
        case "memcache": try await ServerProtocols.memcache(stream)
        case "mysql": try await DatabaseProtocols.mysql(stream, username: request.options["username"], password: request.options["password"])
        case "pgsql":
            try await DatabaseProtocols.pgsql(
                stream, username: request.options["username"], password: request.options["password"], database: request.options["database"])
        case "dns": try await ServerProtocols.dns(stream, overUDP: isUDP(request.target))
        case "ntp3": try await ServerProtocols.ntp3(stream)
        case "ldap3": try await ServerProtocols.ldap3(stream)
        case "mqtt": try await ServerProtocols.mqtt(stream)
        case "websocket": try await ServerProtocols.websocket(stream, host: hostName(request.target), options: request.options)
        case "default", "generic": try await GenericDialogue.run(request.dialogue, on: stream)
        default:
            // `-t` refuses these; should one get here, a connection alone must not pass for the protocol.
            throw ProtocolFailure("warden does not speak protocol '\(request.protocolName)'")
        }
    }

    private func connect(_ request: ProtocolCheckRequest, tls: Bool, inbox: ProbeInbox) async throws -> any Channel {
        let target = request.target
        let context = try tls ? Self.tlsContext(request.tlsConfiguration) : nil
        let serverName = Self.hostName(target).flatMap(TLSOptions.serverName(for:))
        let initializer: @Sendable (any Channel) -> EventLoopFuture<any Channel> = { channel in
            channel.eventLoop.makeCompletedFuture {
                if let context {
                    try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: serverName))
                }
                try channel.pipeline.syncOperations.addHandler(ProbeInboxHandler(inbox: inbox))
                return channel
            }
        }
        let udpInitializer: @Sendable (any Channel) -> EventLoopFuture<any Channel> = { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(DatagramPayloadHandler())
                try channel.pipeline.syncOperations.addHandler(ProbeInboxHandler(inbox: inbox))
                return channel
            }
        }
        switch target {
        case .tcp(let host, let port):
            return try await ClientBootstrap.outgoing(group: group, timeout: request.timeout, source: request.source)
                .connect(host: host, port: port, channelInitializer: initializer)
        case .unixSocket(let path):
            return try await ClientBootstrap.outgoing(group: group, timeout: request.timeout, source: nil).connect(unixDomainSocketPath: path, channelInitializer: initializer)
        case .udp(let host, let port):
            let datagrams = DatagramBootstrap(group: group)
            guard let source = request.source else {
                return try await datagrams.connect(host: host, port: port, channelInitializer: udpInitializer)
            }
            let channel = try await datagrams.channelInitializer { channel in udpInitializer(channel).map { _ in } }.bind(host: source, port: 0).get()
            try await channel.connect(to: try SocketAddress.makeAddressResolvingHost(host, port: port)).get()
            return channel
        }
    }

    /// `certificate valid > N days` and `certificate checksum`, with monit's wording.
    static func checkCertificate(_ certificate: NIOSSLCertificate?, minimumDays: Int?, checksum: CertificateChecksum?) throws {
        guard minimumDays != nil || checksum != nil else { return }
        guard let certificate else { throw ProtocolFailure("SSL: the server sent no certificate") }
        if let minimumDays {
            let daysLeft = (Int(certificate.notValidAfter) - Int(time(nil))) / 86_400
            if daysLeft <= minimumDays {
                throw ProtocolFailure("SSL: certificate expires in \(daysLeft) days, valid > \(minimumDays) days required")
            }
        }
        if let checksum, let mismatch = checksum.mismatch(try certificate.toDERBytes()) { throw ProtocolFailure(mismatch) }
    }

    static func name(_ target: ProtocolCheckRequest.Target) -> String {
        switch target {
        case .tcp(let host, let port), .udp(let host, let port): "[\(host)]:\(port)"
        case .unixSocket(let path): "unix socket \(path)"
        }
    }

    private static func hostName(_ target: ProtocolCheckRequest.Target) -> String? {
        switch target {
        case .tcp(let host, _), .udp(let host, _): host
        case .unixSocket: nil
        }
    }

    private static func isUDP(_ target: ProtocolCheckRequest.Target) -> Bool {
        if case .udp = target { return true }
        return false
    }
}

/// One step of monit's generic dialogue (`send "…" expect "…"`): a string to send (escapes such as
/// `\r\n` and `\0x00` as monit has them), or a POSIX extended regex the answer must match.
public enum DialogueStep: Sendable, Hashable {
    case send(String)
    case expect(String)
}

/// The protocols the checkers here speak as monit does; `-t` refuses the others monit knows until
/// they are implemented.
public enum SpokenProtocols {
    public static let names: Set<String> = [
        "default", "generic", "smtp", "smtps", "ssh", "redis", "memcache", "mysql", "pgsql", "imap", "imaps", "pop", "pops",
        "ftp", "dns", "ntp3", "ldap3", "mqtt", "websocket",
    ]

    /// The options (`username "…"`, `request "…"`, …) each protocol's checker uses; `-t` refuses a test
    /// with any other, which warden would otherwise run without.
    public static let options: [String: Set<String>] = [
        "mysql": ["username", "password"], "pgsql": ["username", "password", "database"], "smtp": ["username", "password"],
        "smtps": ["username", "password"],
        "websocket": ["request", "origin", "version"],
    ]
}
