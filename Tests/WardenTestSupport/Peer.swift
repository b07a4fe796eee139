import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A Debian server started by a test on 127.0.0.1, in the foreground, and ended by its pid.
public final class Peer {
    public let process = Process()
    public let log: String

    /// Execs its arguments with no signal blocked or ignored: the test runner blocks SIGTERM, and a child
    /// inherits that, so a server that does not reset its mask (python's) would never see our SIGTERM.
    static let launcher = """
        import os, signal, sys
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(s, signal.SIG_DFL)
        os.execv(sys.argv[1], sys.argv[1:])
        """

    public init(_ path: String, _ arguments: [String], log: String, uid: uid_t? = nil) throws {
        self.log = log
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        // setpriv execs the server in its own place, so the pid stays the server's (postgres refuses root).
        let user = uid.map { ["/usr/bin/setpriv", "--reuid=\($0)", "--regid=\(getpwuid($0).pointee.pw_gid)", "--clear-groups"] } ?? []
        process.arguments = ["-c", Self.launcher] + user + [path] + arguments
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    public var pid: pid_t { process.processIdentifier }

    /// SIGTERM, then SIGKILL after 10 s.
    public func stop() {
        guard process.isRunning else { return }
        kill(pid, SIGTERM)
        if !TestSupport.waitUntil(timeout: 10, { !process.isRunning }) { kill(pid, SIGKILL) }
        process.waitUntilExit()
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
