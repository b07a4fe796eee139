import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization
import WardenConfig
import WardenCore

/// The proxy's request metrics, counted per event loop: each loop's handlers add to their loop's
/// `Local` without a lock or an atomic operation, and a report asks every loop for its counts on
/// the loop itself and adds them up (`collect`).
final class ProxyMetrics: Sendable {
    private let locals = Mutex<[ObjectIdentifier: (loop: any EventLoop, local: NIOLoopBound<Local>)]>([:])
    /// `address:port` of each `listen`, in order.
    let listenerNames: [String]

    init(listenerNames: [String]) {
        self.listenerNames = listenerNames
    }

    /// The counts of `loop`, the caller's (found once per connection, as the upstream pool is).
    func local(on loop: any EventLoop) -> Local {
        locals.withLock { locals in
            if let known = locals[ObjectIdentifier(loop)] { return known.local }
            let local = NIOLoopBound(Local(listeners: listenerNames.count), eventLoop: loop)
            locals[ObjectIdentifier(loop)] = (loop, local)
            return local
        }.value
    }

    /// Every loop's counts, with its idle upstream connections, added up.
    func collect(pool: UpstreamPool, on fallback: any EventLoop) -> EventLoopFuture<ProxyMetricsSnapshot> {
        let names = listenerNames
        let parts = locals.withLock { $0.values.map { $0 } }.map { entry in
            entry.loop.submit {
                var snapshot = entry.local.value.snapshot(listenerNames: names)
                snapshot.idleUpstreamConnections = pool.local(on: entry.loop).idleConnections()
                return snapshot
            }
        }
        let empty = names.reduce(into: ProxyMetricsSnapshot()) { $0.listeners[$1] = ProxyListenerCounters() }
        return EventLoopFuture.whenAllSucceed(parts, on: fallback).map { parts in
            parts.reduce(into: empty) { $0.merge($1) }
        }
    }

    /// A failed connect: timed out, or refused (or unreachable).
    static func kind(of error: any Error) -> ProxySeriesCounters.UpstreamError {
        if let error = error as? ChannelError, case .connectTimeout = error { return .timeout }
        return .refused
    }

    /// One event loop's counts; used on that loop only.
    final class Local {
        // Unchecked: no access calls out of this class (as the upstream pool's buckets).
        @exclusivity(unchecked) private var series: [ProxySeriesCounters] = []
        private var keys: [ProxySeriesKey] = []
        private var slots: [ProxySeriesKey: Int] = [:]
        private var listeners: [ProxyListenerCounters]

        fileprivate init(listeners: Int) {
            self.listeners = Array(repeating: ProxyListenerCounters(), count: listeners)
        }

        /// The index of `key`'s counts, made at its first request.
        func slot(_ key: ProxySeriesKey) -> Int {
            if let known = slots[key] { return known }
            series.append(ProxySeriesCounters())
            keys.append(key)
            slots[key] = series.count - 1
            return series.count - 1
        }

        func snapshot(listenerNames: [String]) -> ProxyMetricsSnapshot {
            var snapshot = ProxyMetricsSnapshot()
            for (index, key) in keys.enumerated() { snapshot.series[key] = series[index] }
            for (index, name) in listenerNames.enumerated() { snapshot.listeners[name] = listeners[index] }
            return snapshot
        }

        /// The one call per request: its status, method, time from its head to the end of its answer, bodies.
        @inline(__always)
        func requestEnded(slot: Int, method: HTTPMethod, status: Int, nanoseconds: Int64, requestBytes: Int, responseBytes: Int, reused: Bool) {
            series[slot].record(
                index: ProxySeriesCounters.requestIndex(status: status, method: Self.methodIndex(method)), nanoseconds: nanoseconds,
                requestBytes: requestBytes, responseBytes: responseBytes, reused: reused)
        }

        func upstreamFailed(slot: Int, _ kind: ProxySeriesCounters.UpstreamError) { series[slot].upstreamErrors[kind.rawValue] += 1 }
        func held(slot: Int, nanoseconds: Int64) { series[slot].held.record(nanoseconds: nanoseconds) }
        func maintenanceAnswered(slot: Int) { series[slot].maintenanceAnswers += 1 }

        func tunnelOpened(slot: Int) {
            series[slot].tunnelsOpened += 1
            series[slot].tunnelsOpen += 1
        }

