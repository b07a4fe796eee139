import ArgumentParser
import WardenConfig

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
struct Warden: ParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "warden",
        abstract: "Supervise services as monit does, with monit's control-file language.",
        discussion: """
            Exit codes: 0 success, 1 invalid control file or failed action, 64 usage error.
            """,
        version: version,
        subcommands: [Validate.self]
    )

    @OptionGroup var options: GlobalOptions

    @Flag(name: .customShort("t"), help: "Check the control file's syntax and exit.")
    var testOnly = false

    mutating func run() throws {
        if testOnly {
            throw ExitCode(Validate.check(try options.resolveControlFile()))
        }
        throw ValidationError("the daemon is not part of this build yet; use -t to validate a control file")
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

func printError(_ text: String, terminator: String = "\n") {
    var bytes = Array((text + terminator).utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + offset, $0.count - offset) }
        if written <= 0 { return }
        offset += written
    }
}
