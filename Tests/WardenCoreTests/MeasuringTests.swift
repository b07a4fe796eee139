import Foundation
import Testing
import WardenTestSupport

@testable import WardenPlatform

/// What WardenPlatform reads from /proc text and files, for the filesystem, process and file rules.
@Suite("Measuring from /proc and files")
struct MeasuringTests {
    static let mountinfo = """
        22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
        30 22 0:40 / /srv/my\\040data rw,nosuid - tmpfs tmpfs rw,size=1024k
        31 22 8:17 / /srv/backup ro,noatime - xfs /dev/sdb1 ro
        32 31 8:17 /sub /srv/backup/again rw,relatime - xfs /dev/sdb1 rw
        """

    @Test func mountinfoFieldsAndEscapes() {
        let mounts = Filesystems.mounts(Self.mountinfo)
        #expect(mounts.count == 4)
        #expect(mounts[1] == Filesystems.Mount(major: 0, minor: 40, mountPoint: "/srv/my data", options: "rw,nosuid", source: "tmpfs"))
        #expect(mounts[2].options == "ro,noatime" && mounts[2].source == "/dev/sdb1")
    }

    @Test func diskstatsSectorsAreHalfKilobytes() throws {
        let text = """
               8       0 sda 10 0 80 5 20 0 160 7 0 12 12 0 0 0 0
               8      17 sdb1 100 3 2048 40 7 1 64 9 0 50 49 0 0 0 0
            """
        let counters = try #require(Filesystems.diskCounters(major: 8, minor: 17, in: text))
        #expect(counters == DiskCounters(readOperations: 100, readBytes: 1_048_576, readMilliseconds: 40, writeOperations: 7, writeBytes: 32768, writeMilliseconds: 9))
        #expect(Filesystems.diskCounters(major: 0, minor: 40, in: text) == nil, "tmpfs has no device")
    }

    @Test func theFilesystemOfAPathInsideItAndOfItsDevice() throws {
        // The real table: / is mounted, and /proc/self is inside the proc filesystem.
        let text = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        let mounts = Filesystems.mounts(text)
        #expect(Filesystems.find("/proc/self/status", in: mounts)?.mountPoint == "/proc")
        #expect(Filesystems.find("/", in: mounts)?.mountPoint == "/")
        #expect(Filesystems.find("/no/such/path", in: mounts) == nil)
    }

    @Test func cpuTicksOfProcStat() throws {
        let ticks = try #require(CPUTicks.parse("cpu  100 2 30 4000 5 6 7 8 9 1"))
        #expect(ticks.user == 100 && ticks.nice == 2 && ticks.system == 30 && ticks.idle == 4000 && ticks.iowait == 5)
        #expect(ticks.irq == 6 && ticks.softirq == 7 && ticks.steal == 8 && ticks.guest == 9 && ticks.guestNice == 1)
        #expect(ticks.total == 4158, "guest time is inside user time")
        #expect(CPUTicks.parse("cpu 1 2") == nil)
    }

    @Test func appendedLinesFromTheRememberedPosition() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.write("app.log", "old\n")
        let first = try #require(FileContent.appendedLines(path, after: nil, lineLimit: 8))
        #expect(first.lines.isEmpty && first.position.offset == 4, "the first read starts at the end")
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        log.seekToEndOfFile()
        log.write(Data("one\na line longer than eight\nhalf".utf8))
        let second = try #require(FileContent.appendedLines(path, after: first.position, lineLimit: 8))
        #expect(second.lines == ["one", "a line l"], "complete lines only, each cut at the limit")
        log.write(Data(" done\n".utf8))
        try log.close()
        let third = try #require(FileContent.appendedLines(path, after: second.position, lineLimit: 80))
        #expect(third.lines == ["half done"])
        try directory.write("app.log", "new\n")
        #expect(FileContent.appendedLines(path, after: third.position, lineLimit: 80)?.lines == ["new"], "truncated: from the start")
    }

    @Test func checksumsOfAFile() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.write("f", "abc")
        #expect(FileContent.checksum(path, .md5) == "900150983cd24fb0d6963f7d28e17f72")
        #expect(FileContent.checksum(path, .sha1) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(FileContent.checksum(directory.path + "/none", .md5) == nil)
    }
}
