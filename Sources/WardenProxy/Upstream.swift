import NIOCore
import NIOSSL
import NIOTLS
import Synchronization
import WardenPlatform

/// Kept-alive upstream connections, per event loop and upstream address, so a request reuses one
/// instead of paying for a new TCP connection (about 48 µs of CPU each on this kind of machine).
/// A connection serves only the clients of its own event loop, so each loop has its own `Local`
/// pool, found once per client connection: taking and returning a connection per request needs
/// no lock.
final class UpstreamPool: Sendable {
    private let locals = Mutex<[ObjectIdentifier: NIOLoopBound<Local>]>([:])
    let maximumIdlePerKey: Int

    init(maximumIdlePerKey: Int = 256) {
        self.maximumIdlePerKey = maximumIdlePerKey
    }

    /// The pool of `loop`, the caller's.
    func local(on loop: any EventLoop) -> Local {
        locals.withLock { locals in
            if let local = locals[ObjectIdentifier(loop)] { return local }
            let local = NIOLoopBound(Local(maximumIdlePerKey: maximumIdlePerKey), eventLoop: loop)
            locals[ObjectIdentifier(loop)] = local
            return local
        }.value
    }

    /// One event loop's idle connections; used on that loop only. There are only as many buckets
    /// as upstreams: a linear search finds one without hashing a host name per request.
    final class Local {
        /// One upstream: its address and, for `https://`, its TLS settings (the same object for the
        /// same settings, see `UpstreamTLSClient`).
        private struct Bucket {
            let host: String
            let port: Int
            let tls: UpstreamTLSClient?
            var idle: [UpstreamHandler]
        }

        // Unchecked: no access to it calls out of this class, and the runtime check cost two per
        // request here.
        @exclusivity(unchecked) private var buckets: [Bucket] = []
        private let maximumIdlePerKey: Int

        fileprivate init(maximumIdlePerKey: Int) {
            self.maximumIdlePerKey = maximumIdlePerKey
        }

        private func index(host: String, port: Int, tls: UpstreamTLSClient?) -> Int? {
            buckets.firstIndex { $0.port == port && $0.tls === tls && $0.host == host }
        }

        /// An idle connection to `host:port` (over TLS with `tls`), if there is one still open.
        func acquire(host: String, port: Int, tls: UpstreamTLSClient?) -> UpstreamHandler? {
            guard let index = index(host: host, port: port, tls: tls) else { return nil }
            while let upstream = buckets[index].idle.popLast() {
                if upstream.isActive { return upstream }
            }
            return nil
        }

        /// Returns false when the pool is full (the caller closes the connection).
        func release(_ upstream: UpstreamHandler) -> Bool {
            guard let index = index(host: upstream.host, port: upstream.port, tls: upstream.tls) else {
                buckets.append(Bucket(host: upstream.host, port: upstream.port, tls: upstream.tls, idle: [upstream]))
                return true
            }
            guard buckets[index].idle.count < maximumIdlePerKey else { return false }
            buckets[index].idle.append(upstream)
            return true
        }

        /// Idle connections by upstream `host:port`, for the metrics.
        func idleConnections() -> [String: Int] {
            Dictionary(buckets.map { ("\($0.host):\($0.port)", $0.idle.count) }, uniquingKeysWith: +)
        }

        /// A pooled connection the upstream closed.
        func forget(_ upstream: UpstreamHandler) {
            guard let index = index(host: upstream.host, port: upstream.port, tls: upstream.tls) else { return }
            buckets[index].idle.removeAll { $0 === upstream }
        }
    }
}

@available(*, unavailable)
extension UpstreamPool.Local: Sendable {}

