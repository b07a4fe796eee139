import Logging
import WardenConfig
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

/// Whether warden watches a service.
public enum MonitorState: String, Sendable, Codable, Hashable {
    case monitored, notMonitored, initializing
}

/// What warden knows about one service, and every decision about it: given what was observed (a
/// process found or gone, a rule's result, a start that finished), it changes its state and returns
/// the actions to carry out. It reads no clock and touches no process; the supervisor measures, feeds
/// it, and does what it says.
struct ServiceStateMachine<Instant: InstantProtocol> where Instant.Duration == Duration {
    /// What the supervisor carries out, in order.
    enum Action: Equatable {
        case log(Logger.Level, String)
        case emit(EventKind, Event.State, String, action: String)
        /// Watch the process for its exit (and check again if it is already gone).
        case watch(pid_t)
        case unwatch(pid_t)
        /// Check the service again after the delay (`.zero`: at once, in a task of its own).
        case checkAgain(after: Duration)
        /// An automatic start. `recovering` a process found gone: once its dependencies run, and then
        /// the running dependants are restarted.
        case start(recovering: Bool)
        /// The restart program, or stop then start; then the running dependants are restarted.
        case restart
        /// The stop program (or SIGTERM), then the service is no longer monitored.
        case stop
        case exec(ProgramSpec, EventKind, String)
    }

    /// How a start ended.
    enum StartResult: Equatable {
        /// The process runs; `startDate` is when it started, in seconds since the epoch.
        case running(ProcessSnapshot, startDate: Double)
        case failed(String)
    }

    /// Automatic starts in a row after which a service shows as backing off.
    static var backingOffAfter: Int { 5 }

    var config: WardenConfig.Service
    var monitor: MonitorState = .initializing
    /// The process warden believes is the service, with its start time so a recycled pid is not it.
    private(set) var pid: pid_t?
    private(set) var processStartTicks: UInt64?
    private(set) var startedAt: WallClock.Time?
    /// The process a state file says was the service before warden restarted, until a check finds it
    /// or not: it is adopted by pid and start time even when its pidfile is gone.
    private var restoredProcess: (pid: pid_t, startTicks: UInt64)?
    /// Checks currently failing, with their last message (the status column joins them).
    var failures: [EventKind: String] = [:]
    var rules: [RuleState] = []
    var restarts = RestartHistory()
    /// An action (start, stop, restart) is under way; checks of this service wait for it.
    var busy = false
    /// A planned stop is under way: the proxy holds new requests from the moment it begins.
    var stopping = false
    /// After a start, connection failures count only once a test has passed or the start timeout is over.
    private(set) var connectionGraceUntil: Instant?
    private var readinessCheckPending = false
    /// A failure streak (see `announcesStreaks`): "does not exist" was announced, and its end will be,
    /// once, when the service has passed its checks for the reset period of its restart delay. The
    /// crashes of a crash loop in between are logged, not announced again.
    private var downAnnounced = false
    /// The message of that end, while the service waits for it.
    private var recoveryMessage: String?
    private(set) var lastCheck: WallClock.Time?
    private(set) var lastAutomaticStart: Instant?
    /// Automatic starts since the service last passed its checks for a whole reset period, and the
    /// delay the last of them set before the next may happen.
    private(set) var automaticStartsInARow = 0
    private var nextStartDelay = Duration.zero
    /// Since when every check of the running service has passed.
    private var healthySince: Instant?
    private var lastCPUTicks: UInt64?
    private var lastCPUSample: Instant?
    var metrics = ServiceMetrics()
    private(set) var recentEvents: [Event] = []
    /// `every N cycles`: cycles left until the next check.
    private var skipCycles = 0
    /// What each rule (by index) measured in its last cycle, for rates and "changed" tests: they compare
    /// with it from the second cycle on, as in monit.
    var previous: [Int: Sample] = [:]

