import WardenPlatform
import NIOCore
import NIOHTTP1
import NIOPosix
import WardenConfig

#if canImport(Glibc)
import Glibc
#endif

/// `serve /prefix from /dir`: files with sendfile, content types, ETag/Last-Modified/304 and Range/206,
/// never a path outside the directory (no `..`, no encoded `%2e%2e`, no symlink that leads out).
/// With `compress`, a `file.gz` beside the file is sent instead to a client that accepts gzip (as
/// nginx's `gzip_static`), and text files are compressed as they are read.
enum StaticFiles {
    enum Body {
        case bytes([UInt8])
        case file(NIOFileHandle, Range<Int>)
    }

    struct Response {
        var status: HTTPResponseStatus
        var headers: HTTPHeaders
        var body: Body
        /// The file is to be compressed on the way out (its head says so already).
        var coding: Site.Compression.Coding?
    }

    static let contentTypes: [String: String] = [
        "html": "text/html; charset=utf-8", "htm": "text/html; charset=utf-8", "css": "text/css", "js": "application/javascript",
        "json": "application/json", "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
        "svg": "image/svg+xml", "ico": "image/x-icon", "txt": "text/plain; charset=utf-8", "pdf": "application/pdf",
        "woff": "font/woff", "woff2": "font/woff2", "xml": "application/xml", "webp": "image/webp", "wasm": "application/wasm",
    ]

    static func page(_ status: HTTPResponseStatus) -> Response {
        let body = ProxyPages.page(Int(status.code), status.reasonPhrase, "warden")
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/html; charset=utf-8")
        headers.add(name: "Content-Length", value: String(body.count))
        return Response(status: status, headers: headers, body: .bytes(body))
    }

    /// The file a request path names under `root`, or nil when it would leave the directory.
    static func resolve(path: String, prefix: String, root: String) -> String? {
        var relative = String(path.dropFirst(prefix == "/" ? 1 : prefix.count))
        guard let decoded = PercentEncoding.decode(relative, strict: true) else { return nil }
        relative = decoded
        let segments = relative.split(separator: "/", omittingEmptySubsequences: true)
        if segments.contains(where: { $0 == ".." || $0 == "." || $0.contains("\0") || $0.contains("\\") }) { return nil }
        var candidate = root + "/" + segments.joined(separator: "/")
        guard let realRoot = realPath(root), let realCandidate = realPath(candidate) else { return nil }
        guard realCandidate == realRoot || realCandidate.hasPrefix(realRoot + "/") else { return nil }
        if isDirectory(realCandidate) { candidate = realCandidate + "/index.html" } else { candidate = realCandidate }
        guard let final = realPath(candidate), final.hasPrefix(realRoot + "/") else { return nil }
        return final
    }

