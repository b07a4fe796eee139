import Testing
import WardenConfig
import WardenPlatform
import WardenTestSupport

@testable import WardenCore

/// issue 22's tests, each decided on given figures: filesystems, files, processes and the system.
@Suite("Rule evaluators, given what was measured")
struct RuleEvaluatorTests {
    /// 1000 blocks of 4 kB: 100 free, 50 of them reserved for root; 200 inodes, 20 free.
    let disk = FilesystemFacts(
        mountPoint: "/data", device: "/dev/sdb1", flags: "rw,relatime", blockSize: 4096, blocks: 1000, blocksFree: 100,
        blocksAvailable: 50, files: 200, filesFree: 20)

    @Test func spaceUsageCountsTheRootReserveAsUsedAsDfDoes() throws {
        let failed = try #require(ConditionEvaluator.filesystem(.spaceUsage, .greater, .percent(90), facts: disk))
        #expect(failed == Outcome(failed: true, kind: .resource, message: "space usage 95.0% matches resource limit [space usage > 90.0%]"))
        let passed = try #require(ConditionEvaluator.filesystem(.spaceUsage, .greater, .percent(96), facts: disk))
        #expect(passed == Outcome(failed: false, kind: .resource, message: "space usage test succeeded [current space usage = 95.0%]"))
        let free = try #require(ConditionEvaluator.filesystem(.spaceFree, .less, .percent(10), facts: disk))
        #expect(free.message == "space free 5.0% matches resource limit [space free < 10.0%]")
        let bytes = try #require(ConditionEvaluator.filesystem(.spaceUsage, .greater, .bytes(3 * 1_048_576), facts: disk))
        #expect(bytes.message == "space usage 3.5 MB matches resource limit [space usage > 3 MB]", "900 blocks of 4 kB in use")
        let freeBytes = try #require(ConditionEvaluator.filesystem(.spaceFree, .less, .bytes(1_048_576), facts: disk))
        #expect(freeBytes.message == "space free 400 kB matches resource limit [space free < 1 MB]")
    }

    @Test func inodesInPercentAndCountAndAFilesystemWithoutInodesPasses() throws {
        let usage = try #require(ConditionEvaluator.filesystem(.inodeUsage, .greater, .percent(85), facts: disk))
        #expect(usage.message == "inode usage 90.0% matches resource limit [inode usage > 85.0%]")
        let free = try #require(ConditionEvaluator.filesystem(.inodeFree, .less, .count(50), facts: disk))
        #expect(free.message == "inode free 20 matches resource limit [inode free < 50]")
        var noInodes = disk
        noInodes.files = 0
        #expect(ConditionEvaluator.filesystem(.inodeUsage, .greater, .percent(1), facts: noInodes)?.failed == false)
    }

    @Test func diskRatesAreDifferencesOverTheSecondsBetweenCycles() throws {
        let before = DiskCounters(readOperations: 100, readBytes: 0, readMilliseconds: 50, writeOperations: 10, writeBytes: 0, writeMilliseconds: 10)
        var now = before
        now.readBytes = 10 * 1_048_576
        now.readOperations = 600
        now.writeOperations = 10
        now.readMilliseconds = 1050
        #expect(ConditionEvaluator.diskRate(.readBytes, .greater, .rate(1, unit: "mb/s"), now: now, before: nil, seconds: 5) == nil, "first cycle")
        let bytes = try #require(ConditionEvaluator.diskRate(.readBytes, .greater, .rate(1, unit: "mb/s"), now: now, before: before, seconds: 5))
        #expect(bytes.message == "read rate 2 MB/s matches resource limit [read > 1 MB/s]")
        let operations = try #require(ConditionEvaluator.diskRate(.readBytes, .greater, .rate(200, unit: "operations/s"), now: now, before: before, seconds: 5))
        #expect(!operations.failed)
        #expect(operations.message == "read rate test succeeded [current read = 100.0 operations/s]")
        let write = try #require(ConditionEvaluator.diskRate(.writeBytes, .greater, .count(0), now: now, before: before, seconds: 5))
        #expect(!write.failed, "no write operation in between")
        let service = try #require(ConditionEvaluator.serviceTime(.greater, .seconds(0.001), now: now, before: before))
        #expect(service.message == "service time 2 ms/operation matches resource limit [service time > 1 ms/operation]")
    }

