import Testing
import WardenConfig
import WardenPlatform
import WardenTestSupport

@testable import WardenCore

/// issue 22's rules through the actor: measured through the scripted seam, remembered per rule between
/// cycles, on a manual clock.
@Suite("Rules on scripted figures")
struct RuleSupervisorTests {
    static func filesystem(availableBlocks: UInt64) -> FilesystemFacts {
        FilesystemFacts(
            mountPoint: "/data", device: "/dev/sdb1", flags: "rw", blockSize: 4096, blocks: 1000, blocksFree: availableBlocks,
            blocksAvailable: availableBlocks, files: 100, filesFree: 50)
    }

    @Test func aFilesystemRuleFiresAndRecovers() async throws {
        let system = ScriptedSystem()
        let clock = ManualClock()
        system.setFilesystem("/data", Self.filesystem(availableBlocks: 50))
        let text = "set daemon 30\ncheck filesystem data with path /data\n  if space usage > 90% then alert\n"
        try await SupervisorTests.running(text, system: system, clock: clock) { supervisor in
            try await SupervisorTests.eventually("the rule fires") { await supervisor.snapshot(named: "data")?.failures == ["resource"] }
            system.setFilesystem("/data", Self.filesystem(availableBlocks: 500))
            try await SupervisorTests.advance(clock, by: .seconds(30), upTo: .seconds(120)) {
                await supervisor.snapshot(named: "data")?.failures == []
            }
            system.setFilesystem("/data", nil)
            try await SupervisorTests.advance(clock, by: .seconds(30), upTo: .seconds(120)) {
                await supervisor.snapshot(named: "data")?.failures == ["nonexist"]
            }
            #expect(await supervisor.snapshot(named: "data")?.events.last?.message == "unable to read filesystem '/data' state")
        }
    }

    @Test func aChangedChecksumComparesWithTheCycleBeforeEvenAcrossAReload() async throws {
        let system = ScriptedSystem()
        let clock = ManualClock()
        system.setFile("/etc/app.conf", FileFacts(modified: 0, size: 1, mode: 0o644, uid: 0, gid: 0))
        system.setChecksum("/etc/app.conf", "aaa")
        let text = "set daemon 30\ncheck file conf with path /etc/app.conf\n  if changed checksum then alert\n"
        let configuration = try #require(ControlFile.parse(text, path: "test.rc").configuration)
        try await SupervisorTests.running(text, system: system, clock: clock) { supervisor in
            try await SupervisorTests.advance(clock, by: .seconds(30), upTo: .seconds(60)) {
                await supervisor.snapshot(named: "conf")?.lastCheck != nil
            }
            await supervisor.reload(configuration)
            system.setChecksum("/etc/app.conf", "bbb")
            try await SupervisorTests.advance(clock, by: .seconds(30), upTo: .seconds(120)) {
                await supervisor.snapshot(named: "conf")?.events.contains { $0.message == "checksum changed to bbb" } == true
            }
            let event = try #require(await supervisor.snapshot(named: "conf")?.events.last)
            #expect(event.state == .changed && event.title == "Checksum changed")
        }
    }

    @Test func contentReadsOnlyLinesAddedAfterTheFirstCycle() async throws {
        let system = ScriptedSystem()
        let clock = ManualClock()
        system.setFile("/var/log/app.log", FileFacts(modified: 0, size: 1, mode: 0o644, uid: 0, gid: 0))
        system.appendLines("/var/log/app.log", ["old error"])
        let text = "set daemon 30\ncheck file log with path /var/log/app.log\n  ignore content = \"debug\"\n  if content = \"error\" then alert\n"
        try await SupervisorTests.running(text, system: system, clock: clock) { supervisor in
            try await SupervisorTests.advance(clock, by: .seconds(30), upTo: .seconds(60)) {
                await supervisor.snapshot(named: "log")?.lastCheck != nil
            }
            system.appendLines("/var/log/app.log", ["debug error", "new error"])
            // The match's event, not the last one: a cycle more without new lines recovers it.
            try await SupervisorTests.advance(clock, by: .seconds(30), upTo: .seconds(120)) {
                await supervisor.snapshot(named: "log")?.events.contains { $0.kind == .content } == true
            }
            let event = try #require(await supervisor.snapshot(named: "log")?.events.first { $0.kind == .content })
            #expect(event.message == "content match:\nnew error\n")
        }
    }

