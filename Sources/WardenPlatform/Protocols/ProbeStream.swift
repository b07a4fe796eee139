import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import NIOTLS

/// Why a protocol test failed, in monit's words ("SMTP: invalid greeting -- …").
struct ProtocolFailure: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

/// One conversation of a protocol test (TCP, TLS, unix socket or connected UDP), read and written
/// in order as monit's checkers do on a blocking socket. The test's deadline closes the channel,
/// which ends any read in progress.
final class ProbeStream {
    let channel: any Channel
    private let inbox: ProbeInbox
    private let expired: NIOLockedValueBox<Bool>
    private let timeout: Duration

    init(channel: any Channel, inbox: ProbeInbox, expired: NIOLockedValueBox<Bool>, timeout: Duration) {
        self.channel = channel
        self.inbox = inbox
        self.expired = expired
        self.timeout = timeout
    }

    /// The reason a read or write failed, after `context` ("SMTP: error receiving data").
    private func failure(_ context: String, _ error: (any Error)?) -> ProtocolFailure {
        if expired.withLockedValue({ $0 }) {
            return ProtocolFailure("\(context) -- timed out after \(timeout.components.seconds) s")
        }
        guard let error else { return ProtocolFailure("\(context) -- connection closed by the server") }
        return ProtocolFailure("\(context) -- \(ConnectionProbe.describe(error))")
    }

    /// Waits for more bytes than `count`; throws at the end of the stream.
    private func waitFor(moreThan count: Int, _ context: String) async throws {
        let (available, ended, error) = await inbox.wait(moreThan: count, until: nil, on: channel.eventLoop)
        if available <= count, ended { throw failure(context, error) }
    }

    /// One line without its CR LF, at most `limit` bytes (a longer line is cut, as monit's buffers cut it).
    func readLine(_ context: String, limit: Int = 1024) async throws -> String {
        var scanned = 0
        while true {
            if let line = inbox.takeLine(limit: limit, scanned: &scanned) {
                return String(decoding: line, as: UTF8.self)
            }
            try await waitFor(moreThan: scanned, context)
        }
    }

    /// Exactly `count` bytes.
    func read(exactly count: Int, _ context: String) async throws -> [UInt8] {
        while inbox.available < count {
            try await waitFor(moreThan: inbox.available, context)
        }
        return inbox.take(count)
    }

    /// One datagram, or the bytes one read of a stream socket returns: at least one byte, at most `limit`.
    func readSome(_ context: String, limit: Int) async throws -> [UInt8] {
        // A loop, as a wait may end early (a late timer of an earlier wait) with nothing new.
        while inbox.available == 0 { try await waitFor(moreThan: 0, context) }
        return inbox.take(min(limit, inbox.available))
    }

    /// What the server sends up to `limit` bytes, until it pauses for `quiet`: monit's generic
    /// `expect` reads its first byte, then whatever follows within 200 ms.
    func readBurst(_ context: String, limit: Int, quiet: TimeAmount = .milliseconds(200)) async throws -> [UInt8] {
        while inbox.available == 0 { try await waitFor(moreThan: 0, context) }
        while inbox.available < limit {
            let before = inbox.available
            let (available, ended, _) = await inbox.wait(moreThan: before, until: .now() + quiet, on: channel.eventLoop)
            if available == before || ended { break }
        }
        return inbox.take(min(limit, inbox.available))
    }

    func write(_ bytes: [UInt8], _ context: String) async throws {
        do {
            try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
        } catch {
            throw failure(context, error)
        }
    }

    func write(_ text: String, _ context: String) async throws {
        try await write(Array(text.utf8), context)
    }

    /// Waits until the TLS handshake is done; a refused handshake or a closed connection ends it.
    func handshake(_ context: String) async throws {
        let (ended, error) = await inbox.waitForHandshake()
        if ended { throw failure(context, error) }
    }

    /// The server's certificate, on a TLS connection once its handshake is done.
    var certificate: NIOSSLCertificate? { inbox.certificate.withLockedValue { $0 } }
}

