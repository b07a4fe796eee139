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
            try await SupervisorTests.advance(clock, by: .seconds(30), upTo: .seconds(120)) {
                await supervisor.snapshot(named: "log")?.events.contains { $0.kind == .content } == true
            }
            let event = try #require(await supervisor.snapshot(named: "log")?.events.last)
            #expect(event.message == "content match:\nnew error\n")
        }
    }
}
