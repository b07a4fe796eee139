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

    /// Automatic starts are at least `minimumRestartInterval` apart, so an app that dies at once
    /// cannot make warden fork in a tight loop; a deferred start happens as soon as the interval is over.
    func deferredForCrashLoop(_ name: String) -> Bool {
        guard let last = services[name]?.lastAutomaticStart else { return false }
        let elapsed = ContinuousClock.now - last
        guard elapsed < Self.minimumRestartInterval else { return false }
        checkLater(name, after: Self.minimumRestartInterval - elapsed)
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
        for limit in runtime.config.restartLimits {
            let count = runtime.restarts.count(within: limit.cycles, now: cycle)
            guard count >= limit.restarts else { continue }
            let observed = runtime.restarts.observedCycles(within: limit.cycles, now: cycle)
            let message = "service restarted \(count) times within \(observed) cycle(s) - \(limit.action == .alert ? "alert" : "unmonitor")"
            logger.error("'\(name)' \(message)")
            switch limit.action {
            case .alert:
                emit(name, .timeout, .failed, message, action: "alert")
                continue
            case .exec(let spec, _):
                emit(name, .timeout, .failed, message, action: "exec")
                runExec(spec, name: name, event: .timeout, message: message)
            default:
                emit(name, .timeout, .failed, message, action: "unmonitor")
            }
            update(name) {
                $0.monitor = .notMonitored
                $0.failures[.timeout] = message
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

    struct Outcome {
        var failed: Bool
        var kind: EventKind
        var message: String
    }

    /// nil when the condition does not apply now (e.g. a connection test in a start's grace period).
    func evaluate(_ condition: Condition, of name: String) async -> Outcome? {
        guard let runtime = services[name] else { return nil }
        let metrics = runtime.metrics
        switch condition {
        case .connection(let test):
            return await connectionOutcome(test, of: name)
        case .resource(let metric, let op, let quantity):
            return resourceOutcome(metric, op, quantity, metrics: metrics)
        case .uptime(let op, let seconds):
            guard let started = runtime.startedAt else { return nil }
            let uptime = Int(WallClock.now() - started)
            let failed = op.compare(uptime, seconds)
            return Outcome(failed: failed, kind: .uptime, message: failed ? "uptime test failed for \(runtime.config.name) -- current uptime is \(uptime) seconds" : "uptime test succeeded")
        case .programStatus(let op, let expected):
            guard let status = metrics.programStatus else { return nil }
            let failed = op.compare(status, expected)
            let output = metrics.programOutput.map { $0.isEmpty ? "no output" : $0 } ?? "no output"
            return Outcome(failed: failed, kind: .status, message: failed ? "status failed (\(status)) -- \(output)" : "status succeeded (\(status)) -- \(output)")
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
        var failed = !result.succeeded
        var message = result.message
        if result.succeeded, case .http(let check) = test.proto {
            (failed, message) = judge(check, status: result.status ?? 0, body: body)
        }
        let protocolName: String
        switch test.proto {
        case .http: protocolName = "HTTP"
        case .named(let name): protocolName = name.uppercased()
        case .generic: protocolName = "DEFAULT"
        }
        if !failed {
            update(name) { $0.connectionGraceUntil = nil }
            return Outcome(failed: false, kind: .connection, message: "connection succeeded to \(where_)")
        }
        // After a start, a failing test counts only once it has passed or the start timeout is over.
        if let grace = runtime.connectionGraceUntil, ContinuousClock.now < grace {
            logger.debug("'\(name)' connection test ignored while the process is starting: \(message)")
            return nil
        }
        return Outcome(failed: true, kind: .connection, message: "failed protocol test [\(protocolName)] at \(where_) -- \(message)")
    }

    /// For `check host`, the host's address replaces `localhost` in port tests written without `host`.
    private func hostAddress(for service: WardenConfig.Service, host: String) -> String {
        if case .host(let address) = service.kind, host == "localhost" { return address }
        return host
    }

    /// monit's HTTP rules: a status ≥ 400 fails unless `status` says otherwise; `content` is an unanchored regex search.
    private func judge(_ check: HTTPCheck, status: Int, body: String) -> (failed: Bool, message: String) {
        if let expected = check.status {
            if !expected.op.compare(status, expected.value) {
                return (true, "HTTP error: status \(status) does not match \(expected.op.rawValue) \(expected.value)")
            }
        } else if status >= 400 {
            return (true, "HTTP error: Server returned status \(status)")
        }
        if let content = check.content {
            let found = RegexSearch.matches(content.value, in: body)
            if found != (content.op == .equal) {
                return (true, "HTTP error: Regular expression \(content.op == .equal ? "doesn't match" : "matches"): '\(content.value)'")
            }
        }
        return (false, "HTTP status \(status)")
    }

    private func resourceOutcome(_ metric: ResourceMetric, _ op: ComparisonOperator, _ quantity: Quantity, metrics: ServiceMetrics) -> Outcome? {
        let system = SystemSnapshot.read()
        let value: Double?
        var limit: Double
        var unit = ""
        switch quantity {
        case .percent(let p): limit = p; unit = "%"
        case .bytes(let b): limit = b; unit = " B"
        case .count(let c): limit = c
        case .seconds(let s): limit = s; unit = " s"
        case .rate(let r, let u): limit = r; unit = " \(u)"
        }
        let memoryTotal = Double(max(1, system.memoryTotalBytes))
        func memory(_ bytes: UInt64?) -> Double? {
            guard let bytes else { return nil }
            if case .percent = quantity { return Double(bytes) / memoryTotal * 100 }
            return Double(bytes)
        }
        switch metric {
        case .cpu, .cpuUser, .cpuSystem: value = metrics.cpuPercent
        case .totalCPU: value = metrics.totalCPUPercent ?? metrics.cpuPercent
        case .memory: value = memory(metrics.memoryBytes ?? (system.memoryTotalBytes - system.memoryAvailableBytes))
        case .totalMemory: value = memory(metrics.totalMemoryBytes ?? metrics.memoryBytes)
        case .swap:
            let used = system.swapTotalBytes - system.swapFreeBytes
            if case .percent = quantity { value = system.swapTotalBytes == 0 ? 0 : Double(used) / Double(system.swapTotalBytes) * 100 } else { value = Double(used) }
        case .children: value = metrics.children.map(Double.init)
        case .threads: value = metrics.threads.map(Double.init)
        case .loadAverage1: value = system.load1
        case .loadAverage5: value = system.load5
        case .loadAverage15: value = system.load15
        case .loadAveragePerCore1: value = system.load1 / Double(max(1, system.cpuCount))
        case .loadAveragePerCore5: value = system.load5 / Double(max(1, system.cpuCount))
        case .loadAveragePerCore15: value = system.load15 / Double(max(1, system.cpuCount))
        default: value = nil
        }
        guard let value else { return nil }
        if case .bytes = quantity { limit = limit.rounded() }
        let failed = op.compare(value, limit)
        let shown = (value * 10).rounded() / 10
        return Outcome(
            failed: failed, kind: .resource,
            message: failed
                ? "\(metric.rawValue) of \(shown)\(unit) matches resource limit [\(metric.rawValue) \(op.rawValue) \(limit)\(unit)]"
                : "\(metric.rawValue) check succeeded [current \(metric.rawValue) = \(shown)\(unit)]")
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
        switch condition {
        case .timestamp(let op, let seconds):
            let age = Int(WallClock.now()) - Int(info.st_mtim.tv_sec)
            let failed = op.compare(age, seconds)
            return Outcome(failed: failed, kind: .timestamp, message: failed ? "timestamp test failed for \(path) -- modified \(age) s ago" : "timestamp test succeeded for \(path)")
        case .size(let op, let bytes):
            let size = Int64(info.st_size)
            let failed = op.compare(size, bytes)
            return Outcome(failed: failed, kind: .size, message: failed ? "size test failed for \(path) -- current size is \(size) B" : "size check succeeded for \(path)")
        case .permission(let mode):
            let actual = Int(info.st_mode) & 0o7777
            let failed = actual != mode
            return Outcome(failed: failed, kind: .permission, message: failed ? "permission test failed for \(path) -- current permission is \(String(actual, radix: 8))" : "permission test succeeded")
        case .uid(let user):
            let expected = Spawner.userID(user)
            let failed = expected != info.st_uid
            return Outcome(failed: failed, kind: .uid, message: failed ? "uid test failed for \(path) -- current uid is \(info.st_uid)" : "uid test succeeded")
        case .gid(let group):
            let expected = Spawner.groupID(group)
            let failed = expected != info.st_gid
            return Outcome(failed: failed, kind: .gid, message: failed ? "gid test failed for \(path) -- current gid is \(info.st_gid)" : "gid test succeeded")
        default:
            return nil
        }
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
