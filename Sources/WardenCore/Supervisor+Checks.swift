import Logging
import WardenConfig
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

extension Supervisor {
    // MARK: - One check of one service

    /// `inOnePass`: checked with the other services of the cycle that cannot wait (`checkMayWait`); a
    /// process found gone is handed to a check of its own, which restarts it.
    func check(_ name: String, afterExitOf exitedPID: pid_t? = nil, inOnePass: Bool = false) async {
        guard let runtime = services[name], !runtime.busy, runtime.monitor != .notMonitored else { return }
        if let exitedPID, runtime.pid != exitedPID { return }
        let process = locate(runtime.config)
        if inOnePass, case .process = runtime.config.kind, process == nil {
            requestCheck(name)
            return
        }
        update(name) {
            $0.busy = true
            $0.lastCheck = WallClock.now()
        }
        switch runtime.config.kind {
        case .process:
            await checkProcess(name, found: process)
        case .program(let spec):
            await checkProgram(name, spec)
        case .file(let path), .directory(let path), .fifo(let path):
            await checkFile(name, path: path)
        case .host, .system, .filesystem, .network:
            await evaluateRules(name)
        }
        update(name) {
            $0.busy = false
            if $0.monitor == .initializing { $0.monitor = .monitored }
        }
    }

    /// The process of a `check process`, if it runs: the pidfile's pid alive, not a zombie and not a
    /// recycled pid (a process started after the pidfile was written is not the one that wrote it).
    func locate(_ service: WardenConfig.Service) -> ProcessSnapshot? {
        guard case .process(let match) = service.kind else { return nil }
        switch match {
        case .pidfile(let path):
            guard let pid = PIDFile.read(path), let snapshot = ProcessTable.snapshot(pid), !snapshot.isZombie else {
                return nil
            }
            if let known = services[service.name], known.pid == pid, let ticks = known.processStartTicks,
                ticks != snapshot.startTime
            {
                return nil
            }
            if let written = ProcessTable.modificationTime(path), ProcessTable.startDate(snapshot) > written + 2 {
                return nil
            }
            return snapshot
        case .matching(let pattern):
            return ProcessTable.oldestMatching(pattern)
        }
    }

    private func checkProcess(_ name: String, found: ProcessSnapshot?) async {
        guard let runtime = services[name] else { return }
        guard let process = found else {
            if let old = runtime.pid { unwatch(old) }
            update(name) {
                $0.pid = nil
                $0.processStartTicks = nil
                $0.startedAt = nil
            }
            if runtime.failures[.nonexist] == nil {
                logger.error("'\(name)' process is not running")
                let action = runtime.config.mode == .active && runtime.config.start != nil ? "restart" : "alert"
                emit(name, .nonexist, .failed, "process is not running", action: action)
                update(name) { $0.failures[.nonexist] = "process is not running" }
            }
            guard runtime.config.mode == .active, runtime.config.start != nil else { return }
            if deferredForCrashLoop(name) { return }
            if restartLimitReached(name) { return }
            guard await dependenciesReady(name) else { return }
            logger.info("'\(name)' trying to restart")
            await startService(name, automatic: true)
            if services[name]?.pid != nil { await restartDependants(of: name) }
            return
        }
        adopt(name, process)
        sampleResources(name, process)
        await evaluateRules(name)
        await repeatExecActions(name)
    }

    /// Takes a found process as the service's: logs its appearance, watches its pidfd.
    func adopt(_ name: String, _ process: ProcessSnapshot) {
        guard let runtime = services[name] else { return }
        if runtime.pid != process.pid {
            if let old = runtime.pid {
                unwatch(old)
                if runtime.config.rules.contains(where: { $0.condition == .changedPID }) {
                    emit(name, .pid, .changed, "process PID changed from \(old) to \(process.pid)", action: "alert")
                }
            }
            update(name) {
                $0.pid = process.pid
                $0.processStartTicks = process.startTime
                $0.startedAt = ProcessTable.startDate(process)
                // CPU is a difference between two samples of the same process.
                $0.lastCPUTicks = nil
                $0.lastCPUSample = nil
            }
            watch(process.pid)
            // A death between locating and watching would be missed by the pidfd: look once more.
            if !ProcessTable.isRunning(process.pid) { requestCheck(name) }
        }
        if runtime.failures[.nonexist] != nil || runtime.monitor == .initializing && runtime.pid == nil {
            let message = "process is running with pid \(process.pid)"
            logger.info("'\(name)' \(message)")
            if runtime.failures[.nonexist] != nil {
                emit(name, .nonexist, .succeeded, message, action: "alert")
            }
            update(name) {
                $0.failures[.nonexist] = nil
                $0.failures[.exec] = nil
            }
        }
    }

