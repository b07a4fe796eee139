import Foundation
import Testing
import WardenTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// `check host … if failed ping` and `check network` run by the real binary: real ICMP echo to a
/// namespace the test makes (and silences), a veth link it takes down, traffic it pushes through loopback.
@Suite("Ping and network rules, end to end", .serialized)
struct NetworkRuleTests {
    func start(_ directory: TemporaryDirectory, _ body: String) throws -> WardenProcess {
        let file = try directory.write("wardenrc", "set daemon 1\nset pidfile \(directory.path)/warden.pid\n" + body)
        return try WardenProcess(controlFile: file, logPath: directory.path + "/log")
    }

    /// A namespace of the test's own; under CI its absence is the test's failure, elsewhere a skip.
    func namespace() throws -> TestNamespace? {
        guard TestSupport.tool("/usr/sbin/ip") else { return nil }
        do {
            return try TestNamespace()
        } catch {
            if TestSupport.isCI { Issue.record("\(error)") } else { print("skipped: \(error)") }
            return nil
        }
    }

    @Test func pingAHostThenLoseIt() throws {
        guard let namespace = try namespace() else { return }
        let directory = try TemporaryDirectory()
        let warden = try start(directory, """
            check host peer with address \(namespace.peerAddress)
              if failed port 9 then alert
              if failed ping count 2 size 256 timeout 1 seconds then alert

            """)
        defer { warden.stop() }
        // Answered, the ping lets the port test run (nothing listens on 9 there).
        #expect(warden.waitForLog("'peer' failed protocol test [DEFAULT] at [\(namespace.peerAddress)]:9", timeout: 10), "\(warden.log)")
        #expect(!warden.log.contains("ping test failed"), "\(warden.log)")
        try namespace.inside("sysctl", "-q", "-w", "net.ipv4.icmp_echo_ignore_all=1")
        #expect(
            warden.waitForLog("'peer' ping test failed -- no response from \(namespace.peerAddress) to 2 echo requests within 1 s each", timeout: 10),
            "\(warden.log)")
        // Unreachable, the host's port is not tried: its failure is not reported again, nor recovered.
        #expect(!warden.log.contains("connection succeeded"), "\(warden.log)")
        try namespace.inside("sysctl", "-q", "-w", "net.ipv4.icmp_echo_ignore_all=0")
        #expect(warden.waitForLog("'peer' ping test succeeded [response time ", timeout: 10), "\(warden.log)")
    }

    @Test func linkDownOnAVeth() throws {
        guard let namespace = try namespace() else { return }
        let directory = try TemporaryDirectory()
        let warden = try start(directory, """
            check network veth with interface \(namespace.hostLink)
              if link down then alert
              if changed link capacity then alert

            check network byaddress with address \(namespace.hostAddress)
              if link down then alert

            """)
        defer { warden.stop() }
        usleep(2_500_000)
        #expect(!warden.log.contains("link down"), "\(warden.log)")
        try namespace.ip("link", "set", namespace.hostLink, "down")
        #expect(warden.waitForLog("'veth' link down", timeout: 10), "\(warden.log)")
        #expect(warden.waitForLog("'byaddress' link down", timeout: 10), "found by the address it holds: \(warden.log)")
        try namespace.ip("link", "set", namespace.hostLink, "up")
        #expect(warden.waitForLog("'veth' link up", timeout: 10), "\(warden.log)")
    }

    @Test func loopbackTraffic() throws {
        let directory = try TemporaryDirectory()
        let warden = try start(directory, """
            check network loopback with interface lo
              if upload > 100 kB/s then alert
              if total download > 200 kB in last 1 minute then alert
              if download > 1000000 packets/s then alert

            """)
        defer { warden.stop() }
        usleep(2_500_000)
        #expect(!warden.log.contains("matches limit"), "quiet loopback: \(warden.log)")
        // About 2 MB through loopback in a second, in datagrams nobody reads.
        let sent = try TestSupport.run(
            "/usr/bin/python3",
            ["-c", "import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor _ in range(200):\n    for _ in range(10): s.sendto(bytes(1000), ('127.0.0.1', 9))\n    time.sleep(0.005)"])
        #expect(sent.status == 0, "\(sent.stderr)")
        #expect(warden.waitForLog("matches limit [upload rate > 100 kB in last 1 second]", timeout: 10), "\(warden.log)")
        #expect(warden.waitForLog("'loopback' total download ", timeout: 10), "\(warden.log)")
        #expect(warden.log.contains("matches limit [download rate > 200 kB in last 1 minute]"), "\(warden.log)")
        #expect(!warden.log.contains("download packets"), "far below a million packets a second: \(warden.log)")
        #expect(warden.waitForLog("'loopback' upload check succeeded [current upload rate ", timeout: 10), "\(warden.log)")
    }
}

extension TestSupport {
    /// Whether a program a test needs is installed; under CI a missing one is the test's failure.
    static func tool(_ path: String) -> Bool {
        if FileManager.default.isExecutableFile(atPath: path) { return true }
        if isCI { Issue.record("\(path) is missing: .ci/run installs it") } else { print("skipped: \(path) is not installed") }
        return false
    }
}
