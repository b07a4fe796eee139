import Logging
import Synchronization
import Testing
import WardenConfig
import WardenTestSupport

@testable import WardenCore

/// A service with `instances` on scripted processes: each instance supervised on its own, a deploy
/// switching the proxy to a ready new generation, and a deploy that fails leaving the old one alone.
@Suite("Instances on scripted processes")
struct InstanceSupervisorTests {
    static let text = """
        set daemon 30
        check process app with pidfile /run/app.$PORT.pid
            instances 2 ports 9000-9003
            start program = "/app/start-$PORT"
            stop program = "/app/stop-$PORT"
            deploy timeout 5 seconds
        """

    static func system() -> ScriptedSystem {
        let system = ScriptedSystem()
        for port in 9000...9003 {
            system.script("/app/start-\(port)", .daemon(pidfile: "/run/app.\(port).pid"))
            system.script("/app/stop-\(port)", .stops(pidfile: "/run/app.\(port).pid"))
        }
        system.setPort(9000, open: true)
        system.setPort(9001, open: true)
        return system
    }

    /// Ready once their start is seen and their first probe passed, on the clock.
    static func bothInstancesReady(_ supervisor: ServiceSupervisor<ManualClock>, clock: ManualClock) async throws {
        try await SupervisorTests.advance(clock, by: .milliseconds(50), upTo: .seconds(5)) {
            let snapshots = await supervisor.snapshots()
            return snapshots.count == 2 && snapshots.allSatisfy { $0.pid != nil && $0.instance?.ready == true }
        }
    }

    static func names(_ supervisor: ServiceSupervisor<ManualClock>) async -> [String] {
        await supervisor.snapshots().map(\.name)
    }

    /// Runs the deploy while moving the clock on (its readiness probes and its wait are on it).
    static func deploy(_ supervisor: ServiceSupervisor<ManualClock>, clock: ManualClock) async throws -> Result<Void, any Error> {
        let outcome = Mutex<Result<Void, any Error>?>(nil)
        async let deployed: Void = {
            do {
                try await supervisor.deploy("app")
                outcome.withLock { $0 = .success(()) }
            } catch {
                outcome.withLock { $0 = .failure(error) }
            }
        }()
        try await SupervisorTests.advance(clock, by: .milliseconds(50), upTo: .seconds(20)) { outcome.withLock { $0 != nil } }
        await deployed
        return try #require(outcome.withLock { $0 })
    }

    @Test func eachInstanceIsAServiceOfItsOwnOnItsPort() async throws {
        let system = Self.system()
        let clock = ManualClock()
        try await SupervisorTests.running(Self.text, system: system, clock: clock) { supervisor in
            try await Self.bothInstancesReady(supervisor, clock: clock)
            #expect(await Self.names(supervisor) == ["app@9000", "app@9001"])
            #expect(await supervisor.snapshots().map { $0.instance?.index } == [0, 1])
            #expect(Set(system.spawned.map(\.[0])) == ["/app/start-9000", "/app/start-9001"])
            #expect(await supervisor.trafficTargets()["app"]?.map(\.port) == [9000, 9001])
        }
    }

    /// Requests wait for a ready instance, so the first probe runs as soon as the start is seen, not a
    /// readiness interval later: ready within a start poll or two (15 ms each), well under 100 ms.
    @Test func anInstanceIsProbedAsSoonAsItsStartIsSeen() async throws {
        let system = Self.system()
        let clock = ManualClock()
        let probed = Self.text + "\n    if failed port $PORT then restart"
        try await SupervisorTests.running(probed, system: system, clock: clock) { supervisor in
            try await SupervisorTests.advance(clock, by: .milliseconds(5), upTo: .milliseconds(50)) {
                let snapshots = await supervisor.snapshots()
                return snapshots.count == 2 && snapshots.allSatisfy { $0.instance?.ready == true }
            }
        }
    }

    @Test func aDeploySwitchesToTheNewGenerationOnceReadyThenStopsTheOld() async throws {
        let system = Self.system()
        let clock = ManualClock()
        let traffic = SupervisorTests.RecordingTraffic(system: system)
        try await SupervisorTests.running(Self.text, system: system, clock: clock, traffic: traffic) { supervisor in
            try await Self.bothInstancesReady(supervisor, clock: clock)
            system.setPort(9002, open: true)
            system.setPort(9003, open: true)
            let result = try await Self.deploy(supervisor, clock: clock)
            #expect((try? result.get()) != nil, "\(result)")
            #expect(traffic.routes.withLock { $0.last?.ports } == [9002, 9003])
            // The old generation drained after the switch, then its stop programs ran.
            let switched = traffic.routes.withLock { $0.count }
            #expect(switched > 0)
            #expect(traffic.drained.withLock { $0.map(\.service).sorted() } == ["app@9000", "app@9001"])
            let spawned = system.spawned.map(\.[0])
            let lastStart = try #require(spawned.lastIndex { $0.hasPrefix("/app/start-") })
            #expect(spawned.filter { $0.hasPrefix("/app/stop-") }.sorted() == ["/app/stop-9000", "/app/stop-9001"])
            #expect(spawned.firstIndex { $0.hasPrefix("/app/stop-") }.map { $0 > lastStart } == true)
            #expect(await Self.names(supervisor) == ["app@9002", "app@9003"])
            #expect(await supervisor.deployRecord(of: "app")?.succeeded == true)
        }
    }

