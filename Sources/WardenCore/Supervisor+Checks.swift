import Logging
import NIOSSL
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
        guard let machine = services[name], machine.monitor != .notMonitored else { return }
        if let exitedPID, machine.pid != exitedPID { return }
        guard !machine.busy else {
            // An exit seen while a check or an action of the service runs (one that found the process
            // just before it died): looked at once that is over, not at the next cycle.
            if let exitedPID { checkLater(name, after: .milliseconds(50), exited: exitedPID) }
            return
        }
        let process = locate(machine)
        if inOnePass, case .process = machine.config.kind, process == nil {
            requestCheck(name)
            return
        }
        services[name]?.busy = true
        services[name]?.checkBegins(at: WallClock.now())
        let began = clock.now
        defer {
            reportTraffic(name)
            if services[name]?.isReady != machine.isReady { instanceReadinessChanged(name) }
        }
        switch machine.config.kind {
        case .process:
            await checkProcess(name, found: process)
        case .program(let spec):
            await checkProgram(name, spec)
        case .file(let path), .directory(let path), .fifo(let path):
            await pathChecked(name, exists: inspector.file(path) != nil)
        case .filesystem(let target):
            await pathChecked(name, exists: inspector.filesystem(target) != nil)
        case .host, .system, .network:
            await evaluateRules(name)
        }
        await carryOut(services[name]?.checkEnded(now: clock.now) ?? [], for: name)
        services[name]?.metrics.checkSeconds = Self.seconds(began.duration(to: clock.now))
        endBusy(name)
        if services[name]?.monitor == .initializing { services[name]?.monitor = .monitored }
        if let followUp = services[name]?.followUp(now: clock.now) { await carryOut([followUp], for: name) }
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

    /// A file, directory, fifo or filesystem found or not. Missing, it fails monit's implicit `does not
    /// exist` unless the service tests `if exist` instead (monit then neither reports nor acts on its
    /// absence); its other rules run while it is there.
    private func pathChecked(_ name: String, exists: Bool) async {
        guard let config = services[name]?.config else { return }
        if !config.expectsAbsence { await carryOut(services[name]?.pathChecked(exists: exists) ?? [], for: name) }
        if exists, services[name]?.failures[.nonexist] == nil {
            await evaluateRules(name)
        } else if !exists {
            await evaluateRules(name) { $0 == .existence }
        }
    }

    private func checkProcess(_ name: String, found: ProcessSnapshot?) async {
        guard let process = found else {
            if services[name]?.config.expectsAbsence == true {
                // `if exist` without `if does not exist`: a process that is not running is what the rule wants.
                await evaluateRules(name) { $0 == .existence }
                return
            }
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

    /// Evaluates the `if …` rules of a service (those `included`) and acts on transitions. A host's
    /// ping runs first, and when it fails its port tests are not tried, as in monit.
    func evaluateRules(_ name: String, included: (Condition) -> Bool = { _ in true }) async {
        guard let config = services[name]?.config else { return }
        let isPing: (Int) -> Bool = { if case .ping = config.rules[$0].condition { true } else { false } }
        var unreachable = false
        for index in config.rules.indices.filter(isPing) + config.rules.indices.filter({ !isPing($0) }) {
            let condition = config.rules[index].condition
            guard included(condition) else { continue }
            guard services[name]?.monitor != .notMonitored else { return }
            if unreachable, case .connection = condition { continue }
            guard let outcome = await evaluate(condition, rule: index, of: name) else { continue }
            if isPing(index), outcome.failed { unreachable = true }
            await carryOut(services[name]?.ruleEvaluated(index, outcome, now: clock.now, cycle: cycle) ?? [], for: name)
        }
    }

    /// nil when the condition does not apply now (e.g. a connection test in a start's grace period, a
    /// rate or "changed" test in its first cycle). Each case is decided: none is ignored by a `default`.
    func evaluate(_ condition: Condition, rule index: Int, of name: String) async -> Outcome? {
        guard let machine = services[name] else { return nil }
        let kind = machine.config.kind
        switch condition {
        case .connection(let test):
            return await connectionOutcome(test, of: name)
        case .resource(let metric, let op, let quantity):
            return resourceOutcome(metric, op, quantity, rule: index, of: name)
        case .uptime(let op, let seconds):
            let startedAt = kind == .system ? WallClock.now() - inspector.system().uptimeSeconds : machine.startedAt
            return ConditionEvaluator.uptime(op, seconds, startedAt: startedAt, now: WallClock.now(), service: machine.config.name)
        case .programStatus(let op, let expected):
            return ConditionEvaluator.programStatus(op, expected, metrics: machine.metrics)
        case .changedProgramStatus:
            guard let status = machine.metrics.programStatus else { return nil }
            guard case .counter(let before)? = exchange(.counter(Double(status)), rule: index, of: name)?.value else { return nil }
            return ConditionEvaluator.changedStatus(status, before: Int(before), output: machine.metrics.programOutput ?? "")
        case .uid(let user) where kind.isProcess, .gid(let user) where kind.isProcess:
            guard let pid = machine.pid, let identity = inspector.identity(of: pid) else { return nil }
            if case .uid = condition {
                return ConditionEvaluator.identity("uid", kind: .uid, current: identity.uid, expected: userID(user), service: name)
            }
            return ConditionEvaluator.identity("gid", kind: .gid, current: identity.gid, expected: groupID(user), service: name)
        case .euid(let user):
            guard let pid = machine.pid, let identity = inspector.identity(of: pid) else { return nil }
            return ConditionEvaluator.identity("euid", kind: .uid, current: identity.euid, expected: userID(user), service: name)
        case .changedPID, .nonexistence:
            // Decided when the process or path is looked for (`check`), before the rules run.
            return nil
        case .changedPPID:
            guard let pid = machine.pid, let process = inspector.process(pid) else { return nil }
            guard case .counter(let before)? = exchange(.counter(Double(process.parentPID)), rule: index, of: name)?.value else { return nil }
            return ConditionEvaluator.changedParent(process.parentPID, before: pid_t(before))
        case .timestamp, .size, .permission, .uid, .gid:
            var path = kind.statPath
            if case .filesystem(let target) = kind { path = inspector.filesystem(target)?.mountPoint }
            guard let path, let facts = inspector.file(path) else { return nil }
            return ConditionEvaluator.file(
                condition, path: path, facts: facts, now: WallClock.now(), userID: inspector.userID, groupID: inspector.groupID)
        case .changedTimestamp:
            guard let path = kind.statPath, let facts = inspector.file(path) else { return nil }
            let stamp = max(facts.modified, facts.statusChanged)
            let before = exchange(.counter(stamp), rule: index, of: name)
            guard case .counter(let previous)? = before?.value else { return nil }
            return ConditionEvaluator.changedTimestamp(path: path, facts: facts, before: previous)
        case .changedSize:
            guard case .file(let path) = kind, let facts = inspector.file(path) else { return nil }
            guard case .counter(let before)? = exchange(.counter(Double(facts.size)), rule: index, of: name)?.value else { return nil }
            return ConditionEvaluator.changedSize(path: path, size: facts.size, before: Int64(before))
        case .checksum(let expected, let hash):
            guard case .file(let path) = kind, let digest = inspector.checksum(path, ConditionEvaluator.hashKind(named: hash, expected: expected))
            else { return nil }
            // Without `expect`, the digest warden first saw is the one the file must keep, as in monit.
            if let expected { return ConditionEvaluator.checksum(digest, expected: expected) }
            guard case .text(let first)? = machine.previous[index]?.value else {
                services[name]?.previous[index] = .init(value: .text(digest), at: clock.now)
                return ConditionEvaluator.checksum(digest, expected: digest)
            }
            return ConditionEvaluator.checksum(digest, expected: first)
        case .changedChecksum:
            guard case .file(let path) = kind, let digest = inspector.checksum(path, .md5) else { return nil }
            guard case .text(let before)? = exchange(.text(digest), rule: index, of: name)?.value else { return nil }
            return ConditionEvaluator.changedChecksum(digest, before: before)
        case .content(let op, let pattern):
            guard case .file(let path) = kind else { return nil }
            let limit = configuration.limits.fileContentBuffer
            var position: FilePosition?
            if case .position(let last)? = machine.previous[index]?.value { position = last }
            guard let appended = inspector.appendedLines(path, after: position, lineLimit: limit) else { return nil }
            services[name]?.previous[index] = .init(value: .position(appended.position), at: clock.now)
            // The first cycle only finds the end of the file: what was there before warden is not news.
            guard position != nil else { return nil }
            return ConditionEvaluator.content(op, pattern, lines: appended.lines, ignored: machine.config.ignoredContent, limit: limit)
        case .filesystemFlags:
            guard case .filesystem(let target) = kind, let facts = inspector.filesystem(target) else { return nil }
            guard case .text(let before)? = exchange(.text(facts.flags), rule: index, of: name)?.value else { return nil }
            return ConditionEvaluator.filesystemFlags(now: facts.flags, before: before)
        case .existence:
            let found: Bool
            var pid: pid_t?
            switch kind {
            case .process:
                // Looked for again: a process that is not running is not forgotten by the machine here.
                pid = locate(machine)?.pid
                found = pid != nil
            case .file(let path), .directory(let path), .fifo(let path): found = inspector.file(path) != nil
            case .filesystem(let target): found = inspector.filesystem(target) != nil
            case .program, .host, .system, .network: return nil  // refused by `warden -t` (Condition.applies)
            }
            return ConditionEvaluator.existence(kind, found: found, pid: pid)
        case .ping(let test):
            guard case .host(let address) = kind else { return nil }
            let result = await prober.ping(
                PingRequest(
                    host: address, count: test.count ?? 3, timeout: .seconds(test.timeout ?? configuration.limits.networkTimeout),
                    size: test.size ?? 64, sourceAddress: test.sourceAddress, family: test.family))
            return ConditionEvaluator.ping(result, responseTime: test.responseTime)
        case .link(let up):
            guard case (let interface, let sample)? = network(kind) else { return nil }
            let statistics = sample.map { linkStatistics($0, rule: index, of: name) }
            return ConditionEvaluator.link(up: up, sample: sample, statistics: statistics, interface: interface)
        case .changedLink:
            // A link that is down or gone has no capacity: as in monit, its other tests wait for it.
            guard case (_, let sample?)? = network(kind), sample.isUp else { return nil }
            let before = exchange(.interface(sample), rule: index, of: name)
            guard case .interface(let previous)? = before?.value else { return nil }
            return ConditionEvaluator.changedCapacity(now: sample, before: previous)
        case .saturation(let op, let percent):
            guard case (_, let sample?)? = network(kind), sample.isUp else { return nil }
            return ConditionEvaluator.saturation(op, percent, statistics: linkStatistics(sample, rule: index, of: name), fullDuplex: sample.fullDuplex)
        case .transferred(let total):
            guard case (_, let sample?)? = network(kind), sample.isUp else { return nil }
            return ConditionEvaluator.transferred(total, statistics: linkStatistics(sample, rule: index, of: name))
        }
    }

    /// The interface a `check network` reads, named or found by the address it holds, and what it
    /// reads now (nil: no such interface).
    private func network(_ kind: WardenConfig.Service.Kind) -> (interface: String, sample: NetworkSample?)? {
        guard case .network(let target) = kind else { return nil }
        switch target {
        case .interface(let interface):
            return (interface, inspector.network(interface))
        case .address(let address):
            guard let interface = inspector.interface(holding: address) else { return (address, nil) }
            return (interface, inspector.network(interface))
        }
    }

    /// A network rule's history of its interface, this cycle's sample recorded in it.
    private func linkStatistics(_ sample: NetworkSample, rule index: Int, of name: String) -> LinkStatistics {
        let before = services[name]?.previous[index]
        var statistics = LinkStatistics()
        var elapsed = 0.0
        if let before, case .link(let kept) = before.value {
            statistics = kept
            elapsed = Self.seconds(before.at.duration(to: clock.now))
        }
        statistics.record(sample, at: (statistics.latestTime ?? 0) + elapsed)
        services[name]?.previous[index] = .init(value: .link(statistics), at: clock.now)
        return statistics
    }

    /// `check process|system|filesystem` resource rules: each metric from where it is measured.
    private func resourceOutcome(_ metric: ResourceMetric, _ op: ComparisonOperator, _ quantity: Quantity, rule index: Int, of name: String) -> Outcome? {
        guard let machine = services[name] else { return nil }
        let kind = machine.config.kind
        switch metric {
        case .cpu, .cpuUser, .cpuSystem, .cpuWait, .cpuNice, .cpuHardIRQ, .cpuSoftIRQ, .cpuSteal, .cpuGuest:
            guard kind == .system else {
                return ConditionEvaluator.resource(metric, op, quantity, metrics: machine.metrics, system: inspector.system())
            }
            guard let ticks = inspector.cpuTicks() else { return nil }
            guard case .cpu(let before)? = exchange(.cpu(ticks), rule: index, of: name)?.value else { return nil }
            return ConditionEvaluator.systemCPU(metric, op, quantity, now: ticks, before: before)
        case .totalCPU, .memory, .totalMemory, .swap, .threads, .children, .loadAverage1, .loadAverage5, .loadAverage15,
            .loadAveragePerCore1, .loadAveragePerCore5, .loadAveragePerCore15:
            return ConditionEvaluator.resource(metric, op, quantity, metrics: machine.metrics, system: inspector.system())
        case .fileDescriptors, .totalFileDescriptors:
            if kind == .system {
                return inspector.systemDescriptors().flatMap { ConditionEvaluator.descriptors(op, quantity, usage: $0, total: false) }
            }
            guard let pid = machine.pid, var usage = inspector.descriptors(of: pid) else { return nil }
            if metric == .totalFileDescriptors {
                for child in ProcessTable.descendants(of: pid, in: inspector.allProcesses()) {
                    usage.open += inspector.descriptors(of: child.pid)?.open ?? 0
                }
            }
            return ConditionEvaluator.descriptors(op, quantity, usage: usage, total: metric == .totalFileDescriptors)
        case .readBytes, .writeBytes, .readOperations, .writeOperations, .diskReadBytes, .diskWriteBytes, .serviceTime:
            if case .filesystem(let target) = kind {
                guard let io = inspector.filesystem(target)?.io, let before = exchange(.disk(io), rule: index, of: name),
                    case .disk(let counters) = before.value
                else { return nil }
                if metric == .serviceTime { return ConditionEvaluator.serviceTime(op, quantity, now: io, before: counters) }
                return ConditionEvaluator.diskRate(metric, op, quantity, now: io, before: counters, seconds: before.seconds)
            }
            guard let pid = machine.pid, let io = inspector.processIO(pid), let counter = ConditionEvaluator.counter(metric, quantity, of: io),
                let before = exchange(.counter(Double(counter)), rule: index, of: name), case .counter(let previous) = before.value
            else { return nil }
            return ConditionEvaluator.processRate(metric, op, quantity, now: counter, before: UInt64(previous), seconds: before.seconds)
        case .spaceUsage, .inodeUsage, .spaceFree, .inodeFree:
            guard case .filesystem(let target) = kind, let facts = inspector.filesystem(target) else { return nil }
            return ConditionEvaluator.filesystem(metric, op, quantity, facts: facts)
        case .upload, .download:
            guard case (_, let sample?)? = network(kind), sample.isUp else { return nil }
            return ConditionEvaluator.traffic(metric, op, quantity, statistics: linkStatistics(sample, rule: index, of: name))
        }
    }

    /// Keeps this cycle's figure for the rule and returns the last cycle's, with the seconds between them.
    private func exchange(_ value: Measured, rule index: Int, of name: String) -> (value: Measured, seconds: Double)? {
        let now = clock.now
        let before = services[name]?.previous[index]
        services[name]?.previous[index] = .init(value: value, at: now)
        guard let before else { return nil }
        return (before.value, Self.seconds(before.at.duration(to: now)))
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// A rule's user or group, by name or number as monit takes it.
    private func userID(_ user: String) -> UInt32? { UInt32(user) ?? inspector.userID(user) }
    private func groupID(_ group: String) -> UInt32? { UInt32(group) ?? inspector.groupID(group) }

    private func connectionOutcome(_ test: ConnectionTest, of name: String) async -> Outcome? {
        guard let machine = services[name] else { return nil }
        // `retry N`: up to N attempts in the cycle before the test counts as failed, as monit counts them.
        var (result, body, address) = await probe(test, of: machine.config)
        for _ in 1..<max(1, test.retry ?? 1) where !result.succeeded {
            (result, body, address) = await probe(test, of: machine.config)
        }
        services[name]?.metrics.responseTime = Self.seconds(result.responseTime)
        let inGrace = services[name]?.inConnectionGrace(now: clock.now) ?? false
        var outcome = ConditionEvaluator.connection(test.proto, result: result, body: body, address: address, inStartGrace: inGrace)
        if outcome?.failed == false, let limit = test.responseTime {
            outcome = ConditionEvaluator.responseTime(result, limit, kind: .connection, at: address)
        }
        if outcome?.failed == false {
            services[name]?.connectionPassed()
        } else if outcome == nil {
            logger.debug("'\(name)' connection test ignored while the process is starting: \(result.message)")
        }
        return outcome
    }

    /// One attempt of a connection test: what the probe saw, the body of an HTTP answer, and the
    /// endpoint as monit names it in its messages.
    private func probe(_ test: ConnectionTest, of service: WardenConfig.Service) async -> (ProbeResult, String, String) {
        let timeout = Duration.seconds(test.timeout ?? configuration.limits.networkTimeout)
        switch test.target {
        case .url(let url):
            let https = url.scheme == "https"
            let address = ConditionEvaluator.portDescription(host: url.host, port: url.port, request: url.path, udp: false, family: nil, tls: https)
            let tls: TLSConfiguration?
            do {
                tls = https ? try test.ssl.merged(over: configuration.ssl).clientTLSConfiguration() : nil
            } catch {
                return (Self.unusableTLS(error), "", address)
            }
            let (result, body) = await prober.http(
                HTTPProbeRequest(
                    host: url.host, port: url.port, path: url.path, hostHeader: url.port == 80 ? url.host : "\(url.host):\(url.port)",
                    basicAuthorization: Self.basic(url.user, url.password), timeout: timeout,
                    bodyLimit: configuration.limits.httpContentBuffer, tls: https,
                    certificateMinimumDays: test.certificateMinimumDays, certificateChecksum: test.certificateChecksum,
                    bodyDigest: Self.digestKind(test.proto), tlsConfiguration: tls))
            return (result, body, address)
        case .port(let host, let port, let transport):
            // A host's port test names the host's address, as monit's messages do.
            let named = hostAddress(for: service, host: host)
            let udp = transport == .udp || test.proto == .named("ntp3")
            let tlsOn: Bool
            if case .named(let name) = test.proto { tlsOn = transport == .tcpSSL || ProtocolCheckRequest.impliesTLS(name) } else { tlsOn = transport == .tcpSSL }
            let address = ConditionEvaluator.portDescription(
                host: named, port: port, request: ConditionEvaluator.request(of: test), udp: udp, family: test.family, tls: tlsOn)
            func failure(_ reason: String) -> (ProbeResult, String, String) {
                (ProbeResult(succeeded: false, message: "cannot connect to [\(named)]:\(port) -- \(reason)", responseTime: .zero), "", address)
            }
            var target = named
            var family = test.family
            if family != nil || test.sourceAddress != nil {
                guard let resolved = ResolvedAddress(named, family: family) else {
                    return failure(family.map { "no IPv\($0) address for \(named)" } ?? "cannot resolve \(named)")
                }
                target = resolved.numeric
                family = resolved.isIPv6 ? 6 : 4
            }
            var source: String?
            if let sourceAddress = test.sourceAddress {
                guard let local = ResolvedAddress(sourceAddress, family: family) else {
                    return failure("no IPv\(family ?? 4) address for the outgoing address \(sourceAddress)")
                }
                source = local.numeric
            }
            let tls: TLSConfiguration?
            do {
                tls = tlsOn ? try test.ssl.merged(over: configuration.ssl).clientTLSConfiguration() : nil
            } catch {
                return (Self.unusableTLS(error), "", address)
            }
            switch test.proto {
            case .http(let check):
                let (result, body) = await prober.http(
                    HTTPProbeRequest(
                        host: target, port: port, path: check.request, hostHeader: check.hostHeader ?? host,
                        basicAuthorization: Self.basic(check.user, check.password), timeout: timeout,
                        bodyLimit: configuration.limits.httpContentBuffer, tls: tlsOn,
                        certificateMinimumDays: test.certificateMinimumDays, certificateChecksum: test.certificateChecksum,
                        bodyDigest: Self.digestKind(test.proto), tlsConfiguration: tls, source: source))
                return (result, body, address)
            case .generic where !tlsOn && source == nil && !udp:
                return (await prober.connect(host: target, port: port, timeout: timeout), "", address)
            case .named, .generic:
                // TLS or an outgoing address need the protocol path's own connection; with no protocol
                // it is monit's default test: the connection (and TLS handshake) alone.
                let name: String
                if case .named(let named) = test.proto { name = named } else { name = "default" }
                let endpoint: ProtocolCheckRequest.Target = udp ? .udp(host: target, port: port) : .tcp(host: target, port: port)
                let result = await prober.check(
                    ProtocolCheckRequest(
                        protocolName: name, target: endpoint, tls: tlsOn, timeout: timeout, dialogue: test.dialogue,
                        certificateMinimumDays: test.certificateMinimumDays, certificateChecksum: test.certificateChecksum,
                        options: test.protocolOptions, tlsConfiguration: tls, source: source))
                return (result, "", address)
            }
        case .unixSocket(let path):
            let result: ProbeResult
            if case .named(let name) = test.proto {
                result = await prober.check(
                    ProtocolCheckRequest(
                        protocolName: name, target: .unixSocket(path), timeout: timeout, dialogue: test.dialogue,
                        options: test.protocolOptions))
            } else {
                result = await prober.connect(unixSocket: path, timeout: timeout)
            }
            return (result, "", path)
        }
    }

    /// A TLS test whose own files (client certificate, CAs) cannot be read fails with the reason.
    private static func unusableTLS(_ error: any Error) -> ProbeResult {
        ProbeResult(succeeded: false, message: "SSL: cannot use the ssl options -- \(error)", responseTime: .zero)
    }

    /// An HTTP test's Basic credentials, encoded.
    private static func basic(_ user: String?, _ password: String?) -> String? {
        user.map { Base64.encode(Array("\($0):\(password ?? "")".utf8)) }
    }

    /// The digest an HTTP test's `checksum` compares: SHA-1 for 40 hex digits, MD5 otherwise, as monit.
    private static func digestKind(_ proto: ConnectionProtocol) -> HashKind? {
        guard case .http(let check) = proto, let expected = check.checksum else { return nil }
        return ConditionEvaluator.hashKind(named: nil, expected: expected)
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

extension WardenConfig.Service {
    /// `if exist` without `if does not exist`: the service is meant to be absent, so its absence is
    /// neither reported nor acted on (no implicit `does not exist`, no start), as in monit.
    var expectsAbsence: Bool { rules.contains { $0.condition == .existence } && !rules.contains { $0.condition == .nonexistence } }
}

extension WardenConfig.Service.Kind {
    var isProcess: Bool {
        if case .process = self { return true }
        return false
    }

    /// The path a stat(2) test (timestamp, size, permission, uid, gid) reads; a filesystem's is its
    /// mount point, which only a measurement finds.
    var statPath: String? {
        switch self {
        case .file(let path), .directory(let path), .fifo(let path): path
        case .filesystem, .process, .program, .host, .system, .network: nil
        }
    }
}