    @Test func fsflagsReportEachChangeAndNothingTheFirstTime() throws {
        #expect(ConditionEvaluator.filesystemFlags(now: "rw,relatime", before: nil) == nil)
        let changed = try #require(ConditionEvaluator.filesystemFlags(now: "ro,relatime", before: "rw,relatime"))
        #expect(changed == Outcome(failed: true, kind: .fsflags, message: "filesystem flags changed from 'rw,relatime' to 'ro,relatime'", reporting: .changes))
        #expect(ConditionEvaluator.filesystemFlags(now: "ro,relatime", before: "ro,relatime")?.failed == false)
    }

    @Test func checksumsExpectedOrChanged() throws {
        #expect(ConditionEvaluator.hashKind(named: nil, expected: nil) == .md5)
        #expect(ConditionEvaluator.hashKind(named: nil, expected: String(repeating: "a", count: 40)) == .sha1)
        #expect(ConditionEvaluator.hashKind(named: "sha1", expected: nil) == .sha1)
        #expect(ConditionEvaluator.checksum("abc", expected: "ABC") == Outcome(failed: false, kind: .checksum, message: "checksum is valid"))
        #expect(ConditionEvaluator.checksum("abd", expected: "abc").message == "checksum failed, expected abc got abd")
        #expect(ConditionEvaluator.changedChecksum("abc", before: nil) == nil)
        #expect(ConditionEvaluator.changedChecksum("abd", before: "abc")?.message == "checksum changed to abd")
        #expect(ConditionEvaluator.changedChecksum("abd", before: "abd")?.failed == false)
    }

    @Test func sizeAndTimestampChanges() throws {
        let facts = FileFacts(modified: 1000, statusChanged: 1005, size: 2048, mode: 0o644, uid: 0, gid: 0)
        #expect(ConditionEvaluator.changedTimestamp(path: "/f", facts: facts, before: nil) == nil)
        #expect(ConditionEvaluator.changedTimestamp(path: "/f", facts: facts, before: 1005)?.failed == false, "the later of mtime and ctime")
        let stamp = try #require(ConditionEvaluator.changedTimestamp(path: "/f", facts: facts, before: 1000))
        #expect(stamp.failed && stamp.message.hasPrefix("timestamp for /f changed from "))
        #expect(ConditionEvaluator.changedSize(path: "/f", size: 2048, before: 1024)?.message == "size for /f changed to 2 kB")
        #expect(ConditionEvaluator.changedSize(path: "/f", size: 2048, before: 2048)?.failed == false)
    }

    @Test func contentMatchesNewLinesExceptIgnoredOnes() {
        let lines = ["GET / 200", "GET /x 500 error", "GET /health 500 error", "POST /y 502 error"]
        let ignored = [Comparison(ComparisonOperator.equal, "health")]
        let match = ConditionEvaluator.content(.equal, "error", lines: lines, ignored: ignored, limit: 512)
        #expect(match == Outcome(failed: true, kind: .content, message: "content match:\nGET /x 500 error\nPOST /y 502 error\n", reporting: .matches))
        let notMatching = ConditionEvaluator.content(.notEqual, "^GET", lines: lines, ignored: [], limit: 512)
        #expect(notMatching.message == "content match:\nPOST /y 502 error\n", "`!=` reports the lines that do not match")
        let keepOnlyPosts = [Comparison(ComparisonOperator.notEqual, "^POST")]
        #expect(ConditionEvaluator.content(.equal, "error", lines: lines, ignored: keepOnlyPosts, limit: 512).message == "content match:\nPOST /y 502 error\n")
        #expect(ConditionEvaluator.content(.equal, "error", lines: ["ok"], ignored: [], limit: 512).failed == false)
        let capped = ConditionEvaluator.content(.equal, "e", lines: ["eeee", "eeee", "eeee"], ignored: [], limit: 8)
        #expect(capped.message == "content match:\neeee\neeee\n...\n", "at most the content buffer")
    }

