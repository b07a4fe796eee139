import Logging
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing
import WardenApp
import WardenConfig
import WardenCore
import WardenPlatform
import WardenTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// warden's service group, started in the test's process from a small configuration.
@Suite struct WardenAppTests {
    static func options(_ controlFile: String) -> WardenApp.Options {
        WardenApp.Options(
            controlFile: controlFile, logSink: LogSink(target: nil, verbose: false, toStandardError: false), gracefulShutdownSignals: [])
    }

    /// The supervisor starts the app; a graceful shutdown of the group warden runs in ends warden
    /// within its bound and, as `warden quit` does, leaves the app running.
    @Test func shutsDownGracefullyWithinTheBoundAndLeavesTheServiceRunning() async throws {
        let directory = try TemporaryDirectory()
        let app = try TestApp(in: directory)
        defer { app.killAll() }
        let controlFile = try directory.write(
            "wardenrc",
            """
            set daemon 1
            check process app with pidfile \(app.pidfile)
                start program = "\(app.startScript)"
                stop program = "\(app.stopScript)"
            """)
        let configuration = try #require(ControlFile.load(controlFile).configuration)
        // As in a library, not the daemon: only the programs warden spawns are reaped here, so the other
        // tests' Foundation processes in this test process keep their exit statuses.
        ChildReaper.shared.start()
        let warden = try await WardenApp(configuration: configuration, options: Self.options(controlFile), logger: Logger(label: "test"))

        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    try await warden.run()
                    return true
                }
                #expect(await Self.poll(seconds: 20) { app.isServing }, "the supervisor starts the app")
                let pid = try #require(app.pid)
                let clock = ContinuousClock()
                let start = clock.now
                trigger.triggerGracefulShutdown()
                group.addTask {
                    try? await Task.sleep(for: WardenApp.maximumGracefulShutdownDuration)
                    return false
                }
                let ended = try await group.next() ?? false
                let took = start.duration(to: clock.now)
                group.cancelAll()
                #expect(ended, "warden ended within maximumGracefulShutdownDuration")
                #expect(took < WardenApp.maximumGracefulShutdownDuration, "shutdown took \(took)")
                #expect(TestSupport.isAlive(pid) && app.isServing, "the app outlives warden, as after `warden quit`")
                #expect(app.starts == 1)
            }
        }
    }

    /// A proxy port already in use is a start failure, reported before any service runs.
    @Test func aProxyThatCannotListenIsAStartFailure() async throws {
        let directory = try TemporaryDirectory()
        let taken = try Listener()
        let controlFile = try directory.write(
            "wardenrc",
            """
            set proxy
                listen 127.0.0.1 port \(taken.port)
            """)
        let configuration = try #require(ControlFile.load(controlFile).configuration)
        await #expect(throws: WardenApp.StartFailure.self) {
            _ = try await WardenApp(configuration: configuration, options: Self.options(controlFile), logger: Logger(label: "test"))
        }
    }

    static func poll(seconds: Int, _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return condition()
    }
}

/// A socket listening on a free port of 127.0.0.1 until released.
final class Listener {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 1) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw SystemError(errno: errno) }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }
}
