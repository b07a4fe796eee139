import Foundation

/// An app for tests of the proxy under load (Python, HTTP/1.1 keep-alive, a thread per connection):
/// answers every GET and POST after `delay` seconds with a body that ends with the request's path,
/// written in two writes, the head and then, `gap` seconds later, the body. It exits at once on
/// SIGTERM (the worst case for a planned stop: whatever it was serving is cut), counts the POSTs it
/// received, writes its pidfile after binding and appends its pid to a start log. Started by a
/// daemonizing start script, stopped by a stop script that sends SIGTERM.
///
/// As instances (`instances: true`) the start and stop scripts take the port as their argument
/// (`start.sh $PORT`), and each instance writes `NAME.PORT.pid`. While the file `brokenMarker` exists,
/// a new process writes its pidfile but never listens (a release that does not come up).
public struct ProxiedApp {
    public let port: Int
    public let pidfile: String
    public let startScript: String
    public let stopScript: String
    public let startLog: String
    /// One line per POST received, by every instance of the app.
    public let postLog: String
    /// The size of each response body.
    public static let bodyBytes = 2000
    public let brokenMarker: String
    private let server: String

    /// - Parameter startDelay: seconds before it listens (an image that takes a while to load).
    public init(
        in directory: TemporaryDirectory, name: String = "app", delay: Double = 0.02, gap: Double = 0, startDelay: Double = 0,
        instances: Bool = false, port: Int = TestSupport.freePort()
    ) throws {
        self.port = port
        pidfile = directory.path + (instances ? "/\(name).$PORT.pid" : "/\(name).pid")
        brokenMarker = directory.path + "/\(name).broken"
        startLog = directory.path + "/\(name).starts"
        postLog = directory.path + "/\(name).posts"
        server = try directory.write(
            "\(name).py",
            """
            import http.server, os, signal, sys, time
            port, pidfile, starts, posts, delay, gap = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), float(sys.argv[6])
            start_delay, broken = float(sys.argv[7]), sys.argv[8]
            class H(http.server.BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"
                def log_message(self, *a): pass
                def answer(self):
                    length = int(self.headers.get("Content-Length", 0))
                    if length: self.rfile.read(length)
                    if self.command == "POST":
                        with open(posts, "a") as f: f.write(self.path + "\\n")
                    time.sleep(delay)
                    path = self.path.encode()
                    body = b"x" * (\(Self.bodyBytes) - len(path)) + path
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("X-Port", str(port))
                    self.end_headers()  # the head goes out here, in a write of its own
                    if gap: time.sleep(gap)
                    self.wfile.write(body)
                do_GET = do_POST = answer
            http.server.ThreadingHTTPServer.daemon_threads = True
            http.server.ThreadingHTTPServer.allow_reuse_address = True
            signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
            if os.path.exists(broken):
                with open(pidfile, "w") as f: f.write(str(os.getpid()) + "\\n")
                time.sleep(3600)
            time.sleep(start_delay)
            s = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
            with open(pidfile + ".tmp", "w") as f: f.write(str(os.getpid()) + "\\n")
            os.rename(pidfile + ".tmp", pidfile)
            with open(starts, "a") as f: f.write(str(os.getpid()) + "\\n")
            s.serve_forever()
            """, mode: 0o644)
        // The scripts' `$1` is the instance's port, which warden gives them as `$PORT`.
        let portArgument = instances ? "$1" : String(port)
        let pidfileArgument = instances ? directory.path + "/\(name).$1.pid" : pidfile
        let command = "/usr/bin/python3 \(server) \(portArgument) \(pidfileArgument) \(startLog) \(postLog) \(delay) \(gap) \(startDelay) \(brokenMarker)"
        startScript = try directory.write(
            "start-\(name).sh",
            """
            #!/bin/sh
            setsid \(command) >>\(directory.path)/\(name).err 2>&1 < /dev/null &
            exit 0
            """, mode: 0o755)
        stopScript = try directory.write(
            "stop-\(name).sh",
            """
            #!/bin/sh
            [ -f \(pidfileArgument) ] && kill -TERM $(cat \(pidfileArgument))
            exit 0
            """, mode: 0o755)
    }

    public var pid: pid_t? { TestSupport.readPID(pidfile) }

    /// The pid of the instance on `port`.
    public func pid(port: Int) -> pid_t? { TestSupport.readPID(pidfile.replacing("$PORT", with: String(port))) }

    public var starts: Int {
        ((try? String(contentsOfFile: startLog, encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    /// The POSTs the app received, each path once per time it arrived.
    public var posts: [String] {
        ((try? String(contentsOfFile: postLog, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// True when the pidfile names a live process that answers on its port.
    public var isServing: Bool {
        guard let pid, TestSupport.isAlive(pid) else { return false }
        return TestSupport.httpGet(port: port, path: "/ready", timeout: 1)?.status == 200
    }

    /// Waits until a process other than `previous` serves (after a restart).
    @discardableResult
    public func waitUntilServing(replacing previous: pid_t?, timeout: Double = 20) -> Bool {
        TestSupport.waitUntil(timeout: timeout) { pid != nil && pid != previous && isServing }
    }

    public func killAll() {
        for pid in TestSupport.processes(containing: server) { kill(pid, SIGKILL) }
    }
}
