import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Where a head (a request's or a response's) ends in bytes that are still arriving.
enum HeadBoundary {
    /// The head `read` reads from the start of `buffer`, or nil while it is incomplete. The usual
    /// head comes whole and is read at once, its end found by reading it; one that came in pieces
    /// (`continued`) is read only once its end has arrived (searched for from `searched`, what an
    /// earlier search looked at). A complete head that `read` refuses throws its error.
    static func complete<Parsed>(
        _ buffer: ByteBuffer, continued: Bool, searched: Int = 0, read: () throws -> Parsed
    ) rethrows -> Parsed? {
        if continued {
            guard length(buffer, from: searched) != nil else { return nil }
            return try read()
        }
        do {
            return try read()
        } catch where length(buffer) == nil {
            return nil  // not a bad head but the first part of one
        }
    }

    /// Bytes up to and including the blank line that ends a head, if it has arrived. `from`: how
    /// many bytes an earlier search has already looked at.
    static func length(_ buffer: ByteBuffer, from searched: Int = 0) -> Int? {
        buffer.withUnsafeReadableBytes { bytes -> Int? in
            guard bytes.count >= 4, let base = bytes.baseAddress else { return nil }
            // From one LF to the next with memchr: a line at a time rather than a byte at a time.
            var index = max(3, searched)
            while index < bytes.count, let found = memchr(base + index, 10, bytes.count - index) {
                let lf = base.distance(to: UnsafeRawPointer(found))
                if bytes[lf - 1] == 13, bytes[lf - 2] == 10, bytes[lf - 3] == 13 { return lf + 1 }
                index = lf + 1
            }
            return nil
        }
    }
}
