import WardenPlatform
/// Checks that need the whole configuration: names, dependencies, and what a check needs to act.
enum Validator {
    static func validate(_ configuration: Configuration, builders: [ServiceBuilder]) -> [Diagnostic] {
        var diagnostics: [Diagnostic] = []
        var firstByName: [String: ServiceBuilder] = [:]
        for builder in builders {
            let service = builder.service
            if let first = firstByName[service.name] {
                diagnostics.append(
                    .error(
                        .duplicateService, "duplicate service name '\(service.name)'", at: service.location,
                        length: builder.checkToken.length,
                        notes: [.note(.firstDefined, "first defined here", at: first.service.location)]))
            } else {
                firstByName[service.name] = builder
            }
            diagnostics += rules(of: service)
            if case .process = service.kind, service.start == nil, service.mode == .active {
                diagnostics.append(
                    .warning(
                        .missingStartProgram,
                        "process '\(service.name)' has no start program; warden can report it down but cannot start it",
                        at: service.location, length: builder.checkToken.length,
                        hint: "add 'start program = \"/etc/init.d/\(service.name) start\"'"))
            }
        }
        let names = Set(firstByName.keys)
        for builder in builders {
            for dependency in builder.service.dependencies where !names.contains(dependency) {
                let location = builder.dependencyLocations[dependency] ?? builder.service.location
                let near = names.sorted().map { (name: $0, distance: editDistance(dependency.lowercased(), $0.lowercased())) }
                    .filter { $0.distance <= Swift.max(1, $0.name.count / 3) }.min { $0.distance < $1.distance }
                diagnostics.append(
                    .error(
                        .unknownDependency, "'\(builder.service.name)' depends on '\(dependency)', which is not defined",
                        at: location, length: dependency.utf8.count, hint: near.map { "did you mean '\($0.name)'?" }))
            }
        }
        diagnostics += dependencyCycles(firstByName)
        diagnostics += instances(configuration, builders: builders)
        for site in configuration.sites {
            for service in site.services where !names.contains(service) {
                diagnostics.append(
                    .error(.unknownDependency, "site '\(site.name)' passes to service '\(service)', which is not defined", at: site.location))
            }
        }
        diagnostics += automaticTLS(configuration)
        if !configuration.sites.isEmpty, configuration.proxy == nil {
            diagnostics.append(
                .warning(.invalidValue, "'check site' without 'set proxy': no proxy will listen", at: configuration.sites[0].location,
                    hint: "add 'set proxy listen 127.0.0.1 port 8000'"))
        }
        return diagnostics
    }

    /// Reports each cycle once, at the service where it is first entered.
    private static func dependencyCycles(_ services: [String: ServiceBuilder]) -> [Diagnostic] {
        enum Mark { case visiting, done }
        var marks: [String: Mark] = [:]
        var diagnostics: [Diagnostic] = []
        var stack: [String] = []

        func visit(_ name: String) {
            guard let builder = services[name] else { return }
            marks[name] = .visiting
            stack.append(name)
            for dependency in builder.service.dependencies {
                switch marks[dependency] {
                case .visiting:
                    let cycle = stack[stack.lastIndex(of: dependency)!...] + [dependency]
                    diagnostics.append(
                        .error(
                            .dependencyCycle, "dependency cycle: \(cycle.joined(separator: " -> "))",
                            at: builder.dependencyLocations[dependency] ?? builder.service.location,
                            length: dependency.utf8.count))
                case .done:
                    break
                case nil:
                    visit(dependency)
                }
            }
            stack.removeLast()
            marks[name] = .done
        }

        for name in services.keys.sorted() where marks[name] == nil {
            visit(name)
        }
        return diagnostics
    }
}

// MARK: - Rules warden runs, and rules it refuses

extension Validator {
    /// Every rule is either run or refused here: a rule accepted and then ignored would let a user
    /// believe they are protected when they are not.
    static func rules(of service: Service) -> [Diagnostic] {
        service.rules.compactMap { rule in
            let name = rule.condition.testName
            if let reason = unsupported(rule.condition) {
                return .error(
                    .unsupportedTest, "'\(name)' is not supported on this system: \(reason)", at: rule.location, length: 2)
            }
            if case .resource(let metric, _, let quantity) = rule.condition, !metric.accepts(quantity) {
                return .error(
                    .unsupportedTest, "'\(name)' takes no limit of this kind (\(quantity.kindName))", at: rule.location, length: 2)
            }
            if !rule.condition.applies(to: service.kind) {
                return .error(
                    .unsupportedTest,
                    "'\(name)' does not apply to 'check \(service.kind.checkKeyword)'; monit rejects it too",
                    at: rule.location, length: 2)
            }
            return nil
        }
    }

