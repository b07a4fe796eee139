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
        let at = "[\(url.host)]:\(url.port)"
        var headers: HTTPHeaders = [
            "Host": url.port == (url.scheme == "https" ? 443 : 80) ? url.host : "\(url.host):\(url.port)", "User-Agent": "warden",
            "Content-Type": "application/json",
        ]
        if let user = url.user {
            headers.add(name: "Authorization", value: "Basic \(Base64.encode(Array("\(user):\(url.password ?? "")".utf8)))")
        }
        let status: Int
        do {
            status = try await HTTP1Client(group: group).send(
                HTTP1Request(
                    endpoint: .tcp(host: url.host, port: url.port), method: .POST, path: url.path, headers: headers, body: Array(post.body.utf8),
                    tls: url.scheme == "https" ? try NIOSSLContext(configuration: .makeClientConfiguration()) : nil,
                    serverName: TLSOptions.serverName(for: url.host), timeout: timeout, bodyLimit: 0, readPastLimit: true)
            ).status
        } catch let error as HTTP1ClientError {
            switch error {
            case .cannotConnect(let reason): throw HTTPPostError(description: "cannot connect to \(at) -- \(reason)")
            case .timedOut: throw HTTPPostError(description: "no answer from \(at) within \(timeout)")
            case .broken(let reason?): throw HTTPPostError(description: "\(at) -- \(TLSFailure.isTLS(reason) ? TLSFailure.describe(reason) : "\(reason)")")
            case .broken(nil), .bodyTooLarge: throw HTTPPostError(description: "\(at) closed the connection without an answer")
            }
        }
        guard (200..<300).contains(status) else { throw HTTPPostError(description: "\(at) answered \(status)") }
    }
}
