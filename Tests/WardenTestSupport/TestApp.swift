import Foundation

/// A small HTTP app for supervision tests: answers `pong` on /ping, writes its pidfile after binding.
/// Started by a daemonizing start script (like an init script) or in the foreground.
public struct TestApp {
    public let directory: String
    public let port: Int
    public let pidfile: String
    public let startScript: String
    public let foregroundCommand: String
    public let stopScript: String
    public let failingStartScript: String
    public let startLog: String

    public init(in directory: TemporaryDirectory, name: String = "app", port: Int = TestSupport.freePort()) throws {
        self.directory = directory.path
        self.port = port
        pidfile = directory.path + "/\(name).pid"
        startLog = directory.path + "/\(name).starts"
        let server = try directory.write(
            "\(name).py",
            """
            import http.server, os, sys, signal
            class H(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    body = b"pong" if self.path == "/ping" else b"hello"
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                def log_message(self, *a): pass
            s = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
            with open(sys.argv[2] + ".tmp", "w") as f: f.write(str(os.getpid()) + "\\n")
            os.rename(sys.argv[2] + ".tmp", sys.argv[2])
            with open(sys.argv[3], "a") as f: f.write(str(os.getpid()) + "\\n")
            signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
            s.serve_forever()
            """, mode: 0o644)
        foregroundCommand = "/usr/bin/python3 \(server) \(port) \(pidfile) \(startLog)"
        startScript = try directory.write(
            "start-\(name).sh",
            """
            #!/bin/sh
            # Like an init script: start the app in the background and return at once.
            setsid \(foregroundCommand) >/dev/null 2>&1 < /dev/null &
            exit 0
            """, mode: 0o755)
        stopScript = try directory.write(
            "stop-\(name).sh",
            """
            #!/bin/sh
            [ -f \(pidfile) ] && kill -TERM $(cat \(pidfile)) && kill -CONT $(cat \(pidfile))
            exit 0
            """, mode: 0o755)
        failingStartScript = try directory.write(
            "fail-\(name).sh", "#!/bin/sh\necho \"\(name): cannot start (simulated)\" >&2\nexit 1\n", mode: 0o755)
    }

    /// How many times the app process has started so far.
    public var starts: Int {
        ((try? String(contentsOfFile: startLog, encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    public var pid: pid_t? { TestSupport.readPID(pidfile) }

    /// True when the pidfile names a live process that answers /ping with pong.
    public var isServing: Bool {
        guard let pid, TestSupport.isAlive(pid) else { return false }
        return TestSupport.httpGet(port: port, path: "/ping", timeout: 1)?.body == "pong"
    }

    /// Instances alive now (a double start shows as 2).
    public var instances: Int { TestSupport.processes(containing: "\(port) \(pidfile)").count }

    /// Ends every instance (tests leave nothing behind).
    public func killAll() {
        for pid in TestSupport.processes(containing: "\(port) \(pidfile)") {
            kill(pid, SIGKILL)
        }
    }
}
