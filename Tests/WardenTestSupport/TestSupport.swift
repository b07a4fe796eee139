import Foundation
import Synchronization
import WardenPlatform

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
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
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
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
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

extension TestSupport {
    /// A free TCP port on 127.0.0.1 (bound and released; good enough for tests run one at a time).
    public static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Whether something accepts TCP connections on 127.0.0.1:`port`.
    public static func portOpen(_ port: Int) -> Bool { Loopback.accepts(port) }

    /// Polls `condition` every 10 ms until it holds or `timeout` seconds pass.
    @discardableResult
    public static func waitUntil(timeout: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    /// A GET on 127.0.0.1; nil on any connection error.
    public static func httpGet(port: Int, path: String = "/", timeout: Double = 2, headers: [String: String] = [:]) -> (status: Int, body: String, headers: [String: String])? {
        guard let result = try? run("/usr/bin/curl", ["-s", "-m", String(timeout), "-D", "-", "-o", "-"] + headers.flatMap { ["-H", "\($0.key): \($0.value)"] } + ["http://127.0.0.1:\(port)\(path)"], timeout: timeout + 2),
            result.status == 0
        else { return nil }
        let parts = result.stdout.components(separatedBy: "\r\n\r\n")
        let head = parts.first ?? ""
        let body = parts.dropFirst().joined(separator: "\r\n\r\n")
        let lines = head.components(separatedBy: "\r\n")
        let status = Int(lines.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
        var headerMap: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headerMap[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return (status, body, headerMap)
    }

    public static func readPID(_ path: String) -> pid_t? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    public static func isAlive(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        let state = stat[stat.index(close, offsetBy: 2)]
        return state != "Z" && state != "X"
    }

    /// Pids of live processes whose command line contains `needle`.
    public static func processes(containing needle: String) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { pid_t($0) }.filter { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            let command = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            return command.contains(needle) && isAlive(pid)
        }
    }
}

/// A warden daemon started by a test in the foreground (`-I`), ended by its PID.
public final class WardenProcess: @unchecked Sendable {
    public let process = Process()
    public let logPath: String
    public let controlFile: String

    /// `launcher` runs warden through a program that execs it (e.g. `setpriv --groups 0,4 --`), so the
    /// pid is still warden's.
    public init(
        controlFile: String, logPath: String, arguments: [String] = ["-I", "-v"], environment: [String: String]? = nil,
        launcher: [String] = []
    ) throws {
        self.controlFile = controlFile
        self.logPath = logPath
        let command = launcher + [TestSupport.wardenBinary, "-c", controlFile] + arguments
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        if let environment { process.environment = environment }
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    public var pid: pid_t { process.processIdentifier }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits until the log contains `text` `count` times.
    @discardableResult
    public func waitForLog(_ text: String, count: Int = 1, timeout: Double = 20) -> Bool {
        TestSupport.waitUntil(timeout: timeout) { log.components(separatedBy: text).count - 1 >= count }
    }

    public func signal(_ signal: Int32) { kill(pid, signal) }

    /// SIGTERM, then SIGKILL after `grace` seconds.
    public func stop(grace: Double = 10) {
        guard process.isRunning else { return }
        kill(pid, SIGTERM)
        if !TestSupport.waitUntil(timeout: grace, { !process.isRunning }) { kill(pid, SIGKILL) }
        process.waitUntilExit()
    }

    public func kill9() {
        kill(pid, SIGKILL)
        process.waitUntilExit()
    }

    deinit { stop() }
}

extension TestSupport {
    /// A self-signed certificate and key for 127.0.0.1, and a PEM holding both (monit's `pemfile`).
    public static func selfSignedCertificate(in directory: TemporaryDirectory) throws -> (cert: String, key: String, pem: String) {
        let cert = directory.path + "/cert.pem"
        let key = directory.path + "/key.pem"
        let result = try run("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1"])
        guard result.status == 0 else { throw CocoaError(.fileWriteUnknown) }
        let pem = try directory.write("both.pem", try String(contentsOfFile: cert, encoding: .utf8) + String(contentsOfFile: key, encoding: .utf8))
        return (cert, key, pem)
    }
}

extension TestSupport {
    /// Sends raw bytes on a new connection to 127.0.0.1 and reads until the server closes it (or 5 s
    /// pass): what a server answers to malformed requests, and whether it closes the connection.
    public static func rawExchange(port: Int, _ request: String) throws -> (response: String, closed: Bool) {
        let result = try run("/usr/bin/python3", ["-c", """
            import socket, sys
            s = socket.create_connection(("127.0.0.1", \(port)), timeout=5)
            s.sendall(sys.stdin.buffer.read())
            data = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk: break
                    data += chunk
            except socket.timeout:
                data += b" TIMEOUT"
            print(data.decode(errors="replace"))
            """], input: request, timeout: 15)
        return (result.stdout, !result.stdout.contains("TIMEOUT"))
    }
}

/// Runs `body` on a thread of its own, for a request that must be in flight while the test acts.
public final class Background<T: Sendable>: Sendable {
    private let done = DispatchSemaphore(value: 0)
    private let result = Mutex<T?>(nil)

    public init(_ body: @escaping @Sendable () -> T) {
        Thread.detachNewThread { [self] in
            let value = body()
            result.withLock { $0 = value }
            done.signal()
        }
    }

    /// The result, or nil if `body` has not finished within `timeout` seconds.
    public func value(timeout: Double) -> T? {
        guard done.wait(timeout: .now() + timeout) == .success else { return nil }
        done.signal()  // the next call gets the result at once too
        return result.withLock { $0 }
    }
}
