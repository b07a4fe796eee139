import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization
import WardenConfig
import WardenPlatform

/// What the proxy answers before any site's routes: ACME http-01 challenges, `redirect to https`;
/// and, for `tls auto` listeners, which certificate each handshake gets. Fed by the daemon's ACME
/// service (directly, or over the worker's input); the account key never comes here.
public final class FrontDoor: Sendable {
    struct Certificates {
        /// By lowercased name: the site certificate (or its placeholder) for each host and alias.
        var byName: [String: NIOSSLContext] = [:]
        /// For a handshake without a known name: the first certificate installed.
        var fallback: NIOSSLContext?
        /// tls-alpn-01 answers by name, offered only to a client asking for `acme-tls/1`.
        var challenges: [String: NIOSSLContext] = [:]
    }

    private let tokens = Mutex<[String: String]>([:])
    /// Read by every request: a request pays one atomic load while no challenge is pending.
    private let pendingTokens = Atomic<Int>(0)
    private let certificates = Mutex(Certificates())
    private let listenerCertificates = Mutex<[CertificateFiles: ListenerCertificate]>([:])
    /// The port of the first TLS listener, for `redirect to https` (nil or 443: none in the URL).
    let httpsPort: Int?

    public static let challengePrefix = "/.well-known/acme-challenge/"
    static let acmeALPN = "acme-tls/1"

    public init(httpsPort: Int?) {
        self.httpsPort = httpsPort
    }

    // MARK: - Fed by the ACME service

    /// Publishes (or with nil withdraws) the answer to an http-01 challenge.
    public func setToken(_ token: String, keyAuthorization: String?) {
        tokens.withLock {
            $0[token] = keyAuthorization
            pendingTokens.store($0.count, ordering: .releasing)
        }
    }

    /// Serves `chain` for `names` from the next handshake on; connections open now keep theirs.
    public func install(names: [String], chainPEM: String, keyPEM: String) throws {
        let context = try TLSServerContext.context(chainPEM: Array(chainPEM.utf8), keyPEM: Array(keyPEM.utf8), protocols: TLSServerContext.http2AndHTTP1)
        certificates.withLock { table in
            for name in names { table.byName[name.lowercased()] = context }
            if table.fallback == nil { table.fallback = context }
        }
    }

    /// Publishes (or with nil withdraws) the tls-alpn-01 certificate for `name`.
    public func setChallengeCertificate(name: String, chainPEM: String?, keyPEM: String?) throws {
        let context = try chainPEM.flatMap { chain in
            try keyPEM.map { try TLSServerContext.context(chainPEM: Array(chain.utf8), keyPEM: Array($0.utf8), protocols: [Self.acmeALPN]) }
        }
        certificates.withLock { $0.challenges[name.lowercased()] = context }
    }

    // MARK: - Certificate files (`listen … ssl { certificate: … }`)

    /// The certificate of the listeners of `files`, read at bind (before privileges are dropped).
    func listenerCertificate(_ files: CertificateFiles) throws -> ListenerCertificate {
        if let known = listenerCertificates.withLock({ $0[files] }) { return known }
        let reader = FileSystemReader()
        let chain = try reader.read(files.certificate)
        let key = files.key == files.certificate ? chain : try reader.read(files.key)
        let certificate = ListenerCertificate(
            digest: CertificatePair.digest(chainPEM: chain, keyPEM: key),
            context: try TLSServerContext.context(chainPEM: chain, keyPEM: key, protocols: TLSServerContext.http2AndHTTP1))
        listenerCertificates.withLock { $0[files] = certificate }
        return certificate
    }

    /// Serves a renewed pair for the listeners of `files` from the next handshake on (connections open
    /// now keep theirs); false when it is the pair served already. The daemon checked the pair before
    /// sending it; one that fails here anyway throws, and the current one stays.
    public func replaceListenerCertificate(_ files: CertificateFiles, chainPEM: String, keyPEM: String) throws -> Bool {
        guard let certificate = listenerCertificates.withLock({ $0[files] }) else { return false }
        let (chain, key) = (Array(chainPEM.utf8), Array(keyPEM.utf8))
        let digest = CertificatePair.digest(chainPEM: chain, keyPEM: key)
        guard digest != certificate.digest else { return false }
        certificate.replace(digest: digest, context: try TLSServerContext.context(chainPEM: chain, keyPEM: key, protocols: TLSServerContext.http2AndHTTP1))
        return true
    }

