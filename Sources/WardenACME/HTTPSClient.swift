import NIOHTTP1
import NIOSSL
import WardenPlatform

/// The ACME client's way to the server: one HTTPS request per connection, the server's
/// certificate verified against the system's roots or the `trust` file of `set acme`.
public struct ACMEHTTPSClient: Sendable {
    let tls: NIOSSLContext
    let timeout: Duration
    public static let maximumBodyBytes = 1_048_576

    public init(trustFile: String?, timeout: Duration = .seconds(30)) throws {
        var configuration = TLSConfiguration.makeClientConfiguration()
        if let trustFile { configuration.trustRoots = .file(trustFile) }
        tls = try NIOSSLContext(configuration: configuration)
        self.timeout = timeout
    }

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    public func send(_ request: ACMERequest) async throws -> ACMEResponse {
        guard let target = Target(request.url) else { throw Failure(description: "not an https URL: '\(request.url)'") }
        var headers: HTTPHeaders = [
            "Host": target.hostHeader, "User-Agent": "warden-acme", "Accept": "application/pem-certificate-chain, application/json",
        ]
        if request.body != nil { headers.add(name: "Content-Type", value: "application/jose+json") }
        let response: HTTP1Response
        do {
            response = try await HTTP1Client().send(
                HTTP1Request(
                    endpoint: .tcp(host: target.host, port: target.port), method: HTTPMethod(rawValue: request.method.rawValue),
                    path: target.path, headers: headers, body: request.body, tls: tls, serverName: TLSOptions.serverName(for: target.host),
                    timeout: timeout, bodyLimit: Self.maximumBodyBytes))
        } catch {
            switch error {
            case .cannotConnect(let reason): throw Failure(description: "cannot connect to \(target.host):\(target.port) -- \(Self.describe(reason))")
            case .timedOut: throw Failure(description: "no answer from \(target.host) within \(timeout)")
            case .broken(let reason?): throw Failure(description: "\(target.host):\(target.port) -- \(Self.describe(reason))")
            case .broken(nil): throw Failure(description: "the connection closed before a whole answer")
            case .bodyTooLarge(let limit): throw Failure(description: "answer over \(limit) bytes")
            }
        }
        var fields: [String: String] = [:]
        for (name, value) in response.headers where fields[name.lowercased()] == nil { fields[name.lowercased()] = value }
        return ACMEResponse(status: response.status, headers: fields, body: response.body)
    }

    private static func describe(_ error: any Error) -> String {
        TLSFailure.isTLS(error) ? TLSFailure.describe(error) : "\(error)"
    }

    struct Target {
        var host: String
        var port: Int
        var path: String
        var hostHeader: String

        init?(_ url: String) {
            guard url.lowercased().hasPrefix("https://") else { return nil }
            var rest = Substring(url.dropFirst(8))
            path = "/"
            if let slash = rest.firstIndex(of: "/") {
                path = String(rest[slash...])
                rest = rest[..<slash]
            }
            hostHeader = String(rest)
            port = 443
            if let colon = rest.lastIndex(of: ":"), !rest.hasSuffix("]"), let value = Int(rest[rest.index(after: colon)...]) {
                port = value
                rest = rest[..<colon]
            }
            host = String(rest.trimmingPrefix("[").prefix { $0 != "]" })
            guard !host.isEmpty else { return nil }
        }
    }
}
