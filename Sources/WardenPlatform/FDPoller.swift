import CWardenShims
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One thread that waits on many file descriptors with poll(2) and calls a handler when one is readable.
/// Used for pidfds (a process exited) and for the output pipes of programs warden starts.
public final class FDPoller: Sendable {
    public typealias Handler = @Sendable (Int32) -> Bool

    private struct State {
        var handlers: [Int32: Handler] = [:]
        var started = false
    }

    private let state = Mutex(State())
    private let wakeRead: Int32
    private let wakeWrite: Int32

    public init() {
        var fds: [Int32] = [0, 0]
        _ = warden_pipe(&fds, 1)
        wakeRead = fds[0]
        wakeWrite = fds[1]
    }

    /// Calls `handler` on the poller thread each time `fd` is readable (or hung up) until it returns false.
    public func register(_ fd: Int32, handler: @escaping Handler) {
        let start = state.withLock { state -> Bool in
            state.handlers[fd] = handler
            defer { state.started = true }
            return !state.started
        }
        if start {
            Thread.start(name: "warden-poll") { [self] in loop() }
        }
        wake()
    }

    public func unregister(_ fd: Int32) {
        _ = state.withLock { $0.handlers.removeValue(forKey: fd) }
        wake()
    }

    private func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    private func loop() {
        while true {
            let registered = state.withLock { $0.handlers }
            var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            fds += registered.keys.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&fds, nfds_t(fds.count), -1)
            if ready < 0 { continue }
            if fds[0].revents != 0 {
                var drain = [UInt8](repeating: 0, count: 256)
                while read(wakeRead, &drain, drain.count) > 0 {}
            }
            for entry in fds.dropFirst() where entry.revents != 0 {
                guard let handler = registered[entry.fd] else { continue }
                if !handler(entry.fd) {
                    _ = state.withLock { $0.handlers.removeValue(forKey: entry.fd) }
                }
            }
        }
    }
}

/// A detached OS thread for blocking loops (poll, waitpid) that must never occupy Swift's cooperative pool.
public enum Thread {
    public static func start(name: String, _ body: @escaping @Sendable () -> Void) {
        final class Box: Sendable {
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        var thread = pthread_t()
        let named = Box {
            warden_set_thread_name(name)
            body()
        }
        let box = Unmanaged.passRetained(named).toOpaque()
        pthread_create(&thread, nil, { raw in
            let box = Unmanaged<AnyObject>.fromOpaque(raw!).takeRetainedValue() as! Box
            box.body()
            return nil
        }, box)
        pthread_detach(thread)
    }
}