    /// The context for a handshake, from the ClientHello's server name and ALPN offer.
    func context(serverName: String?, protocols: [String]) -> (context: NIOSSLContext, challenge: Bool)? {
        let name = serverName?.lowercased()
        return certificates.withLock { table in
            if protocols == [Self.acmeALPN] {
                return name.flatMap { table.challenges[$0] }.map { ($0, true) }
            }
            return (name.flatMap { table.byName[$0] } ?? table.fallback).map { ($0, false) }
        }
    }

    // MARK: - Requests

    /// A response of the proxy's own, or nil to route the request as usual.
    func answer(
        _ head: RequestHead, entry: SiteTable.Entry?, https: @autoclosure () -> Bool
    ) -> (status: HTTPResponseStatus, body: [UInt8], headers: HTTPHeaders)? {
        if pendingTokens.load(ordering: .acquiring) > 0, head.path.hasPrefix(Self.challengePrefix) {
            let token = String(head.path.dropFirst(Self.challengePrefix.count))
            if let keyAuthorization = tokens.withLock({ $0[token] }) {
                return (.ok, Array(keyAuthorization.utf8), HTTPHeaders())
            }
        }
        guard let entry, entry.site.redirectToHTTPS, !https(), !head.path.hasPrefix(Self.challengePrefix) else { return nil }
        let host = head.host.map(SiteTable.Snapshot.hostName) ?? entry.site.certificateNames.first ?? "localhost"
        let port = httpsPort.map { $0 == 443 ? "" : ":\($0)" } ?? ""
        let location = "https://\(host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host)\(port)\(head.uri)"
        // 301 lets a client turn a POST into a GET; 308 keeps the method and body.
        let status: HTTPResponseStatus = head.isGETOrHEAD ? .movedPermanently : .permanentRedirect
        return (status, ProxyPages.page(Int(status.code), status.reasonPhrase, "warden"), HTTPHeaders([("Location", location)]))
    }
}

/// The certificate of a `listen … ssl { certificate: … }` listener: each new connection takes the
/// current one, so a renewed pair is served from the next handshake on while open connections keep
/// theirs, as `tls auto` does.
final class ListenerCertificate: Sendable {
    private let current: Mutex<(digest: [UInt8], context: NIOSSLContext)>

    init(digest: [UInt8], context: NIOSSLContext) {
        current = Mutex((digest, context))
    }

    var context: NIOSSLContext { current.withLock { $0.context } }
    var digest: [UInt8] { current.withLock { $0.digest } }

    func replace(digest: [UInt8], context: NIOSSLContext) {
        current.withLock { $0 = (digest, context) }
    }
}

/// Reads the ClientHello of a `tls auto` connection, picks its certificate by server name (or
/// the tls-alpn-01 one when the client offers only `acme-tls/1`), then hands the connection to TLS:
/// a new certificate is used by the next handshake while open connections keep theirs.
final class CertificateSelector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let front: FrontDoor
    private let configure: (any Channel) -> EventLoopFuture<Void>
    /// A client that sends no whole ClientHello within this is disconnected (`timeout header`).
    private let timeout: TimeAmount
    private var timer: Scheduled<Void>?
    private var buffered: ByteBuffer?
    /// A certificate is chosen; then TLS has every byte read so far (until this handler is gone).
    private var done = false
    private var handedOver = false

    init(front: FrontDoor, timeout: TimeAmount, configure: @escaping (any Channel) -> EventLoopFuture<Void>) {
        self.front = front
        self.timeout = timeout
        self.configure = configure
    }

    func handlerAdded(context: ChannelHandlerContext) {
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { context.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if handedOver { return context.fireChannelRead(data) }
        var incoming = unwrapInboundIn(data)
        if buffered == nil { buffered = incoming } else { buffered!.writeBuffer(&incoming) }
        // Chosen already: bytes that come before TLS is set up wait behind the hello.
        guard !done, let bytes = buffered else { return }
        switch ClientHello.parse(bytes) {
        case .incomplete:
            return
        case .invalid:
            context.close(promise: nil)
        case .hello(let serverName, let protocols):
            timer?.cancel()
            guard let (tls, challenge) = front.context(serverName: serverName, protocols: protocols).map({ ($0.context, $0.challenge) }) else {
                context.close(promise: nil)
                return
            }
            done = true
            do {
                try context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls), position: .after(self))
            } catch {
                context.close(promise: nil)
                return
            }
            // A validation connection ends after its handshake: nothing is served on it.
            let ready = challenge ? context.eventLoop.makeSucceededVoidFuture() : configure(context.channel)
            ready.assumeIsolated().whenComplete { result in
                guard case .success = result, let bytes = self.buffered else { return context.close(promise: nil) }
                self.buffered = nil
                self.handedOver = true
                context.fireChannelRead(self.wrapInboundOut(bytes))
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            }
        }
    }
}

