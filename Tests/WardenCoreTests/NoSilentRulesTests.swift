import Testing

@testable import WardenConfig

/// No rule is accepted and then ignored: every test of the language is either run by warden (and then
/// named here with the test that proves it) or refused by `warden -t`.
@Suite("No silent rules")
struct NoSilentRulesTests {
    static let services: [String: String] = [
        "process": "check process app with pidfile /run/app.pid\n    start program = \"/bin/true\"",
        "program": "check program job with path /bin/true",
        "file": "check file log with path /var/log/app.log",
        "directory": "check directory spool with path /var/spool",
        "filesystem": "check filesystem data with path /data",
        "host": "check host db with address 127.0.0.1",
        "system": "check system box",
        "network": "check network eth with interface eth0",
    ]

    /// One control-file sample for each case of `Condition`, in a service where monit allows it.
    static let samples: [(service: String, rule: String)] = [
        ("process", "if failed port 8080 then restart"),
        ("process", "if failed port 3306 protocol mysql then restart"),
        ("process", "if cpu > 90% then alert"),
        ("process", "if does not exist then alert"),
        ("process", "if exist then alert"),
        ("file", "if timestamp > 5 minutes then alert"),
        ("file", "if changed timestamp then alert"),
        ("file", "if size > 10 MB then alert"),
        ("file", "if changed size then alert"),
        ("process", "if changed pid then alert"),
        ("process", "if changed ppid then alert"),
        ("process", "if uptime < 1 minute then alert"),
        ("program", "if status != 0 then alert"),
        ("program", "if changed status then alert"),
        ("file", "if failed checksum expect 8d777f385d3dfec8815d20f7496026dc then alert"),
        ("file", "if changed checksum then alert"),
        ("file", "if failed permission 644 then alert"),
        ("file", "if failed uid root then alert"),
        ("process", "if failed euid root then alert"),
        ("file", "if failed gid root then alert"),
        ("file", "if content = \"error\" then alert"),
        ("host", "if failed ping then alert"),
        ("network", "if link down then alert"),
        ("network", "if changed link then alert"),
        ("network", "if saturation > 90% then alert"),
        ("filesystem", "if changed fsflags then alert"),
        ("network", "if total downloaded > 1 GB in last 2 hours then alert"),
    ]

    static let caseCount = 26

    /// Which case a condition is, and its name. No `default`: a new case does not compile until it is
    /// decided here, and the test then fails until a sample of it is added above.
    static func identify(_ condition: Condition) -> (number: Int, name: String) {
        switch condition {
        case .connection(let test):
            if case .named(let name) = test.proto { return (0, "protocol \(name)") }
            return (0, "connection")
        case .resource: return (1, "resource")
        case .nonexistence: return (2, "nonexistence")
        case .existence: return (3, "existence")
        case .timestamp: return (4, "timestamp")
        case .changedTimestamp: return (5, "changedTimestamp")
        case .size: return (6, "size")
        case .changedSize: return (7, "changedSize")
        case .changedPID: return (8, "changedPID")
        case .changedPPID: return (9, "changedPPID")
        case .uptime: return (10, "uptime")
        case .programStatus: return (11, "programStatus")
        case .changedProgramStatus: return (12, "changedProgramStatus")
        case .checksum: return (13, "checksum")
        case .changedChecksum: return (14, "changedChecksum")
        case .permission: return (15, "permission")
        case .uid: return (16, "uid")
        case .euid: return (17, "euid")
        case .gid: return (18, "gid")
        case .content: return (19, "content")
        case .ping: return (20, "ping")
        case .link: return (21, "link")
        case .changedLink: return (22, "changedLink")
        case .saturation: return (23, "saturation")
        case .filesystemFlags: return (24, "filesystemFlags")
        case .transferred: return (25, "transferred")
        }
    }

