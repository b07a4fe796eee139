import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import WardenConfig
import WardenPlatform

struct HTTPPostError: Error, CustomStringConvertible {
    public let description: String
}

/// POSTs one JSON document and says whether the receiver took it (a 2xx status). An https URL is
/// verified against the system's trust store: an alert may carry what an attacker should not read.
struct HTTPPoster: Sendable {
    var timeout: Duration = .seconds(5)
    var group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton

    func post(_ post: HTTPPost) async throws {
        let url = post.url
        let tls = url.scheme == "https" ? try NIOSSLContext(configuration: .makeClientConfiguration()) : nil
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(.nanoseconds(timeout.components.seconds * 1_000_000_000))
                .connect(host: url.host, port: url.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls {
                            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: SMTPClient.sniName(url.host)))
                        }
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw HTTPPostError(description: "cannot connect to [\(url.host)]:\(url.port) -- \(error)")
        }
        let underlying = channel.channel
        let status = try await withThrowingTaskGroup(of: Int?.self) { group in
            group.addTask {
                try await channel.executeThenClose { inbound, outbound in
                    var headers = HTTPHeaders()
                    headers.add(name: "Host", value: url.port == (url.scheme == "https" ? 443 : 80) ? url.host : "\(url.host):\(url.port)")
                    headers.add(name: "User-Agent", value: "warden")
                    headers.add(name: "Content-Type", value: "application/json")
                    headers.add(name: "Content-Length", value: String(post.body.utf8.count))
                    headers.add(name: "Connection", value: "close")
                    if let user = url.user {
                        headers.add(name: "Authorization", value: "Basic \(Base64.encode(Array("\(user):\(url.password ?? "")".utf8)))")
                    }
                    try await outbound.write(.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: url.path, headers: headers)))
                    try await outbound.write(.body(.byteBuffer(ByteBuffer(string: post.body))))
                    try await outbound.write(.end(nil))
                    for try await part in inbound {
                        if case .head(let head) = part { return Int(head.status.code) }
                    }
                    return nil
                }
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                underlying.close(promise: nil)
                throw HTTPPostError(description: "no answer from [\(url.host)]:\(url.port) within \(timeout)")
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
        guard let status else { throw HTTPPostError(description: "[\(url.host)]:\(url.port) closed the connection without an answer") }
        guard (200..<300).contains(status) else { throw HTTPPostError(description: "[\(url.host)]:\(url.port) answered \(status)") }
    }
}
