import CWardenShims
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A Debian server started by a test on 127.0.0.1, in the foreground, and ended by its pid.
///
/// Spawned and waited for here, not through Foundation's Process: Foundation learns of an exit when
/// a socket the child inherits closes, then waits for that pid on the one thread that reaps all its
/// children. A server that closes the descriptors it inherited (sshd does) looked exited at once, so
/// that thread blocked until the server really ended, and every other test waiting for any program
/// hung with it: the whole test run once stopped so.
public final class Peer {
    public let pid: pid_t
    public let log: String
    private let exited = Mutex(false)

    public struct SpawnError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Started as warden starts a program (`warden_spawn`): no signal blocked or ignored (the test
    /// runner blocks SIGTERM, which a child inherits), no descriptor of the test process but its log.
    public init(_ path: String, _ arguments: [String], log: String, uid: uid_t? = nil) throws {
        self.log = log
        let output = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard output >= 0 else { throw SpawnError(description: "cannot open \(log): \(String(cString: strerror(errno)))") }
        defer { close(output) }
        let argv = [path] + arguments
        var cArguments = argv.map { strdup($0) } + [nil]
        defer { for argument in cArguments { free(argument) } }
        // Postgres refuses root: such a peer runs as `uid` with its primary group.
        let gid = uid.flatMap { getpwuid($0)?.pointee.pw_gid } ?? 0
        var child: pid_t = 0
        let result = warden_spawn(path, &cArguments, environ, -1, output, uid ?? 0, gid, uid == nil ? 0 : 1, nil, &child)
        guard result == 0 else {
            // The exec failed: the child has exited (127) and is ours to reap.
            if child > 0 { waitpid(child, nil, 0) }
            throw SpawnError(description: "cannot start \(path): \(String(cString: strerror(result)))")
        }
        pid = child
    }

    /// Reaps the server if it has exited.
    public var isRunning: Bool {
        exited.withLock { exited in
            if !exited { exited = waitpid(pid, nil, WNOHANG) == pid }
            return !exited
        }
    }

    /// SIGTERM, then SIGKILL after 10 s.
    public func stop() {
        guard isRunning else { return }
        kill(pid, SIGTERM)
        if !TestSupport.waitUntil(timeout: 10, { !isRunning }) {
            kill(pid, SIGKILL)
            TestSupport.waitUntil(timeout: 10) { !isRunning }
        }
    }

    public var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    deinit { stop() }
}

/// Something that is not the expected server on the port: it answers every TCP connection and every
/// datagram with a line of garbage.
public final class GarbageServer {
    public let peer: Peer

    public init(port: Int, directory: TemporaryDirectory) throws {
        let script = try directory.write(
            "garbage.py",
            """
            import socket, sys, threading
            port = int(sys.argv[1])
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", port))
            def datagrams():
                while True:
                    _, peer = udp.recvfrom(2048)
                    udp.sendto(b"garbage\\r\\n", peer)
            threading.Thread(target=datagrams, daemon=True).start()
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind(("127.0.0.1", port))
            tcp.listen(8)
            while True:
                c, _ = tcp.accept()
                c.sendall(b"garbage\\r\\n")
                c.settimeout(1)
                try:
                    c.recv(2048)
                except Exception:
                    pass
                c.close()
            """)
        peer = try Peer("/usr/bin/python3", [script, "\(port)"], log: directory.path + "/garbage.log")
        TestSupport.waitUntil(timeout: 10) { TestSupport.portOpen(port) }
    }
}
