import ArgumentParser
import CWardenShims
import Dispatch
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
    let supervisor: Supervisor
    let logger: Logger

    func run() async throws {
        var fds: [Int32] = [-1, -1]
        guard warden_pipe(&fds, 0) == 0 else { throw SystemError(errno: errno) }
        let (readEnd, writeEnd) = (fds[0], fds[1])
        let executable = FileSystemReader().realPath("/proc/self/exe")
        let feed = ProxyFeed(supervisor: supervisor, target: WorkerProxyControl(fd: writeEnd))
        let logger = self.logger
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { try? await feed.run() }
                group.addTask {
                    while !Task.isShuttingDownGracefully, !Task.isCancelled {
                        do {
                            let worker = try Spawner.spawn(
                                [executable, "proxy-worker", "-c", controlFile], environment: ["PATH": "/usr/bin:/bin"],
                                input: readEnd
                            ) { line in logger.info("proxy: \(line)") }
                            feed.resend()
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
            close(writeEnd)
        }
    }
}

extension Warden {
    /// Binds the proxy's listeners (as root), drops to `set proxy … user U group G`, then serves.
    /// What the daemon knows arrives on standard input (see `WorkerProxyControl`); end of input stops it.
    struct ProxyWorker: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "proxy-worker", shouldDisplay: false)
        @OptionGroup var options: GlobalOptions

        mutating func run() throws {
            let path = try options.resolveControlFile()
            guard let configuration = ControlFile.load(path).configuration, let settings = configuration.proxy else {
                printError("proxy-worker: no valid 'set proxy' in \(path)")
                throw ExitCode(1)
            }
            let sink = LogSink(target: nil, verbose: false, toStandardError: true)
            LoggingSystem.bootstrap { _ in MonitStyleLogHandler(sink: sink, logLevel: .info) }
            let logger = Logger(label: "warden.proxy")
            let availability = ServiceAvailability()
            let status = Mutex<Int32>(0)
            let done = DispatchSemaphore(value: 0)
            Task {
                defer { done.signal() }
                let proxy = ProxyServer(settings: settings, sites: configuration.sites, availability: availability, logger: logger)
                do {
                    try await proxy.bind()
                    if let user = settings.user {
                        try Privileges.drop(user: user, group: settings.group)
                        logger.info("proxy worker running as \(user) with pid \(getpid()) (uid \(getuid()))")
                    }
                } catch {
                    logger.error("proxy worker: \(error)")
                    status.withLock { $0 = 1 }
                    return
                }
                WardenPlatform.Thread.start(name: "proxy-feed") { readFeed(availability, proxy) }
                let group = ServiceGroup(
                    configuration: .init(services: [.init(service: proxy)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
                try? await group.run()
            }
            done.wait()
            throw ExitCode(status.withLock { $0 })
        }
    }
}

/// The daemon's side of the worker's standard input, one line per message:
/// `service 1|0 NAME`, `maintenance ["site", …]`, `sites [Site as JSON, …]`.
struct WorkerProxyControl: ProxyControl {
    let fd: Int32

    func serviceUp(_ name: String, _ up: Bool) { send("service \(up ? 1 : 0) \(name)") }

    func maintenance(_ sites: Set<String>) {
        if let json = try? JSONCoding.encode(sites.sorted()) { send("maintenance " + String(decoding: json, as: UTF8.self)) }
    }

    func sites(_ sites: [Site]) {
        if let json = try? JSONCoding.encode(sites) { send("sites " + String(decoding: json, as: UTF8.self)) }
    }

    private func send(_ line: String) {
        var bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress, $0.count) }
    }
}

/// Reads the daemon's lines from standard input; at end of input (the daemon is gone) ends the worker.
private func readFeed(_ availability: ServiceAvailability, _ proxy: ProxyServer) {
    var pending: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = read(0, &buffer, buffer.count)
        if count < 0, errno == EINTR { continue }
        guard count > 0 else { break }
        pending += buffer[0..<count]
        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
            let line = String(decoding: pending[..<newline], as: UTF8.self)
            pending.removeSubrange(...newline)
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let argument = Array(parts[1].utf8)
            switch parts[0] {
            case "service":
                let words = parts[1].split(separator: " ", maxSplits: 1)
                if words.count == 2 { availability.set(String(words[1]), up: words[0] == "1") }
            case "maintenance":
                if let sites = try? JSONCoding.decode([String].self, from: argument) { availability.setMaintenance(Set(sites)) }
            case "sites":
                if let sites = try? JSONCoding.decode([Site].self, from: argument) { proxy.update(sites: sites) }
            default:
                break
            }
        }
    }
    kill(getpid(), SIGTERM)
}