        func tunnelClosed(slot: Int) { series[slot].tunnelsOpen -= 1 }

        func connectionOpened(listener: Int) {
            listeners[listener].connectionsAccepted += 1
            listeners[listener].connectionsOpen += 1
        }

        func connectionClosed(listener: Int) { listeners[listener].connectionsOpen -= 1 }

        func handshake(listener: Int, succeeded: Bool) {
            if succeeded { listeners[listener].tlsHandshakes += 1 } else { listeners[listener].tlsHandshakeFailures += 1 }
        }

        /// The index in `ProxySeriesCounters.methods`. Told by the enum case: `HTTPMethod`'s `==`
        /// compares the names as Strings.
        static func methodIndex(_ method: HTTPMethod) -> Int {
            switch method {
            case .GET: 0
            case .HEAD: 1
            case .POST: 2
            case .PUT: 3
            case .DELETE: 4
            case .PATCH: 5
            case .OPTIONS: 6
            case .CONNECT: 7
            case .TRACE: 8
            default: 9
            }
        }
    }

    /// A handler's series for its request: looked up again only when the route or the instance
    /// changes, so a kept-alive connection to one route pays two pointer comparisons per request.
    struct Slot {
        private var route: SiteTable.Route?
        private var instance: BackendSet.Target?
        private var site: SiteTable.Entry?
        private var index = -1

        mutating func index(
            in local: Local, entry: SiteTable.Entry?, route: SiteTable.Route?, upstream: SiteTable.Upstream?, instance: BackendSet.Target?
        ) -> Int {
            if index >= 0, route === self.route, instance === self.instance, entry === site { return index }
            (self.route, self.instance, site) = (route, instance, entry)
            index = local.slot(
                ProxySeriesKey(
                    site: entry?.site.name ?? "", route: route?.prefix ?? "", service: upstream?.service ?? "",
                    instance: instance?.backend.instance ?? ""))
            return index
        }
    }
}

@available(*, unavailable)
extension ProxyMetrics.Local: Sendable {}

extension ProxySeriesCounters {
    @inline(__always)
    mutating func record(index: Int, nanoseconds: Int64, requestBytes: Int, responseBytes: Int, reused: Bool) {
        requests[index] += 1
        duration.record(nanoseconds: nanoseconds)
        self.requestBytes += requestBytes
        self.responseBytes += responseBytes
        if reused { reusedConnections += 1 }
    }
}

/// Counts a TLS listener's handshakes: placed right behind the TLS handler, it sees the handshake
/// complete (and leaves the pipeline), or the connection close before it did (a failure).
final class TLSHandshakeCounter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let metrics: ProxyMetrics
    private let listener: Int
    private var local: ProxyMetrics.Local?

    init(metrics: ProxyMetrics, listener: Int) {
        self.metrics = metrics
        self.listener = listener
    }

    func handlerAdded(context: ChannelHandlerContext) {
        local = metrics.local(on: context.eventLoop)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            local?.handshake(listener: listener, succeeded: true)
            local = nil
            context.fireUserInboundEventTriggered(event)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        local?.handshake(listener: listener, succeeded: false)
        local = nil
        context.fireChannelInactive()
    }

    /// Adds a counter behind the channel's TLS handler.
    static func add(to channel: any Channel, metrics: ProxyMetrics, listener: Int) throws {
        let operations = channel.pipeline.syncOperations
        let tls = try operations.handler(type: NIOSSLServerHandler.self)
        try operations.addHandler(TLSHandshakeCounter(metrics: metrics, listener: listener), position: .after(tls))
    }
}

@available(*, unavailable)
extension TLSHandshakeCounter: Sendable {}

extension ProxyServer: ProxyMetricsSource {
    /// The counts of every event loop, added up (on the loops themselves).
    func collectMetrics() -> EventLoopFuture<ProxyMetricsSnapshot> {
        shared.metrics.collect(pool: shared.pool, on: Self.eventLoops.next())
    }

    /// For a thread that may block: the worker's feed reader.
    public func metricsSnapshot() -> ProxyMetricsSnapshot? {
        try? collectMetrics().wait()
    }

    public func proxyMetrics(fresh: Bool) async -> ProxyMetricsSnapshot? {
        try? await collectMetrics().get()
    }
}

extension ProxySettings.Listen {
    /// The `listener` label: `127.0.0.1:443`, `[::1]:443`.
    var metricsName: String { address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)" }
}
