import Logging
import WardenConfig
import WardenPlatform

#if canImport(Glibc)
import Glibc
#endif

extension ServiceSupervisor {
    // MARK: - One check of one service

    /// `inOnePass`: checked with the other services of the cycle that cannot wait (`checkMayWait`); a
    /// process found gone is handed to a check of its own, which restarts it.
    func check(_ name: String, afterExitOf exitedPID: pid_t? = nil, inOnePass: Bool = false) async {
        guard let machine = services[name], !machine.busy, machine.monitor != .notMonitored else { return }
        if let exitedPID, machine.pid != exitedPID { return }
        let process = locate(machine)
        if inOnePass, case .process = machine.config.kind, process == nil {
            requestCheck(name)
            return
        }
        services[name]?.busy = true
        services[name]?.lastCheck = WallClock.now()
        switch machine.config.kind {
        case .process:
            await checkProcess(name, found: process)
        case .program(let spec):
            await checkProgram(name, spec)
        case .file(let path), .directory(let path), .fifo(let path):
            await carryOut(services[name]?.pathChecked(exists: inspector.file(path) != nil) ?? [], for: name)
            if services[name]?.failures[.nonexist] == nil { await evaluateRules(name) }
        case .host, .system, .filesystem, .network:
            await evaluateRules(name)
        }
        endBusy(name)
        if services[name]?.monitor == .initializing { services[name]?.monitor = .monitored }
    }

    /// The process of a `check process`, if it runs: the pidfile's pid alive, not a zombie and not a
    /// recycled pid; failing that, the process warden knows as the service by pid and start time (its
    /// pidfile removed, or named in the state file before warden restarted).
    func locate(_ machine: Machine) -> ProcessSnapshot? {
        guard case .process(let match) = machine.config.kind else { return nil }
        switch match {
        case .pidfile(let path):
            if let pid = inspector.readPIDFile(path), let process = inspector.process(pid), !process.isZombie,
                machine.isService(process, startDate: inspector.startDate(process), pidfileWritten: inspector.modificationTime(path))
            {
                return process
            }
        case .matching(let pattern):
            if let process = inspector.oldestMatching(pattern) { return process }
        }
        guard let known = machine.knownProcess, let process = inspector.process(known.pid), !process.isZombie,
            process.startTime == known.startTicks
        else { return nil }
        return process
    }

    private func checkProcess(_ name: String, found: ProcessSnapshot?) async {
        guard let process = found else {
            await carryOut(services[name]?.processMissing(now: clock.now, cycle: cycle) ?? [], for: name)
            return
        }
        await carryOut(services[name]?.processFound(process, startDate: inspector.startDate(process)) ?? [], for: name)
        let inspector = self.inspector
        services[name]?.sample(
            process, now: clock.now, ticksPerSecond: ProcessTable.clockTicksPerSecond, cpuCount: ProcessTable.cpuCount,
            tree: { ProcessTable.descendants(of: process.pid, in: inspector.allProcesses()) })
        await evaluateRules(name)
        await carryOut(services[name]?.repeatedExecs(cycle: cycle) ?? [], for: name)
    }

    // MARK: - Rules

    /// Evaluates every `if …` rule of a service and acts on transitions.
    func evaluateRules(_ name: String) async {
        guard let config = services[name]?.config else { return }
        for (index, rule) in config.rules.enumerated() {
            guard services[name]?.monitor != .notMonitored else { return }
            guard let outcome = await evaluate(rule.condition, of: name) else { continue }
            await carryOut(services[name]?.ruleEvaluated(index, outcome, now: clock.now, cycle: cycle) ?? [], for: name)
        }
    }

    /// nil when the condition does not apply now (e.g. a connection test in a start's grace period).
    func evaluate(_ condition: Condition, of name: String) async -> Outcome? {
        guard let machine = services[name] else { return nil }
        switch condition {
        case .connection(let test):
            return await connectionOutcome(test, of: name)
        case .resource(let metric, let op, let quantity):
            return ConditionEvaluator.resource(metric, op, quantity, metrics: machine.metrics, system: inspector.system())
        case .uptime(let op, let seconds):
            return ConditionEvaluator.uptime(op, seconds, startedAt: machine.startedAt, now: WallClock.now(), service: machine.config.name)
        case .programStatus(let op, let expected):
            return ConditionEvaluator.programStatus(op, expected, metrics: machine.metrics)
        case .timestamp, .size, .permission, .uid, .gid, .existence, .nonexistence:
            switch machine.config.kind {
            case .file(let path), .directory(let path), .fifo(let path):
                guard let facts = inspector.file(path) else { return nil }
                return ConditionEvaluator.file(
                    condition, path: path, facts: facts, now: WallClock.now(), userID: inspector.userID, groupID: inspector.groupID)
            default:
                return nil
            }
        default:
            // changed pid is decided when a process is found; other tests (checksum, network, filesystem)
            // are parsed but not run.
            return nil
        }
    }