    @Test func descriptorsInCountAndShareOfTheLimit() throws {
        let usage = DescriptorUsage(open: 900, limit: 1024)
        let count = try #require(ConditionEvaluator.descriptors(.greater, .count(800), usage: usage, total: false))
        #expect(count.message == "filedescriptors usage of 900 matches limit [filedescriptors > 800]")
        let share = try #require(ConditionEvaluator.descriptors(.greater, .percent(80), usage: usage, total: false))
        #expect(share.message == "filedescriptors usage of 87.9% matches limit [filedescriptors > 80.0%]")
        let total = try #require(ConditionEvaluator.descriptors(.greater, .count(1000), usage: usage, total: true))
        #expect(total.message == "total filedescriptors test succeeded [current filedescriptors usage = 900]")
        #expect(ConditionEvaluator.descriptors(.greater, .percent(80), usage: DescriptorUsage(open: 1, limit: nil), total: false) == nil)
    }

    @Test func processIOReadsTheCounterTheRuleNames() throws {
        let io = ProcessIO(readBytes: 1, readOperations: 2, writeBytes: 3, writeOperations: 4, diskReadBytes: 5, diskWriteBytes: 6)
        #expect(ConditionEvaluator.counter(.readBytes, .rate(1, unit: "mb/s"), of: io) == 1)
        #expect(ConditionEvaluator.counter(.diskReadBytes, .rate(1, unit: "mb/s"), of: io) == 5)
        #expect(ConditionEvaluator.counter(.diskWriteBytes, .count(10), of: io) == 4, "a bare number counts operations")
        #expect(ConditionEvaluator.counter(.writeOperations, .rate(10, unit: "operations/s"), of: io) == 4)
        let physical = try #require(ConditionEvaluator.processRate(.diskWriteBytes, .greater, .rate(1, unit: "kb/s"), now: 4096, before: 0, seconds: 2))
        #expect(physical.message == "physical write activity 2 kB/s matches resource limit [write > 1 kB/s]")
        #expect(ConditionEvaluator.processRate(.readBytes, .greater, .count(1), now: 5, before: 10, seconds: 1) == nil, "a restarted process")
    }

    @Test func parentUsersAndProgramStatusChanges() {
        #expect(ConditionEvaluator.changedParent(1, before: nil) == nil)
        #expect(ConditionEvaluator.changedParent(1, before: 300)?.message == "process PPID changed from 300 to 1")
        #expect(ConditionEvaluator.identity("euid", kind: .uid, current: 0, expected: 33, service: "app").message == "euid test failed for app -- current euid is 0")
        #expect(ConditionEvaluator.identity("euid", kind: .uid, current: 33, expected: 33, service: "app").failed == false)
        #expect(ConditionEvaluator.changedStatus(1, before: 0, output: "")?.message == "status changed (0 -> 1) -- no output")
        #expect(ConditionEvaluator.changedStatus(1, before: 1, output: "x")?.failed == false)
    }

    @Test func systemCPUIsEachKindsShareOfTheTicksBetweenCycles() throws {
        var before = CPUTicks()
        before.idle = 1000
        var now = before
        now.user += 30
        now.nice += 5
        now.system += 10
        now.iowait += 20
        now.irq += 1
        now.softirq += 2
        now.steal += 7
        now.guest += 4
        now.idle += 25
        #expect(ConditionEvaluator.systemCPU(.cpuUser, .greater, .percent(10), now: now, before: nil) == nil, "first cycle")
        func share(_ metric: ResourceMetric) throws -> String {
            try #require(ConditionEvaluator.systemCPU(metric, .greater, .percent(99), now: now, before: before)).message
        }
        #expect(try share(.cpu) == "cpu usage check succeeded [current cpu usage = 40.0%]")
        #expect(try share(.cpuUser) == "cpu user usage check succeeded [current cpu user usage = 30.0%]")
        #expect(try share(.cpuWait) == "cpu I/O wait check succeeded [current cpu I/O wait = 20.0%]")
        #expect(try share(.cpuNice).hasSuffix("= 5.0%]"))
        #expect(try share(.cpuSystem).hasSuffix("= 10.0%]"))
        #expect(try share(.cpuHardIRQ).hasSuffix("= 1.0%]"))
        #expect(try share(.cpuSoftIRQ).hasSuffix("= 2.0%]"))
        #expect(try share(.cpuSteal).hasSuffix("= 7.0%]"))
        #expect(try share(.cpuGuest).hasSuffix("= 4.0%]"), "guest time is part of user time, not added to the total")
        let failed = try #require(ConditionEvaluator.systemCPU(.cpuWait, .greater, .percent(15), now: now, before: before))
        #expect(failed.message == "cpu I/O wait of 20.0% matches resource limit [cpu I/O wait > 15.0%]")
    }

