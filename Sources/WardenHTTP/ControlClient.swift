import WardenPlatform
import NIOCore
import NIOHTTP1
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
        var headers: HTTPHeaders = ["Host": "localhost", "X-Requested-By": "warden-cli"]
        if let authorization { headers.add(name: "Authorization", value: authorization) }
        if body != nil { headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded") }
        let target: HTTP1Request.Endpoint
        switch endpoint {
        case .tcp(let host, let port): target = .tcp(host: host, port: port)
        case .unix(let path): target = .unix(path)
        }
        var tlsContext: NIOSSLContext?
        if tls {
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .none
            tlsContext = try NIOSSLContext(configuration: configuration)
        }
        do {
            let response = try await HTTP1Client().send(
                HTTP1Request(
                    endpoint: target, method: method, path: path, headers: headers, body: body.map { Array($0.utf8) }, tls: tlsContext,
                    timeout: .seconds(120), bodyLimit: Self.maximumAnswerBytes))
            return Response(status: response.status, body: String(decoding: response.body, as: UTF8.self))
        } catch {
            switch error {
            case .cannotConnect: throw Failure(description: "cannot connect to the warden daemon (\(describe(endpoint))): is it running?")
            case .timedOut: throw Failure(description: "the warden daemon (\(describe(endpoint))) did not answer within 120 s")
            case .broken(let reason): throw Failure(description: "the warden daemon (\(describe(endpoint))) broke off its answer\(reason.map { ": \($0)" } ?? "")")
            case .bodyTooLarge(let limit): throw Failure(description: "the warden daemon's answer is over \(limit) bytes")
            }
        }
    }

    /// The daemon's largest answers are the JSON status and the log's last lines.
    static let maximumAnswerBytes = 64 << 20

    private func describe(_ endpoint: Endpoint) -> String {
        switch endpoint {
        case .tcp(let host, let port): "\(host):\(port)"
        case .unix(let path): path
        }
    }
}