    /// monit runs a host's ping first and, when it fails, does not try the host's ports.
    @Test func aFailedPingSkipsThePortTests() async throws {
        let system = ScriptedSystem()
        let clock = ManualClock()
        let text = "set daemon 30\ncheck host db with address 10.0.0.9\n  if failed port 5432 then alert\n  if failed ping then alert\n"
        try await SupervisorTests.running(text, system: system, clock: clock) { supervisor in
            try await SupervisorTests.eventually("the ping fails") { await supervisor.snapshot(named: "db")?.failures == ["icmp"] }
            #expect(system.probeCount(of: 5432) == 0, "the closed port was not tried")
            system.setReachable("10.0.0.9", true)
            try await SupervisorTests.advance(clock, by: .seconds(30), upTo: .seconds(120)) {
                await supervisor.snapshot(named: "db")?.failures == ["connection"]
            }
            let events = try #require(await supervisor.snapshot(named: "db")?.events)
            #expect(events.contains { $0.kind == .icmp && $0.state == .succeeded && $0.message == "ping test succeeded [response time 1 ms]" }, "\(events)")
        }
    }

    /// `if exist`: the file's absence is what the rule wants (no implicit `does not exist`); its
    /// appearance fails the rule and its removal recovers it.
    @Test func existRules() async throws {
        let system = ScriptedSystem()
        let clock = ManualClock()
        let text = "set daemon 30\ncheck file lock with path /run/maintenance\n  if exist then alert\n"
        try await SupervisorTests.running(text, system: system, clock: clock) { supervisor in
            try await SupervisorTests.advance(clock, by: .seconds(30), upTo: .seconds(60)) {
                await supervisor.snapshot(named: "lock")?.lastCheck != nil
            }
            #expect(await supervisor.snapshot(named: "lock")?.failures == [])
            system.setFile("/run/maintenance", FileFacts(modified: 0, size: 0, mode: 0o644, uid: 0, gid: 0))
            try await SupervisorTests.advance(clock, by: .seconds(30), upTo: .seconds(120)) {
                await supervisor.snapshot(named: "lock")?.failures == ["exist"]
            }
            #expect(await supervisor.snapshot(named: "lock")?.events.last?.message == "file exists")
            system.setFile("/run/maintenance", nil)
            try await SupervisorTests.advance(clock, by: .seconds(30), upTo: .seconds(120)) {
                await supervisor.snapshot(named: "lock")?.failures == []
            }
            #expect(await supervisor.snapshot(named: "lock")?.events.last?.message == "file doesn't exist")
        }
    }

    static func link(up: Bool = true, speed: Int? = 100, sent: UInt64) -> NetworkSample {
        NetworkSample(
            interface: "eth0", isUp: up, speedMbps: speed, fullDuplex: true, receivedBytes: 0, sentBytes: sent, receivedPackets: 0,
            sentPackets: sent / 1000)
    }

    /// Rates from the second cycle on, over the clock's seconds; saturation against the link's speed; a
    /// speed change; a link down, found by the address the interface holds.
    @Test func networkRules() async throws {
        let system = ScriptedSystem()
        let clock = ManualClock()
        system.setNetwork("eth0", Self.link(sent: 0))
        let text = """
            set daemon 30
            check network eth with address 10.0.0.0
              if link down then alert
              if upload > 1 MB/s then alert
              if saturation > 50% then alert
              if changed link capacity then alert

            """
        // Events rather than the failures of the moment: a cycle more, with no new traffic, may already
        // have recovered a rate.
        try await SupervisorTests.running(text, system: system, clock: clock) { supervisor in
            try await SupervisorTests.advance(clock, by: .seconds(30), upTo: .seconds(60)) {
                await supervisor.snapshot(named: "eth")?.lastCheck != nil
            }
            // 60 MB in 30 s: 2 MB/s, 16.8% of 100 Mb/s.
            system.setNetwork("eth0", Self.link(sent: 60 * 1_048_576))
            try await SupervisorTests.advance(clock, by: .seconds(30), upTo: .seconds(120)) {
                await supervisor.snapshot(named: "eth")?.events.contains { $0.message == "upload 2 MB matches limit [upload rate > 1 MB in last 1 second]" } == true
            }
            #expect(await supervisor.snapshot(named: "eth")?.events.contains { $0.kind == .saturation } == false, "16.8% is below the limit")
            // The link falls to 10 Mb/s with the same traffic: 168% of it.
            let sent = 120 * 1_048_576 as UInt64
            system.setNetwork("eth0", Self.link(speed: 10, sent: sent))
            // Both may take a cycle each when the change lands while a check is under way.
            try await SupervisorTests.advance(clock, by: .seconds(30), upTo: .seconds(120)) {
                let events = await supervisor.snapshot(named: "eth")?.events ?? []
                return events.contains { $0.state == .changed && $0.message == "link speed changed to 10 Mb/s" }
                    && events.contains { $0.message == "link upload saturation of 167.8% matches limit [saturation > 50.0%]" }
            }
            system.setNetwork("eth0", Self.link(up: false, speed: nil, sent: sent))
            try await SupervisorTests.advance(clock, by: .seconds(30), upTo: .seconds(120)) {
                await supervisor.snapshot(named: "eth")?.events.last?.message == "link down"
            }
            #expect(await supervisor.snapshot(named: "eth")?.failures.contains("link") == true)
        }
    }
}