    /// Why warden refuses a test it parses (nil: it runs it). The one place where a test is declared
    /// not run; each case is decided, none falls through a `default`.
    public static func unsupported(_ condition: Condition) -> String? {
        switch condition {
        case .connection(let test):
            guard case .named(let name) = test.proto else { return nil }
            guard SpokenProtocols.names.contains(name) else {
                return "warden does not speak protocol '\(name)' yet and would test only that the port accepts a connection"
            }
            let used = SpokenProtocols.options[name] ?? []
            if let option = test.protocolOptions.keys.sorted().first(where: { !used.contains($0) }) {
                return "warden does not use option '\(option)' of protocol '\(name)' yet and would test without it"
            }
            return nil
        case .resource(let metric, _, _):
            return unsupported(metric)
        case .nonexistence, .existence, .timestamp, .changedTimestamp, .size, .changedSize, .changedPID, .changedPPID, .uptime,
            .programStatus, .changedProgramStatus, .checksum, .changedChecksum, .permission, .uid, .euid, .gid, .content,
            .link, .changedLink, .saturation, .transferred, .filesystemFlags, .ping:
            return nil
        }
    }

    public static func unsupported(_ metric: ResourceMetric) -> String? {
        switch metric {
        case .cpu, .totalCPU, .cpuUser, .cpuSystem, .cpuWait, .cpuNice, .cpuHardIRQ, .cpuSoftIRQ, .cpuSteal, .cpuGuest, .memory,
            .totalMemory, .swap, .threads, .children, .loadAverage1, .loadAverage5, .loadAverage15, .loadAveragePerCore1,
            .loadAveragePerCore5, .loadAveragePerCore15, .fileDescriptors, .totalFileDescriptors, .readBytes, .writeBytes,
            .readOperations, .writeOperations, .diskReadBytes, .diskWriteBytes, .spaceUsage, .inodeUsage, .spaceFree, .inodeFree,
            .serviceTime, .upload, .download:
            return nil
        }
    }
}

extension Condition {
    /// The test as a control file names it, for messages.
    public var testName: String {
        switch self {
        case .connection(let test):
            if case .named(let name) = test.proto { return "protocol \(name)" }
            if case .url = test.target { return "failed url" }
            return "failed port"
        case .resource(let metric, _, _): return metric.testName
        case .nonexistence: return "does not exist"
        case .existence: return "exist"
        case .timestamp: return "timestamp"
        case .changedTimestamp: return "changed timestamp"
        case .size: return "size"
        case .changedSize: return "changed size"
        case .changedPID: return "changed pid"
        case .changedPPID: return "changed ppid"
        case .uptime: return "uptime"
        case .programStatus: return "status"
        case .changedProgramStatus: return "changed status"
        case .checksum: return "failed checksum"
        case .changedChecksum: return "changed checksum"
        case .permission: return "failed permission"
        case .uid: return "failed uid"
        case .euid: return "failed euid"
        case .gid: return "failed gid"
        case .content: return "content"
        case .ping: return "failed ping"
        case .link(let up): return up ? "link up" : "link down"
        case .changedLink: return "changed link"
        case .transferred(let total): return total.upload ? "total upload" : "total download"
        case .saturation: return "saturation"
        case .filesystemFlags: return "changed fsflags"
        }
    }

    /// Whether monit's grammar allows the test in this kind of service (warden's parser is laxer).
    public func applies(to kind: Service.Kind) -> Bool {
        let check = kind.checkKeyword
        switch self {
        case .resource(let metric, _, _): return metric.applies(to: kind)
        case .connection: return ["process", "host"].contains(check)
        case .ping: return check == "host"
        case .nonexistence: return ["process", "file", "directory", "fifo", "filesystem", "host"].contains(check)
        case .existence: return ["process", "file", "directory", "fifo", "filesystem"].contains(check)
        case .timestamp, .changedTimestamp: return ["file", "directory", "fifo"].contains(check)
        case .size, .changedSize, .checksum, .changedChecksum, .content: return check == "file"
        case .changedPID, .changedPPID, .euid: return check == "process"
        case .uptime: return ["process", "system"].contains(check)
        case .programStatus, .changedProgramStatus: return check == "program"
        case .permission: return ["file", "directory", "fifo", "filesystem"].contains(check)
        case .uid, .gid: return ["process", "file", "directory", "fifo", "filesystem"].contains(check)
        case .filesystemFlags: return check == "filesystem"
        case .link, .changedLink, .saturation, .transferred: return check == "network"
        }
    }
}

extension Service.Kind {
    /// The word after `check` that declares this kind of service.
    public var checkKeyword: String {
        switch self {
        case .process: "process"
        case .program: "program"
        case .file: "file"
        case .fifo: "fifo"
        case .directory: "directory"
        case .filesystem: "filesystem"
        case .host: "host"
        case .system: "system"
        case .network: "network"
        }
    }
}