    struct Sample: Equatable {
        var value: Measured
        var at: Instant
    }

    init(config: WardenConfig.Service) {
        self.config = config
        self.rules = Array(repeating: RuleState(), count: config.rules.count)
        if config.mode == .manual { monitor = .notMonitored }
    }

    /// A reload gave the service a new definition; its state and counters stay.
    mutating func reconfigure(_ new: WardenConfig.Service) {
        guard new != config else { return }
        if new.rules.count != config.rules.count { rules = Array(repeating: RuleState(), count: new.rules.count) }
        // Rules may have moved: a figure kept for rule N may not be rule N's any more.
        previous = [:]
        config = new
    }

    mutating func remember(_ event: Event) {
        recentEvents.append(event)
        if recentEvents.count > 50 { recentEvents.removeFirst() }
    }

    /// The proxy may send it requests.
    var acceptsTraffic: Bool { pid != nil && failures[.nonexist] == nil && !stopping }

    /// An instance may be sent requests: it runs, and its connection tests have passed since it started.
    var isReady: Bool { acceptsTraffic && connectionGraceUntil == nil && failures[.connection] == nil && !suspect }
    /// The proxy could not reach it (refused, or reset before any response): no traffic until a check
    /// has looked at it.
    var suspect = false

    // MARK: - Scheduling

    /// Whether this cycle checks the service: `every N cycles` skips N-1 cycles between checks;
    /// `every "cron"` checks in the minutes the caller found matching.
    mutating func isDue(cronMatches: (CronSchedule) -> Bool) -> Bool {
        switch config.every {
        case .always:
            return true
        case .cycles(let every):
            if skipCycles > 0 {
                skipCycles -= 1
                return false
            }
            skipCycles = every - 1
            return true
        case .cron(let schedule):
            return cronMatches(schedule)
        case .notCron(let schedule):
            return !cronMatches(schedule)
        }
    }

    // MARK: - Processes

    /// The process warden knows as the service (or knew, before it restarted), by pid and start time.
    var knownProcess: (pid: pid_t, startTicks: UInt64)? {
        if let pid, let processStartTicks { return (pid, processStartTicks) }
        return restoredProcess
    }

    /// Whether a live process named by the pidfile is the service: not a recycled pid (a process known
    /// by its pid but with another start time, or one started after the pidfile was written).
    func isService(_ process: ProcessSnapshot, startDate: Double, pidfileWritten: Double?) -> Bool {
        if let known = knownProcess, known.pid == process.pid, known.startTicks != process.startTime { return false }
        if let written = pidfileWritten, startDate > written + 2 { return false }
        return true
    }

    /// The process is running: take it as the service's, and end a "does not exist" failure.
    mutating func processFound(_ process: ProcessSnapshot, startDate: Double) -> [Action] {
        var actions: [Action] = []
        let wasUnknown = pid == nil
        restoredProcess = nil
        if pid != process.pid {
            if let old = pid {
                actions.append(.unwatch(old))
                if config.rules.contains(where: { $0.condition == .changedPID }) {
                    actions.append(.emit(.pid, .changed, "process PID changed from \(old) to \(process.pid)", action: "alert"))
                }
            }
            pid = process.pid
            processStartTicks = process.startTime
            startedAt = startDate
            // CPU, I/O rates and the parent are compared between two samples of the same process.
            lastCPUTicks = nil
            lastCPUSample = nil
            previous = [:]
            actions.append(.watch(process.pid))
        }
        if failures[.nonexist] != nil || monitor == .initializing && wasUnknown {
            let message = "process is running with pid \(process.pid)"
            actions.append(.log(.info, message))
            if downAnnounced {
                recoveryMessage = message
            } else if failures[.nonexist] != nil {
                actions.append(.emit(.nonexist, .succeeded, message, action: "alert"))
            }
            failures[.nonexist] = nil
            failures[.exec] = nil
        }
        return actions
    }