@available(*, unavailable)
extension CertificateSelector: Sendable {}

/// The two extensions of a TLS ClientHello (RFC 8446 §4.1.2) that choose a certificate: server_name
/// (RFC 6066 §3) and ALPN (RFC 7301). Only the first record is read; a hello longer than one record
/// is refused, which no client sends.
enum ClientHello {
    enum Result: Equatable {
        case incomplete
        case invalid
        case hello(serverName: String?, protocols: [String])
    }

    static func parse(_ buffer: ByteBuffer) -> Result {
        buffer.withUnsafeReadableBytes { bytes in
            var reader = Reader(bytes: bytes)
            guard bytes.count >= 5 else { return .incomplete }
            guard reader.u8() == 22, reader.u8() == 3 else { return .invalid }  // handshake, TLS
            _ = reader.u8()
            guard let recordLength = reader.u16(), recordLength <= 16384 else { return .invalid }
            guard bytes.count >= 5 + recordLength else { return .incomplete }
            reader.end = 5 + recordLength
            guard reader.u8() == 1, reader.u24() != nil, reader.skip(2 + 32),  // client_hello, length, version, random
                let session = reader.u8(), reader.skip(session), let suites = reader.u16(), reader.skip(suites),
                let compression = reader.u8(), reader.skip(compression)
            else { return .invalid }
            var serverName: String?
            var protocols: [String] = []
            guard let extensionsLength = reader.u16() else { return .hello(serverName: nil, protocols: []) }
            let extensionsEnd = min(reader.position + extensionsLength, reader.end)
            while reader.position + 4 <= extensionsEnd {
                guard let type = reader.u16(), let length = reader.u16() else { return .invalid }
                let next = reader.position + length
                guard next <= extensionsEnd else { return .invalid }
                if type == 0, reader.u16() != nil, reader.u8() == 0, let nameLength = reader.u16(), reader.position + nameLength <= next {
                    serverName = String(decoding: bytes[reader.position..<reader.position + nameLength], as: UTF8.self)
                } else if type == 16, let listLength = reader.u16() {
                    let listEnd = min(reader.position + listLength, next)
                    while reader.position < listEnd, let count = reader.u8(), reader.position + count <= listEnd {
                        protocols.append(String(decoding: bytes[reader.position..<reader.position + count], as: UTF8.self))
                        reader.position += count
                    }
                }
                reader.position = next
            }
            return .hello(serverName: serverName, protocols: protocols)
        }
    }

    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var position = 0
        var end: Int

        init(bytes: UnsafeRawBufferPointer) {
            self.bytes = bytes
            end = bytes.count
        }

        mutating func u8() -> Int? {
            guard position < end else { return nil }
            defer { position += 1 }
            return Int(bytes[position])
        }

        mutating func u16() -> Int? {
            guard let high = u8(), let low = u8() else { return nil }
            return high << 8 | low
        }

        mutating func u24() -> Int? {
            guard let high = u8(), let rest = u16() else { return nil }
            return high << 16 | rest
        }

        mutating func skip(_ count: Int) -> Bool {
            guard position + count <= end else { return false }
            position += count
            return true
        }
    }
}

extension ProxyServer {
    /// Certificates and challenge answers from the daemon: `tls auto`'s, and renewed certificate files.
    func applyCertificate(_ message: ProxyFeedMessage) {
        do {
            switch message {
            case .listenerCertificate(let files, let chainPEM, let keyPEM):
                if try front.replaceListenerCertificate(files, chainPEM: chainPEM, keyPEM: keyPEM) {
                    logger.info("proxy: serving the new certificate of '\(files.certificate)' from the next connection on")
                }
            case .challengeToken(let token, let keyAuthorization):
                front.setToken(token, keyAuthorization: keyAuthorization)
            case .challengeCertificate(let name, let chainPEM, let keyPEM):
                try front.setChallengeCertificate(name: name, chainPEM: chainPEM, keyPEM: keyPEM)
            case .certificate(let names, let chainPEM, let keyPEM):
                try front.install(names: names, chainPEM: chainPEM, keyPEM: keyPEM)
            default:
                break
            }
        } catch {
            logger.error("proxy: cannot load a certificate: \(error)")
        }
    }
}