    @Test func monitNumberFormats() {
        #expect(MonitFormat.fixed(92.44) == "92.4")
        #expect(MonitFormat.fixed(0.05, 1) == "0.1")
        #expect(MonitFormat.fixed(-1.25, 1) == "-1.3")
        #expect(MonitFormat.bytes(512) == "512 B")
        #expect(MonitFormat.bytes(1536) == "1.5 kB")
        #expect(MonitFormat.bytes(1_048_576) == "1 MB", "whole: no decimals, as monit's Fmt_bytes2str")
        #expect(MonitFormat.milliseconds(100) == "100 ms" && MonitFormat.milliseconds(0.069) == "0.069 ms")
        #expect(MonitFormat.milliseconds(1250) == "1.250 s" && MonitFormat.milliseconds(120_000) == "2 m")
        #expect(MonitFormat.milliseconds(1500) == "1.500 s")
    }
}

/// "Changed" and content rules as the state machine reports them.
@Suite("Changes and matches")
struct ChangeReportingTests {
    typealias Machine = ServiceStateMachine<ManualClock.Instant>

    static func machine(_ rules: String) throws -> Machine {
        let result = ControlFile.parse("check file log with path /var/log/app.log\n" + rules, path: "test.rc")
        let configuration = try #require(result.configuration, "\(result.renderedDiagnostics())")
        var machine = Machine(config: try #require(configuration.services.first))
        machine.monitor = .monitored
        return machine
    }

    let now = ManualClock.Instant(offset: .zero)

    @Test func everyChangeFiresAndNoChangeIsSilent() throws {
        var machine = try Self.machine("    if changed checksum then alert")
        let changed = Outcome(failed: true, kind: .checksum, message: "checksum changed to b", reporting: .changes)
        let same = Outcome(failed: false, kind: .checksum, message: "checksum has not changed", reporting: .changes)
        #expect(machine.ruleEvaluated(0, changed, now: now, cycle: 1).contains(.emit(.checksum, .changed, "checksum changed to b", action: "alert")))
        let again = Outcome(failed: true, kind: .checksum, message: "checksum changed to c", reporting: .changes)
        #expect(machine.ruleEvaluated(0, again, now: now, cycle: 2).contains(.emit(.checksum, .changed, "checksum changed to c", action: "alert")))
        #expect(machine.ruleEvaluated(0, same, now: now, cycle: 3) == [], "no recovery for a change")
        #expect(machine.failures.isEmpty, "a change is not a failing state")
    }

    @Test func contentFiresOnEachCycleWithMatchesAndRecoversOnce() throws {
        var machine = try Self.machine("    if content = \"error\" then alert")
        let match = Outcome(failed: true, kind: .content, message: "content match:\nerror 1\n", reporting: .matches)
        let none = Outcome(failed: false, kind: .content, message: "content doesn't match", reporting: .matches)
        #expect(machine.ruleEvaluated(0, match, now: now, cycle: 1).contains(.emit(.content, .changed, "content match:\nerror 1\n", action: "alert")))
        #expect(machine.ruleEvaluated(0, match, now: now, cycle: 2).count == 2, "logged and reported again")
        #expect(machine.ruleEvaluated(0, none, now: now, cycle: 3).contains(.emit(.content, .succeeded, "content doesn't match", action: "alert")))
        #expect(machine.ruleEvaluated(0, none, now: now, cycle: 4) == [])
    }

    @Test func aNewProcessStartsItsRatesAfresh() throws {
        let result = ControlFile.parse("check process app with pidfile /run/app.pid\n    if write rate > 1 MB/s then alert\n", path: "test.rc")
        var machine = Machine(config: try #require(result.configuration?.services.first))
        let process = ProcessSnapshot(pid: 10, parentPID: 1, state: "S", startTime: 1, cpuTicks: 0, childrenCPUTicks: 0, residentBytes: 0, threads: 1, processGroup: 10)
        _ = machine.processFound(process, startDate: 0)
        machine.previous[0] = .init(value: .counter(1_073_741_824), at: now)
        _ = machine.processFound(process, startDate: 0)
        #expect(machine.previous[0] != nil, "the same process keeps its figures")
        var restarted = process
        restarted.pid = 11
        _ = machine.processFound(restarted, startDate: 0)
        #expect(machine.previous.isEmpty, "another process's counters are not this one's")
    }

    @Test func previousFiguresSurviveAReloadOfAnUnchangedServiceOnly() throws {
        var machine = try Self.machine("    if changed checksum then alert")
        machine.previous[0] = .init(value: .text("abc"), at: now)
        machine.reconfigure(machine.config)
        #expect(machine.previous[0]?.value == .text("abc"))
        var changed = machine.config
        changed.rules.insert(changed.rules[0], at: 0)
        machine.reconfigure(changed)
        #expect(machine.previous.isEmpty)
    }

    func link(up: Bool = true, speed: Int? = 1000, fullDuplex: Bool = true, sent: UInt64 = 0, received: UInt64 = 0) -> NetworkSample {
        NetworkSample(
            interface: "eth0", isUp: up, speedMbps: speed, fullDuplex: fullDuplex, receivedBytes: received, sentBytes: sent,
            receivedPackets: received / 100, sentPackets: sent / 100)
    }

    @Test func networkTests() throws {
        #expect(ConditionEvaluator.link(up: false, sample: link(), statistics: nil, interface: "eth0") == Outcome(failed: false, kind: .link, message: "link up"))
        #expect(ConditionEvaluator.link(up: false, sample: link(up: false), statistics: nil, interface: "eth0").failed)
        #expect(ConditionEvaluator.link(up: true, sample: link(), statistics: nil, interface: "eth0").failed, "'if link up' fails while it is up")
        let gone = ConditionEvaluator.link(up: false, sample: nil, statistics: nil, interface: "eth9")
        #expect(gone == Outcome(failed: true, kind: .link, message: "link data collection failed -- Cannot read /sys/class/net/eth9/operstate -- No such file or directory"))
        #expect(!ConditionEvaluator.link(up: true, sample: nil, statistics: nil, interface: "eth9").failed)
        // An up link whose driver counts errors fails `link down`: 30 receive errors in 10 s.
        var errors = LinkStatistics()
        errors.record(link(), at: 0)
        var faulty = link()
        faulty.receivedErrors = 30
        errors.record(faulty, at: 10)
        let erring = ConditionEvaluator.link(up: false, sample: faulty, statistics: errors, interface: "eth0")
        #expect(erring == Outcome(failed: true, kind: .link, message: "3 download errors detected"))
        #expect(ConditionEvaluator.link(up: true, sample: faulty, statistics: errors, interface: "eth0").failed, "'link up' fails while it is up, errors or not")

        #expect(ConditionEvaluator.changedCapacity(now: link(), before: nil) == nil, "first cycle")
        #expect(ConditionEvaluator.changedCapacity(now: link(speed: nil), before: link()) == nil, "no speed, no capacity")
        #expect(ConditionEvaluator.changedCapacity(now: link(speed: 100), before: link())?.message == "link speed changed to 100 Mb/s")
        #expect(ConditionEvaluator.changedCapacity(now: link(fullDuplex: false), before: link())?.message == "link mode is now half-duplex")
        let same = try #require(ConditionEvaluator.changedCapacity(now: link(), before: link()))
        #expect(!same.failed && same.message == "link speed has not changed since last cycle [current speed = 1000 Mb/s]")

        // 10 s apart: 1 GB up (80% of 1 Gb/s), 100 MB down (8%), 10 M packets up.
        var statistics = LinkStatistics()
        statistics.record(link(), at: 0)
        #expect(ConditionEvaluator.saturation(.greater, 50, statistics: statistics, fullDuplex: true) == nil)
        #expect(ConditionEvaluator.traffic(.upload, .greater, .rate(1, unit: "mb/s"), statistics: statistics) == nil)
        statistics.record(link(sent: 1_000_000_000, received: 100_000_000), at: 10)
        let full = try #require(ConditionEvaluator.saturation(.greater, 50, statistics: statistics, fullDuplex: true))
        #expect(full == Outcome(failed: true, kind: .saturation, message: "link upload saturation of 80.0% matches limit [saturation > 50.0%]"))
        let half = try #require(ConditionEvaluator.saturation(.greater, 85, statistics: statistics, fullDuplex: false))
        #expect(half.message == "link saturation of 88.0% matches limit [saturation > 85.0%]", "both directions share a half-duplex link")
        #expect(ConditionEvaluator.saturation(.greater, 90, statistics: statistics, fullDuplex: true)?.failed == false)

        let upload = try #require(ConditionEvaluator.traffic(.upload, .greater, .rate(5, unit: "mb/s"), statistics: statistics))
        #expect(upload == Outcome(failed: true, kind: .byteout, message: "upload 95.4 MB matches limit [upload rate > 5 MB in last 1 second]"))
        let plainSize = try #require(ConditionEvaluator.traffic(.download, .greater, .bytes(20_000_000), statistics: statistics))
        #expect(plainSize == Outcome(failed: false, kind: .bytein, message: "download check succeeded [current download rate 9.5 MB in last 1 second]"))
        let packets = try #require(ConditionEvaluator.traffic(.upload, .greater, .rate(50_000, unit: "packets/s"), statistics: statistics))
        #expect(packets == Outcome(failed: true, kind: .packetout, message: "upload packets 1000000 matches limit [upload packets > 50000 in last 1 second]"))

        let total = TrafficTotal(upload: false, op: .greater, limit: 5_000_000, packets: false, count: 2, span: .hour)
        #expect(
            ConditionEvaluator.transferred(total, statistics: statistics)
                == Outcome(failed: true, kind: .bytein, message: "total download 95.4 MB matches limit [download rate > 4.8 MB in last 2 hour]"))
        let totalPackets = TrafficTotal(upload: true, op: .less, limit: 10, packets: true, count: 1, span: .day)
        #expect(
            ConditionEvaluator.transferred(totalPackets, statistics: statistics)?.message
                == "total upload packets check succeeded [current upload packets 10000000 in last 1 day]")
    }

