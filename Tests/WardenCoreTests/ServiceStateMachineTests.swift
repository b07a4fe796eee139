import Logging
import Testing
import WardenConfig
import WardenPlatform
import WardenTestSupport

@testable import WardenCore

/// Each rule of the supervisor decided on given observations and instants: no process, no socket,
/// no real second.
@Suite("Service state machine")
struct ServiceStateMachineTests {
    typealias Machine = ServiceStateMachine<ManualClock.Instant>

    static func machine(_ text: String) throws -> Machine {
        let result = ControlFile.parse(text, path: "test.rc")
        let configuration = try #require(result.configuration, "\(result.renderedDiagnostics())")
        var machine = Machine(config: try #require(configuration.services.first))
        machine.monitor = .monitored
        return machine
    }

    static let app = """
        check process app with pidfile /run/app.pid
            start program = "/etc/init.d/app start"
            stop program = "/etc/init.d/app stop"
        """

    static func process(_ pid: pid_t, startTicks: UInt64 = 7) -> ProcessSnapshot {
        ProcessSnapshot(
            pid: pid, parentPID: 1, state: "S", startTime: startTicks, cpuTicks: 0, childrenCPUTicks: 0, residentBytes: 4096,
            threads: 1, processGroup: pid)
    }

    static func at(_ seconds: Double) -> ManualClock.Instant { ManualClock.Instant(offset: .milliseconds(Int(seconds * 1000))) }

    @Test func aCrashIsReportedOnceAndRestarted() throws {
        var machine = try Self.machine(Self.app)
        _ = machine.processFound(Self.process(100), startDate: 0)
        let actions = machine.processMissing(now: Self.at(10), cycle: 1)
        #expect(actions == [
            .unwatch(100), .log(.error, "process is not running"),
            .emit(.nonexist, .failed, "process is not running", action: "restart"),
            .log(.info, "trying to restart"), .start(recovering: true),
        ])
        #expect(machine.acceptsTraffic == false)
        // Still gone at the next check: no second alert, another attempt.
        machine.startBegins(automatic: true, now: Self.at(10), cycle: 1)
        #expect(machine.processMissing(now: Self.at(12), cycle: 2) == [.log(.info, "trying to restart"), .start(recovering: true)])
    }

    /// A crash loop is one failure: "does not exist" once, the crashes after it only logged, and
    /// "running" once, when the service is back and its connection test passes.
    @Test func aCrashLoopIsAnnouncedOnceAndItsEndOnce() throws {
        var machine = try Self.machine(Self.app + "\n    if failed port 8080 then restart\n")
        _ = machine.processFound(Self.process(100), startDate: 0)
        var events: [Machine.Action] = []
        func collect(_ actions: [Machine.Action]) { events += actions.filter { if case .emit = $0 { true } else { false } } }
        for attempt in 1...4 {
            collect(machine.processMissing(now: Self.at(Double(attempt * 10)), cycle: attempt))
            machine.startBegins(automatic: true, now: Self.at(Double(attempt * 10)), cycle: attempt)
            collect(machine.startFinished(.running(Self.process(pid_t(100 + attempt)), startDate: 0), now: Self.at(Double(attempt * 10 + 1)), timeout: .seconds(30)))
        }
        #expect(events == [.emit(.nonexist, .failed, "process is not running", action: "restart")])
        collect(machine.connectionPassed())
        #expect(events.last == .emit(.nonexist, .succeeded, "process is running with pid 104", action: "alert"))
        #expect(events.count == 2)
        // Started on purpose after a stop: nothing was announced, so nothing ends.
        machine.processStopped()
        collect(machine.startFinished(.running(Self.process(200), startDate: 0), now: Self.at(100), timeout: .seconds(30)))
        collect(machine.connectionPassed())
        #expect(events.count == 2)
    }

    /// Without `restart delay` and without a restart limit, automatic starts back off: 1 s, 2 s, 4 s …
    /// up to a minute (a service with `N restarts within M cycles` keeps monit's second, below).
    @Test func automaticStartsBackOffUnlessALimitCountsThem() throws {
        var machine = try Self.machine(Self.app)
        var delays: [Duration] = []
        for attempt in 1...8 {
            machine.startBegins(automatic: true, now: Self.at(Double(attempt * 100)), cycle: attempt)
            if case .checkAgain(let delay)? = machine.processMissing(now: Self.at(Double(attempt * 100)), cycle: attempt).last { delays.append(delay) }
        }
        #expect(delays == [1, 2, 4, 8, 16, 32, 60, 60].map { Duration.seconds($0) })
    }

    @Test func automaticStartsAreASecondApart() throws {
        var machine = try Self.machine(Self.app)
        machine.startBegins(automatic: true, now: Self.at(10), cycle: 1)
        #expect(machine.processMissing(now: Self.at(10.3), cycle: 1).last == .checkAgain(after: .milliseconds(700)))
        #expect(machine.processMissing(now: Self.at(11), cycle: 1).last == .start(recovering: true))
        // A user's start does not count against the spacing.
        var other = try Self.machine(Self.app)
        other.startBegins(automatic: false, now: Self.at(10), cycle: 1)
        #expect(other.processMissing(now: Self.at(10.1), cycle: 1).last == .start(recovering: true))
    }

    @Test func restartDelaysDoubleUpToTheLongestAndStartOverAfterTheResetPeriod() throws {
        var machine = try Self.machine(Self.app + "\n    restart delay 1 second to 8 seconds reset after 60 seconds")
        var now = 0.0
        var delays: [Duration] = []
        for attempt in 1...6 {
            // Gone again right after each start: the next start waits for the delay the last one set.
            let actions = machine.processMissing(now: Self.at(now), cycle: attempt)
            if case .checkAgain(let delay) = actions.last {
                delays.append(delay)
                now += Double(delay.components.seconds)
                #expect(machine.processMissing(now: Self.at(now), cycle: attempt).last == .start(recovering: true))
            } else {
                #expect(actions.last == .start(recovering: true))
            }
            machine.startBegins(automatic: true, now: Self.at(now), cycle: attempt)
        }
        #expect(delays == [.seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(8)])
        #expect(machine.isBackingOff)
        #expect(machine.statusWord == "Does not exist | Backing off")
        #expect(machine.nextStart(now: Self.at(now + 3)) == .seconds(5))
        // Running and passing its checks for the whole reset period: the next crash restarts at once.
        _ = machine.processFound(Self.process(300), startDate: 0)
        machine.checkEnded(now: Self.at(now + 1))
        machine.checkEnded(now: Self.at(now + 30))
        #expect(machine.isBackingOff)
        machine.checkEnded(now: Self.at(now + 61))
        #expect(!machine.isBackingOff)
        #expect(machine.processMissing(now: Self.at(now + 70), cycle: 20).last == .start(recovering: true))
    }

    @Test func withARestartLimitAutomaticStartsStayASecondApart() throws {
        var machine = try Self.machine(Self.app + "\n    if 10 restarts within 10 cycles then timeout")
        for attempt in 1...8 { machine.startBegins(automatic: true, now: Self.at(Double(attempt * 10)), cycle: attempt, jitter: 1.2) }
        #expect(machine.processMissing(now: Self.at(80.5), cycle: 9).last == .checkAgain(after: .milliseconds(500)))
    }

    @Test func jitterSpreadsOnlyGrowingDelays() throws {
        var machine = try Self.machine(Self.app + "\n    restart delay 2 seconds to 1 minute")
        machine.startBegins(automatic: true, now: Self.at(0), cycle: 1, jitter: 1.2)
        #expect(machine.processMissing(now: Self.at(0), cycle: 1).last == .checkAgain(after: .milliseconds(2400)))
    }

    @Test func restartLimitUnmonitorsAfterNStartsWithinMCycles() throws {
        var machine = try Self.machine(Self.app + "\n    if 3 restarts within 5 cycles then timeout")
        for cycle in 1...3 {
            #expect(machine.processMissing(now: Self.at(Double(cycle * 10)), cycle: cycle).last == .start(recovering: true))
            machine.startBegins(automatic: true, now: Self.at(Double(cycle * 10)), cycle: cycle)
        }
        let actions = machine.processMissing(now: Self.at(40), cycle: 4)
        #expect(actions.contains(.emit(.timeout, .failed, "service restarted 3 times within 4 cycle(s) - unmonitor", action: "unmonitor")))
        #expect(!actions.contains(.start(recovering: true)))
        #expect(machine.monitor == .notMonitored)
        #expect(machine.statusWord == "Not monitored")
    }

    @Test func restartsOutsideTheWindowDoNotCount() throws {
        var machine = try Self.machine(Self.app + "\n    if 2 restarts within 3 cycles then unmonitor")
        machine.startBegins(automatic: true, now: Self.at(0), cycle: 1)
        machine.startBegins(automatic: true, now: Self.at(10), cycle: 2)
        #expect(machine.processMissing(now: Self.at(60), cycle: 6).last == .start(recovering: true))
    }

    @Test func anAlertLimitTellsAndStillStarts() throws {
        var machine = try Self.machine(Self.app + "\n    if 1 restart within 2 cycles then alert")
        machine.startBegins(automatic: true, now: Self.at(0), cycle: 1)
        let actions = machine.processMissing(now: Self.at(10), cycle: 2)
        #expect(actions.contains(.emit(.timeout, .failed, "service restarted 1 times within 2 cycle(s) - alert", action: "alert")))
        #expect(actions.last == .start(recovering: true))
        #expect(machine.monitor == .monitored)
    }

    @Test func passiveAndStartlessServicesOnlyAlert() throws {
        var passive = try Self.machine(Self.app + "\n    mode passive")
        #expect(passive.processMissing(now: Self.at(0), cycle: 1) == [
            .log(.error, "process is not running"), .emit(.nonexist, .failed, "process is not running", action: "alert"),
        ])
        var startless = try Self.machine("check process app with pidfile /run/app.pid")
        #expect(startless.processMissing(now: Self.at(0), cycle: 1).contains(.start(recovering: true)) == false)
    }

    @Test func manualModeStartsUnmonitored() throws {
        let result = ControlFile.parse(Self.app + "\n    mode manual", path: "test.rc")
        let machine = Machine(config: try #require(result.configuration?.services.first))
        #expect(machine.monitor == .notMonitored)
    }

    @Test func aRecycledPIDIsNotTheService() throws {
        var machine = try Self.machine(Self.app)
        _ = machine.processFound(Self.process(100, startTicks: 7), startDate: 1000)
        // The same pid with another start time: a new process took the number.
        #expect(!machine.isService(Self.process(100, startTicks: 9), startDate: 1000, pidfileWritten: 1000))
        #expect(machine.isService(Self.process(100, startTicks: 7), startDate: 1000, pidfileWritten: 1000))
        // A process that started well after the pidfile was written did not write it.
        var fresh = try Self.machine(Self.app)
        #expect(!fresh.isService(Self.process(200), startDate: 1010, pidfileWritten: 1000))
        #expect(fresh.isService(Self.process(200), startDate: 1001, pidfileWritten: 1000))
        #expect(fresh.processFound(Self.process(200), startDate: 1001).contains(.watch(200)))
    }

    @Test func aChangedPIDIsReportedWhenARuleAsks() throws {
        var machine = try Self.machine(Self.app + "\n    if changed pid then alert")
        _ = machine.processFound(Self.process(100), startDate: 0)
        let actions = machine.processFound(Self.process(101), startDate: 0)
        #expect(actions == [.unwatch(100), .emit(.pid, .changed, "process PID changed from 100 to 101", action: "alert"), .watch(101)])
        var quiet = try Self.machine(Self.app)
        _ = quiet.processFound(Self.process(100), startDate: 0)
        #expect(quiet.processFound(Self.process(101), startDate: 0) == [.unwatch(100), .watch(101)])
    }

    @Test func adoptionAfterARestartOfWarden() throws {
        var machine = try Self.machine(Self.app)
        var restarts = RestartHistory()
        restarts.record(cycle: 3)
        let saved = PersistentState.ServiceState(monitor: .monitored, restarts: restarts, pid: 4242, processStartTicks: 77, lastEvent: nil)
        machine.restore(saved, rebooted: false, onReboot: .start)
        #expect(machine.monitor == .initializing)
        #expect(machine.restarts == restarts)
        // The state file names the process: it is known by pid and start time until a check finds it.
        #expect(machine.knownProcess?.pid == 4242)
        #expect(machine.knownProcess?.startTicks == 77)
        #expect(!machine.isService(Self.process(4242, startTicks: 78), startDate: 0, pidfileWritten: nil))
        // Saved again before a check found it (warden restarted twice), it is not forgotten.
        #expect(machine.persistent.pid == 4242)
        #expect(machine.persistent.processStartTicks == 77)
        let actions = machine.processFound(Self.process(4242, startTicks: 77), startDate: 0)
        #expect(actions == [.watch(4242), .log(.info, "process is running with pid 4242")])
    }

    @Test func unmonitoredSurvivesARestartOfWardenButNotAReboot() throws {
        let saved = PersistentState.ServiceState(monitor: .notMonitored, restarts: RestartHistory(), pid: nil, processStartTicks: nil, lastEvent: nil)
        var machine = try Self.machine(Self.app)
        machine.restore(saved, rebooted: false, onReboot: .start)
        #expect(machine.monitor == .notMonitored)
        var rebooted = try Self.machine(Self.app)
        rebooted.restore(saved, rebooted: true, onReboot: .start)
        #expect(rebooted.monitor == .monitored)
        var nostart = try Self.machine(Self.app)
        nostart.restore(PersistentState.ServiceState(monitor: .monitored, restarts: RestartHistory(), pid: nil, processStartTicks: nil, lastEvent: nil), rebooted: true, onReboot: .nostart)
        #expect(nostart.monitor == .notMonitored)
    }

    @Test func connectionFailuresWaitOutTheStartGracePeriod() throws {
        var machine = try Self.machine(Self.app)
        _ = machine.startFinished(.running(Self.process(100), startDate: 0), now: Self.at(100), timeout: .seconds(30))
        #expect(machine.inConnectionGrace(now: Self.at(129)))
        #expect(!machine.inConnectionGrace(now: Self.at(130)))
        // A first success ends the grace at once.
        _ = machine.connectionPassed()
        #expect(!machine.inConnectionGrace(now: Self.at(101)))
    }

    @Test func aStartThatFailsIsAnExecutionFailure() throws {
        var machine = try Self.machine(Self.app)
        let actions = machine.startFinished(.failed("failed to start -- timed out"), now: Self.at(5), timeout: .seconds(30))
        #expect(actions == [.log(.error, "failed to start -- timed out"), .emit(.exec, .failed, "failed to start -- timed out", action: "alert")])
        #expect(machine.statusWord == "Execution failed")
        // The next successful start clears it, and the rules start again from a clean window.
        _ = machine.startFinished(.running(Self.process(100), startDate: 0), now: Self.at(10), timeout: .seconds(30))
        #expect(machine.failures[.exec] == nil)
    }

    @Test func ruleWindowsDecideWhenActionsRun() throws {
        var machine = try Self.machine(Self.app + "\n    if failed port 8080 for 2 times within 3 cycles then restart")
        let failed = Outcome(failed: true, kind: .connection, message: "connection failed")
        let passed = Outcome(failed: false, kind: .connection, message: "connection succeeded")
        #expect(machine.ruleEvaluated(0, failed, now: Self.at(0), cycle: 1) == [])
        #expect(machine.ruleEvaluated(0, passed, now: Self.at(10), cycle: 2) == [])
        let actions = machine.ruleEvaluated(0, failed, now: Self.at(20), cycle: 3)
        #expect(actions == [
            .log(.error, "connection failed"), .emit(.connection, .failed, "connection failed", action: "restart"),
            .log(.info, "trying to restart"), .restart,
        ])
        #expect(machine.statusWord == "Connection failed")
        // Still failing: no new event, no new action.
        #expect(machine.ruleEvaluated(0, failed, now: Self.at(30), cycle: 4) == [])
        #expect(machine.ruleEvaluated(0, passed, now: Self.at(40), cycle: 5) == [
            .log(.info, "connection succeeded"), .emit(.connection, .succeeded, "connection succeeded", action: "alert"),
        ])
        #expect(machine.statusWord == "OK")
    }

    @Test func ruleActionsStopUnmonitorAndExec() throws {
        var machine = try Self.machine(
            Self.app + """

                if cpu > 90% then stop
                if memory > 1 GB then unmonitor
                if totalmem > 2 GB then exec "/bin/notify" else if succeeded then exec "/bin/calm"
            """)
        let failed = Outcome(failed: true, kind: .resource, message: "too much")
        #expect(machine.ruleEvaluated(0, failed, now: Self.at(0), cycle: 1).last == .stop)
        #expect(machine.ruleEvaluated(2, failed, now: Self.at(0), cycle: 1).last == .exec(ProgramSpec(arguments: ["/bin/notify"]), .resource, "too much"))
        let recovered = machine.ruleEvaluated(2, Outcome(failed: false, kind: .resource, message: "fine"), now: Self.at(10), cycle: 2)
        #expect(recovered.last == .exec(ProgramSpec(arguments: ["/bin/calm"]), .resource, "fine"))
        #expect(machine.ruleEvaluated(1, failed, now: Self.at(0), cycle: 1).last == .log(.info, "unmonitor"))
        #expect(machine.monitor == .notMonitored)
    }

    @Test func everyNCyclesSkipsCycles() throws {
        var machine = try Self.machine(Self.app + "\n    every 3 cycles")
        var due: [Bool] = []
        for _ in 1...7 { due.append(machine.isDue(cronMatches: { _ in true })) }
        #expect(due == [true, false, false, true, false, false, true])
        var cron = try Self.machine(Self.app + "\n    every \"0 3 * * *\"")
        let inItsMinute = cron.isDue(cronMatches: { $0.spec == "0 3 * * *" })
        let outside = cron.isDue(cronMatches: { _ in false })
        #expect(inItsMinute && !outside)
    }

    @Test func cronMatchesTheMinutesItNames() throws {
        // 2026-12-03 03:00:10 UTC, a Thursday; the test runs with the machine's zone, so it is built from local time.
        var parts = tm()
        parts.tm_year = 126
        parts.tm_mon = 11
        parts.tm_mday = 3
        parts.tm_hour = 3
        parts.tm_min = 0
        parts.tm_sec = 10
        parts.tm_isdst = -1
        let instant = WallClock.Time(mktime(&parts))
        #expect(try CronSchedule("0 3 * * *").matches(instant, cycleSeconds: 30))
        #expect(try CronSchedule("0 3 * * 4").matches(instant, cycleSeconds: 30))
        #expect(try !CronSchedule("0 3 * * 5").matches(instant, cycleSeconds: 30))
        #expect(try !CronSchedule("5 3 * * *").matches(instant, cycleSeconds: 30))
        // Only the cycle that starts in the first `cycleSeconds` of the minute runs it.
        #expect(try !CronSchedule("0 3 * * *").matches(instant, cycleSeconds: 5))
    }

    @Test func aPlannedStopTakesTheServiceOutOfTraffic() throws {
        var machine = try Self.machine(Self.app)
        _ = machine.processFound(Self.process(100), startDate: 0)
        #expect(machine.acceptsTraffic)
        machine.stopping = true
        #expect(!machine.acceptsTraffic)
        machine.processStopped()
        #expect(!machine.stopping)
        #expect(machine.pid == nil)
    }

    @Test func cpuIsTheShareOfTheMachineBetweenTwoSamples() throws {
        var machine = try Self.machine(Self.app)
        var process = Self.process(100)
        _ = machine.processFound(process, startDate: 0)
        machine.sample(process, now: Self.at(0), ticksPerSecond: 100, cpuCount: 2, tree: { [] })
        #expect(machine.metrics.cpuPercent == nil)
        process.cpuTicks = 100  // one CPU-second in two seconds, on two CPUs
        machine.sample(process, now: Self.at(2), ticksPerSecond: 100, cpuCount: 2, tree: { [] })
        #expect(machine.metrics.cpuPercent == 25)
        #expect(machine.metrics.memoryBytes == 4096)
    }
}

#if canImport(Glibc)
import Glibc
#endif