    /// The process is not running (found gone by a check, or its exit seen).
    mutating func processMissing(now: Instant, cycle: Int) -> [Action] {
        var actions: [Action] = []
        forgetProcess(&actions)
        let restarts = config.mode == .active && config.start != nil
        if failures[.nonexist] == nil {
            actions.append(.log(.error, "process is not running"))
            if !downAnnounced {
                actions.append(.emit(.nonexist, .failed, "process is not running", action: restarts ? "restart" : "alert"))
                downAnnounced = announcesStreaks
            }
            recoveryMessage = nil
            failures[.nonexist] = "process is not running"
        }
        guard restarts else { return actions }
        return actions + automatic(.start(recovering: true), now: now, cycle: cycle)
    }

    /// The process was stopped on purpose.
    mutating func processStopped() {
        downAnnounced = false
        recoveryMessage = nil
        pid = nil
        processStartTicks = nil
        startedAt = nil
        failures = [:]
        stopping = false
    }

    /// A restart program replaces the process: the old one is no longer watched.
    mutating func processReplaced() -> [Action] {
        var actions: [Action] = []
        forgetProcess(&actions)
        stopping = false
        return actions
    }

    private mutating func forgetProcess(_ actions: inout [Action]) {
        if let old = pid { actions.append(.unwatch(old)) }
        restoredProcess = nil
        pid = nil
        processStartTicks = nil
        startedAt = nil
    }

    // MARK: - Starts

    /// An automatic start or restart, unless the crash-loop spacing defers it or a restart limit ends it.
    private mutating func automatic(_ start: Action, now: Instant, cycle: Int) -> [Action] {
        if let delay = RestartPolicy.crashLoopDelay(lastAutomaticStart: lastAutomaticStart, now: now, minimumInterval: nextStartDelay) {
            return [.checkAgain(after: delay)]
        }
        var actions: [Action] = []
        for fired in RestartPolicy.firedLimits(config.restartLimits, restarts: restarts, cycle: cycle) {
            actions.append(.log(.error, fired.message))
            switch fired.limit.action {
            case .alert:
                actions.append(.emit(.timeout, .failed, fired.message, action: "alert"))
                continue
            case .exec(let spec, _):
                actions.append(.emit(.timeout, .failed, fired.message, action: "exec"))
                actions.append(.exec(spec, .timeout, fired.message))
            default:
                actions.append(.emit(.timeout, .failed, fired.message, action: "unmonitor"))
            }
            monitor = .notMonitored
            failures[.timeout] = fired.message
            return actions
        }
        actions.append(.log(.info, "trying to restart"))
        actions.append(start)
        return actions
    }

    /// A start program is about to run: it counts against the restart limits, and an automatic one
    /// sets how long the next automatic start waits (`restart delay`, times `jitter`, a factor the
    /// caller draws near 1 so that services crashing together do not restart in step).
    mutating func startBegins(automatic: Bool, now: Instant, cycle: Int, jitter: Double = 1) {
        restarts.record(cycle: cycle)
        healthySince = nil
        guard automatic else { return }
        lastAutomaticStart = now
        automaticStartsInARow += 1
        let backoff = config.effectiveRestartBackoff
        nextStartDelay = backoff.delay(after: automaticStartsInARow) * (backoff.maximum > backoff.initial ? jitter : 1)
    }

    /// A check ended: once checks have passed for the whole reset period, the restart delay starts over
    /// and a failure streak ends.
    mutating func checkEnded(now: Instant) -> [Action] {
        suspect = false
        guard failures.isEmpty, !inConnectionGrace(now: now) else {
            healthySince = nil
            return []
        }
        let since = healthySince ?? now
        healthySince = since
        guard since.duration(to: now) >= config.effectiveRestartBackoff.reset else { return [] }
        automaticStartsInARow = 0
        guard downAnnounced, let message = recoveryMessage else { return [] }
        downAnnounced = false
        recoveryMessage = nil
        return [.emit(.nonexist, .succeeded, message, action: "alert")]
    }

