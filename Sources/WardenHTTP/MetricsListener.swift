import Logging
import ServiceLifecycle
import WardenConfig
import WardenCore

/// Feeds the metrics: counts every event, and reads the services four times a cycle (at most every
/// 250 ms, as the dashboard's history does) so that each check lands in the latency histogram even
/// when no one scrapes for a while: read once a cycle, a check a little late is missed. One feed serves the
/// dashboard's `/metrics` and the listener of `set metrics listen`.
public final class MetricsFeed: ServiceLifecycle.Service, Sendable {
    public let exporter: MetricsExporter
    let supervisor: Supervisor
    let interval: Duration
    /// Subscribed at creation, so the event counters miss nothing.
    private let events: AsyncStream<Event>

    /// - Parameter proxy: where the front proxy's metrics are read, when there is one.
    public init(supervisor: Supervisor, interval: Int, proxy: (any ProxyMetricsSource)? = nil) {
        exporter = MetricsExporter(proxy: ProxyMetricsBoard(source: proxy))
        self.supervisor = supervisor
        self.interval = .milliseconds(max(250, interval * 250))
        self.events = supervisor.events.subscribe()
    }

    public func run() async throws {
        let (events, exporter, supervisor, interval) = (self.events, self.exporter, self.supervisor, self.interval)
        await withDiscardingTaskGroup { group in
            group.addTask {
                for await event in events.cancelOnGracefulShutdown() { exporter.record(event) }
            }
            group.addTask {
                while !Task.isCancelled, !Task.isShuttingDownGracefully {
                    exporter.observe(await supervisor.snapshots())
                    try? await Task.sleep(for: interval)
                }
            }
            group.addTask { await Self.readProxy(exporter.proxy) }
        }
    }

    /// Reads the proxy's totals every second, for the sites' rates over the last minute.
    private static func readProxy(_ board: ProxyMetricsBoard) async {
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            await board.refresh(fresh: false)
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// Each site's request rate, error rate and p50/p99 latency over the last minute.
    public func siteTraffic() -> [SiteTraffic] { exporter.proxy.siteTraffic() }
}

extension ControlServer {
    /// `set metrics listen ADDRESS port N [allow …]`: the dashboard's server with an allow-list of
    /// hosts and networks only (no password), answering `/metrics` alone.
    public static func metricsListener(
        _ settings: MetricsListenerSettings, feed: MetricsFeed, supervisor: Supervisor, configuration: Configuration, logger: Logger
    ) throws -> ControlServer {
        var server = HTTPDSettings()
        server.address = settings.address
        server.port = settings.port
        server.allow = settings.allow
        return try ControlServer(
            settings: server, supervisor: supervisor, configuration: configuration, logger: logger, metrics: feed.exporter, metricsOnly: true)
    }
}
