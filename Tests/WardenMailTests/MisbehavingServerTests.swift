import Foundation
import Logging
import Testing
import WardenConfig
import WardenTestSupport

@testable import WardenMail

/// warden's SMTP client against a test double that speaks broken SMTP: no crash, no hang past the
/// timeout, and the alert stays in the disk queue for the next cycle.
@Suite("Mail: a misbehaving SMTP server", .serialized)
struct MisbehavingServerTests {
    static let server = """
        import os, socket, sys, threading, time
        mode, port = sys.argv[1], int(sys.argv[2])
        listener = socket.socket(); listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port)); listener.listen(16)
        def serve(c):
            try:
                lines = c.makefile("rb")
                if mode == "close": return
                if mode == "garbage": c.sendall(os.urandom(300) + b"\\r\\n"); time.sleep(20); return
                if mode == "silent": time.sleep(20); return
                if mode == "unfinished": c.sendall(b"220-still greeting\\r\\n"); time.sleep(20); return
                c.sendall(b"220 double ESMTP\\r\\n")
                while True:
                    line = lines.readline()
                    if not line: return
                    command = line[:4].upper()
                    if mode == "rejecting" and command in (b"EHLO", b"HELO"): c.sendall(b"554 go away\\r\\n"); continue
                    if mode == "bad-recipient" and command == b"RCPT": c.sendall(b"550 no such user\\r\\n"); continue
                    if mode == "close-in-data" and command == b"DATA": return
                    if command == b"DATA":
                        c.sendall(b"354 go ahead\\r\\n")
                        while lines.readline() not in (b".\\r\\n", b""): pass
                        if mode == "stall-after-data": time.sleep(20); return
                        c.sendall(b"451 try later\\r\\n" if mode == "temporary-failure" else b"250 queued\\r\\n"); continue
                    if command == b"QUIT": c.sendall(b"221 bye\\r\\n"); return
                    if command == b"EHLO": c.sendall(b"250-double\\r\\n250 8BITMIME\\r\\n"); continue
                    c.sendall(b"250 ok\\r\\n")
            finally:
                c.close()
        while True:
            connection, _ = listener.accept()
            threading.Thread(target=serve, args=(connection,), daemon=True).start()
        """

    /// Sends one alert through a double in `mode`; returns how long it took and how many mails stay queued.
    func send(mode: String) async throws -> (seconds: Double, queued: Int) {
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        let script = try directory.write("smtp.py", Self.server)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [script, mode, String(port)]
        try process.run()
        defer {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        #expect(TestSupport.waitUntil(timeout: 10) { TestSupport.portOpen(port) })
        let result = ControlFile.parse(
            """
            set mailserver 127.0.0.1 port \(port) with timeout 2 seconds
            set eventqueue basedir \(directory.path)/queue slots 10
            set alert ops@example.com
            """)
        let configuration = try #require(result.configuration, "\(result.renderedDiagnostics())")
        let alerts = AlertService(configuration: configuration, hostName: "vm", mailer: "warden", logger: Logger(label: "test"))
        let began = ContinuousClock.now
        await alerts.handle(
            AlertEvent(service: "app", kind: .nonexist, state: .failed, title: "Does not exist", message: "process is not running", action: "restart", date: 1_800_000_000))
        let elapsed = ContinuousClock.now - began
        return (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18, await alerts.queuedCount)
    }

    @Test(arguments: [
        "close", "garbage", "silent", "unfinished", "rejecting", "bad-recipient", "close-in-data", "stall-after-data", "temporary-failure",
    ])
    func alertStaysQueuedAndNothingHangs(mode: String) async throws {
        let (seconds, queued) = try await send(mode: mode)
        #expect(queued == 1, "\(mode): the alert stays in the queue for the next cycle")
        // Each step waits at most the 2 s timeout; a stall after DATA costs one step.
        #expect(seconds < 10, "\(mode): gave up in \(seconds) s")
    }

    @Test func theSameDoubleSpeakingProperlyTakesTheAlert() async throws {
        let (_, queued) = try await send(mode: "proper")
        #expect(queued == 0, "the harness itself delivers when the server behaves")
    }
}

@Suite("Mail: the disk queue")
struct MailQueueTests {
    @Test func unfinishedWritesOfAKilledWardenAreClearedAtStart() throws {
        let directory = try TemporaryDirectory()
        let queue = directory.path + "/queue"
        mkdir(queue, 0o700)
        _ = try directory.write("queue/1_a.mail.tmp.4242", "{\"half\": ")
        _ = try directory.write("queue/2_b.mail", "{}")
        let settings = try #require(ControlFile.parse("set eventqueue basedir \(queue) slots 10").configuration?.eventQueue)
        let mails = AlertQueue(settings: settings, logger: Logger(label: "test"))
        #expect(mails.entries() == ["2_b.mail"])
        #expect(!FileManager.default.fileExists(atPath: queue + "/1_a.mail.tmp.4242"))
    }
}