    /// The tests warden runs, each with where it is proven (docs/config-language.md has the same table).
    static let proven: [String: String] = [
        "connection": "SupervisionTests (live)",
        "protocol mysql": "ProtocolProbeTests (live, against mariadb-server) and ProtocolTests (through warden)",
        "resource": "each metric below",
        "nonexistence": "SupervisionTests (live)",
        "timestamp": "ConditionEvaluatorTests",
        "changedTimestamp": "RuleTests.fileChangesFireAndRecover (live)",
        "size": "ConditionEvaluatorTests",
        "changedSize": "RuleTests.fileChangesFireAndRecover (live)",
        "changedPID": "ServiceStateMachineTests",
        "changedPPID": "RuleEvaluatorTests",
        "uptime": "ConditionEvaluatorTests",
        "programStatus": "ConditionEvaluatorTests",
        "changedProgramStatus": "RuleTests.programStatusChanges (live)",
        "checksum": "RuleTests.fileChangesFireAndRecover (live)",
        "changedChecksum": "RuleTests.fileChangesFireAndRecover (live)",
        "permission": "ConditionEvaluatorTests",
        "uid": "ConditionEvaluatorTests",
        "euid": "RuleTests.processResources (live)",
        "gid": "ConditionEvaluatorTests",
        "content": "RuleTests.logLinesAppendedAreMatched (live)",
        "filesystemFlags": "RuleTests.remountReadOnlyChangesFsflags (live)",
        "existence": "RuleTests.whatMustNotExist (live) and RuleSupervisorTests.existRules",
        "ping": "NetworkRuleTests.pingAHostThenLoseIt (live) and RuleSupervisorTests.aFailedPingSkipsThePortTests",
        "link": "NetworkRuleTests.linkDownOnAVeth (live)",
        "changedLink": "RuleEvaluatorTests.networkTests and RuleSupervisorTests.networkRules",
        "saturation": "RuleEvaluatorTests.networkTests and RuleSupervisorTests.networkRules",
        "transferred": "NetworkRuleTests.loopbackTraffic (live)",
    ]

    static let provenMetrics: [ResourceMetric: String] = [
        .cpu: "RuleTests.systemResources (live)", .totalCPU: "ConditionEvaluatorTests", .cpuUser: "RuleTests.systemResources (live)",
        .cpuSystem: "RuleEvaluatorTests", .cpuWait: "RuleEvaluatorTests", .cpuNice: "RuleEvaluatorTests",
        .cpuHardIRQ: "RuleEvaluatorTests", .cpuSoftIRQ: "RuleEvaluatorTests", .cpuSteal: "RuleEvaluatorTests",
        .cpuGuest: "RuleEvaluatorTests", .memory: "ConditionEvaluatorTests", .totalMemory: "ConditionEvaluatorTests",
        .swap: "ConditionEvaluatorTests", .threads: "ConditionEvaluatorTests", .children: "ConditionEvaluatorTests",
        .loadAverage1: "ConditionEvaluatorTests", .loadAverage5: "ConditionEvaluatorTests", .loadAverage15: "ConditionEvaluatorTests",
        .loadAveragePerCore1: "ConditionEvaluatorTests", .loadAveragePerCore5: "ConditionEvaluatorTests",
        .loadAveragePerCore15: "ConditionEvaluatorTests", .fileDescriptors: "RuleTests.processResources (live)",
        .totalFileDescriptors: "RuleEvaluatorTests", .readBytes: "RuleEvaluatorTests", .writeBytes: "RuleTests.processResources (live)",
        .readOperations: "RuleEvaluatorTests", .writeOperations: "RuleEvaluatorTests", .diskReadBytes: "RuleEvaluatorTests",
        .diskWriteBytes: "RuleEvaluatorTests", .spaceUsage: "RuleTests.aFullTmpfsFiresAndRecovers (live)",
        .inodeUsage: "RuleTests.aFullTmpfsFiresAndRecovers (live)", .spaceFree: "RuleEvaluatorTests",
        .inodeFree: "RuleEvaluatorTests", .serviceTime: "RuleEvaluatorTests", .upload: "NetworkRuleTests.loopbackTraffic (live)",
        .download: "NetworkRuleTests.loopbackTraffic (live)",
    ]