extension ResourceMetric {
    public var testName: String {
        switch self {
        case .cpu: "cpu"
        case .totalCPU: "total cpu"
        case .cpuUser: "cpu user"
        case .cpuSystem: "cpu system"
        case .cpuWait: "cpu wait"
        case .cpuNice: "cpu nice"
        case .cpuHardIRQ: "cpu hardirq"
        case .cpuSoftIRQ: "cpu softirq"
        case .cpuSteal: "cpu steal"
        case .cpuGuest: "cpu guest"
        case .memory: "memory"
        case .totalMemory: "total memory"
        case .swap: "swap"
        case .threads: "threads"
        case .children: "children"
        case .loadAverage1: "loadavg (1min)"
        case .loadAverage5: "loadavg (5min)"
        case .loadAverage15: "loadavg (15min)"
        case .loadAveragePerCore1: "loadavg per core (1min)"
        case .loadAveragePerCore5: "loadavg per core (5min)"
        case .loadAveragePerCore15: "loadavg per core (15min)"
        case .fileDescriptors: "filedescriptors"
        case .totalFileDescriptors: "total filedescriptors"
        case .readBytes: "read rate"
        case .writeBytes: "write rate"
        case .readOperations: "disk read operations"
        case .writeOperations: "disk write operations"
        case .diskReadBytes: "disk read"
        case .diskWriteBytes: "disk write"
        case .spaceUsage: "space usage"
        case .inodeUsage: "inode usage"
        case .spaceFree: "space free"
        case .inodeFree: "inode free"
        case .serviceTime: "service time"
        case .upload: "upload"
        case .download: "download"
        }
    }

    /// The service types whose grammar in monit has the metric.
    public func applies(to kind: Service.Kind) -> Bool {
        let check = kind.checkKeyword
        switch self {
        case .cpu, .memory, .loadAverage1, .loadAverage5, .loadAverage15, .loadAveragePerCore1, .loadAveragePerCore5,
            .loadAveragePerCore15, .fileDescriptors:
            return ["process", "system"].contains(check)
        case .totalCPU, .totalMemory, .threads, .children, .totalFileDescriptors, .diskReadBytes, .diskWriteBytes:
            return check == "process"
        case .readBytes, .writeBytes, .readOperations, .writeOperations:
            return ["process", "filesystem"].contains(check)
        case .cpuUser, .cpuSystem, .cpuWait, .cpuNice, .cpuHardIRQ, .cpuSoftIRQ, .cpuSteal, .cpuGuest, .swap:
            return check == "system"
        case .spaceUsage, .inodeUsage, .spaceFree, .inodeFree, .serviceTime:
            return check == "filesystem"
        case .upload, .download:
            return check == "network"
        }
    }
}

extension ResourceMetric {
    /// Whether a limit of this kind means something for the metric (a percentage of threads does not).
    public func accepts(_ quantity: Quantity) -> Bool {
        let kind: String
        switch quantity {
        case .percent: kind = "%"
        case .bytes: kind = "size"
        case .count: kind = "number"
        case .seconds: kind = "time"
        case .rate: kind = "rate"
        }
        switch self {
        case .cpu, .totalCPU, .cpuUser, .cpuSystem, .cpuWait, .cpuNice, .cpuHardIRQ, .cpuSoftIRQ, .cpuSteal, .cpuGuest:
            return kind == "%"
        case .memory, .totalMemory, .swap, .spaceUsage, .spaceFree:
            return ["%", "size"].contains(kind)
        case .threads, .children, .loadAverage1, .loadAverage5, .loadAverage15, .loadAveragePerCore1, .loadAveragePerCore5,
            .loadAveragePerCore15:
            return kind == "number"
        case .fileDescriptors, .totalFileDescriptors, .inodeUsage, .inodeFree:
            return ["%", "number"].contains(kind)
        case .serviceTime:
            return kind == "time"
        case .readBytes, .writeBytes, .diskReadBytes, .diskWriteBytes:
            return ["rate", "size", "number"].contains(kind)
        case .readOperations, .writeOperations:
            return ["rate", "number"].contains(kind)
        case .upload, .download:
            // Per second whether or not the unit says so (`upload > 500 kB` is `500 kB/s` to monit).
            return ["rate", "size"].contains(kind)
        }
    }
}

extension Quantity {
    var kindName: String {
        switch self {
        case .percent: "a percentage"
        case .bytes: "a size"
        case .count: "a plain number"
        case .seconds: "a time"
        case .rate: "a rate"
        }
    }

    /// A rate as a number per second, and whether it counts operations (or packets) rather than bytes.
    public var perSecond: (value: Double, operations: Bool)? {
        guard case .rate(let value, let unit) = self else { return nil }
        let base = String(unit.lowercased().prefix { $0 != "/" })
        if let size = Parser.sizeUnits[base] { return (value * size, false) }
        return (value, true)
    }
}
