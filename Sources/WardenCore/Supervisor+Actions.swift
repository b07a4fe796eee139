import Logging
import WardenConfig
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

extension Supervisor {
    enum ProgramResult {
        case exited(status: Int32, output: String)
        case timedOut(output: String)
        case failedToRun(String)
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
            guard let resolved = Spawner.userID(user) else { return nil }
            uid = resolved
            gid = Spawner.primaryGroup(of: resolved)
        }
        if let group = spec.gid {
            guard let resolved = Spawner.groupID(group) else { return nil }
            gid = resolved
        }
        return (uid, gid)
    }

    func spawn(_ spec: ProgramSpec, name: String, event: EventKind?, message: String?, outputLimit: Int? = nil) throws -> SpawnedProgram {
        guard let (uid, gid) = identity(spec) else {
            throw SpawnError(description: "unknown user or group in 'as uid \(spec.uid ?? "") gid \(spec.gid ?? "")'")
        }
        let logger = self.logger
        return try Spawner.spawn(
            spec.arguments, environment: environment(service: name, event: event, message: message), uid: uid, gid: gid,
            outputLimit: outputLimit ?? configuration.limits.programOutput
        ) { line in
            logger.debug("'\(name)' output: \(line)")
        }
    }

    /// Runs a program and waits for it, killing its process group after `timeout` seconds.
    func runToCompletion(_ spec: ProgramSpec, name: String, timeout: Int, event: EventKind?, message: String?, outputLimit: Int? = nil) async -> ProgramResult {
        let program: SpawnedProgram
        do {
            program = try spawn(spec, name: name, event: event, message: message, outputLimit: outputLimit)
        } catch {
            return .failedToRun("\(error)")
        }
        let deadline = ContinuousClock.now + .seconds(timeout)
        while ContinuousClock.now < deadline {
            if let status = ChildReaper.shared.takeStatus(program.pid) {
                try? await Task.sleep(for: .milliseconds(5))  // let the output pipe drain
                return .exited(status: ExitStatus.code(status), output: program.capturedOutput)
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        killGroup(program.pid)
        return .timedOut(output: program.capturedOutput)
    }

    func killGroup(_ pid: pid_t) {
        kill(-pid, SIGKILL)
        kill(pid, SIGKILL)
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
        update(name) {
            $0.restarts.record(cycle: cycle)
            if automatic { $0.lastAutomaticStart = .now }
        }
        logger.info("'\(name)' start: '\(start.commandLine)'")
        let timeout = start.timeout ?? configuration.limits.startTimeout
        let launched = WallClock.coarseNow()
        let program: SpawnedProgram
        do {
            program = try spawn(start, name: name, event: nil, message: nil)
        } catch {
            startFailed(name, "failed to start -- \(error)")
            return
        }
        let began = ContinuousClock.now
        let deadline = began + .seconds(timeout)
        var exited = false
        while ContinuousClock.now < deadline {
            if let process = locate(config) {
                startSucceeded(name, process, timeout: timeout)
                return
            }
            if !exited, let status = ChildReaper.shared.takeStatus(program.pid) {
                exited = true
                let code = ExitStatus.code(status)
                if code != 0 {
                    try? await Task.sleep(for: .milliseconds(5))
                    let output = program.capturedOutput.trimmingTrailingWhitespace
                    startFailed(name, "failed to start (\(ExitStatus.describe(status))) -- '\(start.commandLine)': \(output.isEmpty ? "no output" : output)")
                    return
                }
            }
            if exited, let pid = pidfileNamesAnExitedProcess(config, writtenSince: launched) {
                startFailed(name, "failed to start -- process \(pid) exited right after it started")
                return
            }
            // A program still running after a second is the service itself, in the foreground.
            if !exited, ContinuousClock.now - began > .seconds(1), let process = adoptForeground(config, program.pid) {
                startSucceeded(name, process, timeout: timeout)
                return
            }
            // Most apps appear within a second; one that takes longer is looked for less often.
            try? await Task.sleep(for: ContinuousClock.now - began < .seconds(1) ? .milliseconds(15) : .milliseconds(100))
        }
        if !exited { killGroup(program.pid) }
        startFailed(name, "failed to start -- '\(start.commandLine)' timed out after \(timeout) s")
    }

    /// A pidfile written since the start program was launched (both times from the kernel's coarse
    /// clock, which stamps files) that names a process already gone: the service started and died
    /// before a check saw it, and waiting out the start timeout would only delay the next attempt.
    private func pidfileNamesAnExitedProcess(_ config: WardenConfig.Service, writtenSince launched: WallClock.Time) -> pid_t? {
        guard case .process(.pidfile(let path)) = config.kind, let pid = PIDFile.read(path),
            let written = ProcessTable.modificationTime(path), written >= launched, !ProcessTable.isRunning(pid)
        else { return nil }
        return pid
    }

    /// For a foreground start program: the process is the program; a pidfile, where configured, is written for it.
    private func adoptForeground(_ config: WardenConfig.Service, _ pid: pid_t) -> ProcessSnapshot? {
        guard let snapshot = ProcessTable.snapshot(pid), !snapshot.isZombie else { return nil }
        switch config.kind {
        case .process(.pidfile(let path)):
            do {
                try AtomicFile.write(Array("\(pid)\n".utf8), to: path, mode: 0o644)
            } catch {
                logger.error("'\(config.name)' cannot write pidfile '\(path)': \(error)")
                return nil
            }
            return snapshot
        case .process(.matching):
            return nil  // it will match by itself if it is the service
        default:
            return nil
        }
    }

    private func startSucceeded(_ name: String, _ process: ProcessSnapshot, timeout: Int) {
        update(name) {
            $0.connectionGraceUntil = ContinuousClock.now + .seconds(timeout)
            $0.failures[.exec] = nil
            $0.failures[.timeout] = nil
            for index in $0.rules.indices { $0.rules[index].reset() }
        }
        adopt(name, process)
    }

    private func startFailed(_ name: String, _ message: String) {
        logger.error("'\(name)' \(message)")
        update(name) { $0.failures[.exec] = message }
        emit(name, .exec, .failed, message, action: "alert")
    }

    /// Runs the stop program, or sends SIGTERM (then SIGKILL) to the process group, and waits until
    /// the process is gone.
    func stopService(_ name: String) async {
        guard let runtime = services[name] else { return }
        let config = runtime.config
        let process = runtime.pid.flatMap(ProcessTable.snapshot) ?? locate(config)
        let timeout = config.stop?.timeout ?? configuration.limits.stopTimeout
        if let pid = runtime.pid { unwatch(pid) }
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
        }
        update(name) {
            $0.pid = nil
            $0.processStartTicks = nil
            $0.startedAt = nil
            $0.failures = [:]
            $0.stopping = false
        }
    }

    /// Before a planned stop: the proxy holds new requests and lets the ones in flight finish.
    private func drainTraffic(_ name: String) async {
        guard let traffic else { return }
        update(name) { $0.stopping = true }
        await traffic.drain(name, timeout: Self.drainTimeout)
    }

    private func signalProcess(_ process: ProcessSnapshot, _ signal: Int32) {
        // The group only when it is the service's own (a start program's setsid makes it so), never warden's.
        if process.processGroup == process.pid, process.processGroup != getpgrp() { kill(-process.processGroup, signal) }
        kill(process.pid, signal)
        kill(process.pid, SIGCONT)  // a stopped process never acts on SIGTERM
    }

    private func waitUntilGone(_ process: ProcessSnapshot, timeout: Int) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(timeout)
        while ContinuousClock.now < deadline {
            guard let now = ProcessTable.snapshot(process.pid), now.startTime == process.startTime, !now.isZombie else {
                return true
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return false
    }

    /// Restarts a service (restart program, or stop then start), then its running dependants.
    func restartService(_ name: String, automatic: Bool) async {
        guard let config = services[name]?.config else { return }
        if let restart = config.restart {
            logger.info("'\(name)' restart: '\(restart.commandLine)'")
            if let pid = services[name]?.pid {
                unwatch(pid)
                await drainTraffic(name)
            }
            update(name) {
                $0.pid = nil
                $0.stopping = false
            }
            var spec = config
            spec.start = restart
            let saved = services[name]?.config
            update(name) { $0.config = spec }
            await startService(name, automatic: automatic)
            if let saved { update(name) { $0.config = saved } }
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

    // MARK: - Rule actions

    func perform(_ action: Action, for name: String, event: EventKind, message: String) async {
        switch action {
        case .alert:
            break
        case .restart:
            guard services[name]?.config.mode == .active else { return }
            if deferredForCrashLoop(name) { return }
            if restartLimitReached(name) { return }
            logger.info("'\(name)' trying to restart")
            await restartService(name, automatic: true)
        case .start:
            guard services[name]?.config.mode == .active, services[name]?.pid == nil else { return }
            await startService(name, automatic: true)
        case .stop:
            await stopService(name)
            update(name) { $0.monitor = .notMonitored }
        case .unmonitor, .timeout:
            logger.info("'\(name)' unmonitor")
            update(name) { $0.monitor = .notMonitored }
        case .exec(let spec, _):
            runExec(spec, name: name, event: event, message: message)
        }
    }

    /// Fire and forget: the exec action's program runs with the event in its environment.
    func runExec(_ spec: ProgramSpec, name: String, event: EventKind, message: String) {
        logger.info("'\(name)' exec: '\(spec.commandLine)'")
        do {
            _ = try spawn(spec, name: name, event: event, message: message)
        } catch {
            logger.error("'\(name)' exec failed -- \(error)")
        }
    }

    /// `exec … repeat every N cycles` while its rule keeps failing.
    func repeatExecActions(_ name: String) async {
        guard let runtime = services[name] else { return }
        for (index, rule) in runtime.config.rules.enumerated() {
            guard case .exec(let spec, let every?) = rule.action, runtime.rules[safe: index]?.failing == true,
                cycle % every == 0
            else { continue }
            runExec(spec, name: name, event: .resource, message: runtime.failures.values.first ?? "")
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
