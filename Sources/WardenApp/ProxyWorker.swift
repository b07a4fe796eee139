import CWardenShims
import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals
import WardenConfig
import WardenCore
import WardenPlatform
import WardenProxy

#if canImport(Glibc)
import Glibc
#endif

/// The daemon's side of a proxy that runs as an unprivileged user: starts `warden proxy-worker`,
/// feeds it which services are up through its standard input, and starts it again if it dies.
struct ProxyWorkerService: ServiceLifecycle.Service {
    let controlFile: String
    /// The read end of the pipe whose write end `control` writes to: each worker's standard input.
    let input: Int32
    let control: WorkerProxyControl
    let feed: ProxyFeed
    /// `tls auto` certificates, sent again to each new worker.
    let certificates: CertificateFeed?
    let logger: Logger

    func run() async throws {
        let executable = FileSystemReader().realPath("/proc/self/exe")
        let (feed, control, logger) = (self.feed, self.control, self.logger)
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { try? await feed.run() }
                group.addTask {
                    while !Task.isShuttingDownGracefully, !Task.isCancelled {
                        do {
                            let worker = try Spawner.spawn(
                                [executable, "proxy-worker", "-c", controlFile], environment: ["PATH": "/usr/bin:/bin"],
                                input: input
                            ) { line in
                                if !control.received(line) { logger.info("proxy: \(line)") }
                            }
                            control.workerStarted()
                            feed.resend()
                            certificates?.replay()
                            let status = await worker.wait()
                            if Task.isShuttingDownGracefully { break }
                            logger.error("proxy worker \(worker.pid) ended (\(ExitStatus.describe(status))); starting it again")
                        } catch {
                            logger.error("proxy worker cannot start: \(error)")
                        }
                        try? await Task.sleep(for: .seconds(1))
                    }
                }
            }
        } onGracefulShutdown: {
            // End of its input tells the worker to stop.
            close(control.fd)
        }
    }
}

/// The worker process of a proxy that serves as an unprivileged user (`warden proxy-worker`): binds
/// the proxy's listeners (as root), drops to `set proxy … user U group G`, then serves. What the daemon
/// knows arrives on standard input (see `WorkerProxyControl`); end of input stops it.
public enum ProxyWorkerProcess {
    /// Serves until SIGTERM, SIGINT or the end of standard input; the exit status.
    public static func run(configuration: Configuration, settings: ProxySettings, logger: Logger) async -> Int32 {
        let availability = ServiceAvailability()
        availability.onUnreachableInstance { answer(.unreachable($0)) }
        let proxy = ProxyServer(settings: settings, sites: configuration.sites, availability: availability, logger: logger)
        do {
            try await proxy.bind()
            if let user = settings.user {
                try Privileges.drop(user: user, group: settings.group)
                logger.info("proxy worker running as \(user) with pid \(getpid()) (uid \(getuid()))")
            }
        } catch {
            logger.error("proxy worker: \(error)")
            return 1
        }
        WardenPlatform.Thread.start(name: "proxy-feed") { readFeed(availability, proxy) }
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: proxy)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try? await group.run()
        return 0
    }
}

/// The daemon's side of the worker's standard input: one `ProxyFeedMessage` per line, as JSON.
/// The worker answers a drain with `ProxyWorkerAnswer.drained` on its standard output, which the
/// daemon reads with its log lines, and reports its metrics there every second.
final class WorkerProxyControl: ProxyControl, ProxyMetricsSource {
    let fd: Int32
    /// Drain answers per service (how many, and the requests the last one saw through), and workers
    /// started: a drain waits until either count moves (a new worker has no request in flight).
    private let answers = Mutex<(drained: [String: (count: Int, requests: Int)], workers: Int)>(([:], 0))
    /// The workers' metrics; the last `reportMetrics` request sent, and the last one answered.
    private let metrics = Mutex<(totals: ProxyMetricsTotals, asked: Int, answered: Int)>((ProxyMetricsTotals(), 0, 0))
    private let writing = Mutex(())
    private let unreachableReport = Mutex<(@Sendable (String) -> Void)?>(nil)

    init(fd: Int32) {
        self.fd = fd
    }

    func send(_ message: ProxyFeedMessage) {
        guard var bytes = try? JSONCoding.encode(message) else { return }
        bytes.append(UInt8(ascii: "\n"))
        // One writer at a time: a line over PIPE_BUF (a certificate's) is not written atomically.
        writing.withLock { _ in
            var offset = 0
            while offset < bytes.count {
                let written = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
                if written < 0, errno == EINTR { continue }
                guard written > 0 else { return }
                offset += written
            }
        }
    }

