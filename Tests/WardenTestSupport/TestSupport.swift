import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Helpers shared by the test targets: running real programs, temporary directories, peers.
public enum TestSupport {
    /// The package's root directory (tests read fixtures and docs from it).
    public static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The directory holding the built products (`warden`, `myapp`, …): the one the test bundle runs from.
    public static let productsDirectory: String = {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var url = URL(fileURLWithPath: executable).deletingLastPathComponent()
        while url.path != "/", !FileManager.default.fileExists(atPath: url.appendingPathComponent("warden").path) {
            url.deleteLastPathComponent()
        }
        return url.path
    }()

    public static var wardenBinary: String { productsDirectory + "/warden" }

    public static var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    /// The path of a peer program, or nil. Under CI a missing peer is the test's failure, never a skip.
    public static func peer(_ name: String, candidates: [String] = []) -> String? {
        let search = candidates + ["/usr/bin/\(name)", "/usr/sbin/\(name)", "/bin/\(name)", "/usr/local/bin/\(name)"]
        return search.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    public struct ProcessResult: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        public var timedOut: Bool
    }

    /// Runs a program to completion (or until `timeout`, then SIGKILL) and captures its output.
    @discardableResult
    public static func run(
        _ path: String, _ arguments: [String], environment: [String: String]? = nil, input: String? = nil,
        currentDirectory: String? = nil, timeout: Double = 60
    ) throws -> ProcessResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
        let outFile = try TemporaryFile()
        let errFile = try TemporaryFile()
        process.standardOutput = outFile.handle
        process.standardError = errFile.handle
        let inputPipe = Pipe()
        process.standardInput = input == nil ? FileHandle.nullDevice : inputPipe
        try process.run()
        if let input {
            inputPipe.fileHandleForWriting.write(Data(input.utf8))
            try? inputPipe.fileHandleForWriting.close()
        }
        let deadline = Date().addingTimeInterval(timeout)
        var timedOut = false
        while process.isRunning {
            if Date() > deadline {
                kill(process.processIdentifier, SIGKILL)
                timedOut = true
                break
            }
            usleep(5_000)
        }
        process.waitUntilExit()
        return ProcessResult(
            status: process.terminationStatus, stdout: outFile.contents(), stderr: errFile.contents(), timedOut: timedOut)
    }
}

/// A file under /tmp removed when the value is released.
final class TemporaryFile {
    let path: String
    let handle: FileHandle

    init() throws {
        var template = Array("/tmp/warden-test-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { throw CocoaError(.fileWriteUnknown) }
        path = String(cString: template)
        handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }

    func contents() -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    deinit { unlink(path) }
}

/// A directory under /tmp, removed with everything in it when the value is released.
public final class TemporaryDirectory: @unchecked Sendable {
    public let path: String

    public init(_ prefix: String = "warden") throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw CocoaError(.fileWriteUnknown) }
        path = String(cString: template)
    }

    /// Writes a file (creating directories) with the given mode and returns its path.
    @discardableResult
    public func write(_ name: String, _ text: String, mode: Int = 0o600) throws -> String {
        let full = path + "/" + name
        try FileManager.default.createDirectory(
            atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: full, atomically: false, encoding: .utf8)
        chmod(full, mode_t(mode))
        return full
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