    /// A rule using the metric, in a service where monit allows it.
    static func sample(_ metric: ResourceMetric) -> (service: String, rule: String) {
        switch metric {
        case .cpu: ("process", "if cpu > 90% then alert")
        case .totalCPU: ("process", "if totalcpu > 90% then alert")
        case .cpuUser: ("system", "if cpu user > 90% then alert")
        case .cpuSystem: ("system", "if cpu system > 90% then alert")
        case .cpuWait: ("system", "if cpu wait > 20% then alert")
        case .cpuNice: ("system", "if cpu nice > 20% then alert")
        case .cpuHardIRQ: ("system", "if cpu hardirq > 20% then alert")
        case .cpuSoftIRQ: ("system", "if cpu softirq > 20% then alert")
        case .cpuSteal: ("system", "if cpu steal > 20% then alert")
        case .cpuGuest: ("system", "if cpu guest > 20% then alert")
        case .memory: ("system", "if memory > 90% then alert")
        case .totalMemory: ("process", "if totalmem > 200 MB then alert")
        case .swap: ("system", "if swap > 50% then alert")
        case .threads: ("process", "if threads > 100 then alert")
        case .children: ("process", "if children > 10 then alert")
        case .loadAverage1: ("system", "if loadavg (1min) > 4 then alert")
        case .loadAverage5: ("system", "if loadavg (5min) > 4 then alert")
        case .loadAverage15: ("system", "if loadavg (15min) > 4 then alert")
        case .loadAveragePerCore1: ("system", "if loadavg (1min) per core > 2 then alert")
        case .loadAveragePerCore5: ("system", "if loadavg (5min) per core > 2 then alert")
        case .loadAveragePerCore15: ("system", "if loadavg (15min) per core > 2 then alert")
        case .fileDescriptors: ("process", "if filedescriptors > 80% then alert")
        case .totalFileDescriptors: ("process", "if total filedescriptors > 1000 then alert")
        case .readBytes: ("filesystem", "if read rate > 10 MB/s then alert")
        case .writeBytes: ("filesystem", "if write rate > 10 MB/s then alert")
        case .readOperations: ("process", "if disk read operations > 100 operations/s then alert")
        case .writeOperations: ("process", "if disk write operations > 100 operations/s then alert")
        case .diskReadBytes: ("process", "if disk read > 10 MB/s then alert")
        case .diskWriteBytes: ("process", "if disk write > 10 MB/s then alert")
        case .spaceUsage: ("filesystem", "if space usage > 90% then alert")
        case .inodeUsage: ("filesystem", "if inode usage > 90% then alert")
        case .spaceFree: ("filesystem", "if space free < 1 GB then alert")
        case .inodeFree: ("filesystem", "if inode free < 100 then alert")
        case .serviceTime: ("filesystem", "if service time > 10 milliseconds then alert")
        case .upload: ("network", "if upload > 10 MB/s then alert")
        case .download: ("network", "if download > 10 MB/s then alert")
        }
    }

    static func check(_ service: String, _ rule: String) throws -> (condition: Condition?, diagnostics: [Diagnostic]) {
        let header = try #require(services[service])
        let text = "\(header)\n    \(rule)\n"
        // The parser's own result: a refused rule leaves no configuration, but it was parsed.
        let parser = Parser(controlFile: "test.rc", reader: InMemoryReader(files: ["test.rc": Array(text.utf8)]))
        parser.parseFile("test.rc", includedAt: nil)
        return (parser.services.first?.service.rules.first?.condition, ControlFile.parse(text, path: "test.rc").diagnostics)
    }

    static func refused(_ diagnostics: [Diagnostic]) -> Bool {
        diagnostics.contains { $0.id == .unsupportedTest && $0.message.contains("is not supported on this system: ") }
    }

    @Test func everyConditionIsRunOrRefused() throws {
        var seen = Set<Int>()
        for (service, rule) in Self.samples {
            let (condition, diagnostics) = try Self.check(service, rule)
            let parsed = try #require(condition, "\(rule): \(diagnostics.map(\.message))")
            let (number, name) = Self.identify(parsed)
            seen.insert(number)
            if Self.refused(diagnostics) {
                #expect(Self.proven[name] == nil, "\(rule) is refused but listed as run")
            } else {
                #expect(!diagnostics.hasErrors, "\(rule): \(diagnostics.map(\.message))")
                #expect(Self.proven[name] != nil, "\(rule) is accepted, so warden must run it: name its proof")
            }
        }
        #expect(seen == Set(0..<Self.caseCount), "a sample for every case of Condition")
    }

    @Test func everyResourceMetricIsRunOrRefused() throws {
        for metric in ResourceMetric.allCases {
            let (service, rule) = Self.sample(metric)
            let (condition, diagnostics) = try Self.check(service, rule)
            guard case .resource(let parsed, _, _)? = condition else {
                Issue.record("\(rule) is not a resource rule: \(diagnostics.map(\.message))")
                continue
            }
            #expect(parsed == metric, "\(rule) parses as \(parsed)")
            if Self.refused(diagnostics) {
                #expect(Self.provenMetrics[metric] == nil, "\(rule) is refused but listed as run")
            } else {
                #expect(!diagnostics.hasErrors, "\(rule): \(diagnostics.map(\.message))")
                #expect(Self.provenMetrics[metric] != nil, "\(rule) is accepted, so warden must run it: name its proof")
            }
        }
    }