    func drain(_ name: String, timeout: Duration) async -> Int {
        let before = answers.withLock { ($0.drained[name]?.count ?? 0, $0.workers) }
        send(.drain(name, milliseconds: Int(timeout / .milliseconds(1))))
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, !Task.isCancelled {
            let now = answers.withLock { ($0.drained[name], $0.workers) }
            if (now.0?.count ?? 0, now.1) != before { return now.0?.requests ?? 0 }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return 0
    }

    /// A line the worker printed: true when it is an answer rather than one for the log.
    func received(_ line: String) -> Bool {
        guard line.hasPrefix("{"), let answer = try? JSONCoding.decode(ProxyWorkerAnswer.self, from: Array(line.utf8)) else { return false }
        switch answer {
        case .drained(let name, let requests):
            answers.withLock { $0.drained[name] = (($0.drained[name]?.count ?? 0) + 1, requests) }
        case .unreachable(let name): unreachableReport.withLock { $0 }?(name)
        case .metrics(let report):
            metrics.withLock {
                if $0.totals.receive(report), let request = report.request { $0.answered = max($0.answered, request) }
            }
        }
        return true
    }

    func onUnreachableInstance(_ report: @escaping @Sendable (String) -> Void) {
        unreachableReport.withLock { $0 = report }
    }

    /// The last report's totals; `fresh`: a new report, waited for up to half a second.
    func proxyMetrics(fresh: Bool) async -> ProxyMetricsSnapshot? {
        if fresh {
            // Its own number: a report the worker sent before reading the request may miss requests just answered.
            let request = metrics.withLock { $0.asked += 1; return $0.asked }
            send(.reportMetrics(request))
            let deadline = ContinuousClock.now + .milliseconds(500)
            while ContinuousClock.now < deadline, !Task.isCancelled, metrics.withLock({ $0.answered }) < request {
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
        return metrics.withLock { $0.totals.current }
    }

    func workerStarted() {
        answers.withLock { $0.workers += 1 }
    }
}

/// Reads the daemon's messages from standard input; at end of input (the daemon is gone) ends the worker.
/// While a drain is pending, it wakes every 5 ms to see whether the service's requests are done;
/// it reports the metrics every second, and when asked.
private func readFeed(_ availability: ServiceAvailability, _ proxy: ProxyServer) {
    var pending: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    var drains: [Drain] = []
    var reporter = MetricsReporter()
    while true {
        drains.removeAll { drain in
            guard let requests = availability.finished(drain) else { return false }
            answer(.drained(drain.service, requests: requests))
            return true
        }
        if ContinuousClock.now >= reporter.due { reporter.report(proxy) }
        var input = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
        let untilReport = max(0, Int((reporter.due - ContinuousClock.now) / .milliseconds(1)) + 1)
        // Nothing to read (the drains' or the report's time to look again) or interrupted: never block in read.
        if poll(&input, 1, Int32(drains.isEmpty ? untilReport : min(5, untilReport))) <= 0 { continue }
        let count = read(0, &buffer, buffer.count)
        if count < 0, errno == EINTR { continue }
        guard count > 0 else { break }
        pending += buffer[0..<count]
        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
            let line = Array(pending[..<newline])
            pending.removeSubrange(...newline)
            guard let message = try? JSONCoding.decode(ProxyFeedMessage.self, from: line) else { continue }
            if let drain = proxy.apply(message) { drains.append(drain) }
            if case .reportMetrics(let request) = message { reporter.report(proxy, request: request) }
        }
    }
    kill(getpid(), SIGTERM)
}

/// One answer line to the daemon on standard output (`WorkerProxyControl.received`). Lines are kept
/// under PIPE_BUF (metrics go in parts), so the feed thread's and the event loops' answers never interleave.
private func answer(_ answer: ProxyWorkerAnswer) {
    guard var line = try? JSONCoding.encode(answer) else { return }
    line.append(UInt8(ascii: "\n"))
    _ = line.withUnsafeMutableBytes { write(1, $0.baseAddress, $0.count) }
}

/// The worker's metrics reports: its counts so far, every second and when the daemon asks, in
/// parts that are each written at once.
private struct MetricsReporter {
    /// Tells this worker's reports from an earlier one's, whose counts the daemon carries over.
    let origin = UInt64.random(in: 1...UInt64.max)
    var sequence = 0
    var due = ContinuousClock.now

    mutating func report(_ proxy: ProxyServer, request: Int? = nil) {
        due = ContinuousClock.now + .seconds(1)
        guard let snapshot = proxy.metricsSnapshot() else { return }
        sequence += 1
        for part in ProxyMetricsReport.split(snapshot, origin: origin, sequence: sequence, request: request) { answer(.metrics(part)) }
    }
}
