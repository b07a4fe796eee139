import Foundation

/// A bounded load of keep-alive clients (Python's http.client, one thread per connection), for
/// tests that must see every request answered while something is done to the app behind the proxy.
/// Each request's path is unique and the answer must end with it (see `ProxiedApp`), unless a fixed
/// `path` is given (then any complete 2xx answer will do); an exception (reset, cut or empty answer)
/// counts as a socket error and the client connects again. It runs until `finish()`,
/// `maximumSeconds` or `maximumRequests`, whichever comes first.
public final class KeepAliveLoad: @unchecked Sendable {
    public struct Summary: Sendable, CustomStringConvertible {
        public var requests: Int
        public var socketErrors: Int
        /// Answers other than 2xx, and 2xx answers whose body was not the expected one.
        public var bad: Int
        public var statuses: [String: Int]
        /// The first few failures, for the test's message.
        public var examples: [String]

        public var description: String {
            "\(requests) requests, \(socketErrors) socket errors, \(bad) bad answers, statuses \(statuses), e.g. \(examples)"
        }
    }

    public let process = Process()
    private let directory: String
    private let output: String

    /// - Parameters:
    ///   - post: every other request of each connection is a POST with a small body (a POST is never
    ///     sent again by the proxy, so it shows a cut that a GET's retry would hide).
    ///   - reconnect: a new connection for each request instead of keep-alive.
    public init(
        port: Int, host: String = "app.local", connections: Int = 8, post: Bool = false, path: String? = nil, reconnect: Bool = false,
        maximumSeconds: Double = 120, maximumRequests: Int = 200_000, in directory: TemporaryDirectory
    ) throws {
        self.directory = directory.path
        output = directory.path + "/load-\(port).json"
        let script = try directory.write(
            "load.py",
            """
            import http.client, json, os, sys, threading, time
            port, host, conns, post, seconds, limit, folder = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", float(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
            fixed, reconnect = sys.argv[8], sys.argv[9] == "1"
            stop, progress, out = folder + "/load.stop", folder + "/load.progress", folder + "/load-%d.json" % port
            lock = threading.Lock()
            total = {"requests": 0, "socketErrors": 0, "bad": 0, "statuses": {}, "examples": []}
            end = time.time() + seconds
            def note(status, example=None):
                with lock:
                    total["requests"] += 1
                    total["statuses"][status] = total["statuses"].get(status, 0) + 1
                    if status == "socket error": total["socketErrors"] += 1
                    elif example: total["bad"] += 1
                    if example and len(total["examples"]) < 8: total["examples"].append(example)
            def client(number):
                conn, n = None, 0
                while time.time() < end and not os.path.exists(stop):
                    with lock:
                        if total["requests"] >= limit: return
                    method = "POST" if post and n % 2 else "GET"
                    path = fixed or "/load/%d/%d" % (number, n)
                    n += 1
                    try:
                        if conn is None: conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                        conn.request(method, path, body=b"p" * 100 if method == "POST" else None, headers={"Host": host})
                        r = conn.getresponse(); data = r.read()
                        if 200 <= r.status < 300 and (fixed or data.endswith(path.encode())):
                            note(str(r.status))
                        else:
                            note(str(r.status), "%s %s: %d %r" % (method, path, r.status, data[-60:]))
                        if r.will_close or reconnect: conn.close(); conn = None
                    except Exception as e:
                        note("socket error", "%s %s: %r" % (method, path, e))
                        if conn: conn.close()
                        conn = None
            def report():
                while True:
                    with lock: count = total["requests"]
                    with open(progress + ".tmp", "w") as f: f.write(str(count))
                    os.rename(progress + ".tmp", progress)
                    time.sleep(0.05)
            threading.Thread(target=report, daemon=True).start()
            threads = [threading.Thread(target=client, args=(i,)) for i in range(conns)]
            for t in threads: t.start()
            for t in threads: t.join()
            with open(out + ".tmp", "w") as f: json.dump(total, f)
            os.rename(out + ".tmp", out)
            """, mode: 0o644)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [
            script, String(port), host, String(connections), post ? "1" : "0", String(maximumSeconds), String(maximumRequests), directory.path,
            path ?? "", reconnect ? "1" : "0",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    /// Requests answered (or failed) so far.
    public var completed: Int {
        Int((try? String(contentsOfFile: directory + "/load.progress", encoding: .utf8)) ?? "") ?? 0
    }

    /// Waits until `count` more requests than now have completed: the load is flowing.
    @discardableResult
    public func waitForProgress(_ count: Int, timeout: Double = 20) -> Bool {
        let start = completed
        return TestSupport.waitUntil(timeout: timeout) { completed >= start + count }
    }

    /// Stops the clients (each finishes the request it is in) and returns what they saw; nil if the
    /// load did not end within `timeout` seconds (it is then killed).
    public func finish(timeout: Double = 60) -> Summary? {
        _ = FileManager.default.createFile(atPath: directory + "/load.stop", contents: nil)
        if !TestSupport.waitUntil(timeout: timeout, { !process.isRunning }) {
            kill(process.processIdentifier, SIGKILL)
        }
        process.waitUntilExit()
        guard let data = FileManager.default.contents(atPath: output),
            let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return nil }
        return Summary(
            requests: json["requests"] as? Int ?? 0, socketErrors: json["socketErrors"] as? Int ?? 0, bad: json["bad"] as? Int ?? 0,
            statuses: json["statuses"] as? [String: Int] ?? [:], examples: json["examples"] as? [String] ?? [])
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}
