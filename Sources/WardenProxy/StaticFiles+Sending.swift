import NIOCore

#if canImport(Glibc)
import Glibc
#endif

extension StaticFiles {
    /// How a response's body goes out after its head.
    enum Sending {
        /// In the head's buffer.
        case inline([UInt8])
        /// Read and written in pieces (`FilePieces`): no sendfile into TLS or HTTP/2, and none for a body
        /// that is compressed on the way.
        case pieces(NIOFileHandle, Range<Int>)
        /// By sendfile, as a `FileRegion`; the file is closed once it is written.
        case region(NIOFileHandle, Range<Int>)
        /// No body (a response to HEAD): the file, if one was opened, is closed at once.
        case headOnly(closing: NIOFileHandle?)

        init(_ body: Body, isHEAD: Bool, fileRegions: Bool) {
            switch body {
            case .bytes(let bytes) where !isHEAD: self = .inline(bytes)
            case .file(let handle, let range) where !isHEAD: self = fileRegions ? .region(handle, range) : .pieces(handle, range)
            case .file(let handle, _): self = .headOnly(closing: handle)
            case .bytes: self = .headOnly(closing: nil)
            }
        }
    }

    /// A file sent in pieces of up to 64 KB while the client keeps up.
    struct FilePieces {
        enum Next {
            case piece(ByteBuffer)
            /// The client cannot take more now: go on when it is writable again.
            case wait
            /// All sent; the file is closed.
            case done
            /// The file shrank or could not be read: the response cannot be completed (the file is closed).
            case failed
        }

        static let pieceBytes = 65536

        private let handle: NIOFileHandle
        private var offset: Int
        private let end: Int

        init(_ handle: NIOFileHandle, _ range: Range<Int>) {
            self.handle = handle
            offset = range.lowerBound
            end = range.upperBound
        }

        mutating func next(writable: Bool, allocator: ByteBufferAllocator) -> Next {
            guard offset < end else {
                close()
                return .done
            }
            guard writable else { return .wait }
            let count = min(Self.pieceBytes, end - offset)
            var piece = allocator.buffer(capacity: count)
            let at = offset
            let read = (try? handle.withUnsafeFileDescriptor { fd in
                piece.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { pread(fd, $0.baseAddress, count, off_t(at)) }
            }) ?? -1
            guard read > 0 else {
                close()
                return .failed
            }
            offset += read
            return .piece(piece)
        }

        /// Lets the file go (the response ended early).
        func close() {
            try? handle.close()
        }
    }
}