/// One upstream connection: writes the request bytes, frames the response bytes for its owner, and
/// goes back to the pool when both sides agree to keep it alive.
final class UpstreamHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let host: String
    let port: Int
    let tls: UpstreamTLSClient?
    var owner: ProxyHandler?
    private(set) var context: ChannelHandlerContext?
    // Unchecked: while `parse` runs, its callbacks reach the owner, which never touches the framer
    // (it releases this connection as reusable, the one path that reads it, only after `parse`);
    // checked, each request paid for three runtime checks.
    @exclusivity(unchecked) private var framer = ResponseFramer()
    private var keepAlive = true
    private var paused = false
    private let pool: UpstreamPool.Local
    /// The channel's state, followed through its events: cheaper to read per request than asking it.
    private(set) var isActive = false
    private(set) var isWritable = true

    /// Why the TLS handshake failed, kept until the connection's end reports it to the owner.
    private var handshakeFailure: (any Error)?
    private var handshakeDone = false

    init(host: String, port: Int, tls: UpstreamTLSClient?, pool: UpstreamPool.Local) {
        self.host = host
        self.port = port
        self.tls = tls
        self.pool = pool
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    /// The context holds this handler: kept, it would keep both and the channel alive.
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelActive(context: ChannelHandlerContext) {
        isActive = true
        context.fireChannelActive()
    }

    /// Sets the framer up for the response to the request about to be written.
    func expectResponse(toHead: Bool, dechunk: Bool, headBuffer: ByteBuffer?) {
        keepAlive = true
        framer.expectResponse(toHead: toHead, dechunk: dechunk, headBuffer: headBuffer)
    }

    func write(_ buffer: ByteBuffer) {
        context?.write(wrapOutboundOut(buffer), promise: nil)
    }

    func flush() { context?.flush() }

    func writeAndFlush(_ buffer: ByteBuffer) {
        context?.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        guard let owner else {
            // Bytes nobody asked for: the connection is out of step and cannot be reused.
            context.close(promise: nil)
            return
        }
        var ended = false
        var switching = false
        // A head waits for the body bytes of the same read, so the owner can send both at once.
        var head: ResponseFramer.Head?
        do {
            try framer.parse(&buffer) { output in
                // Taken out of `head`, so the owner holds the only reference and can add to it in place.
                if case .body(let bytes) = output, var waiting = head.take() {
                    owner.upstreamHead(&waiting, body: bytes, upstream: self)
                    return
                }
                if var waiting = head.take() {
                    owner.upstreamHead(&waiting, body: nil, upstream: self)
                }
                switch output {
                case .informational(let bytes):
                    owner.upstreamInformational(bytes)
                case .head(let new):
                    keepAlive = new.keepAlive
                    switching = new.status == 101
                    head = new
                case .body(let bytes):
                    owner.upstreamBody(bytes, upstream: self)
                case .end:
                    ended = true
                }
            }
            if var waiting = head.take() { owner.upstreamHead(&waiting, body: nil, upstream: self) }
        } catch {
            self.owner = nil
            context.close(promise: nil)
            owner.upstreamBroken(error)
            return
        }
        if switching {
            owner.upstreamSwitched(leftover: buffer, upstream: self)
        } else if ended {
            // Bytes after the end of the response mean the upstream is out of step: not reused.
            owner.upstreamEnd(upstream: self, reusable: keepAlive && buffer.readableBytes == 0)
        }
    }

    /// One flush to the client per read from the upstream, not one per part.
    func channelReadComplete(context: ChannelHandlerContext) {
        owner?.flushClient()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        isWritable = context.channel.isWritable
        if isWritable { owner?.upstreamWritable() }
    }

    func pauseReading() {
        guard !paused else { return }
        paused = true
        try? context?.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
    }

    func resumeReading() {
        guard paused else { return }
        paused = false
        try? context?.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
    }

    /// Detaches from the client; returns to the pool when reusable, else closes.
    func release(reusable: Bool) {
        owner = nil
        guard let context else { return }
        resumeReading()
        if !(reusable && framer.isIdle && pool.release(self)) {
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        isActive = false
        let owner = self.owner
        self.owner = nil
        if let owner {
            if let handshakeFailure {
                owner.upstreamHandshakeFailed(TLSFailure.describe(handshakeFailure))
            } else if framer.connectionClosed() {
                owner.upstreamEnd(upstream: self, reusable: false)
            } else {
                owner.upstreamFailed()
            }
        } else {
            pool.forget(self)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if tls != nil, !handshakeDone, handshakeFailure == nil { handshakeFailure = error }
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent { handshakeDone = true }
        context.fireUserInboundEventTriggered(event)
    }
}

@available(*, unavailable)
extension UpstreamHandler: Sendable {}

/// Both ends of an upgraded connection (a WebSocket): bytes from one side are written to the other,
/// reading stops while the other side cannot keep up, and a close on one side closes the other.
final class TunnelHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partner: TunnelHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false

    static func pair() -> (TunnelHandler, TunnelHandler) {
        let first = TunnelHandler()
        let second = TunnelHandler()
        first.partner = second
        second.partner = first
        return (first, second)
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        partner?.context?.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.context?.flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        partner?.context?.close(promise: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.resumeRead() }
        context.fireChannelWritabilityChanged()
    }

    /// Back-pressure: no read while the partner's socket is full.
    func read(context: ChannelHandlerContext) {
        if partner?.context?.channel.isWritable ?? true {
            context.read()
        } else {
            pendingRead = true
        }
    }

    private func resumeRead() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }
}

@available(*, unavailable)
extension TunnelHandler: Sendable {}