    /// Automatic starts are at least `minimumRestartInterval` apart; a deferred start happens as soon
    /// as the interval is over.
    func deferredForCrashLoop(_ name: String) -> Bool {
        guard
            let delay = RestartPolicy.crashLoopDelay(
                lastAutomaticStart: services[name]?.lastAutomaticStart, now: .now, minimumInterval: Self.minimumRestartInterval)
        else { return false }
        checkLater(name, after: delay)
        return true
    }

    /// Waits (up to the start timeout) for dependencies being started to be running; false when one is not.
    func dependenciesReady(_ name: String) async -> Bool {
        guard let dependencies = services[name]?.config.dependencies, !dependencies.isEmpty else { return true }
        let deadline = ContinuousClock.now + .seconds(configuration.limits.startTimeout)
        while ContinuousClock.now < deadline {
            let waiting = dependencies.filter { dependency in
                guard let runtime = services[dependency], runtime.monitor != .notMonitored else { return false }
                if case .process = runtime.config.kind { return runtime.busy || runtime.pid == nil }
                return runtime.busy
            }
            if waiting.isEmpty { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        logger.info("'\(name)' waits for its dependencies to run")
        return false
    }

    /// `if N restarts within M cycles then …`: true when a limit fired and the start must not happen.
    func restartLimitReached(_ name: String) -> Bool {
        guard let runtime = services[name] else { return false }
        for fired in RestartPolicy.firedLimits(runtime.config.restartLimits, restarts: runtime.restarts, cycle: cycle) {
            logger.error("'\(name)' \(fired.message)")
            switch fired.limit.action {
            case .alert:
                emit(name, .timeout, .failed, fired.message, action: "alert")
                continue
            case .exec(let spec, _):
                emit(name, .timeout, .failed, fired.message, action: "exec")
                runExec(spec, name: name, event: .timeout, message: fired.message)
            default:
                emit(name, .timeout, .failed, fired.message, action: "unmonitor")
            }
            update(name) {
                $0.monitor = .notMonitored
                $0.failures[.timeout] = fired.message
            }
            return true
        }
        return false
    }

    // MARK: - Resources

    func sampleResources(_ name: String, _ process: ProcessSnapshot) {
        guard let runtime = services[name] else { return }
        let now = ContinuousClock.now
        var metrics = runtime.metrics
        if let lastTicks = runtime.lastCPUTicks, let lastSample = runtime.lastCPUSample, runtime.pid == process.pid {
            let elapsed = Double((now - lastSample).components.seconds) + Double((now - lastSample).components.attoseconds) / 1e18
            if elapsed > 0, process.cpuTicks >= lastTicks {
                let ticks = Double(process.cpuTicks - lastTicks) / Double(ProcessTable.clockTicksPerSecond)
                metrics.cpuPercent = max(0, ticks / elapsed / Double(ProcessTable.cpuCount) * 100)
            }
        }
        metrics.memoryBytes = process.residentBytes
        metrics.threads = process.threads
        let needsTree = runtime.config.rules.contains {
            if case .resource(let metric, _, _) = $0.condition {
                return [.children, .totalMemory, .totalCPU].contains(metric)
            }
            return false
        }
        if needsTree {
            let tree = ProcessTable.descendants(of: process.pid, in: ProcessTable.all())
            metrics.children = tree.count
            metrics.totalMemoryBytes = process.residentBytes + tree.reduce(0) { $0 + $1.residentBytes }
            metrics.totalCPUPercent = metrics.cpuPercent
        }
        update(name) {
            $0.metrics = metrics
            $0.lastCPUTicks = process.cpuTicks
            $0.lastCPUSample = now
        }
    }

    // MARK: - Rules

    /// Evaluates every `if …` rule of a service and acts on transitions.
    func evaluateRules(_ name: String) async {
        guard let config = services[name]?.config else { return }
        for (index, rule) in config.rules.enumerated() {
            guard services[name]?.monitor != .notMonitored else { return }
            guard let outcome = await evaluate(rule.condition, of: name) else { continue }
            guard var state = services[name]?.rules[safe: index] else { continue }
            let transition = state.record(failed: outcome.failed, window: rule.window)
            update(name) { if $0.rules.indices.contains(index) { $0.rules[index] = state } }
            switch transition {
            case .none:
                break
            case .failed:
                logger.error("'\(name)' \(outcome.message)")
                update(name) { $0.failures[outcome.kind] = outcome.message }
                emit(name, outcome.kind, .failed, outcome.message, action: rule.action.name)
                await perform(rule.action, for: name, event: outcome.kind, message: outcome.message)
            case .recovered:
                logger.info("'\(name)' \(outcome.message)")
                update(name) { $0.failures[outcome.kind] = nil }
                emit(name, outcome.kind, .succeeded, outcome.message, action: rule.recoveryAction?.name ?? "alert")
                if let recovery = rule.recoveryAction {
                    await perform(recovery, for: name, event: outcome.kind, message: outcome.message)
                }
            }
        }
    }

    /// nil when the condition does not apply now (e.g. a connection test in a start's grace period).
    func evaluate(_ condition: Condition, of name: String) async -> Outcome? {
        guard let runtime = services[name] else { return nil }
        let metrics = runtime.metrics
        switch condition {
        case .connection(let test):
            return await connectionOutcome(test, of: name)
        case .resource(let metric, let op, let quantity):
            return ConditionEvaluator.resource(metric, op, quantity, metrics: metrics, system: SystemSnapshot.read())
        case .uptime(let op, let seconds):
            return ConditionEvaluator.uptime(op, seconds, startedAt: runtime.startedAt, now: WallClock.now(), service: runtime.config.name)
        case .programStatus(let op, let expected):
            return ConditionEvaluator.programStatus(op, expected, metrics: metrics)
        case .timestamp, .size, .permission, .uid, .gid, .existence, .nonexistence:
            if case .file(let path) = runtime.config.kind { return fileOutcome(condition, path: path) }
            if case .directory(let path) = runtime.config.kind { return fileOutcome(condition, path: path) }
            if case .fifo(let path) = runtime.config.kind { return fileOutcome(condition, path: path) }
            return nil
        default:
            // changed pid is handled by adopt(); other tests (checksum, network, filesystem) are parsed but not run.
            return nil
        }
    }

    private func connectionOutcome(_ test: ConnectionTest, of name: String) async -> Outcome? {
        guard let runtime = services[name] else { return nil }
        let timeout = Duration.seconds(test.timeout ?? configuration.limits.networkTimeout)
        var result: ProbeResult
        var body = ""
        var where_ = ""
        switch test.target {
        case .url(let url):
            where_ = "[\(url.host)]:\(url.port)\(url.path)"
            (result, body) = await probe.http(
                HTTPProbeRequest(
                    host: url.host, port: url.port, path: url.path, hostHeader: url.port == 80 ? url.host : "\(url.host):\(url.port)",
                    basicAuthorization: url.user.map { Base64.encode(Array("\($0):\(url.password ?? "")".utf8)) },
                    timeout: timeout, bodyLimit: configuration.limits.httpContentBuffer))
        case .port(let host, let port, _):
            where_ = "[\(host)]:\(port)"
            if case .http(let check) = test.proto {
                (result, body) = await probe.http(
                    HTTPProbeRequest(
                        host: hostAddress(for: runtime.config, host: host), port: port, path: check.request,
                        hostHeader: check.hostHeader ?? host, timeout: timeout, bodyLimit: configuration.limits.httpContentBuffer))
            } else {
                result = await probe.connect(host: hostAddress(for: runtime.config, host: host), port: port, timeout: timeout)
            }
        case .unixSocket(let path):
            where_ = path
            result = await probe.connect(unixSocket: path, timeout: timeout)
        }
        update(name) { $0.metrics.responseTime = Double(result.responseTime.components.attoseconds) / 1e18 + Double(result.responseTime.components.seconds) }
        // After a start, a failing test counts only once it has passed or the start timeout is over.
        let inGrace = runtime.connectionGraceUntil.map { ContinuousClock.now < $0 } ?? false
        let outcome = ConditionEvaluator.connection(test.proto, result: result, body: body, address: where_, inStartGrace: inGrace)
        if outcome?.failed == false {
            update(name) { $0.connectionGraceUntil = nil }
        } else if outcome == nil {
            logger.debug("'\(name)' connection test ignored while the process is starting: \(result.message)")
        }
        return outcome
    }

    /// For `check host`, the host's address replaces `localhost` in port tests written without `host`.
    private func hostAddress(for service: WardenConfig.Service, host: String) -> String {
        if case .host(let address) = service.kind, host == "localhost" { return address }
        return host
    }

    // MARK: - Files and programs

    private func checkFile(_ name: String, path: String) async {
        guard let runtime = services[name] else { return }
        var info = stat()
        if stat(path, &info) != 0 {
            if runtime.failures[.nonexist] == nil {
                let message = "\(runtime.config.kind.displayName.lowercased()) doesn't exist"
                logger.error("'\(name)' \(message)")
                update(name) { $0.failures[.nonexist] = message }
                emit(name, .nonexist, .failed, message, action: "alert")
            }
            return
        }
        if runtime.failures[.nonexist] != nil {
            update(name) { $0.failures[.nonexist] = nil }
            emit(name, .nonexist, .succeeded, "\(runtime.config.kind.displayName.lowercased()) exists", action: "alert")
        }
        await evaluateRules(name)
    }

    func fileOutcome(_ condition: Condition, path: String) -> Outcome? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        let facts = FileFacts(
            modified: WallClock.Time(info.st_mtim.tv_sec), size: Int64(info.st_size), mode: Int(info.st_mode) & 0o7777,
            uid: info.st_uid, gid: info.st_gid)
        return ConditionEvaluator.file(
            condition, path: path, facts: facts, now: WallClock.now(), userID: Spawner.userID, groupID: Spawner.groupID)
    }

    private func checkProgram(_ name: String, _ spec: ProgramSpec) async {
        let timeout = spec.timeout ?? configuration.limits.programTimeout
        // The first kilobyte of a check program's output goes into its event.
        let result = await runToCompletion(
            spec, name: name, timeout: timeout, event: nil, message: nil, outputLimit: max(1024, configuration.limits.programOutput))
        switch result {
        case .exited(let status, let output):
            update(name) {
                $0.metrics.programStatus = Int(status)
                $0.metrics.programOutput = output
                $0.failures[.exec] = nil
            }
            await evaluateRules(name)
        case .timedOut(let output):
            let message = "program '\(spec.commandLine)' timed out after \(timeout) s -- \(output.isEmpty ? "no output" : output)"
            logger.error("'\(name)' \(message)")
            update(name) { $0.failures[.exec] = message }
            emit(name, .exec, .failed, message, action: "alert")
        case .failedToRun(let reason):
            logger.error("'\(name)' \(reason)")
            update(name) { $0.failures[.exec] = reason }
            emit(name, .exec, .failed, reason, action: "alert")
        }
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}

/// POSIX extended regex search, as monit's `content ==` uses it (unanchored).
enum RegexSearch {
    static func matches(_ pattern: String, in text: String) -> Bool {
        var regex = regex_t()
        guard regcomp(&regex, pattern, REG_EXTENDED | REG_NOSUB) == 0 else { return false }
        defer { regfree(&regex) }
        return regexec(&regex, text, 0, nil, 0) == 0
    }
}
