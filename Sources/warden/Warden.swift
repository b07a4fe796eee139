import ArgumentParser
import WardenApp
import WardenConfig
import WardenCore
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

/// `-c`, `-v`: shared by the daemon and every command that reads the control file.
struct GlobalOptions: ParsableArguments {
    @Option(
        name: .customShort("c"),
        help: ArgumentHelp(
            "Use this control file (a monitrc works too).",
            discussion: "Without -c: the first of ~/.wardenrc, /etc/warden/wardenrc and ./wardenrc that exists.",
            valueName: "FILE"),
        completion: .file())
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
        abstract: "Supervise services as monit does, and proxy their web traffic as nginx does.",
        usage: """
            warden [-c FILE] [-v] [-I]
            warden [-c FILE] -t
            warden [-c FILE] <command> [<arguments>]
            """,
        discussion: """
            Without a command, warden runs the daemon: it reads the control file (monit's language; a monitrc \
            works), starts and checks the services it declares every cycle, serves the dashboard of 'set httpd' \
            and proxies the sites of 'set proxy'. It leaves the terminal unless -I is given or the control file \
            says 'set init'. SIGHUP re-reads the control file, SIGUSR1 re-opens the log files, SIGTERM ends the \
            daemon and leaves the services running.

            The commands that act on services (start, stop, restart, monitor, unmonitor, status, summary, \
            deploy, maintenance) ask the running daemon through the 'set httpd' interface named in the same \
            control file.

            Without -c, the control file is the first of ~/.wardenrc, /etc/warden/wardenrc and ./wardenrc that exists.

            EXIT STATUS
              0   success
              1   an invalid control file, or an action refused or failed
              2   no daemon reachable
              64  a usage error

            EXAMPLES
              warden -t -c /etc/warden/wardenrc   check a control file
              warden -c /etc/warden/wardenrc      start the daemon
              warden status                       the status of every service
              warden restart myapp                restart one service
              warden stop -g web                  stop every service of group 'web'
              warden deploy myapp                 new instances, switched to once ready
            """,
        version: version,
        groupedSubcommands: [
            CommandGroup(name: "Service", subcommands: [Start.self, Stop.self, Restart.self, Monitor.self, Unmonitor.self, Deploy.self, Maintenance.self]),
            CommandGroup(name: "Status", subcommands: [Status.self, Summary.self, Log.self]),
            CommandGroup(name: "Daemon", subcommands: [Validate.self, Reload.self, Quit.self]),
            CommandGroup(name: "Other", subcommands: [Demo.self, Service.self, Import.self, ProxyWorker.self]),
        ]
    )

    @OptionGroup var options: GlobalOptions

    @Flag(name: .customShort("t"), help: "Check the control file's syntax and exit.")
    var testOnly = false

    @Flag(name: .customShort("I"), help: "Stay in the foreground (do not daemonize).")
    var foreground = false

    static func main() async {
        do {
            switch try parseAsRoot(monitOrder(Array(CommandLine.arguments.dropFirst()))) {
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

    /// monit takes the group before the action (`monit -g web restart`); warden's commands take it after
    /// theirs. A `-g GROUP` ahead of the command's name moves behind it; everything else keeps its place.
    static func monitOrder(_ arguments: [String]) -> [String] {
        var leading: [String] = []
        var group: [String] = []
        var index = arguments.startIndex
        while index < arguments.endIndex {
            let argument = arguments[index]
            if argument == "-g", index + 1 < arguments.endIndex {
                group = [argument, arguments[index + 1]]
                index += 2
            } else if argument.hasPrefix("-g"), argument.count > 2 {
                group = [argument]
                index += 1
            } else if argument.hasPrefix("-") {
                leading.append(argument)
                // -c takes a value: it is not the command's name.
                if argument == "-c", index + 1 < arguments.endIndex { leading.append(arguments[index + 1]); index += 1 }
                index += 1
            } else {
                break
            }
        }
        guard !group.isEmpty, index < arguments.endIndex else { return arguments }
        return leading + [arguments[index]] + group + arguments[(index + 1)...]
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
            abstract: "Check the control file and print every problem, compiler-style.",
            discussion: """
                Prints each error and warning with its file, line and column, and 'Control file syntax OK' \
                when there is no error (warnings alone do not fail). The same check as warden -t.

                EXAMPLES
                  warden validate -c /etc/warden/wardenrc
                """)

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
            abstract: "Re-read the control file in the running daemon (checked here first).",
            discussion: """
                Checks the control file, then sends SIGHUP to the daemon named by its pidfile. A control file \
                with an error is not sent: the daemon keeps its configuration and the exit status is 1.

                EXAMPLES
                  warden reload
                """)

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
            abstract: "Stop the daemon; services keep running unless --stop-services is given.",
            discussion: """
                Sends SIGTERM (SIGUSR2 with --stop-services) to the daemon named by the control file's pidfile, \
                and returns once it has ended.

                EXAMPLES
                  warden quit
                  warden quit --stop-services
                """)

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
