import Foundation
import Testing
import Dispatch

@testable import WardenPlatform
import WardenTestSupport

/// A service's log file: rotation decisions, the writer's rotation (no line lost or doubled), and reading it back.
@Suite("Service log files")
struct ServiceLogTests {
    @Test func rotatesBeforeTheLineThatWouldPassTheLimit() {
        let rotation = LogRotation(limit: 100, keep: 3)
        #expect(!rotation.rotatesBefore(line: 40, fileSize: 60), "exactly at the limit")
        #expect(rotation.rotatesBefore(line: 41, fileSize: 60))
        #expect(!rotation.rotatesBefore(line: 500, fileSize: 0), "a long line in an empty file stays: rotating would not help")
        #expect(rotation.rotatesBefore(line: 1, fileSize: 100))
    }

    @Test func renamesAsLogrotateNamesTheFilesOldestFirst() {
        let steps = LogRotation(limit: 1, keep: 3).renames(of: "/l/app.log")
        #expect(steps.map(\.from) == ["/l/app.log.2", "/l/app.log.1", "/l/app.log"])
        #expect(steps.map(\.to) == ["/l/app.log.3", "/l/app.log.2", "/l/app.log.1"])
        #expect(LogRotation(limit: 1, keep: 1).renames(of: "a").map(\.to) == ["a.1"])
    }

    @Test func everyLineIsWrittenOnceAcrossTheRotatedFilesAndTheOldestAreDropped() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/app.log"
        let writer = ServiceLogs.shared.writer(path: path, rotation: LogRotation(limit: 4096, keep: 50))
        for index in 0..<5000 { writer.append("line \(index)") }
        writer.flush()
        var seen: [Int] = []
        var files = 0
        // Oldest first: `.50` … `.1`, then the live file.
        for name in (1...50).reversed().map({ "\(path).\($0)" }) + [path] {
            guard let text = try? String(contentsOfFile: name, encoding: .utf8) else { continue }
            files += 1
            #expect(text.utf8.count <= 4096, "\(name)")
            var attributes = stat()
            #expect(stat(name, &attributes) == 0 && attributes.st_mode & 0o777 == 0o640)
            seen += text.split(separator: "\n").compactMap { $0.split(separator: " ").last.flatMap { Int($0) } }
        }
        #expect(files > 10)
        #expect((1..<max(1, files)).allSatisfy { FileManager.default.fileExists(atPath: "\(path).\($0)") }, "numbered from .1 without a gap")
        #expect(seen == Array(0..<5000), "every line once, and the files named newest first")

        let tight = ServiceLogs.shared.writer(path: directory.path + "/tight.log", rotation: LogRotation(limit: 1024, keep: 2))
        for index in 0..<1000 { tight.append("line \(index)") }
        tight.flush()
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/tight.log.3"), "only two old files kept")
        #expect(FileManager.default.fileExists(atPath: directory.path + "/tight.log.2"))
        #expect(try String(contentsOfFile: directory.path + "/tight.log", encoding: .utf8).hasSuffix("line 999\n"))
    }

    @Test func aSlowDiskDropsLinesAndSaysHowMany() throws {
        let directory = try TemporaryDirectory()
        let queue = DispatchQueue(label: "test.slow-disk")
        queue.suspend()  // the disk that does not keep up
        // Room for 10 of these 33-byte lines (a 24-byte timestamp, a space, the text, a newline).
        let writer = ServiceLogWriter(path: directory.path + "/app.log", rotation: nil, capacity: 360, writer: queue)
        for index in 10..<100 { writer.append("line \(index)") }
        queue.resume()
        writer.flush()
        let lines = try String(contentsOfFile: directory.path + "/app.log", encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 11, "\(lines)")
        #expect(lines.first?.hasSuffix(" line 10") == true)
        #expect(lines.last?.hasSuffix(" warden: 80 lines dropped: the log file could not be written fast enough") == true)
    }

    @Test func neverWritesThroughASymlink() throws {
        let directory = try TemporaryDirectory()
        let target = try directory.write("target", "")
        symlink(target, directory.path + "/link.log")
        let writer = ServiceLogs.shared.writer(path: directory.path + "/link.log", rotation: nil)
        #expect(writer.openProblem() == "Too many levels of symbolic links")
        #expect(ServiceLogs.shared.writer(path: directory.path + "/missing/app.log", rotation: nil).openProblem() == "No such file or directory")
        writer.append("secret")
        writer.flush()
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "")
    }

    @Test func tailReadsTheLastLinesThenFollowsAcrossARotation() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/app.log"
        let writer = ServiceLogs.shared.writer(path: path, rotation: nil)
        for index in 0..<30 { writer.append("before \(index)") }
        writer.flush()
        let tail = LogTail(path: path)
        let last = tail.lastLines(5)
        #expect(last.count == 5)
        #expect(last.last?.hasSuffix(" before 29") == true)
        #expect(tail.poll().isEmpty)
        writer.append("old file's last")
        writer.flush()
        #expect(rename(path, path + ".1") == 0)
        writer.reopen()
        writer.append("new file's first")
        writer.flush()
        let next = tail.poll()
        #expect(next.count == 2, "\(next)")
        #expect(next.first?.hasSuffix(" old file's last") == true)
        #expect(next.last?.hasSuffix(" new file's first") == true)
        #expect(tail.poll().isEmpty)
    }
}
