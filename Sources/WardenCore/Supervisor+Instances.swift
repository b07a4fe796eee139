import Logging
import WardenConfig

/// What `warden deploy` reports as it goes, and at its end.
public enum DeployProgress: Sendable, Hashable, Codable {
    case starting(instances: [String])
    case ready(count: Int, of: Int)
    case switched(to: [String])
    case draining([String])
    case drained(requests: Int)
    case done(seconds: Double)
    case failed(String)

    public var line: String {
        switch self {
        case .starting(let instances): "starting \(instances.joined(separator: ", "))"
        case .ready(let count, let total): "ready \(count)/\(total)"
        case .switched(let instances): "switched to \(instances.joined(separator: ", "))"
        case .draining(let instances): "draining \(instances.joined(separator: ", "))"
        case .drained(let requests): "drained: \(requests) request\(requests == 1 ? "" : "s") finished on the old instances"
        case .done(let seconds): "done in \(MonitFormat.fixed(seconds, 1)) s"
        case .failed(let reason): "failed: \(reason)"
        }
    }
}

/// A deploy's progress as `warden deploy` follows it (`GET /_deploy?service=NAME`).
public struct DeployRecord: Sendable, Codable, Hashable {
    public var lines: [String] = []
    public var finished = false
    public var succeeded = false
}

extension ServiceSupervisor {
    public func hasService(_ name: String) -> Bool { services[name] != nil || instancePorts[name] != nil }

    /// Starts a deploy and returns at once; its progress is `deployRecord(of:)`.
    public func beginDeploy(_ group: String) throws {
        guard instancePorts[group] != nil else { throw SupervisorError("there is no service with instances named \"\(group)\"") }
        guard !deploying.contains(group) else { throw SupervisorError("a deploy of '\(group)' is already under way") }
        deployRecords[group] = DeployRecord()
        Task { try? await self.deploy(group) }
    }

    public func deployRecord(of group: String) -> DeployRecord? { deployRecords[group] }

    private func record(_ group: String, _ step: DeployProgress) {
        deployRecords[group, default: DeployRecord()].lines.append(step.line)
        switch step {
        case .done: deployRecords[group]?.finished = true; deployRecords[group]?.succeeded = true
        case .failed: deployRecords[group]?.finished = true
        case .starting, .ready, .switched, .draining, .drained: break
        }
    }

    /// The services of the configuration as they are supervised: a service with `instances` becomes
    /// one service per instance of its serving generation, and what depended on it depends on them.
    func expandInstances(_ services: [WardenConfig.Service]) -> [WardenConfig.Service] {
        var expanded: [WardenConfig.Service] = []
        var instanceNames: [String: [String]] = [:]
        for service in services {
            guard let settings = service.instances else {
                expanded.append(service)
                continue
            }
            let range = Array(settings.ports)
            var ports = instancePorts[service.name] ?? []
            // A reload may have changed the count or the range: keep what still fits, fill from the range.
            ports = Array(ports.filter(range.contains).prefix(settings.count))
            for port in range where ports.count < settings.count && !ports.contains(port) { ports.append(port) }
            instancePorts[service.name] = ports
            let instances = ports.enumerated().map { service.instance($0.offset, port: $0.element) }
            instanceNames[service.name] = instances.map(\.name)
            expanded += instances
        }
        for name in instancePorts.keys where !services.contains(where: { $0.name == name && $0.instances != nil }) {
            instancePorts[name] = nil
        }
        guard !instanceNames.isEmpty else { return expanded }
        return expanded.map { service in
            var service = service
            service.dependencies = service.dependencies.flatMap { instanceNames[$0] ?? [$0] }
            return service
        }
    }

    /// The ready instances of the serving generation of each service with `instances`: where the
    /// proxy sends their requests.
    public func trafficTargets() -> [String: [InstanceIdentity]] {
        Dictionary(uniqueKeysWithValues: instancePorts.keys.map { ($0, readyInstances(of: $0)) })
    }

    func readyInstances(of group: String) -> [InstanceIdentity] {
        instanceNames(of: group).compactMap { services[$0].flatMap { $0.isReady ? $0.config.instanceOf : nil } }
    }

    /// An instance of the serving generation became ready, or stopped being: the proxy hears it now
    /// rather than at the feed's next report.
    func instanceReadinessChanged(_ name: String) {
        guard let group = services[name]?.config.instanceOf?.group, instancePorts[group] != nil else { return }
        traffic?.route(group, to: readyInstances(of: group))
    }

    /// The services that are down until a delayed automatic start, and the services with instances none
    /// of which is ready, with the seconds until the next start (rounded up): the proxy does not hold a
    /// request for longer than its hold.
    public func delayedStarts() -> [String: Int] {
        var seconds: [String: Int] = [:]
        let now = clock.now
        for (name, machine) in services where !machine.acceptsTraffic {
            guard let wait = machine.delayedStart(now: now) else { continue }
            let rounded = Int((wait / .seconds(1)).rounded(.up))
            seconds[name] = rounded
            if let group = machine.config.instanceOf?.group, readyInstances(of: group).isEmpty {
                seconds[group] = min(seconds[group] ?? rounded, rounded)
            }
        }
        return seconds
    }

    func instanceNames(of group: String) -> [String] {
        (instancePorts[group] ?? []).map { WardenConfig.Service.instanceName(group, port: $0) }
    }