    /// Failing to start again and again: the status says so, and when the next attempt is.
    var isBackingOff: Bool { automaticStartsInARow >= Self.backingOffAfter }

    func nextStart(now: Instant) -> Duration? {
        isBackingOff ? delayedStart(now: now) : nil
    }

    /// How long until the next automatic start may happen, while the restart delay holds it back.
    /// Only while one is due: the service is down and supervised (not stopped by a user, not passive).
    func delayedStart(now: Instant) -> Duration? {
        guard pid == nil, monitor != .notMonitored, config.mode == .active, config.start != nil, let last = lastAutomaticStart else { return nil }
        let remaining = now.duration(to: last.advanced(by: nextStartDelay))
        return remaining > .zero ? remaining : nil
    }

    mutating func startFinished(_ result: StartResult, now: Instant, timeout: Duration) -> [Action] {
        switch result {
        case .running(let process, let startDate):
            // Only connection tests have a grace to end; without one the service is ready once it runs.
            connectionGraceUntil = hasConnectionTests ? now.advanced(by: timeout) : nil
            failures[.exec] = nil
            failures[.timeout] = nil
            for index in rules.indices { rules[index].reset() }
            return processFound(process, startDate: startDate)
        case .failed(let message):
            // Once per streak of failed starts, as for a crash loop.
            defer { failures[.exec] = message }
            guard failures[.exec] == nil else { return [.log(.error, message)] }
            return [.log(.error, message), .emit(.exec, .failed, message, action: "alert")]
        }
    }

    // MARK: - Rules

    /// After a start, a failing connection test counts only once one has passed or the start timeout is over.
    func inConnectionGrace(now: Instant) -> Bool {
        connectionGraceUntil.map { now < $0 } ?? false
    }

    mutating func connectionPassed() {
        connectionGraceUntil = nil
    }

    /// A service that backs off (no `N restarts within M cycles`) is alerted by failure streak; one with
    /// monit's restart limit keeps monit's alerts, one per crash and one per return.
    var announcesStreaks: Bool { config.restartLimits.isEmpty }

    var hasConnectionTests: Bool {
        config.rules.contains { if case .connection = $0.condition { true } else { false } }
    }



    /// How often a service just started is tested until its connection tests first pass: a deploy or a
    /// restart is ready as soon as the app answers, and a hang right after that first answer is seen at
    /// the next cycle rather than at the end of the start timeout.
    static var readinessInterval: Duration { .milliseconds(100) }

    /// After a start or a check: while the start's grace lasts (no connection test has passed yet),
    /// check again soon; one such check at a time. Right after a start, at once: the process was found,
    /// so the app often answers already (a pidfile written after its bind).
    mutating func followUp(now: Instant, justStarted: Bool = false) -> Action? {
        guard !readinessCheckPending, inConnectionGrace(now: now), hasConnectionTests else { return nil }
        readinessCheckPending = true
        return .checkAgain(after: justStarted ? .zero : Self.readinessInterval)
    }

    /// A check is under way: a readiness check it was may be asked for again.
    mutating func checkBegins(at wallTime: WallClock.Time) {
        readinessCheckPending = false
        lastCheck = wallTime
    }

