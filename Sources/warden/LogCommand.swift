import ArgumentParser
import WardenConfig
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

extension Warden {
    /// Reads the service's log file itself, as `journalctl -u NAME` does: on the daemon's machine, no daemon needed.
    struct Log: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the last lines of a service's own log (its program's output), and follow it with -f.",
            discussion: """
                Reads the log file the control file gives the service ('log PATH', else warden's own log) on \
                this machine; the daemon need not run.

                EXAMPLES
                  warden log myapp
                  warden log -n 100 -f myapp@8081
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: ArgumentHelp("A service (an instance: NAME@PORT).", valueName: "NAME")) var name: String
        @Option(name: .customShort("n"), help: ArgumentHelp("How many of the last lines to print.", valueName: "LINES"))
        var lines = 10
        @Flag(name: .customShort("f"), help: "Keep printing lines as they are written, across rotations, until interrupted.")
        var follow = false

        func validate() throws {
            guard lines >= 0 else { throw ValidationError("-n takes a number of lines, 0 or more") }
        }

        mutating func run() throws {
            let result = ControlFile.load(try global.resolveControlFile())
            guard let configuration = result.configuration else {
                printError(result.renderedDiagnostics(), terminator: "")
                throw ExitCode(1)
            }
            guard let path = configuration.logPath(ofServiceNamed: name) else {
                let known = configuration.service(named: name) != nil
                printError(known ? "warden: '\(name)' has no log file: give it 'log PATH', or warden one with 'set logfile'" : "warden: there is no service '\(name)'")
                throw ExitCode(1)
            }
            let tail = LogTail(path: path)
            if access(path, R_OK) != 0, !follow {
                printError("warden: cannot read '\(path)': \(String(cString: strerror(errno)))")
                throw ExitCode(1)
            }
            emit(tail.lastLines(lines))
            while follow {
                emit(tail.poll())
                usleep(200_000)
            }
        }

        private func emit(_ lines: [String]) {
            for line in lines { print(line) }
            fflush(nil)  // stdout, without naming the C global
        }
    }
}
