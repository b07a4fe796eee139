import Logging
import WardenConfig
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

extension ServiceSupervisor {
    enum ProgramResult {
        case exited(status: Int32, output: String)
        case timedOut(output: String)
        case failedToRun(String)
    }

    /// Does what a service's state machine decided, in order.
    func carryOut(_ actions: [Machine.Action], for name: String) async {
        for action in actions {
            switch action {
            case .log(let level, let message):
                logger.log(level: level, "'\(name)' \(message)")
            case .emit(let kind, let state, let message, let action):
                emit(name, kind, state, message, action: action)
            case .watch(let pid):
                exitWatcher.watch(pid)
                // A death between locating and watching would be missed by the pidfd: look once more.
                if !isRunning(pid) { requestCheck(name) }
            case .unwatch(let pid):
                exitWatcher.unwatch(pid)
            case .checkAgain(let delay):
                checkLater(name, after: delay)
            case .start(let recovering):
                if recovering {
                    guard await dependenciesReady(name) else { return }
                    await startService(name, automatic: true)
                    if services[name]?.pid != nil { await restartDependants(of: name) }
                } else {
                    await startService(name, automatic: true)
                }
            case .restart:
                await restartService(name, automatic: true)
            case .stop:
                await stopService(name)
                services[name]?.monitor = .notMonitored
            case .exec(let spec, let event, let message):
                runExec(spec, name: name, event: event, message: message)
            }
        }
    }

    func isRunning(_ pid: pid_t) -> Bool {
        inspector.process(pid).map { !$0.isZombie } ?? false
    }

    /// The environment of every program warden runs: a clean PATH, the service and the event, under
    /// warden's names and monit's (scripts written for monit keep working).
    func environment(service: String, event: EventKind?, message: String?, action: String? = nil) -> [String: String] {
        var env: [String: String] = [
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/",
            "LANG": "C.UTF-8",
        ]
        var values: [String: String] = [
            "SERVICE": service, "HOST": hostName, "DATE": TimeFormat.http(WallClock.now()),
        ]
        if let event { values["EVENT"] = Event(service: service, kind: event, state: .failed, message: "", action: "").title }
        if let message { values["DESCRIPTION"] = message }
        if let action { values["ACTION"] = action }
        if let pid = services[service]?.pid { values["PROCESS_PID"] = String(pid) }
        for (key, value) in values {
            env["WARDEN_\(key)"] = value
            env["MONIT_\(key)"] = value
        }
        return env
    }

    func identity(_ spec: ProgramSpec) -> (uid_t?, gid_t?)? {
        var uid: uid_t?
        var gid: gid_t?
        if let user = spec.uid {
            guard let resolved = inspector.userID(user) else { return nil }
            uid = resolved
            gid = inspector.primaryGroup(of: resolved)
        }
        if let group = spec.gid {
            guard let resolved = inspector.groupID(group) else { return nil }
            gid = resolved
        }
        return (uid, gid)
    }

    /// - Parameter log: where each line of the program's output goes; nil, to warden's log at debug level.
    func spawn(
        _ spec: ProgramSpec, name: String, event: EventKind?, message: String?, outputLimit: Int? = nil, log: ServiceLogWriter? = nil
    ) throws -> any RunningProgram {
        guard let (uid, gid) = identity(spec) else {
            throw SpawnError(description: "unknown user or group in 'as uid \(spec.uid ?? "") gid \(spec.gid ?? "")'")
        }
        let logger = self.logger
        return try spawner.spawn(
            spec.arguments, environment: environment(service: name, event: event, message: message), uid: uid, gid: gid,
            outputLimit: outputLimit ?? configuration.limits.programOutput
        ) { line in
            if let log { log.append(line) } else { logger.debug("'\(name)' output: \(line)") }
        }
    }

    /// The service's own log file, which its start program's output (a foreground service's, all of it) goes to.
    private func serviceLog(_ config: WardenConfig.Service) -> ServiceLogWriter? {
        guard let path = configuration.logPath(of: config) else { return nil }
        let writer = ServiceLogs.shared.writer(path: path, rotation: config.log?.rotation)
        if let problem = writer.openProblem() { logger.error("'\(config.name)' cannot open its log file '\(path)': \(problem)") }
        return writer
    }

