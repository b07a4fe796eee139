import Logging
import ServiceLifecycle
import WardenConfig
import WardenCore

/// Feeds the metrics: counts every event, and reads the services twice a cycle so that each check
/// lands in the latency histogram even when no one scrapes for a while. One feed serves the
/// dashboard's `/metrics` and the listener of `set metrics listen`.
public final class MetricsFeed: ServiceLifecycle.Service, Sendable {
    public let exporter = MetricsExporter()
    let supervisor: Supervisor
    let interval: Duration
    /// Subscribed at creation, so the event counters miss nothing.
    private let events: AsyncStream<Event>

    public init(supervisor: Supervisor, interval: Int) {
        self.supervisor = supervisor
        self.interval = .milliseconds(max(1000, interval * 500))
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
        }
    }
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