    /// One rule's result this cycle; its window decides whether it failed or recovered.
    mutating func ruleEvaluated(_ index: Int, _ outcome: Outcome, now: Instant, cycle: Int) -> [Action] {
        guard rules.indices.contains(index), config.rules.indices.contains(index) else { return [] }
        let rule = config.rules[index]
        let wasFailing = rules[index].failing
        let transition = rules[index].record(failed: outcome.failed, window: rule.window)
        // monit's "changed" state fires on every change (and a content test on every cycle that matches),
        // not only on the first one.
        let again = outcome.reporting != .transitions && outcome.failed && wasFailing && transition == .none
        switch transition {
        case .none where !again:
            return []
        case .none, .failed:
            if outcome.reporting != .changes { failures[outcome.kind] = outcome.message }
            let state: Event.State = outcome.reporting == .transitions ? .failed : .changed
            return [.log(.error, outcome.message), .emit(outcome.kind, state, outcome.message, action: rule.action.name)]
                + perform(rule.action, event: outcome.kind, message: outcome.message, now: now, cycle: cycle)
        case .recovered where outcome.reporting == .changes:
            // A "changed" test has no recovery in monit's grammar: no change is not news.
            return []
        case .recovered:
            failures[outcome.kind] = nil
            var actions: [Action] = [
                .log(.info, outcome.message), .emit(outcome.kind, .succeeded, outcome.message, action: rule.recoveryAction?.name ?? "alert"),
            ]
            if let recovery = rule.recoveryAction {
                actions += perform(recovery, event: outcome.kind, message: outcome.message, now: now, cycle: cycle)
            }
            return actions
        }
    }

    /// A rule's action (or a recovery's).
    private mutating func perform(_ action: WardenConfig.Action, event: EventKind, message: String, now: Instant, cycle: Int) -> [Action] {
        switch action {
        case .alert:
            return []
        case .restart:
            guard config.mode == .active else { return [] }
            return automatic(.restart, now: now, cycle: cycle)
        case .start:
            guard config.mode == .active, pid == nil else { return [] }
            return [.start(recovering: false)]
        case .stop:
            return [.stop]
        case .unmonitor, .timeout:
            monitor = .notMonitored
            return [.log(.info, "unmonitor")]
        case .exec(let spec, _):
            return [.exec(spec, event, message)]
        }
    }

    /// `exec … repeat every N cycles` while its rule keeps failing.
    func repeatedExecs(cycle: Int) -> [Action] {
        config.rules.indices.compactMap { index in
            guard case .exec(let spec, let every?) = config.rules[index].action, rules[safe: index]?.failing == true,
                cycle % every == 0
            else { return nil }
            return .exec(spec, .resource, failures.values.first ?? "")
        }
    }

    // MARK: - Files and programs

    /// `check file|directory|fifo`: whether the path exists; the rules run only when it does.
    mutating func pathChecked(exists: Bool) -> [Action] {
        let noun = config.kind.displayName.lowercased()
        // monit's words; a filesystem is missing when its statistics cannot be read.
        var (missing, found) = ("\(noun) doesn't exist", "\(noun) exists")
        if case .filesystem(let target) = config.kind {
            (missing, found) = ("unable to read filesystem '\(target)' state", "succeeded getting filesystem statistics for '\(target)'")
        }
        if !exists {
            guard failures[.nonexist] == nil else { return [] }
            failures[.nonexist] = missing
            return [.log(.error, missing), .emit(.nonexist, .failed, missing, action: "alert")]
        }
        guard failures[.nonexist] != nil else { return [] }
        failures[.nonexist] = nil
        return [.emit(.nonexist, .succeeded, found, action: "alert")]
    }

    /// `check program`: the program ran (its status and output are then tested by the rules) or not.
    mutating func programFinished(status: Int32?, output: String, failure: String?) -> [Action] {
        if let failure {
            failures[.exec] = failure
            return [.log(.error, failure), .emit(.exec, .failed, failure, action: "alert")]
        }
        metrics.programStatus = status.map(Int.init)
        metrics.programOutput = output
        failures[.exec] = nil
        return []
    }

    // MARK: - Resources

