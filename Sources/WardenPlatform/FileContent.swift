import Crypto
#if canImport(Glibc)
import Glibc
#endif

/// Where a content test stopped reading a file: the file (by inode) and the offset after its last complete line.
public struct FilePosition: Sendable, Hashable, Codable {
    public var inode: UInt64
    public var offset: UInt64

    public init(inode: UInt64, offset: UInt64) {
        self.inode = inode
        self.offset = offset
    }
}

/// The lines a log file gained since the last cycle, as monit's content test reads them.
public enum FileContent {
    /// Complete lines after `position`: from the start when the file was replaced (another inode, as by
    /// rotation) or truncated; none the first time (`position` nil), which starts at the end as monit
    /// does. A last line without its newline is left for the next cycle, when the writer has finished
    /// it; a line longer than `lineLimit` bytes is cut there. At most `readLimit` bytes are read in one
    /// call, the rest in the next cycle.
    public static func appendedLines(
        _ path: String, after position: FilePosition?, lineLimit: Int, readLimit: Int = 1 << 22
    ) -> (lines: [String], position: FilePosition)? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return nil }
        let inode = UInt64(info.st_ino)
        let size = UInt64(info.st_size)
        guard let position else { return ([], FilePosition(inode: inode, offset: size)) }
        var offset = position.offset
        if position.inode != inode || offset > size { offset = 0 }
        guard offset < size else { return ([], FilePosition(inode: inode, offset: offset)) }
        let wanted = Int(min(size - offset, UInt64(readLimit)))
        var bytes = [UInt8](repeating: 0, count: wanted)
        let count = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, wanted, off_t(offset)) }
        guard count > 0 else { return ([], FilePosition(inode: inode, offset: offset)) }
        var lines: [String] = []
        var start = 0
        for index in 0..<count where bytes[index] == UInt8(ascii: "\n") {
            lines.append(String(decoding: bytes[start..<min(index, start + lineLimit)], as: UTF8.self))
            start = index + 1
        }
        return (lines, FilePosition(inode: inode, offset: offset + UInt64(start)))
    }
}

/// The digests monit's checksum tests compute.
public enum HashKind: String, Sendable, Hashable {
    case md5, sha1
}

/// `certificate checksum [md5|sha1] HASH` on a TLS test: the digest of the server certificate (DER), as
/// `openssl x509 -fingerprint` prints it (case and colons do not matter); the kind from the length when
/// not named.
public struct CertificateChecksum: Sendable, Hashable {
    public var kind: HashKind
    public var expected: String

    public init(kind: HashKind?, expected: String) {
        self.expected = expected.filter { $0 != ":" }.lowercased()
        self.kind = kind ?? (self.expected.count == 40 ? .sha1 : .md5)
    }

    /// nil when the certificate matches, else monit's kind of message.
    public func mismatch(_ certificate: [UInt8]) -> String? {
        let digest = kind == .sha1 ? Hex.string(Insecure.SHA1.hash(data: certificate)) : Hex.string(Insecure.MD5.hash(data: certificate))
        return digest == expected ? nil : "SSL: server certificate checksum failed -- \(kind.rawValue.uppercased()) is \(digest), expected \(expected)"
    }
}

/// An MD5 or SHA-1 digest fed in blocks, so that what it digests is never held whole.
struct Digester {
    private var md5: Insecure.MD5?
    private var sha1: Insecure.SHA1?

    init(_ kind: HashKind) {
        switch kind {
        case .md5: md5 = Insecure.MD5()
        case .sha1: sha1 = Insecure.SHA1()
        }
    }

    mutating func update(_ block: UnsafeRawBufferPointer) {
        md5?.update(bufferPointer: block)
        sha1?.update(bufferPointer: block)
    }

    /// The digest in lowercase hex.
    var hex: String {
        let digest: [UInt8] = md5.map { Array($0.finalize()) } ?? sha1.map { Array($0.finalize()) } ?? []
        return Hex.string(digest)
    }
}

extension FileContent {
    /// The file's digest in lowercase hex, read in blocks (a large file is never held whole); nil when
    /// it cannot be read.
    public static func checksum(_ path: String, _ kind: HashKind) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var digester = Digester(kind)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else { return nil }
            if count == 0 { break }
            buffer.withUnsafeBytes { digester.update(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        }
        return digester.hex
    }
}
