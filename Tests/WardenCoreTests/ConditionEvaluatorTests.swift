import Testing
@testable import WardenConfig
@testable import WardenCore
@testable import WardenPlatform

@Suite("Condition evaluators, given what was measured")
struct ConditionEvaluatorTests {
    let system = SystemSnapshot(
        load1: 3, load5: 2, load15: 1, memoryTotalBytes: 1000, memoryAvailableBytes: 250, swapTotalBytes: 0, swapFreeBytes: 0,
        uptimeSeconds: 100, cpuCount: 2, cpuTotalTicks: 0, cpuIdleTicks: 0)

    @Test func figuresAreWrittenWithMonitsDecimals() {
        #expect(MonitFormat.fixed(92.44) == "92.4")
        #expect(MonitFormat.fixed(0.0314159, 6) == "0.031416")
        #expect(MonitFormat.fixed(-0.04) == "0.0")
        #expect(MonitFormat.fixed(-1.25, 2) == "-1.25")
        // A figure too large for an Int64 is written plainly instead of trapping.
        #expect(MonitFormat.fixed(1e300, 2) == "1e+300")
    }

    @Test func memoryPercentOfTheProcessAgainstTheHostsTotal() throws {
        var metrics = ServiceMetrics()
        metrics.memoryBytes = 920
        let failed = try #require(ConditionEvaluator.resource(.memory, .greater, .percent(90), metrics: metrics, system: system))
        #expect(failed == Outcome(failed: true, kind: .resource, message: "mem usage of 92.0% matches resource limit [mem usage > 90.0%]"))
        metrics.memoryBytes = 500
        let passed = try #require(ConditionEvaluator.resource(.memory, .greater, .percent(90), metrics: metrics, system: system))
        #expect(passed.message == "mem usage check succeeded [current mem usage = 50.0%]")
        #expect(!passed.failed)
    }

    @Test func systemMemoryWithoutAProcessIsTotalMinusAvailable() throws {
        let outcome = try #require(ConditionEvaluator.resource(.memory, .greater, .percent(70), metrics: ServiceMetrics(), system: system))
        #expect(outcome.failed, "750 of 1000 bytes in use is over 70%")
    }

    @Test func loadPerCoreDividesByTheCores() throws {
        let outcome = try #require(ConditionEvaluator.resource(.loadAveragePerCore1, .greater, .count(1.4), metrics: ServiceMetrics(), system: system))
        #expect(outcome.failed, "3 over 2 cores is 1.5")
        #expect(outcome.message == "loadavg per core (1min) of 1.5 matches resource limit [loadavg per core (1min) > 1.4]")
    }

    @Test func messagesAreMonits() throws {
        var metrics = ServiceMetrics()
        metrics.cpuPercent = 12.34
        metrics.totalCPUPercent = 50
        metrics.threads = 7
        metrics.memoryBytes = 3 << 20
        func message(_ metric: ResourceMetric, _ op: ComparisonOperator, _ quantity: Quantity) throws -> String {
            try #require(ConditionEvaluator.resource(metric, op, quantity, metrics: metrics, system: system)).message
        }
        #expect(try message(.cpu, .greater, .percent(10)) == "cpu usage of 12.3% matches resource limit [cpu usage > 10.0%]")
        #expect(try message(.totalCPU, .greater, .percent(90)) == "total cpu usage check succeeded [current cpu usage = 50.0%]")
        #expect(try message(.memory, .greater, .bytes(1_048_576)) == "mem amount of 3 MB matches resource limit [mem amount > 1 MB]")
        #expect(try message(.threads, .greater, .count(5)) == "threads count 7 matches resource limit [threads > 5]")
        #expect(try message(.threads, .greater, .count(50)) == "threads check succeeded [current threads = 7]")
        #expect(try message(.loadAverage5, .greater, .count(1)) == "loadavg (5min) of 2.0 matches resource limit [loadavg (5min) > 1.0]")
    }

    @Test func aCPUTestWithoutASecondSampleDoesNotApply() {
        #expect(ConditionEvaluator.resource(.cpu, .greater, .percent(50), metrics: ServiceMetrics(), system: system) == nil)
    }

    @Test func uptimeNeedsAStartTime() throws {
        #expect(ConditionEvaluator.uptime(.less, 60, startedAt: nil, now: 1000, service: "app") == nil)
        let young = try #require(ConditionEvaluator.uptime(.less, 60, startedAt: 970, now: 1000, service: "app"))
        #expect(young == Outcome(failed: true, kind: .uptime, message: "uptime test failed for app -- current uptime is 30 seconds"))
    }

    @Test func programStatusCarriesItsOutput() throws {
        var metrics = ServiceMetrics()
        #expect(ConditionEvaluator.programStatus(.notEqual, 0, metrics: metrics) == nil, "no run yet")
        metrics.programStatus = 2
        metrics.programOutput = ""
        let outcome = try #require(ConditionEvaluator.programStatus(.notEqual, 0, metrics: metrics))
        #expect(outcome == Outcome(failed: true, kind: .status, message: "status failed (2) -- no output"))
    }