    /// Runs a program and waits for its exit, killing its process group after `timeout` seconds.
    func runToCompletion(_ spec: ProgramSpec, name: String, timeout: Int, event: EventKind?, message: String?, outputLimit: Int? = nil) async -> ProgramResult {
        let program: any RunningProgram
        do {
            program = try spawn(spec, name: name, event: event, message: message, outputLimit: outputLimit)
        } catch {
            return .failedToRun("\(error)")
        }
        let clock = self.clock
        let status = await withTaskGroup(of: Int32?.self) { group in
            group.addTask { await program.wait() }
            group.addTask {
                try? await clock.sleep(for: .seconds(timeout))
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            // The wait ends once the killed program is reaped.
            if first == nil { killGroup(program.pid) }
            return first
        }
        guard let status else { return .timedOut(output: program.capturedOutput) }
        await outputDrained()
        return .exited(status: ExitStatus.code(status), output: program.capturedOutput)
    }

    /// The last output of a program that exited is still in its pipe for a moment. Real time, whatever
    /// the supervisor's clock: it is the pipe's delay.
    private func outputDrained() async {
        try? await Task.sleep(for: .milliseconds(5))
    }

    nonisolated func killGroup(_ pid: pid_t) {
        spawner.signal(-pid, SIGKILL)
        spawner.signal(pid, SIGKILL)
    }

    // MARK: - Start, stop, restart

    /// Runs the start program and waits until the process appears: the start program exiting 0 and
    /// the pidfile/matching finding a live process, or the start program itself staying in the
    /// foreground. A start program that exits non-zero is reported at once.
    func startService(_ name: String, automatic: Bool) async {
        guard let config = services[name]?.config else { return }
        guard let start = config.start else {
            logger.error("'\(name)' has no start program")
            return
        }
        services[name]?.startBegins(automatic: automatic, now: clock.now, cycle: cycle, jitter: Double.random(in: 0.8...1.2))
        // The restart counts are state: kept across a restart of warden even when no event is sent.
        stateDirty = true
        logger.info("'\(name)' start: '\(start.commandLine)'")
        let timeout = start.timeout ?? configuration.limits.startTimeout
        let began = clock.now
        let result = await launch(start, of: name, timeout: timeout)
        if case .running = result {
            let took = began.duration(to: clock.now).components
            services[name]?.metrics.startSeconds = Double(took.seconds) + Double(took.attoseconds) / 1e18
        }
        await carryOut(services[name]?.startFinished(result, now: clock.now, timeout: .seconds(timeout)) ?? [], for: name)
        reportTraffic(name)
        if let followUp = services[name]?.followUp(now: clock.now, justStarted: true) { await carryOut([followUp], for: name) }
    }

    private func launch(_ start: ProgramSpec, of name: String, timeout: Int) async -> Machine.StartResult {
        let launched = inspector.coarseNow()
        let program: any RunningProgram
        do {
            program = try spawn(start, name: name, event: nil, message: nil, log: services[name].flatMap { serviceLog($0.config) })
        } catch {
            return .failed("failed to start -- \(error)")
        }
        let began = clock.now
        let deadline = began.advanced(by: .seconds(timeout))
        var exited = false
        // The pidfile has no event to wait for: it is looked for, often at first, then less often.
        while clock.now < deadline {
            guard let machine = services[name] else { break }
            if let process = locate(machine) { return .running(process, startDate: inspector.startDate(process)) }
            if !exited, let status = program.exitStatus {
                exited = true
                if ExitStatus.code(status) != 0 {
                    await outputDrained()
                    let output = program.capturedOutput.trimmingTrailingWhitespace
                    return .failed("failed to start (\(ExitStatus.describe(status))) -- '\(start.commandLine)': \(output.isEmpty ? "no output" : output)")
                }
            }
            if exited, let pid = pidfileNamesAnExitedProcess(machine.config, writtenSince: launched) {
                return .failed("failed to start -- process \(pid) exited right after it started")
            }
            // A program still running after a second is the service itself, in the foreground.
            let elapsed = began.duration(to: clock.now)
            if !exited, elapsed > .seconds(1), let process = adoptForeground(machine.config, program.pid) {
                return .running(process, startDate: inspector.startDate(process))
            }
            do {
                // Requests are held until this start is seen: look often, a pidfile read is cheap.
                try await clock.sleep(for: elapsed < .seconds(1) ? .milliseconds(15) : .milliseconds(25))
            } catch {
                break  // warden is shutting down
            }
        }
        if !exited { killGroup(program.pid) }
        return .failed("failed to start -- '\(start.commandLine)' timed out after \(timeout) s")
    }

    /// A pidfile written since the start program was launched (both times from the kernel's coarse
    /// clock, which stamps files) that names a process already gone: the service started and died
    /// before a check saw it, and waiting out the start timeout would only delay the next attempt.
    private func pidfileNamesAnExitedProcess(_ config: WardenConfig.Service, writtenSince launched: WallClock.Time) -> pid_t? {
        guard case .process(.pidfile(let path)) = config.kind, let pid = inspector.readPIDFile(path),
            let written = inspector.modificationTime(path), written >= launched, !isRunning(pid)
        else { return nil }
        return pid
    }

    /// For a foreground start program: the process is the program; a pidfile, where configured, is written for it.
    private func adoptForeground(_ config: WardenConfig.Service, _ pid: pid_t) -> ProcessSnapshot? {
        guard case .process(.pidfile(let path)) = config.kind, let process = inspector.process(pid), !process.isZombie else {
            return nil  // with `matching`, it will match by itself if it is the service
        }
        do {
            try spawner.writePIDFile(pid, to: path)
        } catch {
            logger.error("'\(config.name)' cannot write pidfile '\(path)': \(error)")
            return nil
        }
        return process
    }

    /// Runs the stop program, or sends SIGTERM (then SIGKILL) to the process group, and waits until
    /// the process is gone.
    func stopService(_ name: String) async {
        guard let machine = services[name] else { return }
        let config = machine.config
        let process = machine.pid.flatMap(inspector.process) ?? locate(machine)
        let timeout = config.stop?.timeout ?? configuration.limits.stopTimeout
        if let pid = machine.pid { exitWatcher.unwatch(pid) }
        if process != nil { await drainTraffic(name) }
        if let stop = config.stop {
            logger.info("'\(name)' stop: '\(stop.commandLine)'")
            switch await runToCompletion(stop, name: name, timeout: timeout, event: nil, message: nil) {
            case .exited(let status, let output) where status != 0:
                let message = "failed to stop (exit status \(status)) -- '\(stop.commandLine)': \(output.isEmpty ? "no output" : output)"
                logger.error("'\(name)' \(message)")
                emit(name, .exec, .failed, message, action: "alert")
            case .timedOut:
                let message = "failed to stop -- '\(stop.commandLine)' timed out after \(timeout) s"
                logger.error("'\(name)' \(message)")
                emit(name, .exec, .failed, message, action: "alert")
            case .failedToRun(let reason):
                logger.error("'\(name)' failed to stop -- \(reason)")
                emit(name, .exec, .failed, reason, action: "alert")
            default:
                break
            }
        } else if let process {
            logger.info("'\(name)' stop: sending SIGTERM to process group \(process.processGroup)")
            signalProcess(process, SIGTERM)
        }
        if let process {
            if await !waitUntilGone(process, timeout: timeout) {
                logger.error("'\(name)' process \(process.pid) did not stop within \(timeout) s, sending SIGKILL")
                signalProcess(process, SIGKILL)
                _ = await waitUntilGone(process, timeout: 5)
            }
            await recordExit(of: process.pid, service: name)
        }
        services[name]?.processStopped()
        reportTraffic(name)
    }

    /// Before a planned stop: the proxy holds new requests and lets the ones in flight finish.
    private func drainTraffic(_ name: String) async {
        guard let traffic else { return }
        services[name]?.stopping = true
        drainedRequests[name] = await traffic.drain(name, timeout: services[name]?.config.drainTimeout ?? .seconds(30))
    }

    private func signalProcess(_ process: ProcessSnapshot, _ signal: Int32) {
        // The group only when it is the service's own (a start program's setsid makes it so), never warden's.
        if process.processGroup == process.pid, process.processGroup != getpgrp() { spawner.signal(-process.processGroup, signal) }
        spawner.signal(process.pid, signal)
        spawner.signal(process.pid, SIGCONT)  // a stopped process never acts on SIGTERM
    }

    /// The process is not warden's child (a daemonizing start program's), so there is no exit to wait
    /// for: it is looked for until it is gone.
    private func waitUntilGone(_ process: ProcessSnapshot, timeout: Int) async -> Bool {
        let deadline = clock.now.advanced(by: .seconds(timeout))
        while clock.now < deadline {
            guard let now = inspector.process(process.pid), now.startTime == process.startTime, !now.isZombie else {
                return true
            }
            do {
                try await clock.sleep(for: .milliseconds(10))
            } catch {
                return false
            }
        }
        return false
    }

    /// Keeps how the service's process ended (the status page, `warden_service_last_exit_status`).
    func recordExit(of pid: pid_t, service name: String) async {
        guard let status = await inspector.exitStatus(of: pid) else { return }
        services[name]?.metrics.exitStatus = Int(ExitStatus.code(status))
        services[name]?.metrics.exitedAt = WallClock.now()
        logger.debug("'\(name)' process \(pid) ended: \(ExitStatus.describe(status))")
    }

    /// Restarts a service (restart program, or stop then start), then its running dependants.
    func restartService(_ name: String, automatic: Bool) async {
        guard let config = services[name]?.config else { return }
        if let restart = config.restart {
            logger.info("'\(name)' restart: '\(restart.commandLine)'")
            if services[name]?.pid != nil { await drainTraffic(name) }
            await carryOut(services[name]?.processReplaced() ?? [], for: name)
            var spec = config
            spec.start = restart
            // `set limits { restarttimeout }` is the restart program's default timeout, as the start
            // timeout is the start program's.
            spec.start?.timeout = restart.timeout ?? configuration.limits.restartTimeout
            services[name]?.config = spec
            await startService(name, automatic: automatic)
            services[name]?.config = config
        } else {
            await stopService(name)
            await startService(name, automatic: automatic)
        }
        await restartDependants(of: name)
    }

    /// A restart of a dependency restarts the services that depend on it and are running.
    func restartDependants(of name: String) async {
        for dependant in dependants(of: name) where services[dependant]?.monitor != .notMonitored {
            guard case .process = services[dependant]?.config.kind, services[dependant]?.pid != nil else { continue }
            logger.info("'\(dependant)' restarting because '\(name)' restarted")
            await withBusy(dependant) {
                await self.stopService(dependant)
                await self.startService(dependant, automatic: false)
            }
        }
    }

    /// Waits (up to the start timeout) for dependencies being started to be running; false when one is not.
    func dependenciesReady(_ name: String) async -> Bool {
        guard let dependencies = services[name]?.config.dependencies, !dependencies.isEmpty else { return true }
        let deadline = clock.now.advanced(by: .seconds(configuration.limits.startTimeout))
        while clock.now < deadline {
            let waiting = dependencies.filter { dependency in
                guard let machine = services[dependency], machine.monitor != .notMonitored else { return false }
                if case .process = machine.config.kind { return machine.busy || machine.pid == nil }
                return machine.busy
            }
            if waiting.isEmpty { return true }
            do {
                try await clock.sleep(for: .milliseconds(20))
            } catch {
                return false
            }
        }
        logger.info("'\(name)' waits for its dependencies to run")
        return false
    }

    // MARK: - Rule actions

    /// Fire and forget: the exec action's program runs with the event in its environment.
    func runExec(_ spec: ProgramSpec, name: String, event: EventKind, message: String) {
        logger.info("'\(name)' exec: '\(spec.commandLine)'")
        do {
            _ = try spawn(spec, name: name, event: event, message: message)
        } catch {
            logger.error("'\(name)' exec failed -- \(error)")
        }
    }
}

extension String {
    /// The string without trailing spaces and line breaks.
    public var trimmingTrailingWhitespace: String {
        var copy = self
        while let last = copy.last, last.isWhitespace { copy.removeLast() }
        return copy
    }
}
