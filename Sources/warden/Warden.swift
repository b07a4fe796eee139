import ArgumentParser
import WardenApp
import WardenConfig
import WardenCore
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

/// `-c`, `-v`, `-I`: shared by the daemon and every command that reads the control file.
struct GlobalOptions: ParsableArguments {
    @Option(name: .customShort("c"), help: "Use this control file (a monitrc works too).")
    var controlFile: String?

    @Flag(name: .customShort("v"), help: "Verbose logging to standard error.")
    var verbose = false

    /// Finds the control file: `-c`, else the search order (~/.wardenrc, /etc/warden/wardenrc, ./wardenrc).
    func resolveControlFile() throws -> String {
        if let controlFile { return controlFile }
        let home = getenv("HOME").map { String(cString: $0) }
        guard let found = ControlFile.find(home: home) else {
            let list = ControlFile.searchPaths(home: home).joined(separator: ", ")
            throw ValidationError("no control file found (looked for \(list)); pass one with -c FILE")
        }
        return found
    }
}

@main
struct Warden: AsyncParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "warden",
        abstract: "Supervise services as monit does, with monit's control-file language.",
        discussion: """
            Commands: warden [-c FILE] [-I] [-v] runs the daemon; -t validates; status [NAME] [--json], summary,
            start|stop|restart|monitor|unmonitor NAME|all|-g GROUP, reload, quit [--stop-services], validate.
            Exit codes: 0 success; 1 invalid control file, refused or failed action; 2 no daemon reachable;
            64 usage error.
            """,
        version: version,
        subcommands: [Demo.self, Service.self, Import.self, ProxyWorker.self, Validate.self, Reload.self, Quit.self, Status.self, Summary.self, Maintenance.self, Deploy.self, Act.self, Log.self]
    )

    @OptionGroup var options: GlobalOptions

    @Flag(name: .customShort("t"), help: "Check the control file's syntax and exit.")
    var testOnly = false

    @Flag(name: .customShort("I"), help: "Stay in the foreground (do not daemonize).")
    var foreground = false

    /// `warden start NAME` and friends are `warden action start NAME` underneath.
    static func main() async {
        var arguments = Array(CommandLine.arguments.dropFirst())
        var index = 0
        while index < arguments.count, arguments[index].hasPrefix("-") {
            index += arguments[index] == "-c" || arguments[index] == "-g" ? 2 : 1
        }
        if index < arguments.count, UserAction(rawValue: arguments[index]) != nil {
            arguments.insert("action", at: index)
        }
        do {
            switch try parseAsRoot(arguments) {
            case let warden as Warden where !warden.testOnly:
                // Here, before the first await, warden still has one thread: the daemon may fork.
                let daemon = try warden.prepareDaemon()
                throw ExitCode(await daemon.run())
            case var command as any AsyncParsableCommand:
                try await command.run()
            case var command:
                // On the main thread, before any await (`ProxyWorker` needs it).
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }

    /// `warden -t`. The daemon (no -t) is started by `main`, which must let it fork before anything awaits.
    mutating func run() async throws {
        throw ExitCode(Validate.check(try options.resolveControlFile()))
    }

    /// Reads the control file, daemonizes unless -I, takes the pid lock: synchronous, see `Daemon.prepare`.
    func prepareDaemon() throws -> Daemon.Prepared {
        guard let prepared = Daemon(controlFile: try options.resolveControlFile(), foreground: foreground, verbose: options.verbose).prepare() else {
            throw ExitCode(1)
        }
        return prepared
    }
}

extension Warden {
    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the control file and print every problem, compiler-style.")

        @OptionGroup var options: GlobalOptions

        mutating func run() throws {
            throw ExitCode(Self.check(try options.resolveControlFile()))
        }

        /// Prints diagnostics to standard error and `Control file syntax OK` when there is no error.
        static func check(_ path: String) -> Int32 {
            let result = ControlFile.load(path)
            let rendered = result.renderedDiagnostics()
            if !rendered.isEmpty { printError(rendered, terminator: "") }
            if result.diagnostics.hasErrors {
                let errors = result.diagnostics.errors.count
                printError("\(errors) error\(errors == 1 ? "" : "s") in control file '\(path)'")
                return 1
            }
            print("Control file syntax OK")
            return 0
        }
    }
}

extension Warden {
    /// Finds the running daemon from the control file's `set pidfile` (or the default).
    static func daemonPID(_ options: GlobalOptions) throws -> (pid_t, Configuration?) {
        let path = try options.resolveControlFile()
        let configuration = ControlFile.load(path).configuration
        let pidPath = configuration?.pidfile ?? Daemon.defaultPIDFile()
        guard let pid = PIDLock.runningPID(pidPath), pid > 0 else {
            printError("warden daemon is not running")
            throw ExitCode(1)
        }
        return (pid, configuration)
    }

    struct Reload: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-read the control file in the running daemon (checked here first).")

        @OptionGroup var options: GlobalOptions

        mutating func run() throws {
            let path = try options.resolveControlFile()
            let result = ControlFile.load(path)
            if result.diagnostics.hasErrors {
                printError(result.renderedDiagnostics(), terminator: "")
                printError("control file not reloaded; the daemon keeps its configuration")
                throw ExitCode(1)
            }
            let (pid, _) = try Warden.daemonPID(options)
            kill(pid, SIGHUP)
            print("Reinitializing warden daemon")
        }
    }

    struct Quit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop the daemon; services keep running unless --stop-services is given.")

        @OptionGroup var options: GlobalOptions

        @Flag(help: "Stop every service, dependants first, before quitting.")
        var stopServices = false

        mutating func run() async throws {
            let (pid, _) = try Warden.daemonPID(options)
            kill(pid, stopServices ? SIGUSR2 : SIGTERM)
            // Wait (bounded) so scripts can rely on the daemon being gone when this returns.
            for _ in 0..<600 where kill(pid, 0) == 0 {
                try await Task.sleep(for: .milliseconds(50))
            }
            print("warden daemon with pid \(pid) stopped")
        }
    }
}

func printError(_ text: String, terminator: String = "\n") {
    LogSink.writeAll(2, text + terminator)
}

/// Unbuffered standard output, for lines that must appear before a long-running part starts.
func printOut(_ text: String, terminator: String = "\n") {
    LogSink.writeAll(1, text + terminator)
}