    @Test func fileTestsReadOnlyTheFactsTheyAreGiven() throws {
        let facts = FileFacts(modified: 1000, size: 4096, mode: 0o640, uid: 33, gid: 4)
        let old = try #require(ConditionEvaluator.file(.timestamp(.greater, seconds: 60), path: "/f", facts: facts, now: 1100, userID: { _ in nil }, groupID: { _ in nil }))
        #expect(old == Outcome(failed: true, kind: .timestamp, message: "timestamp test failed for /f -- modified 100 s ago"))
        let size = try #require(ConditionEvaluator.file(.size(.greater, bytes: 4096), path: "/f", facts: facts, now: 0, userID: { _ in nil }, groupID: { _ in nil }))
        #expect(!size.failed)
        let mode = try #require(ConditionEvaluator.file(.permission(0o600), path: "/f", facts: facts, now: 0, userID: { _ in nil }, groupID: { _ in nil }))
        #expect(mode.message == "permission test failed for /f -- current permission is 640")
        let owner = try #require(ConditionEvaluator.file(.uid("www-data"), path: "/f", facts: facts, now: 0, userID: { $0 == "www-data" ? 33 : nil }, groupID: { _ in nil }))
        #expect(!owner.failed)
        let unknownGroup = try #require(ConditionEvaluator.file(.gid("nosuch"), path: "/f", facts: facts, now: 0, userID: { _ in nil }, groupID: { _ in nil }))
        #expect(unknownGroup.failed, "a group that does not exist never matches")
    }

    @Test func httpJudgesStatusAndContentAsMonitDoes() {
        var check = HTTPCheck()
        #expect(ConditionEvaluator.http(check, status: 503, body: "").message == "HTTP error: Server returned status 503")
        #expect(!ConditionEvaluator.http(check, status: 302, body: "").failed)
        check.status = Comparison(.equal, 302)
        #expect(ConditionEvaluator.http(check, status: 200, body: "").message == "HTTP error: status 200 does not match = 302")
        check.status = nil
        check.content = Comparison(.equal, "ok[0-9]+")
        #expect(!ConditionEvaluator.http(check, status: 200, body: "all ok42 here").failed)
        #expect(ConditionEvaluator.http(check, status: 200, body: "down").message == "HTTP error: Regular expression doesn't match: 'ok[0-9]+'")
        check.checksum = "8F7F419955CEFA0B33A2BA316CBA3659"
        #expect(!ConditionEvaluator.http(check, status: 200, body: "ok1", digest: "8f7f419955cefa0b33a2ba316cba3659").failed)
        #expect(
            ConditionEvaluator.http(check, status: 200, body: "ok1", digest: "00").message
                == "HTTP error: Document checksum mismatch -- expected 8F7F419955CEFA0B33A2BA316CBA3659 got 00")
    }

    @Test func aFailedConnectionInTheStartGraceDoesNotCount() throws {
        let refused = ProbeResult(succeeded: false, message: "Connection refused", responseTime: .zero, status: nil)
        #expect(ConditionEvaluator.connection(.generic, result: refused, body: "", address: "[127.0.0.1]:8080", inStartGrace: true) == nil)
        let counted = try #require(ConditionEvaluator.connection(.generic, result: refused, body: "", address: "[127.0.0.1]:8080", inStartGrace: false))
        #expect(counted == Outcome(failed: true, kind: .connection, message: "failed protocol test [DEFAULT] at [127.0.0.1]:8080 -- Connection refused"))
        let answered = ProbeResult(succeeded: true, message: "", responseTime: .zero, status: 500)
        let http = try #require(ConditionEvaluator.connection(.http(HTTPCheck()), result: answered, body: "", address: "[h]:80/", inStartGrace: false))
        #expect(http.message == "failed protocol test [HTTP] at [h]:80/ -- HTTP error: Server returned status 500")
        let passed = ProbeResult(succeeded: true, message: "", responseTime: .zero, status: nil)
        #expect(ConditionEvaluator.connection(.generic, result: passed, body: "", address: "a", inStartGrace: true)?.failed == false, "a pass counts even in the grace period")
    }
}

@Suite("Restart policy: crash-loop spacing and restart limits")
struct RestartPolicyTests {
    let here = FileLocation(file: "monitrc", line: 1, column: 1)

    @Test func automaticStartsAreSpacedByTheMinimumInterval() {
        let start = ContinuousClock.now
        #expect(RestartPolicy.crashLoopDelay(lastAutomaticStart: nil, now: start, minimumInterval: .seconds(1)) == nil)
        #expect(RestartPolicy.crashLoopDelay(lastAutomaticStart: start, now: start + .milliseconds(300), minimumInterval: .seconds(1)) == .milliseconds(700))
        #expect(RestartPolicy.crashLoopDelay(lastAutomaticStart: start, now: start + .seconds(1), minimumInterval: .seconds(1)) == nil)
    }

    @Test func nRestartsWithinMCyclesThenTimeout() throws {
        let limit = RestartLimit(restarts: 3, cycles: 5, action: .timeout, location: here)
        var history = RestartHistory()
        for cycle in [1, 2] { history.record(cycle: cycle) }
        #expect(RestartPolicy.firedLimits([limit], restarts: history, cycle: 2).isEmpty)
        history.record(cycle: 4)
        let fired = try #require(RestartPolicy.firedLimits([limit], restarts: history, cycle: 4).first)
        #expect(fired.message == "service restarted 3 times within 4 cycle(s) - unmonitor")
        #expect(fired.stopsStarts)
        #expect(RestartPolicy.firedLimits([limit], restarts: history, cycle: 7).isEmpty, "the starts of cycles 1 and 2 left the window")
    }

    @Test func anAlertLimitTellsAndTheNextLimitStillApplies() {
        let alert = RestartLimit(restarts: 2, cycles: 10, action: .alert, location: here)
        let stop = RestartLimit(restarts: 3, cycles: 10, action: .unmonitor, location: here)
        var history = RestartHistory()
        for cycle in [1, 2, 3] { history.record(cycle: cycle) }
        let fired = RestartPolicy.firedLimits([alert, stop, alert], restarts: history, cycle: 3)
        #expect(fired.map(\.limit) == [alert, stop], "up to the first limit that stops starts")
        #expect(fired.map(\.stopsStarts) == [false, true])
        #expect(fired[0].message == "service restarted 3 times within 3 cycle(s) - alert")
    }
}