    @Test func pingAndItsResponseTime() {
        let answered = ProbeResult(succeeded: true, message: "ping test succeeded", responseTime: .microseconds(450))
        #expect(ConditionEvaluator.ping(answered, responseTime: nil) == Outcome(failed: false, kind: .icmp, message: "ping test succeeded [response time 0.450 ms]"))
        #expect(ConditionEvaluator.ping(answered, responseTime: Comparison(.less, 0.1)).message == "response time 0.450 ms succeeded [time < 100 ms]")
        let slow = ConditionEvaluator.ping(answered, responseTime: Comparison(.equal, 0.1))
        #expect(slow == Outcome(failed: true, kind: .icmp, message: "response time 0.450 ms doesn't match limit [time = 100 ms]"))
        let lost = ProbeResult(succeeded: false, message: "ping test failed -- no response", responseTime: .seconds(3))
        #expect(ConditionEvaluator.ping(lost, responseTime: nil) == Outcome(failed: true, kind: .icmp, message: "ping test failed -- no response"))
        let port = ConditionEvaluator.responseTime(answered, Comparison(.less, 0.0001), kind: .connection, at: "[127.0.0.1]:80")
        #expect(port == Outcome(failed: true, kind: .connection, message: "response time 0.450 ms doesn't match limit [time < 0.100 ms] at [127.0.0.1]:80"))
    }

    @Test func existenceInMonitsWords() {
        #expect(ConditionEvaluator.existence(.file(path: "/f"), found: true, pid: nil) == Outcome(failed: true, kind: .exist, message: "file exists"))
        #expect(ConditionEvaluator.existence(.directory(path: "/d"), found: false, pid: nil).message == "directory doesn't exist")
        #expect(ConditionEvaluator.existence(.process(.pidfile("/p")), found: true, pid: 42).message == "process is running with pid 42")
        #expect(ConditionEvaluator.existence(.filesystem(path: "/data"), found: false, pid: nil).message == "filesystem '/data' doesn't exist")
    }
}