    static func response(for request: RequestHead, prefix: String, root: String, compression: Site.Compression? = nil) -> Response {
        guard request.method == .GET || request.isHEAD else { return page(.methodNotAllowed) }
        let path = String(request.path)
        guard let file = resolve(path: path, prefix: prefix, root: root) else { return page(.notFound) }
        let ext = file.split(separator: ".").last.map { $0.lowercased() } ?? ""
        let contentType = contentTypes[ext] ?? "application/octet-stream"
        let gzipped = compression.flatMap { _ in precompressed(file, root: root, acceptEncoding: request.field("accept-encoding")) }
        let served = gzipped ?? file
        var info = stat()
        guard stat(served, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return page(.notFound) }
        let size = Int(info.st_size)
        let modified = Int(info.st_mtim.tv_sec)
        var etag = "\"\(String(modified, radix: 16))-\(String(size, radix: 16))\""
        let lastModified = httpDate(modified)
        var headers = HTTPHeaders()
        var coding: Site.Compression.Coding?
        if gzipped != nil {
            headers.add(name: "Vary", value: "Accept-Encoding")
        } else if let compression {
            let outcome = CompressionNegotiation(settings: compression).decide(
                .init(isHEAD: request.isHEAD, acceptEncoding: request.field("accept-encoding")),
                .init(contentType: contentType, contentLength: size, hasContentRange: request.field("range") != nil))
            if case .compress(let chosen) = outcome {
                coding = chosen
                etag = "W/" + etag
            }
            if outcome != .unchanged { headers.add(name: "Vary", value: "Accept-Encoding") }
        }
        headers.add(name: "ETag", value: etag)
        headers.add(name: "Last-Modified", value: lastModified)
        if coding == nil { headers.add(name: "Accept-Ranges", value: "bytes") }
        // If-None-Match compares weakly (RFC 9110 §13.1.2): a compressed copy's W/ tag matches too.
        let opaque = { (tag: Substring) -> Substring in
            let trimmed = Substring(tag.trimming(" "))
            return trimmed.hasPrefix("W/") ? trimmed.dropFirst(2) : trimmed
        }
        let notModified =
            request.field("if-none-match").map { $0.split(separator: ",").map(opaque).contains(opaque(etag[...])) || $0 == "*" }
            ?? (request.field("if-modified-since") == lastModified)
        if notModified {
            return Response(status: .notModified, headers: headers, body: .bytes([]))
        }
        headers.add(name: "Content-Type", value: contentType)
        if gzipped != nil { headers.add(name: "Content-Encoding", value: "gzip") }
        var range = 0..<size
        var status = HTTPResponseStatus.ok
        if let coding {
            headers.add(name: "Content-Encoding", value: coding.rawValue)
            // The compressed length is known at the end: chunks, or (HTTP/1.0) the end of the connection.
            if request.version != .http1_0 { headers.add(name: "Transfer-Encoding", value: "chunked") }
        } else if let header = request.field("range") {
            guard let requested = byteRange(header, size: size) else {
                var headers = page(.rangeNotSatisfiable).headers
                headers.add(name: "Content-Range", value: "bytes */\(size)")
                return Response(status: .rangeNotSatisfiable, headers: headers, body: page(.rangeNotSatisfiable).body)
            }
            range = requested
            status = .partialContent
            headers.add(name: "Content-Range", value: "bytes \(range.lowerBound)-\(range.upperBound - 1)/\(size)")
        }
        if coding == nil { headers.add(name: "Content-Length", value: String(range.count)) }
        guard let handle = try? NIOFileHandle(_deprecatedPath: served) else { return page(.forbidden) }
        return Response(status: status, headers: headers, body: .file(handle, range), coding: coding)
    }

    /// `file.gz`, when it is a regular file inside `root` and the client accepts gzip.
    static func precompressed(_ file: String, root: String, acceptEncoding: String?) -> String? {
        guard CompressionNegotiation(settings: Site.Compression(codings: [.gzip])).preferredCoding(acceptEncoding) == .gzip,
            let realRoot = realPath(root), let gz = realPath(file + ".gz"), gz.hasPrefix(realRoot + "/")
        else { return nil }
        var info = stat()
        return stat(gz, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG ? gz : nil
    }

    /// One `bytes=a-b`, `a-` or `-n` range; nil when unsatisfiable or malformed.
    static func byteRange(_ header: String, size: Int) -> Range<Int>? {
        guard header.hasPrefix("bytes="), !header.contains(",") else { return nil }
        let spec = header.dropFirst(6)
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        if parts[0].isEmpty {
            guard let suffix = Int(parts[1]), suffix > 0, size > 0 else { return nil }
            return max(0, size - suffix)..<size
        }
        guard let start = Int(parts[0]), start < size else { return nil }
        let end = parts[1].isEmpty ? size - 1 : min(size - 1, Int(parts[1]) ?? -1)
        guard end >= start else { return nil }
        return start..<(end + 1)
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    static func httpDate(_ seconds: Int) -> String {
        TimeFormat.http(Double(seconds))
    }
}
