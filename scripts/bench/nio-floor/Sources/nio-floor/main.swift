// The least work a reverse proxy on SwiftNIO can do per request, to measure warden against: the
// client's bytes go to a pooled, kept-alive upstream connection unchanged, and the upstream's next
// read goes back to the client unchanged. Nothing is parsed, checked, rewritten or logged, so it
// is only right when each response arrives in one read (the lab's `/ping`), and it is no proxy to
// use. scripts/bench/proxy-instructions.sh and proxy-cpu.sh run it beside warden and nginx when
// NIO_FLOOR=1: what it costs per request is SwiftNIO's part of warden's cost.
//
// It uses SwiftNIO as warden does: one event loop (warden has one per CPU it may run on, and the
// benchmarks pin it to one), TCP_NODELAY, up to 16 reads per readiness from a client, upstream reads
// into buffers that start at 16 KB, and each event loop's own pool of idle upstream connections.

import Glibc
import NIOCore
import NIOPosix

/// The idle upstream connections of the one event loop.
final class Pool {
    var idle: [UpstreamHandler] = []
}

final class UpstreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let pool: Pool
    private var context: ChannelHandlerContext?
    private var client: ClientHandler?

    init(pool: Pool) { self.pool = pool }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    /// The context holds this handler: kept, it would keep both and the channel alive.
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        client = nil
    }

    func send(_ request: ByteBuffer, for client: ClientHandler) {
        self.client = client
        context?.writeAndFlush(wrapOutboundOut(request), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let client = client.take() else {
            context.close(promise: nil)
            return
        }
        pool.idle.append(self)
        client.respond(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        pool.idle.removeAll { $0 === self }
        client.take()?.close()
    }
}

final class ClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let pool: Pool
    private let upstreamAddress: SocketAddress
    private var context: ChannelHandlerContext?

    init(pool: Pool, upstreamAddress: SocketAddress) {
        self.pool = pool
        self.upstreamAddress = upstreamAddress
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let request = unwrapInboundIn(data)
        if let upstream = pool.idle.popLast() {
            upstream.send(request, for: self)
            return
        }
        let pool = NIOLoopBound(pool, eventLoop: context.eventLoop)
        ClientBootstrap(group: context.eventLoop)
            .channelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 2048, initial: 16384, maximum: 65536))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(UpstreamHandler(pool: pool.value))
                }
            }
            .connect(to: upstreamAddress)
            .assumeIsolated()
            .whenComplete { result in
                guard case .success(let channel) = result,
                    let upstream = try? channel.pipeline.syncOperations.handler(type: UpstreamHandler.self)
                else {
                    context.close(promise: nil)
                    return
                }
                upstream.send(request, for: self)
            }
    }

    func respond(_ response: ByteBuffer) {
        context?.writeAndFlush(wrapOutboundOut(response), promise: nil)
    }

    func close() {
        context?.close(promise: nil)
    }
}

let arguments = CommandLine.arguments
guard arguments.count == 3, let listenPort = Int(arguments[1]), let upstreamPort = Int(arguments[2]) else {
    print("usage: nio-floor LISTEN_PORT UPSTREAM_PORT   (both on 127.0.0.1)")
    exit(64)
}
// Started in the background by a script it inherits SIGINT ignored; the scripts stop it with SIGINT.
signal(SIGINT, SIG_DFL)
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let loop = group.next()
let pool = try loop.submit { NIOLoopBound(Pool(), eventLoop: loop) }.wait()
let upstreamAddress = try SocketAddress(ipAddress: "127.0.0.1", port: upstreamPort)
let server = try ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 1024)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
    .childChannelOption(.maxMessagesPerRead, value: 16)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ClientHandler(pool: pool.value, upstreamAddress: upstreamAddress))
        }
    }
    .bind(host: "127.0.0.1", port: listenPort)
    .wait()
try server.closeFuture.wait()
