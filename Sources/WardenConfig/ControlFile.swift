import WardenPlatform

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The result of reading a control file: the configuration when there is no error, and every diagnostic.
public struct LoadResult: Sendable {
    public var configuration: Configuration?
    public var diagnostics: [Diagnostic]
    public var sources: [String: SourceFile]

    /// All diagnostics rendered compiler-style, errors and warnings in file order.
    public func renderedDiagnostics() -> String {
        diagnostics.map { $0.rendered(sources: sources) }.joined()
    }
}

public enum ControlFile {
    /// Where warden looks when `-c` is not given, as monit looks for `~/.monitrc`, `/etc/monitrc`, `./monitrc`.
    public static func searchPaths(home: String?) -> [String] {
        var paths: [String] = []
        if let home { paths.append(home + "/.wardenrc") }
        paths += ["/etc/warden/wardenrc", "./wardenrc"]
        return paths
    }

    /// The first control file of the search order that exists.
    public static func find(home: String?) -> String? {
        searchPaths(home: home).first { access($0, F_OK) == 0 }
    }

    /// Parses and validates a control file and everything it includes.
    /// - Parameter checkPermissions: refuse a file that others can read when it holds credentials.
    public static func load(
        _ path: String, reader: any ControlFileReader = FileSystemReader(), checkPermissions: Bool = true
    ) -> LoadResult {
        let parser = Parser(controlFile: path, reader: reader)
        parser.parseFile(path, includedAt: nil)
        var configuration = parser.configuration
        configuration.services = parser.services.map(\.service)
        for index in configuration.mailServers.indices {
            configuration.mailServers[index].ssl = configuration.mailServers[index].ssl.merged(over: configuration.ssl)
        }
        var diagnostics = parser.diagnostics
        let validation = Validator.validate(configuration, builders: parser.services)
        // A statement that failed to parse leaves its service incomplete; don't pile warnings on top.
        diagnostics += diagnostics.hasErrors ? validation.filter { $0.severity == .error } : validation
        if checkPermissions, let problem = permissionProblem(path, configuration: configuration) {
            diagnostics.append(problem)
        }
        diagnostics = sorted(diagnostics)
        if diagnostics.errors.count > Parser.maximumErrors {
            let kept = diagnostics.filter { $0.severity != .error }
                + Array(diagnostics.errors.prefix(Parser.maximumErrors))
            diagnostics = sorted(kept)
            diagnostics.append(.error(.tooManyErrors, "too many errors, stopping here", at: nil))
        }
        return LoadResult(
            configuration: diagnostics.hasErrors ? nil : configuration, diagnostics: diagnostics,
            sources: parser.sources)
    }

    /// Parses text held in memory (tests, fuzzing, benchmarks); includes are resolved against the file system.
    public static func parse(_ text: String, path: String = "<memory>") -> LoadResult {
        load(path, reader: InMemoryReader(files: [path: Array(text.utf8)]), checkPermissions: false)
    }

    private static func sorted(_ diagnostics: [Diagnostic]) -> [Diagnostic] {
        // Keep the main file's order stable: by file (first appearance), then line, then column.
        var fileOrder: [String: Int] = [:]
        for diagnostic in diagnostics {
            if let file = diagnostic.location?.file, fileOrder[file] == nil { fileOrder[file] = fileOrder.count }
        }
        return diagnostics.enumerated().sorted { a, b in
            let la = a.element.location
            let lb = b.element.location
            let ka = (la.map { fileOrder[$0.file]! } ?? Int.max, la?.line ?? 0, la?.column ?? 0, a.offset)
            let kb = (lb.map { fileOrder[$0.file]! } ?? Int.max, lb?.line ?? 0, lb?.column ?? 0, b.offset)
            return ka < kb
        }.map(\.element)
    }

    /// monit refuses any control file more open than 0700; warden refuses one only when others can
    /// read it and it holds credentials (httpd users, mail server passwords).
    static func permissionProblem(_ path: String, configuration: Configuration) -> Diagnostic? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        let mode = Int(info.st_mode) & 0o777
        guard mode & 0o077 != 0 else { return nil }
        let holdsCredentials =
            configuration.httpd?.allow.contains { $0.holdsCredentials } == true
            || configuration.mailServers.contains { $0.password != nil }
        guard holdsCredentials else { return nil }
        return .error(
            .insecurePermissions,
            "control file '\(path)' holds credentials but others can read it (mode \(String(mode, radix: 8)))",
            at: nil, hint: "run 'chmod 600 \(path)'")
    }
}

extension FileSystemReader: ControlFileReader {}

/// Serves files from memory, falling back to the file system for anything else.
struct InMemoryReader: ControlFileReader {
    let files: [String: [UInt8]]

    func read(_ path: String) throws -> [UInt8] {
        if let bytes = files[path] { return bytes }
        return try FileSystemReader().read(path)
    }

    func glob(_ pattern: String) -> [String] {
        files[pattern] != nil ? [pattern] : FileSystemReader().glob(pattern)
    }

    func realPath(_ path: String) -> String {
        files[path] != nil ? path : FileSystemReader().realPath(path)
    }
}