    @Test func aDeployWhoseInstancesNeverAnswerLeavesTheOldGenerationServing() async throws {
        let system = Self.system()
        let clock = ManualClock()
        let traffic = SupervisorTests.RecordingTraffic(system: system)
        try await SupervisorTests.running(Self.text, system: system, clock: clock, traffic: traffic) { supervisor in
            try await Self.bothInstancesReady(supervisor, clock: clock)
            let result = try await Self.deploy(supervisor, clock: clock)
            guard case .failure(let error) = result else {
                Issue.record("the deploy succeeded")
                return
            }
            #expect("\(error)".contains("not ready within 5 s"), "\(error)")
            #expect(!traffic.routes.withLock { $0.contains { $0.ports.contains(9002) || $0.ports.contains(9003) } })
            #expect(traffic.drained.withLock { $0.map(\.service).allSatisfy { $0 == "app@9002" || $0 == "app@9003" } })
            #expect(system.spawned.map(\.[0]).filter { $0.hasPrefix("/app/stop-") }.sorted() == ["/app/stop-9002", "/app/stop-9003"])
            #expect(await Self.names(supervisor) == ["app@9000", "app@9001"])
            #expect(await supervisor.trafficTargets()["app"]?.map(\.port) == [9000, 9001])
            let record = try #require(await supervisor.deployRecord(of: "app"))
            #expect(record.finished && !record.succeeded)
        }
    }

    /// `warden restart` of a single instance with a spare port is a deploy: the new instance starts
    /// beside the old one, which stops only after the switch.
    @Test func aRestartOfOneInstanceStartsItsReplacementFirst() async throws {
        let system = Self.system()
        system.setPort(9001, open: true)
        let clock = ManualClock()
        let traffic = SupervisorTests.RecordingTraffic(system: system)
        let text = Self.text.replacing("instances 2 ports 9000-9003", with: "instances 1 ports 9000-9001")
        try await SupervisorTests.running(text, system: system, clock: clock, traffic: traffic) { supervisor in
            try await SupervisorTests.advance(clock, by: .milliseconds(50), upTo: .seconds(5)) {
                await supervisor.snapshots().first?.instance?.ready == true
            }
            let done = Mutex(false)
            async let restarted: Void = {
                try? await supervisor.perform(.restart, on: "app")
                done.withLock { $0 = true }
            }()
            try await SupervisorTests.advance(clock, by: .milliseconds(50), upTo: .seconds(10)) { done.withLock { $0 } }
            await restarted
            #expect(system.spawned.map(\.[0]) == ["/app/start-9000", "/app/start-9001", "/app/stop-9000"])
            #expect(await Self.names(supervisor) == ["app@9001"])
            #expect(traffic.routes.withLock { $0.last?.ports } == [9001])
        }
    }

    /// Passive health: an instance the proxy could not reach gets no traffic until the supervisor has
    /// checked it, which it does at once (the cycle is 30 s here): failing, it stays out; passing, it
    /// is routed to again.
    @Test func anInstanceTheProxyCouldNotReachIsCheckedAtOnceAndKeptOutUntilItPasses() async throws {
        let system = Self.system()
        let clock = ManualClock()
        let traffic = SupervisorTests.RecordingTraffic(system: system)
        try await SupervisorTests.running(Self.text, system: system, clock: clock, traffic: traffic) { supervisor in
            try await Self.bothInstancesReady(supervisor, clock: clock)
            system.setPort(9001, open: false)
            supervisor.instanceUnreachable("app@9001")
            try await SupervisorTests.eventually("routed without it") { traffic.routes.withLock { $0.last?.ports } == [9000] }
            try await SupervisorTests.advance(clock, by: .milliseconds(50), upTo: .seconds(5)) {
                await supervisor.snapshot(named: "app@9001")?.failures.isEmpty == false
            }
            #expect(await supervisor.trafficTargets()["app"]?.map(\.port) == [9000], "a failed check keeps it out")

            let before = traffic.routes.withLock { $0.count }
            supervisor.instanceUnreachable("app@9000")
            try await SupervisorTests.eventually("app@9000 routed around") {
                traffic.routes.withLock { $0[before...].contains { !$0.ports.contains(9000) } }
            }
            try await SupervisorTests.advance(clock, by: .milliseconds(50), upTo: .seconds(5)) {
                await supervisor.trafficTargets()["app"]?.map(\.port).contains(9000) == true
            }
            #expect(traffic.routes.withLock { $0.last?.ports.contains(9000) } == true, "its check passed: routed to again")
        }
    }
}