    private func connectionOutcome(_ test: ConnectionTest, of name: String) async -> Outcome? {
        guard let machine = services[name] else { return nil }
        // `retry N`: up to N attempts in the cycle before the test counts as failed, as monit counts them.
        var (result, body, address) = await probe(test, of: machine.config)
        for _ in 1..<max(1, test.retry ?? 1) where !result.succeeded {
            (result, body, address) = await probe(test, of: machine.config)
        }
        let seconds = Double(result.responseTime.components.seconds) + Double(result.responseTime.components.attoseconds) / 1e18
        services[name]?.metrics.responseTime = seconds
        let inGrace = services[name]?.inConnectionGrace(now: clock.now) ?? false
        let outcome = ConditionEvaluator.connection(test.proto, result: result, body: body, address: address, inStartGrace: inGrace)
        if outcome?.failed == false {
            services[name]?.connectionPassed()
        } else if outcome == nil {
            logger.debug("'\(name)' connection test ignored while the process is starting: \(result.message)")
        }
        return outcome
    }

    /// One attempt of a connection test: what the probe saw, the body of an HTTP answer, and the
    /// address as monit names it in its messages.
    private func probe(_ test: ConnectionTest, of service: WardenConfig.Service) async -> (ProbeResult, String, String) {
        let timeout = Duration.seconds(test.timeout ?? configuration.limits.networkTimeout)
        var result: ProbeResult
        var body = ""
        var address = ""
        switch test.target {
        case .url(let url):
            address = "[\(url.host)]:\(url.port)\(url.path)"
            (result, body) = await prober.http(
                HTTPProbeRequest(
                    host: url.host, port: url.port, path: url.path, hostHeader: url.port == 80 ? url.host : "\(url.host):\(url.port)",
                    basicAuthorization: url.user.map { Base64.encode(Array("\($0):\(url.password ?? "")".utf8)) },
                    timeout: timeout, bodyLimit: configuration.limits.httpContentBuffer, tls: url.scheme == "https",
                    certificateMinimumDays: test.certificateMinimumDays))
        case .port(let host, let port, let transport):
            address = "[\(host)]:\(port)"
            let target = hostAddress(for: service, host: host)
            if case .http(let check) = test.proto {
                (result, body) = await prober.http(
                    HTTPProbeRequest(
                        host: target, port: port, path: check.request, hostHeader: check.hostHeader ?? host, timeout: timeout,
                        bodyLimit: configuration.limits.httpContentBuffer, tls: transport == .tcpSSL,
                        certificateMinimumDays: test.certificateMinimumDays))
            } else if case .named(let name) = test.proto {
                // NTP runs over UDP whatever the port's type says, as monit has it.
                let udp = transport == .udp || name == "ntp3"
                let endpoint: ProtocolCheckRequest.Target = udp ? .udp(host: target, port: port) : .tcp(host: target, port: port)
                result = await prober.check(
                    ProtocolCheckRequest(
                        protocolName: name, target: endpoint, tls: transport == .tcpSSL, timeout: timeout, dialogue: test.dialogue,
                        certificateMinimumDays: test.certificateMinimumDays, options: test.protocolOptions))
            } else {
                result = await prober.connect(host: target, port: port, timeout: timeout)
            }
        case .unixSocket(let path):
            address = path
            if case .named(let name) = test.proto {
                result = await prober.check(
                    ProtocolCheckRequest(
                        protocolName: name, target: .unixSocket(path), timeout: timeout, dialogue: test.dialogue,
                        options: test.protocolOptions))
            } else {
                result = await prober.connect(unixSocket: path, timeout: timeout)
            }
        }
        return (result, body, address)
    }

    /// For `check host`, the host's address replaces `localhost` in port tests written without `host`.
    private func hostAddress(for service: WardenConfig.Service, host: String) -> String {
        if case .host(let address) = service.kind, host == "localhost" { return address }
        return host
    }

    // MARK: - Programs

    private func checkProgram(_ name: String, _ spec: ProgramSpec) async {
        let timeout = spec.timeout ?? configuration.limits.programTimeout
        // The first kilobyte of a check program's output goes into its event.
        let result = await runToCompletion(
            spec, name: name, timeout: timeout, event: nil, message: nil, outputLimit: max(1024, configuration.limits.programOutput))
        let actions: [Machine.Action]
        switch result {
        case .exited(let status, let output):
            actions = services[name]?.programFinished(status: status, output: output, failure: nil) ?? []
        case .timedOut(let output):
            let message = "program '\(spec.commandLine)' timed out after \(timeout) s -- \(output.isEmpty ? "no output" : output)"
            actions = services[name]?.programFinished(status: nil, output: output, failure: message) ?? []
        case .failedToRun(let reason):
            actions = services[name]?.programFinished(status: nil, output: "", failure: reason) ?? []
        }
        await carryOut(actions, for: name)
        if case .exited = result { await evaluateRules(name) }
    }
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