/// The bytes a probe's channel received, filled on the event loop and taken by the probe's task.
final class ProbeInbox: Sendable {
    private struct State {
        var bytes: [UInt8] = []
        var ended = false
        var handshook = false
        var error: (any Error)?
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = NIOLockedValueBox(State())
    /// The server's TLS certificate, read once the handshake is done.
    let certificate = NIOLockedValueBox<NIOSSLCertificate?>(nil)

    func handshakeCompleted(_ certificate: NIOSSLCertificate?) {
        self.certificate.withLockedValue { $0 = certificate }
        state.withLockedValue { $0.handshook = true }
        wake()
    }

    /// Returns once the handshake is done (`ended` false) or the stream ended before it.
    func waitForHandshake() async -> (ended: Bool, (any Error)?) {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLockedValue { state -> Bool in
                if state.handshook || state.ended { return true }
                state.waiter = continuation
                return false
            }
            if ready { continuation.resume() }
        }
        return state.withLockedValue { (!$0.handshook, $0.error) }
    }

    var available: Int { state.withLockedValue { $0.bytes.count } }

    func append(_ bytes: ByteBufferView) {
        state.withLockedValue { $0.bytes.append(contentsOf: bytes) }
        wake()
    }

    func finish(_ error: (any Error)?) {
        state.withLockedValue {
            if !$0.ended { $0.error = $0.error ?? error }
            $0.ended = true
        }
        wake()
    }

    func wake() {
        state.withLockedValue {
            let waiter = $0.waiter
            $0.waiter = nil
            return waiter
        }?.resume()
    }

    /// Returns once more than `count` bytes are buffered, the stream ended, or `deadline` passed.
    func wait(moreThan count: Int, until deadline: NIODeadline?, on eventLoop: any EventLoop) async -> (Int, Bool, (any Error)?) {
        let timer = deadline.map { eventLoop.scheduleTask(deadline: $0) { [self] in wake() } }
        defer { timer?.cancel() }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLockedValue { state -> Bool in
                if state.bytes.count > count || state.ended { return true }
                state.waiter = continuation
                return false
            }
            if ready { continuation.resume() }
        }
        return state.withLockedValue { ($0.bytes.count, $0.ended, $0.error) }
    }

    func take(_ count: Int) -> [UInt8] {
        state.withLockedValue {
            let bytes = Array($0.bytes.prefix(count))
            $0.bytes.removeFirst(bytes.count)
            return bytes
        }
    }

    /// A whole line (without CR LF) if one is buffered, or `limit` bytes of one; `scanned` is how far
    /// there was no newline, so a wait asks for more than that.
    func takeLine(limit: Int, scanned: inout Int) -> [UInt8]? {
        state.withLockedValue { state -> [UInt8]? in
            if let newline = state.bytes.firstIndex(of: UInt8(ascii: "\n")) {
                var line = Array(state.bytes[..<newline])
                state.bytes.removeFirst(newline + 1)
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                return Array(line.prefix(limit))
            }
            if state.bytes.count >= limit {
                let line = Array(state.bytes.prefix(limit))
                state.bytes.removeFirst(limit)
                return line
            }
            if state.ended, !state.bytes.isEmpty {
                let line = state.bytes
                state.bytes = []
                return line
            }
            scanned = state.bytes.count
            return nil
        }
    }
}

/// Feeds what a probe's channel reads into its inbox; a datagram's payload is taken out of its envelope.
final class ProbeInboxHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let inbox: ProbeInbox

    init(inbox: ProbeInbox) { self.inbox = inbox }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        inbox.append(unwrapInboundIn(data).readableBytesView)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            let tls = try? context.pipeline.syncOperations.handler(type: NIOSSLHandler.self)
            inbox.handshakeCompleted(tls?.peerCertificate)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        inbox.finish(nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        inbox.finish(error)
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension ProbeInboxHandler: Sendable {}

/// Unwraps the datagrams of a connected UDP channel for `ProbeInboxHandler`.
final class DatagramPayloadHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias InboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(wrapInboundOut(unwrapInboundIn(data).data))
    }
}

@available(*, unavailable)
extension DatagramPayloadHandler: Sendable {}
