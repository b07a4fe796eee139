import Logging
import Synchronization
import Testing
import WardenConfig
import WardenPlatform
import WardenTestSupport

@testable import WardenCore

#if canImport(Glibc)
import Glibc
#endif

/// The supervisor's loop on a manual clock and scripted processes: what it spawns, signals and reports,
/// in milliseconds of real time.
@Suite("Supervisor on scripted processes")
struct SupervisorTests {
    /// A supervisor running in the background of a test, ended when the body returns.
    static func running(
        _ text: String, system: ScriptedSystem, clock: ManualClock, stateStore: StateStore? = nil, traffic: (any TrafficControl)? = nil,
        _ body: (ServiceSupervisor<ManualClock>) async throws -> Void
    ) async throws {
        let result = ControlFile.parse(text, path: "test.rc")
        let configuration = try #require(result.configuration, "\(result.renderedDiagnostics())")
        let supervisor = ServiceSupervisor(
            configuration: configuration, logger: Logger(label: "test"), clock: clock, stateStore: stateStore, spawner: system,
            inspector: system, prober: system, traffic: traffic)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await supervisor.run() }
            try await body(supervisor)
            group.cancelAll()
        }
    }

    /// Waits (a few real seconds at most) until the condition holds; the supervisor's tasks run meanwhile.
    static func eventually(_ what: Comment, _ condition: () async -> Bool) async throws {
        for _ in 0..<500 {
            if await condition() { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("never: \(what)")
        throw CancellationError()
    }

    /// Moves the clock on in small steps until the condition holds (at most `limit` of clock time).
    static func advance(_ clock: ManualClock, by step: Duration, upTo limit: Duration, until condition: () async -> Bool) async throws {
        var moved = Duration.zero
        while moved <= limit {
            if await condition() { return }
            // Time passes for whoever sleeps: let the supervisor's tasks reach their sleeps first.
            for _ in 0..<50 where clock.sleeperCount == 0 { try await Task.sleep(for: .milliseconds(2)) }
            try await Task.sleep(for: .milliseconds(2))
            clock.advance(by: step)
            moved += step
        }
        #expect(await condition())
    }

    static let app = """
        set daemon 30
        check process app with pidfile /run/app.pid
            start program = "/etc/init.d/app start"
            stop program = "/etc/init.d/app-stop"
        """

    static func pid(_ supervisor: ServiceSupervisor<ManualClock>, _ name: String = "app") async -> pid_t? {
        await supervisor.snapshot(named: name)?.pid
    }

    @Test func aCrashIsSeenAtOnceAndRestartedAfterTheCrashLoopSpacing() async throws {
        let system = ScriptedSystem()
        let clock = ManualClock()
        system.script("/etc/init.d/app", .daemon(pidfile: "/run/app.pid"))
        try await Self.running(Self.app, system: system, clock: clock) { supervisor in
            try await Self.eventually("the first start") { await Self.pid(supervisor) != nil }
            let first = try #require(await Self.pid(supervisor))
            system.crash(first)
            // Seen through its exit, not at the next cycle; the restart waits for the second since the last start.
            try await Self.eventually("the crash is seen") { await supervisor.snapshot(named: "app")?.failures == ["nonexist"] }
            #expect(system.spawned.count == 1)
            try await Self.advance(clock, by: .milliseconds(250), upTo: .seconds(2)) { await Self.pid(supervisor) != nil }
            #expect(clock.now.offset >= .seconds(1))
            #expect(clock.now.offset < .seconds(30))  // long before the next cycle
            let second = try #require(await Self.pid(supervisor))
            #expect(second != first)
            #expect(system.spawned == [["/etc/init.d/app", "start"], ["/etc/init.d/app", "start"]])
            // Back, but its return is announced once it has passed its checks for a minute (the reset period).
            func lastEvent() async -> String? {
                await supervisor.snapshot(named: "app")?.events.last.map { "\($0.kind.rawValue) \($0.state)" }
            }
            #expect(await lastEvent() == "nonexist failed")
            try await Self.advance(clock, by: .seconds(30), upTo: .seconds(120)) { await lastEvent() == "nonexist succeeded" }
        }
    }

    @Test func aHangingStartProgramIsKilledAtItsTimeout() async throws {
        let system = ScriptedSystem()
        let clock = ManualClock()
        system.script("/etc/init.d/app", .hangs)
        let text = """
            set daemon 30
            check process app matching "^app$"
                start program = "/etc/init.d/app start" with timeout 5 seconds
            """
        try await Self.running(text, system: system, clock: clock) { supervisor in
            try await Self.eventually("the start program runs") { system.spawned.count == 1 }
            try await Self.advance(clock, by: .milliseconds(500), upTo: .seconds(7)) {
                await supervisor.snapshot(named: "app")?.failures.contains("exec") == true
            }
            let snapshot = try #require(await supervisor.snapshot(named: "app"))
            #expect(snapshot.events.last?.message == "failed to start -- '/etc/init.d/app start' timed out after 5 s")
            #expect(clock.now.offset >= .seconds(5))
            // The start program's process group is killed (it runs in a session of its own); with
            // `matching`, a start program still running is not taken for the service.
            #expect(system.signalsSent.contains { $0.signal == SIGKILL && $0.pid < 0 })
        }
    }

    @Test func dependenciesStartFirstAndStopLast() async throws {
        let system = ScriptedSystem()
        let clock = ManualClock()
        system.script("/etc/init.d/db", .daemon(pidfile: "/run/db.pid"))
        system.script("/etc/init.d/app", .daemon(pidfile: "/run/app.pid"))
        system.script("/etc/init.d/db-stop", .stops(pidfile: "/run/db.pid"))
        system.script("/etc/init.d/app-stop", .stops(pidfile: "/run/app.pid"))
        let text = """
            set daemon 30
            check process app with pidfile /run/app.pid
                start program = "/etc/init.d/app start"
                stop program = "/etc/init.d/app-stop"
                depends on db
            check process db with pidfile /run/db.pid
                start program = "/etc/init.d/db start"
                stop program = "/etc/init.d/db-stop"
            """
        try await Self.running(text, system: system, clock: clock) { supervisor in
            try await Self.advance(clock, by: .milliseconds(20), upTo: .seconds(5)) {
                let app = await Self.pid(supervisor)
                let db = await Self.pid(supervisor, "db")
                return app != nil && db != nil
            }
            #expect(system.spawned.map(\.[0]) == ["/etc/init.d/db", "/etc/init.d/app"])
            try await supervisor.perform(.stop, on: "db")
            #expect(system.spawned.map(\.[0]).suffix(2) == ["/etc/init.d/app-stop", "/etc/init.d/db-stop"])
            #expect(await supervisor.snapshot(named: "app")?.monitor == .notMonitored)
            #expect(await supervisor.snapshot(named: "db")?.monitor == .notMonitored)
        }
    }

    @Test func aProcessNamedOnlyByTheStateFileIsAdoptedNotStartedAgain() async throws {
        let system = ScriptedSystem()
        let clock = ManualClock()
        system.script("/etc/init.d/app", .daemon(pidfile: "/run/app.pid"))
        // The app runs; its pidfile is gone (removed while warden was down), the state file names it.
        let running = system.startProcess()
        let path = "/tmp/warden-adopt-\(getpid()).state"
        defer { unlink(path) }
        var state = PersistentState()
        state.bootTime = system.bootTime
        state.services["app"] = .init(monitor: .monitored, restarts: RestartHistory(), pid: running.pid, processStartTicks: running.startTime, lastEvent: nil)
        try StateStore(path: path).save(state)
        try await Self.running(Self.app, system: system, clock: clock, stateStore: StateStore(path: path)) { supervisor in
            try await Self.eventually("the app is adopted") { await supervisor.snapshot(named: "app")?.monitor == .monitored }
            #expect(await Self.pid(supervisor) == running.pid)
            #expect(system.spawned.isEmpty)
            // And watched: its death is seen at once, and it is started again.
            system.crash(running.pid)
            try await Self.eventually("the death is seen") { await Self.pid(supervisor).map { $0 != running.pid } ?? false }
            #expect(system.spawned == [["/etc/init.d/app", "start"]])
        }
    }

    @Test func anUnmonitoredServiceStaysUnmonitoredAcrossARestartOfWarden() async throws {
        let system = ScriptedSystem()
        let clock = ManualClock()
        system.script("/etc/init.d/app", .daemon(pidfile: "/run/app.pid"))
        let path = "/tmp/warden-unmonitor-\(getpid()).state"
        defer { unlink(path) }
        var state = PersistentState()
        state.bootTime = system.bootTime
        state.services["app"] = .init(monitor: .notMonitored, restarts: RestartHistory(), pid: nil, processStartTicks: nil, lastEvent: nil)
        try StateStore(path: path).save(state)
        try await Self.running(Self.app, system: system, clock: clock, stateStore: StateStore(path: path)) { supervisor in
            try await Self.advance(clock, by: .seconds(30), upTo: .seconds(300)) { await supervisor.cycle >= 3 }
            #expect(system.spawned.isEmpty)
            #expect(await supervisor.snapshot(named: "app")?.status == "Not monitored")
        }
    }

    /// Records when the proxy was asked to drain, and what the supervisor said of the service then;
    /// and where it was told to send a service's requests.
    final class RecordingTraffic: TrafficControl {
        let system: ScriptedSystem
        let drained = Mutex<[(service: String, spawnedBefore: Int)]>([])
        let routes = Mutex<[(service: String, ports: [Int])]>([])
        init(system: ScriptedSystem) { self.system = system }
        func drain(_ service: String, timeout: Duration) async -> Int {
            let spawned = system.spawned.count
            drained.withLock { $0.append((service, spawned)) }
            return 0
        }
        func route(_ service: String, to instances: [InstanceIdentity]) {
            routes.withLock { $0.append((service, instances.map(\.port))) }
        }
        func serviceUp(_ service: String, _ up: Bool) {}
    }

    @Test func aRestartDrainsTrafficBeforeTheStopProgramRuns() async throws {
        let system = ScriptedSystem()
        let clock = ManualClock()
        system.script("/etc/init.d/app", .daemon(pidfile: "/run/app.pid"))
        system.script("/etc/init.d/app-stop", .stops(pidfile: "/run/app.pid"))
        let traffic = RecordingTraffic(system: system)
        try await Self.running(Self.app, system: system, clock: clock, traffic: traffic) { supervisor in
            try await Self.eventually("the first start") { await Self.pid(supervisor) != nil }
            #expect(await supervisor.snapshot(named: "app")?.acceptsTraffic == true)
            try await supervisor.perform(.restart, on: "app")
            // Drained once, after the first start and before the stop program was spawned.
            #expect(traffic.drained.withLock { $0.map(\.service) } == ["app"])
            #expect(traffic.drained.withLock { $0.first?.spawnedBefore } == 1)
            #expect(system.spawned.map(\.[0]) == ["/etc/init.d/app", "/etc/init.d/app-stop", "/etc/init.d/app"])
            #expect(await supervisor.snapshot(named: "app")?.acceptsTraffic == true)
        }
    }

    @Test func retryGivesAConnectionTestMoreAttemptsInOneCycle() async throws {
        let system = ScriptedSystem()
        let clock = ManualClock()
        system.startProcess(pidfile: "/run/app.pid")
        system.setPort(8080, open: true)
        system.failProbes(of: 8080, count: 2)
        let text = """
            set daemon 30
            check process app with pidfile /run/app.pid
                if failed port 8080 retry 3 then alert
            """
        try await Self.running(text, system: system, clock: clock) { supervisor in
            try await Self.eventually("the first check") { system.probeCount(of: 8080) == 3 }
            try await Self.eventually("the check ends") { await supervisor.snapshot(named: "app")?.monitor == .monitored }
            #expect(await supervisor.snapshot(named: "app")?.failures == [])
            // Three failures in a row are a failure.
            system.failProbes(of: 8080, count: 3)
            try await Self.advance(clock, by: .seconds(30), upTo: .seconds(60)) {
                await supervisor.snapshot(named: "app")?.failures == ["connection"]
            }
            #expect(system.probeCount(of: 8080) == 6)
        }
    }

    @Test func theRestartProgramTimesOutAtTheRestartTimeout() async throws {
        let system = ScriptedSystem()
        let clock = ManualClock()
        system.startProcess(command: "myapp")
        system.script("/etc/init.d/app-restart", .killsThenHangs(command: "myapp"))
        let text = """
            set daemon 30
            set limits { restarttimeout: 3 seconds }
            check process app matching "myapp"
                start program = "/etc/init.d/app start"
                restart program = "/etc/init.d/app-restart"
            """
        try await Self.running(text, system: system, clock: clock) { supervisor in
            try await Self.eventually("the app is found") { await Self.pid(supervisor) != nil }
            async let restarted: Void = supervisor.perform(.restart, on: "app")
            try await Self.advance(clock, by: .milliseconds(500), upTo: .seconds(5)) {
                await supervisor.snapshot(named: "app")?.failures.contains("exec") == true
            }
            clock.advance(by: .seconds(60))  // past any other timeout, so the restart ends whatever happened
            try await restarted
            #expect(await supervisor.snapshot(named: "app")?.events.contains { $0.message == "failed to start -- '/etc/init.d/app-restart' timed out after 3 s" } == true)
        }
    }

    @Test func aStartedServiceIsProbedFastUntilItAnswersThenAtTheCycle() async throws {
        let system = ScriptedSystem()
        let clock = ManualClock()
        system.script("/etc/init.d/app", .daemon(pidfile: "/run/app.pid"))
        let text = """
            set daemon 30
            check process app with pidfile /run/app.pid
                start program = "/etc/init.d/app start"
                if failed port 8080 then restart
            """
        try await Self.running(text, system: system, clock: clock) { supervisor in
            try await Self.eventually("the first start") { await Self.pid(supervisor) != nil }
            // The app takes a while to listen: it is tested every 100 ms meanwhile, its failures not counted.
            try await Self.advance(clock, by: .milliseconds(100), upTo: .seconds(1)) { system.probeCount(of: 8080) >= 5 }
            #expect(await supervisor.snapshot(named: "app")?.failures == [])
            system.setPort(8080, open: true)
            try await Self.advance(clock, by: .milliseconds(100), upTo: .seconds(1)) {
                await supervisor.snapshot(named: "app")?.events.isEmpty == false && system.probeCount(of: 8080) > 5
                    && clock.sleeperCount <= 1
            }
            let probes = system.probeCount(of: 8080)
            // Ready: back to the cycle, so no probe until 30 s have passed since the last tick.
            clock.advance(by: .seconds(2))
            try await Task.sleep(for: .milliseconds(50))
            #expect(system.probeCount(of: 8080) == probes)
            #expect(clock.now.offset < .seconds(30))
            #expect(system.spawned.count == 1)
        }
    }
}