    @Test func aRefusalNamesTheRuleItsPlaceAndTheReason() throws {
        let result = ControlFile.parse("check host db with address 10.0.0.9\n    if failed port 1812 protocol radius then alert\n", path: "/etc/monitrc")
        let error = try #require(result.diagnostics.first { $0.id == .unsupportedTest })
        #expect("\(try #require(error.location))" == "/etc/monitrc:2:5")
        #expect(
            error.message
                == "'protocol radius' is not supported on this system: warden does not speak protocol 'radius' yet and would test only that the port accepts a connection")
    }

    /// A port test's ssl options are kept and applied (ProtocolTests proves them live); those that
    /// mean nothing for a client are errors, never dropped.
    @Test func sslOptionsOfAPortTestAreKeptOrRefused() throws {
        let (condition, diagnostics) = try Self.check(
            "host", "if failed port 443 ssl options { verify: enable, cacertificatefile: /etc/ca.pem, version: tlsv13 } address 10.0.0.2 protocol http then alert")
        #expect(diagnostics.isEmpty, "\(diagnostics.map(\.message))")
        guard case .connection(let test)? = condition else {
            Issue.record("not a connection test")
            return
        }
        #expect(test.ssl.verify == true && test.ssl.caCertificateFile == "/etc/ca.pem" && test.ssl.versions == .v1_3 ... .v1_3)
        #expect(test.sourceAddress == "10.0.0.2")
        let (_, server) = try Self.check("host", "if failed port 443 ssl options { pemfile: /etc/cert.pem } then alert")
        #expect(server.contains { $0.message.contains("warden cannot apply 'pemfile' here") }, "\(server.map(\.message))")
        let (_, selfSigned) = try Self.check("host", "if failed port 443 ssl options { verify: enable, selfsigned: allow } then alert")
        #expect(selfSigned.contains { $0.message.contains("warden cannot apply 'selfsigned' here") }, "\(selfSigned.map(\.message))")
    }

    /// The options of the tests warden now runs are kept, not parsed and dropped.
    @Test func pingAndTrafficOptionsAreKept() throws {
        let (ping, pingDiagnostics) = try Self.check(
            "host", "if failed ping4 count 5 size 128 responsetime < 200 ms timeout 10 seconds address 127.0.0.1 then alert")
        var expected = PingTest()
        (expected.family, expected.count, expected.size, expected.timeout) = (4, 5, 128, 10)
        (expected.responseTime, expected.sourceAddress) = (Comparison(.less, 0.2), "127.0.0.1")
        #expect(ping == .ping(expected), "\(pingDiagnostics.map(\.message))")
        // Without an operator, monit's default: equal.
        guard case .ping(let plain)? = try Self.check("host", "if failed ping responsetime 100 ms then alert").condition else {
            Issue.record("not a ping test")
            return
        }
        #expect(plain.responseTime == Comparison(.equal, 0.1))
        let (total, _) = try Self.check("network", "if total uploaded > 1000 packets in last 3 minutes then alert")
        #expect(total == .transferred(TrafficTotal(upload: true, op: .greater, limit: 1000, packets: true, count: 3, span: .minute)))
        let (day, _) = try Self.check("network", "if total download > 10 GB in last day then alert")
        #expect(day == .transferred(TrafficTotal(upload: false, op: .greater, limit: 10 * 1_073_741_824, packets: false, count: 1, span: .day)))
        let (_, tooLong) = try Self.check("network", "if total download > 10 GB in last 2 days then alert")
        #expect(tooLong.contains { $0.message == "traffic is counted for the last 24 hours only, as in monit" })
        let (packets, _) = try Self.check("network", "if download > 100 packets/s then alert")
        #expect(packets == .resource(.download, .greater, .rate(100, unit: "packets/s")))
        let (capacity, capacityDiagnostics) = try Self.check("network", "if changed link capacity then alert")
        #expect(capacity == .changedLink && !capacityDiagnostics.hasErrors)
        #expect(try Self.check("network", "if failed link then alert").condition == .link(up: false))
        #expect(try Self.check("network", "if link up then alert").condition == .link(up: true))
    }

    @Test func aTestInTheWrongServiceIsRefused() throws {
        let (_, diagnostics) = try Self.check("process", "if space usage > 90% then alert")
        #expect(diagnostics.contains { $0.message == "'space usage' does not apply to 'check process'; monit rejects it too" })
        let (_, percentOfThreads) = try Self.check("process", "if threads > 50% then alert")
        #expect(percentOfThreads.contains { $0.message == "'threads' takes no limit of this kind (a percentage)" })
    }

    @Test func anUnknownLimitIsAnError() throws {
        let result = ControlFile.parse("set limits { programoutput: 2 kB, netwrktimeout: 10 s }\n", path: "test.rc")
        let error = try #require(result.diagnostics.first { $0.id == .unknownKey })
        #expect(error.message == "unknown key 'netwrktimeout' in 'set limits'")
        #expect(error.hint == "did you mean 'networktimeout'?")
    }
}
