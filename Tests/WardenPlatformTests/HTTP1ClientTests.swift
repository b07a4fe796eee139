import Foundation
import NIOHTTP1
import Testing
import WardenPlatform
import WardenTestSupport

/// The one HTTP/1 client behind probes, the CLI, webhooks and ACME: what it does with a server that
/// stays silent, answers too much, or breaks off its answer.
@Suite("HTTP/1 client")
struct HTTP1ClientTests {
    static let server = """
        import socket, sys, threading, time
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", int(sys.argv[1])))
        listener.listen(16)
        def serve(connection):
            request = connection.recv(4096).decode()
            path = request.split(" ")[1]
            if path == "/silent":
                time.sleep(5)
            elif path == "/large":
                connection.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 100\\r\\n\\r\\n" + b"x" * 100)
            elif path == "/cut":
                connection.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 100\\r\\n\\r\\nhello")
            else:
                connection.sendall(b"HTTP/1.1 201 Created\\r\\nContent-Length: 2\\r\\nX-Seen: " + request.split("\\r\\n")[0].encode() + b"\\r\\n\\r\\nok")
            connection.close()
        while True:
            connection, _ = listener.accept()
            threading.Thread(target=serve, args=(connection,), daemon=True).start()
        """

    @Test func answersTimeoutsLimitsAndBrokenAnswers() async throws {
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        let peer = try Peer("/usr/bin/python3", ["-c", Self.server, "\(port)"], log: directory.path + "/server.log")
        defer { peer.stop() }
        #expect(TestSupport.waitUntil(timeout: 10) { TestSupport.portOpen(port) }, "\(peer.output)")
        func send(_ path: String, method: HTTPMethod = .GET, limit: Int = 1024, timeout: Duration = .seconds(60)) async -> Result<HTTP1Response, HTTP1ClientError> {
            do {
                return .success(
                    try await HTTP1Client().send(
                        HTTP1Request(
                            endpoint: .tcp(host: "127.0.0.1", port: port), method: method, path: path, headers: ["Host": "test"],
                            body: method == .POST ? Array("{}".utf8) : nil, timeout: timeout, bodyLimit: limit)))
            } catch {
                return .failure(error)
            }
        }
        guard case .success(let created) = await send("/post", method: .POST) else {
            Issue.record("no answer to a POST")
            return
        }
        #expect(created.status == 201 && created.body == Array("ok".utf8) && created.headers["X-Seen"] == ["POST /post HTTP/1.1"])
        let started = ContinuousClock.now
        guard case .failure(.timedOut) = await send("/silent", timeout: .milliseconds(500)) else {
            Issue.record("a silent server did not time out")
            return
        }
        // Its own 500 ms, not the 60 s the other requests get; the bound is loose because the test
        // process's two cooperative threads can be held by other suites' synchronous tests.
        #expect(ContinuousClock.now - started < .seconds(30))
        guard case .failure(.bodyTooLarge(limit: 10)) = await send("/large", limit: 10) else {
            Issue.record("100 bytes passed a limit of 10")
            return
        }
        guard case .failure(.broken) = await send("/cut") else {
            Issue.record("an answer cut short was taken whole")
            return
        }
        peer.stop()
        guard case .failure(.cannotConnect) = await send("/post", timeout: .seconds(1)) else {
            Issue.record("a stopped server was reached")
            return
        }
    }
}
