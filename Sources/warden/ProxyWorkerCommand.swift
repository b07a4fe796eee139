import ArgumentParser
import Logging
import WardenApp
import WardenConfig

#if canImport(Glibc)
import Glibc
#endif

extension Warden {
    /// The proxy of `set proxy … user U`, in a process of its own that the daemon starts (`ProxyWorkerProcess`).
    ///
    /// Not async, unlike the other commands: the worker drops root, and glibc changes the credentials
    /// of every thread but one that has exited. An async `main`'s thread exits at the first `await`
    /// (into dispatch_main, where it waits for ever), so it would stay root, as /proc and ps show it.
    /// Here the main thread stays parked while the worker runs on the concurrency runtime's threads,
    /// and the worker ends the process when it is done.
    struct ProxyWorker: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "proxy-worker",
            abstract: "The proxy's process when 'set proxy' names a user; the daemon starts it, not a person.",
            shouldDisplay: false)
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
            Task.detached {
                Glibc.exit(await ProxyWorkerProcess.run(configuration: configuration, settings: settings, logger: logger))
            }
            while true { pause() }
        }
    }
}
