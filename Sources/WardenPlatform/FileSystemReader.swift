#if canImport(Glibc)
import Glibc
#endif

/// Reads files, globs and resolves paths on disk (control files, htpasswd files, the executable's path).
public struct FileSystemReader: Sendable {
    public init() {}

    public func read(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError(errno: errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw SystemError(errno: errno) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw SystemError(message: "not a regular file") }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw SystemError(errno: errno)
            }
            if count == 0 { break }
            bytes.append(contentsOf: buffer[0..<count])
        }
        return bytes
    }

    public func glob(_ pattern: String) -> [String] {
        var result = glob_t()
        defer { globfree(&result) }
        guard Glibc.glob(pattern, 0, nil, &result) == 0 else { return [] }
        var paths: [String] = []
        for index in 0..<Int(result.gl_pathc) {
            guard let cString = result.gl_pathv[index] else { continue }
            let path = String(cString: cString)
            var info = stat()
            // Directories matched by `conf.d/*` are skipped, as monit skips them.
            if stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR { continue }
            paths.append(path)
        }
        return paths.sorted()
    }

    public func realPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

/// An error of a system call, in strerror's words.
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(errno: Int32) { description = String(cString: strerror(errno)).lowercased() }
    public init(message: String) { description = message }
}
