import WardenPlatform
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import WardenConfig
import WardenCore

/// The CLI's side of the control server: requests to the running daemon over its unix socket or
/// TCP port, with the first `allow user:password` of the control file, as monit's CLI does.
public struct ControlClient: Sendable {
    public enum Endpoint: Sendable {
        case tcp(host: String, port: Int)
        case unix(String)
    }

    public let endpoint: Endpoint
    public let authorization: String?
    /// The daemon's httpd speaks HTTPS (`with ssl`); its certificate is not verified, as monit's CLI.
    public let tls: Bool

    public init(endpoint: Endpoint, authorization: String?, tls: Bool = false) {
        self.endpoint = endpoint
        self.authorization = authorization
        self.tls = tls
    }

    /// From `set httpd`: the unix socket when there is one, else the TCP port on loopback.
    public init?(settings: HTTPDSettings) {
        if let socket = settings.unixSocket {
            endpoint = .unix(socket)
        } else if let port = settings.port {
            let address = ControlServer.bindAddress(settings.address)
            endpoint = .tcp(host: address == "0.0.0.0" ? "127.0.0.1" : address, port: port)
        } else {
            return nil
        }
        tls = settings.ssl != nil && settings.unixSocket == nil
        let user = settings.allow.lazy.compactMap { rule -> String? in
            if case .user(let name, let password, _) = rule { return "\(name):\(password)" }
            return nil
        }.first
        authorization = user.map { "Basic " + Base64.encode(Array($0.utf8)) }
    }

    public struct Response: Sendable {
        public var status: Int
        public var body: String
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public func get(_ path: String) async throws -> Response {
        try await send(method: .GET, path: path, body: nil)
    }

    public func post(_ path: String, form: [String: String]) async throws -> Response {
        let body = form.sorted { $0.key < $1.key }.map { "\($0.key)=\(Pages.escapeURL($0.value))" }.joined(separator: "&")
        return try await send(method: .POST, path: path, body: body)
    }

    private func send(method: HTTPMethod, path: String, body: String?) async throws -> Response {
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connectTimeout(.seconds(5))
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            channel = try await connect(bootstrap)
        } catch {
            throw Failure(description: "cannot connect to the warden daemon (\(describe(endpoint))): is it running?")
        }
        return try await channel.executeThenClose { inbound, outbound in
            var headers = HTTPHeaders()
            headers.add(name: "Host", value: "localhost")
            headers.add(name: "X-Requested-By", value: "warden-cli")
            headers.add(name: "Connection", value: "close")
            if let authorization { headers.add(name: "Authorization", value: authorization) }
            if let body {
                headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
                headers.add(name: "Content-Length", value: String(body.utf8.count))
            }
            try await outbound.write(.head(HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)))
            if let body { try await outbound.write(.body(.byteBuffer(ByteBuffer(string: body)))) }
            try await outbound.write(.end(nil))
            var status = 0
            var text = ""
            for try await part in inbound {
                switch part {
                case .head(let head): status = Int(head.status.code)
                case .body(let buffer): text += String(buffer: buffer)
                case .end: return Response(status: status, body: text)
                }
            }
            return Response(status: status, body: text)
        }
    }

    private func connect(_ bootstrap: ClientBootstrap) async throws -> NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart> {
        let tls = self.tls
        let initializer: @Sendable (any Channel) -> EventLoopFuture<NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>> = { channel in
            channel.eventLoop.makeCompletedFuture {
                if tls {
                    var configuration = TLSConfiguration.makeClientConfiguration()
                    configuration.certificateVerification = .none
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: NIOSSLContext(configuration: configuration), serverHostname: nil))
                }
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                return try NIOAsyncChannel(wrappingChannelSynchronously: channel)
            }
        }
        switch endpoint {
        case .tcp(let host, let port):
            return try await bootstrap.connect(host: host, port: port, channelInitializer: initializer)
        case .unix(let path):
            return try await bootstrap.connect(unixDomainSocketPath: path, channelInitializer: initializer)
        }
    }

    private func describe(_ endpoint: Endpoint) -> String {
        switch endpoint {
        case .tcp(let host, let port): "\(host):\(port)"
        case .unix(let path): path
        }
    }
}
