import Testing
import WardenConfig
@testable import WardenCore

@Suite("Rule windows, restart history and schedules")
struct RuleStateTests {
    @Test func forNCyclesFiresAfterNFailuresInARow() {
        var state = RuleState()
        let window = FailureWindow(times: 3, cycles: 3)
        #expect(state.record(failed: true, window: window) == .none)
        #expect(state.record(failed: true, window: window) == .none)
        #expect(state.record(failed: true, window: window) == .failed)
        #expect(state.record(failed: true, window: window) == .none, "fires once per failure, not every cycle")
        #expect(state.record(failed: false, window: window) == .recovered)
    }

    @Test func timesWithinCyclesIsASlidingWindow() {
        var state = RuleState()
        let window = FailureWindow(times: 2, cycles: 4)
        let results = [true, false, false, false, true, false, false, true]
        let transitions = results.map { state.record(failed: $0, window: window) }
        // Failures at 0 and 4 are 5 cycles apart (outside a window of 4); 4 and 7 are within one.
        #expect(transitions == [.none, .none, .none, .none, .none, .none, .none, .failed])
    }

    @Test func windowOf64CyclesIsTheLimit() {
        var state = RuleState()
        let window = FailureWindow(times: 2, cycles: 64)
        #expect(state.record(failed: true, window: window) == .none)
        for _ in 0..<62 { #expect(state.record(failed: false, window: window) == .none) }
        #expect(state.record(failed: true, window: window) == .failed)
    }

    @Test func restartHistoryCountsWithinTheWindow() {
        var history = RestartHistory()
        for cycle in [1, 2, 2, 5, 9] { history.record(cycle: cycle) }
        #expect(history.count(within: 5, now: 9) == 2)  // cycles 5 and 9
        #expect(history.count(within: 10, now: 9) == 5)
        #expect(history.observedCycles(within: 5, now: 9) == 5)
        #expect(history.total == 5)
        history.reset()
        #expect(history.count(within: 100, now: 9) == 0)
        #expect(history.total == 5, "the total survives a reset of the window")
    }

    @Test func dependencyOrderPutsDependenciesFirst() {
        func service(_ name: String, _ dependencies: [String]) -> Service {
            var service = Service(name: name, kind: .system, location: FileLocation(file: "t", line: 1, column: 1))
            service.dependencies = dependencies
            return service
        }
        let order = Supervisor.dependencyOrder([service("web", ["db", "cache"]), service("cache", ["db"]), service("db", [])])
        #expect(order == ["db", "cache", "web"])
    }

    @Test func onlyChecksThatCanWaitGetATaskOfTheirOwn() throws {
        let configuration = try #require(
            ControlFile.parse(
                """
                check process quiet with pidfile /run/quiet.pid
                  start program = "/bin/true"
                  if cpu > 90% for 3 cycles then alert
                  if totalmem > 100 MB then exec "/bin/true"
                check process web with pidfile /run/web.pid
                  if failed port 80 protocol http then alert
                check process hungry with pidfile /run/hungry.pid
                  if memory > 1 GB then restart
                check file log with path /var/log/syslog
                  if timestamp > 5 minutes then alert
                check file config with path /etc/app.conf
                  if changed checksum then alert else if succeeded then stop
                check program backup with path /usr/local/bin/backup
                  if status != 0 then alert
                check host peer with address 127.0.0.1
                """
            ).configuration)
        let waits = Dictionary(uniqueKeysWithValues: configuration.services.map { ($0.name, Supervisor.checkMayWait($0)) })
        #expect(waits == ["quiet": false, "web": true, "hungry": true, "log": false, "config": true, "backup": true, "peer": true])
    }

    @Test func eventTitlesAreMonits() {
        #expect(Event(service: "app", kind: .nonexist, state: .failed, message: "", action: "restart").title == "Does not exist")
        #expect(Event(service: "app", kind: .nonexist, state: .succeeded, message: "", action: "alert").title == "Exists")
        #expect(Event(service: "app", kind: .connection, state: .failed, message: "", action: "restart").title == "Connection failed")
        #expect(Event(service: "vm", kind: .instance, state: .changed, message: "", action: "start").title == "Monit instance changed")
    }

    @Test func statusWordsJoinFailures() {
        var runtime = ServiceStateMachine<ContinuousClock.Instant>(config: Service(name: "a", kind: .system, location: FileLocation(file: "t", line: 1, column: 1)))
        #expect(runtime.statusWord == "Initializing")
        runtime.monitor = .monitored
        #expect(runtime.statusWord == "OK")
        runtime.failures = [.nonexist: "x", .exec: "y"]
        #expect(runtime.statusWord == "Execution failed | Does not exist")
        runtime.monitor = .notMonitored
        #expect(runtime.statusWord == "Not monitored")
    }

    @Test func stateStoreWritesAtomicallyWithSafePermissions() throws {
        let path = "/tmp/warden-state-test-\(getpid())"
        defer { unlink(path) }
        var state = PersistentState()
        state.cycle = 42
        var restarts = RestartHistory()
        restarts.record(cycle: 40)
        state.services["app"] = .init(monitor: .notMonitored, restarts: restarts, pid: 123, processStartTicks: 9, lastEvent: nil)
        let store = StateStore(path: path)
        try store.save(state)
        #expect(store.load() == state)
        var info = stat()
        stat(path, &info)
        #expect(info.st_mode & 0o777 == 0o600)
        // A symlink planted where the temporary file goes is never followed.
        symlink("/tmp/warden-should-not-exist", "\(path).tmp.\(getpid())")
        defer { unlink("\(path).tmp.\(getpid())") }
        try store.save(state)
        #expect(access("/tmp/warden-should-not-exist", F_OK) != 0)
    }
}

#if canImport(Glibc)
import Glibc
#endif
