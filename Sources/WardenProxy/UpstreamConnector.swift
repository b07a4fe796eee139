import NIOCore
import NIOPosix

/// Opens a new connection to an upstream, with an `UpstreamHandler` on it (the pool's idle ones are
/// taken before this is asked). Given to the proxy in its `ProxyContext`: tests hand out embedded
/// channels instead of sockets.
protocol UpstreamConnector: Sendable {
    /// Calls `done` on `loop` with the connection, or with why there is none (after `timeout` at most).
    func connect(
        host: String, port: Int, tls: UpstreamTLSClient?, timeout: TimeAmount, pool: UpstreamPool, on loop: any EventLoop,
        _ done: @escaping (Result<UpstreamHandler, any Error>) -> Void)
}

/// TCP (and TLS for `https://`) connections through NIO's `ClientBootstrap`.
struct BootstrapConnector: UpstreamConnector {
    func connect(
        host: String, port: Int, tls: UpstreamTLSClient?, timeout: TimeAmount, pool: UpstreamPool, on loop: any EventLoop,
        _ done: @escaping (Result<UpstreamHandler, any Error>) -> Void
    ) {
        ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            // Responses come in larger pieces than requests: start reading 16 KB at a time.
            .channelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 2048, initial: 16384, maximum: 65536))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(tls.makeHandler()) }
                    try channel.pipeline.syncOperations.addHandler(UpstreamHandler(host: host, port: port, tls: tls, pool: pool.local(on: channel.eventLoop)))
                }
            }
            .connect(host: host, port: port)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    do {
                        done(.success(try channel.pipeline.syncOperations.handler(type: UpstreamHandler.self)))
                    } catch {
                        channel.close(promise: nil)
                    }
                case .failure(let error):
                    done(.failure(error))
                }
            }
    }
}