    /// A user's action on a service with `instances`: on each instance. A restart goes one instance at a
    /// time, each after the one before is ready again, so the others serve throughout; with a single
    /// instance it is a deploy (a new one beside it, then the switch), so there is no pause either.
    func performOnInstances(_ action: UserAction, of group: String) async throws {
        guard action == .restart else {
            for name in instanceNames(of: group) { try await perform(action, on: name) }
            return
        }
        if instanceNames(of: group).count == 1 { return try await deploy(group) }
        let timeout = configuration.services.first { $0.name == group }?.deployTimeout ?? .seconds(60)
        for name in instanceNames(of: group) {
            try await perform(.restart, on: name)
            guard await waitUntilReady([name], timeout: timeout, progress: { _ in }) == nil else {
                throw SupervisorError("'\(name)' is not ready after its restart; the instances after it were left as they were")
            }
        }
    }

    /// `warden deploy NAME`: a new generation of the service's instances on the ports the serving one
    /// does not use, with the start program as the configuration says now; once every one is ready,
    /// the proxy's traffic switches to them in one step, and the old generation drains and stops.
    /// If the new generation is not ready in time, it is stopped and the old one never lost its traffic.
    public func deploy(_ group: String, progress report: @escaping @Sendable (DeployProgress) -> Void = { _ in }) async throws {
        let progress: (DeployProgress) -> Void = { step in
            self.record(group, step)
            report(step)
        }
        guard let base = configuration.services.first(where: { $0.name == group }), let settings = base.instances,
            let oldPorts = instancePorts[group]
        else {
            progress(.failed("there is no service with instances named \"\(group)\""))
            throw SupervisorError("there is no service with instances named \"\(group)\"")
        }
        guard deploying.insert(group).inserted else { throw SupervisorError("a deploy of '\(group)' is already under way") }
        defer { deploying.remove(group) }
        let began = clock.now
        let busyPorts = Set(services.values.compactMap { $0.config.instanceOf?.group == group ? $0.config.instanceOf?.port : nil })
        let newPorts = Array(settings.ports.filter { !busyPorts.contains($0) }.prefix(settings.count))
        guard newPorts.count == settings.count else {
            progress(.failed("no \(settings.count) free ports"))
            throw SupervisorError("'\(group)' has no \(settings.count) free ports in \(settings.ports.lowerBound)-\(settings.ports.upperBound)")
        }
        let generation = newPorts.enumerated().map { base.instance($0.offset, port: $0.element) }
        let names = generation.map(\.name)
        for service in generation {
            services[service.name] = Machine(config: service)
            services[service.name]?.monitor = .initializing
        }
        order += names
        emit(group, .action, .changed, "deploy started: \(names.joined(separator: ", "))", action: "deploy")
        progress(.starting(instances: names))
        await withTaskGroup(of: Void.self) { starts in
            for name in names {
                starts.addTask { await self.withBusy(name) { await self.startService(name, automatic: false) } }
            }
        }
        if let problem = await waitUntilReady(names, timeout: base.deployTimeout, progress: progress) {
            _ = await retire(names)
            let message = "deploy failed: \(problem); '\(group)' still runs on \(oldPorts.map(String.init).joined(separator: ", "))"
            logger.error("'\(group)' \(message)")
            emit(group, .action, .failed, message, action: "alert")
            progress(.failed(problem))
            throw SupervisorError(message)
        }
        instancePorts[group] = newPorts
        saveState()
        traffic?.route(group, to: generation.compactMap(\.instanceOf))
        emit(group, .action, .changed, "deploy switched traffic to \(names.joined(separator: ", "))", action: "deploy")
        progress(.switched(to: names))
        let oldNames = oldPorts.map { WardenConfig.Service.instanceName(group, port: $0) }
        progress(.draining(oldNames))
        let drained = await retire(oldNames)
        emit(group, .action, .changed, "deploy drained and stopped \(oldNames.joined(separator: ", ")) (\(drained) requests finished)", action: "deploy")
        progress(.drained(requests: drained))
        let seconds = began.duration(to: clock.now) / .milliseconds(1) / 1000
        emit(group, .action, .succeeded, "deploy done in \(MonitFormat.fixed(seconds, 1)) s: \(names.joined(separator: ", "))", action: "deploy")
        progress(.done(seconds: seconds))
    }

    /// Waits until every named instance is ready; nil then, else why not (which instance, which check).
    func waitUntilReady(_ names: [String], timeout: Duration, progress: (DeployProgress) -> Void) async -> String? {
        let deadline = clock.now.advanced(by: timeout)
        var reported = -1
        while true {
            let ready = names.count { services[$0]?.isReady == true }
            if ready != reported {
                reported = ready
                progress(.ready(count: ready, of: names.count))
            }
            if ready == names.count { return nil }
            for name in names {
                guard let machine = services[name], !machine.busy, machine.pid == nil else { continue }
                let why = machine.failures.values.sorted().first ?? "it is not running"
                return "'\(name)' did not start: \(why)"
            }
            guard clock.now < deadline else {
                let late = names.filter { services[$0]?.isReady != true }
                let why = late.compactMap { name in services[name].map { "'\(name)' \($0.failures.values.sorted().first ?? "has not passed its connection test")" } }
                return "not ready within \(timeout.components.seconds) s: \(why.joined(separator: "; "))"
            }
            do {
                try await clock.sleep(for: .milliseconds(50))
            } catch {
                return "warden is stopping"
            }
        }
    }

    /// Drains and stops instances, then forgets them; returns the requests their drains saw through.
    /// Unmonitored first: a check that was waiting for the stop would otherwise find the process gone
    /// and start it again.
    private func retire(_ names: [String]) async -> Int {
        for name in names { services[name]?.monitor = .notMonitored }
        await withTaskGroup(of: Void.self) { stops in
            for name in names {
                stops.addTask { await self.withBusy(name) { await self.stopService(name) } }
            }
        }
        var drained = 0
        for name in names {
            services[name] = nil
            order.removeAll { $0 == name }
            drained += drainedRequests.removeValue(forKey: name) ?? 0
        }
        stateDirty = true
        return drained
    }
}
