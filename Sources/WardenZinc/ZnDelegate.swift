import Synchronization

/// Something that answers requests, as Zinc's `#handleRequest:`.
public protocol ZnHandler: Sendable {
    func handleRequest(_ request: ZnRequest) -> ZnResponse
}

/// A closure as a handler: `map("redirect-to-image") { _ in .redirect("image") }`.
public struct ZnBlockHandler: ZnHandler {
    let block: @Sendable (ZnRequest) -> ZnResponse
    public init(_ block: @escaping @Sendable (ZnRequest) -> ZnResponse) { self.block = block }
    public func handleRequest(_ request: ZnRequest) -> ZnResponse { block(request) }
}

/// Zinc's `ZnDefaultServerDelegate`: dispatches on the first path segment.
///
/// `map(_:to:)` takes a handler, a closure, or another key (an alias). A key matches the first segment
/// of the path exactly (without the slash, ignoring the query); the `/` key matches only the root path.
/// Anything else is Zinc's 404, `Not Found /path?query`.
public final class ZnDispatcherDelegate: Sendable {
    private enum Target: Sendable {
        case handler(any ZnHandler)
        case alias(String)
    }

    private let routes = Mutex<[String: Target]>([:])

    public init() {}

    @discardableResult
    public func map(_ key: String, to handler: any ZnHandler) -> Self {
        routes.withLock { $0[key] = .handler(handler) }
        return self
    }

    @discardableResult
    public func map(_ key: String, to block: @escaping @Sendable (ZnRequest) -> ZnResponse) -> Self {
        map(key, to: ZnBlockHandler(block))
    }

    /// `map: '/' to: 'redirect-to-image'`: serve what another key serves.
    @discardableResult
    public func map(_ key: String, toKey other: String) -> Self {
        routes.withLock { $0[key] = .alias(other) }
        return self
    }

    public func handleRequest(_ request: ZnRequest) -> ZnResponse {
        let key = request.path == "/" ? "/" : request.firstSegment
        // Only the first segment is the key: `/image/x` is `image`, but `/` alone is the root.
        guard let handler = resolve(key) else { return .notFound(request.uri) }
        return handler.handleRequest(request)
    }

    private func resolve(_ key: String, depth: Int = 0) -> (any ZnHandler)? {
        guard depth < 8, let target = routes.withLock({ $0[key] }) else { return nil }
        switch target {
        case .handler(let handler): return handler
        case .alias(let other): return resolve(other, depth: depth + 1)
        }
    }
}