    /// Takes this cycle's figures of the process. CPU is the share of the machine between two samples
    /// of the same process; the tree is measured only when a rule asks for it.
    mutating func sample(
        _ process: ProcessSnapshot, now: Instant, ticksPerSecond: UInt64, cpuCount: Int, tree: () -> [ProcessSnapshot]
    ) {
        if let lastTicks = lastCPUTicks, let lastSample = lastCPUSample, pid == process.pid {
            let elapsed = lastSample.duration(to: now)
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            if seconds > 0, process.cpuTicks >= lastTicks {
                let busy = Double(process.cpuTicks - lastTicks) / Double(ticksPerSecond)
                metrics.cpuPercent = max(0, busy / seconds / Double(cpuCount) * 100)
            }
        }
        metrics.memoryBytes = process.residentBytes
        metrics.threads = process.threads
        if needsProcessTree {
            let descendants = tree()
            metrics.children = descendants.count
            metrics.totalMemoryBytes = process.residentBytes + descendants.reduce(0) { $0 + $1.residentBytes }
            metrics.totalCPUPercent = metrics.cpuPercent
        }
        lastCPUTicks = process.cpuTicks
        lastCPUSample = now
    }

    private var needsProcessTree: Bool {
        config.rules.contains {
            if case .resource(let metric, _, _) = $0.condition { return [.children, .totalMemory, .totalCPU].contains(metric) }
            return false
        }
    }

    // MARK: - User actions and state

    /// `monitor`, `start` and `restart` by a user: watched again from a clean slate.
    mutating func monitorAgain(resetRules: Bool) {
        monitor = .initializing
        restarts.reset()
        if resetRules { for index in rules.indices { rules[index].reset() } }
    }

    /// What a state file from before a restart of warden says of the service.
    mutating func restore(_ saved: PersistentState.ServiceState, rebooted: Bool, onReboot: OnReboot) {
        restarts = saved.restarts
        if !rebooted || onReboot == .laststate {
            // Monitoring mode survives a restart of warden; `initializing` means "check again".
            monitor = saved.monitor == .notMonitored ? .notMonitored : .initializing
        } else if onReboot == .nostart {
            monitor = .notMonitored
        }
        if let event = saved.lastEvent { remember(event) }
        if let pid = saved.pid, let ticks = saved.processStartTicks { restoredProcess = (pid, ticks) }
    }

    /// What the state file keeps; a process only restored, not yet found again, is kept too.
    var persistent: PersistentState.ServiceState {
        let process = knownProcess
        return .init(monitor: monitor, restarts: restarts, pid: process?.pid, processStartTicks: process?.startTicks, lastEvent: recentEvents.last)
    }

    /// monit's status words: "OK", "Not monitored", "Initializing", "Does not exist | Connection failed", …
    var statusWord: String {
        switch monitor {
        case .notMonitored: return "Not monitored"
        case .initializing where failures.isEmpty: return "Initializing"
        default: break
        }
        if failures.isEmpty { return busy ? "OK (action pending)" : "OK" }
        let failing = failures.keys.sorted { $0.rawValue < $1.rawValue }.map { kind in
            Event(service: "", kind: kind, state: .failed, message: "", action: "").title
        }
        return (failing + (isBackingOff ? ["Backing off"] : [])).joined(separator: " | ")
    }

    func snapshot(now: WallClock.Time, clock: Instant) -> ServiceSnapshot {
        ServiceSnapshot(
            name: config.name, type: config.kind.displayName, monitType: config.kind.monitType,
            status: statusWord, monitor: monitor, mode: config.mode.rawValue,
            pid: pid, uptimeSeconds: startedAt.map { now - $0 },
            restarts: restarts.total, failures: failures.keys.map(\.rawValue).sorted(),
            groups: config.groups, dependencies: config.dependencies, metrics: metrics,
            lastCheck: lastCheck, events: recentEvents, busy: busy, acceptsTraffic: acceptsTraffic, backingOff: isBackingOff,
            instance: config.instanceOf.map { .init(group: $0.group, index: $0.index, port: $0.port, ready: isReady) },
            nextStartSeconds: nextStart(now: clock).map { Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18 })
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
