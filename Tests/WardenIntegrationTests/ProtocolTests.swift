import Foundation
import Testing
import WardenTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The real warden binary running protocol tests (a named protocol and a send/expect dialogue) against
/// a real redis-server: quiet while it answers, an event with monit's wording when something else
/// answers on its port, recovery, and an event once it is stopped.
@Suite("Protocol tests, end to end", .serialized)
struct ProtocolTests {
    @Test func redisProtocolAndDialogue() throws {
        let redis = "/usr/bin/redis-server"
        guard FileManager.default.isExecutableFile(atPath: redis) else {
            if TestSupport.isCI { Issue.record("redis-server is missing: .ci/run installs it") }
            return
        }
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        func startRedis() throws -> Peer {
            try Peer(redis, ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory.path], log: directory.path + "/redis.log")
        }
        let control = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set statefile \(directory.path)/state
            set pidfile \(directory.path)/warden.pid
            check host cache with address 127.0.0.1
              if failed port \(port) protocol redis with timeout 2 seconds then alert
              if failed port \(port) send "PING\\r\\n" expect "^\\+PONG" with timeout 2 seconds then alert

            """)
        // Something else holds the port first: both tests fail with what it answered.
        let impostor = try GarbageServer(port: port, directory: directory)
        let warden = try WardenProcess(controlFile: control, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(warden.waitForLog("failed protocol test [REDIS] at [127.0.0.1]:\(port) [TCP/IP] -- REDIS: PING response error -- garbage", timeout: 15), "\(warden.log)")
        #expect(warden.waitForLog("failed protocol test [GENERIC] at [127.0.0.1]:\(port) [TCP/IP] -- GENERIC: received unexpected data [garbage]", timeout: 15), "\(warden.log)")
        impostor.peer.stop()
        // The real server: both recover.
        var server = try startRedis()
        #expect(warden.waitForLog("connection succeeded to [127.0.0.1]:\(port) [TCP/IP]", count: 2, timeout: 15), "\(warden.log)\n\(server.output)")
        // Stopped by its pid: refused.
        server.stop()
        #expect(warden.waitForLog("failed protocol test [REDIS] at [127.0.0.1]:\(port) [TCP/IP] -- cannot connect to [127.0.0.1]:\(port) -- Connection refused", timeout: 15), "\(warden.log)")
        server = try startRedis()
        defer { server.stop() }
        #expect(warden.waitForLog("connection succeeded to [127.0.0.1]:\(port) [TCP/IP]", count: 4, timeout: 15), "\(warden.log)")
    }

    /// `ipv4` / `ipv6` on a port test: the connection takes that family's address of the host, never the
    /// other's. A server on 127.0.0.1 passes the IPv4 test; the IPv6 tests fail, at [::1] where nothing
    /// listens and for an address that has no IPv6 form.
    @Test func aPortTestTakesTheFamilyItNames() throws {
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        let server = try GarbageServer(port: port, directory: directory)
        defer { server.peer.stop() }
        let control = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            check host four with address 127.0.0.1
              if failed port \(port) ipv4 with timeout 2 seconds then alert
            check host six with address ::1
              if failed port \(port) ipv6 with timeout 2 seconds then alert
            check host mixed with address 127.0.0.1
              if failed port \(port) ipv6 with timeout 2 seconds then alert

            """)
        let warden = try WardenProcess(controlFile: control, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(
            warden.waitForLog("'six' failed protocol test [DEFAULT] at [::1]:\(port) [TCP/IPv6] -- cannot connect to [::1]:\(port) -- Connection refused", timeout: 15),
            "\(warden.log)")
        #expect(warden.waitForLog("'mixed' failed protocol test [DEFAULT] at [127.0.0.1]:\(port) [TCP/IPv6] -- cannot connect to [127.0.0.1]:\(port) -- no IPv6 address for 127.0.0.1", timeout: 10), "\(warden.log)")
        #expect(!warden.log.contains("'four' failed"), "\(warden.log)")
    }

    /// `responsetime` on a port test: a server that answers its dialogue after 300 ms fails a 100 ms limit,
    /// with the time taken, and passes a 5 s one.
    @Test func aPortTestHoldsToItsResponseTime() throws {
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        let script = try directory.write(
            "slow.py",
            """
            import socket, sys, time, threading
            server = socket.socket()
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", int(sys.argv[1])))
            server.listen(16)
            def answer(connection):
                with connection:
                    connection.recv(64)
                    time.sleep(0.3)
                    connection.sendall(b"ok\\n")
            while True:
                threading.Thread(target=answer, args=(server.accept()[0],), daemon=True).start()

            """)
        let server = try Peer("/usr/bin/python3", [script, "\(port)"], log: directory.path + "/slow.log")
        defer { server.stop() }
        try #require(TestSupport.waitUntil(timeout: 10) { TestSupport.portOpen(port) }, "\(server.output)")
        let control = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            check host quick with address 127.0.0.1
              if failed port \(port) send "hi\\n" expect "ok" responsetime < 100 ms with timeout 3 seconds then alert
            check host patient with address 127.0.0.1
              if failed port \(port) send "hi\\n" expect "ok" responsetime < 5 s with timeout 3 seconds then alert

            """)
        let warden = try WardenProcess(controlFile: control, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(warden.waitForLog("'quick' response time 3", timeout: 15), "\(warden.log)\n\(server.output)")
        #expect(warden.log.contains("doesn't match limit [time < 100 ms] at [127.0.0.1]:\(port)"), "\(warden.log)")
        #expect(!warden.log.contains("'patient' failed") && !warden.log.contains("'patient' response time"), "\(warden.log)")
    }

    /// TLS and the certificate's validity through the binary: smtps against aiosmtpd holding a 30-day
    /// certificate passes 'certificate valid > 10 days' and fails 'certificate valid > 60 days'.
    @Test func smtpsCertificateValidity() throws {
        guard SMTPSink.available else {
            if TestSupport.isCI { Issue.record("aiosmtpd is missing: .ci/run installs it") }
            return
        }
        let directory = try TemporaryDirectory()
        let cert = directory.path + "/cert.pem"
        let key = directory.path + "/key.pem"
        let made = try TestSupport.run(
            "/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=127.0.0.1"])
        #expect(made.status == 0, "\(made.stderr)")
        let port = TestSupport.freePort()
        let server = try Peer(
            "/usr/bin/python3", ["-m", "aiosmtpd", "-n", "-l", "127.0.0.1:\(port)", "--smtpscert", cert, "--smtpskey", key],
            log: directory.path + "/smtpd.log")
        defer { server.stop() }
        #expect(TestSupport.waitUntil(timeout: 10) { TestSupport.portOpen(port) })
        let control = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set statefile \(directory.path)/state
            set pidfile \(directory.path)/warden.pid
            check host mail with address 127.0.0.1
              if failed port \(port) protocol smtps and certificate valid > 10 days then alert
              if failed port \(port) protocol smtps and certificate valid > 60 days then alert

            """)
        let warden = try WardenProcess(controlFile: control, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(
            warden.waitForLog("failed protocol test [SMTP] at [127.0.0.1]:\(port) [TCP/IP TLS] -- SSL: certificate expires in ", timeout: 15), "\(warden.log)")
        #expect(warden.log.contains(" days, valid > 60 days required"), "\(warden.log)")
        // Only the 60-day rule fails: one failure in the log, however many cycles pass.
        usleep(2_500_000)
        #expect(warden.log.components(separatedBy: "failed protocol test").count - 1 == 1, "\(warden.log)")
    }

    /// `ssl options {…}` on a port test are applied, not refused: verification against a given CA
    /// passes, against the system's CAs fails with the reason, a client certificate gets through a
    /// server that demands one; a port that does not speak TLS fails its handshake; `address A` makes
    /// the connection go out from A (the server sees it), and an address of no interface fails.
    @Test func sslOptionsAndTheOutgoingAddressOfAPortTest() throws {
        let directory = try TemporaryDirectory()
        let ca = try TestCA("probe", in: directory)
        let server = try ca.issue("server", names: ["127.0.0.1"])
        let client = try ca.issue("client", names: ["warden-probe"])
        let (tlsPort, mutualPort, plainPort, httpPort) = (TestSupport.freePort(), TestSupport.freePort(), TestSupport.freePort(), TestSupport.freePort())
        let tls = try Peer(
            "/usr/bin/openssl", ["s_server", "-accept", "127.0.0.1:\(tlsPort)", "-cert", server.certificate, "-key", server.key, "-www", "-quiet"],
            log: directory.path + "/tls.log")
        defer { tls.stop() }
        let mutual = try Peer(
            "/usr/bin/openssl",
            ["s_server", "-accept", "127.0.0.1:\(mutualPort)", "-cert", server.certificate, "-key", server.key, "-Verify", "1", "-CAfile", ca.certificate,
             "-verify_return_error", "-www", "-quiet"],
            log: directory.path + "/mutual.log")
        defer { mutual.stop() }
        let plain = try GarbageServer(port: plainPort, directory: directory)
        defer { plain.peer.stop() }
        _ = try directory.write("from-outgoing", "here")
        let web = try Peer("/usr/bin/python3", ["-m", "http.server", "--bind", "127.0.0.1", "\(httpPort)", "--directory", directory.path], log: directory.path + "/web.log")
        defer { web.stop() }
        #expect(TestSupport.waitUntil(timeout: 10) { [tlsPort, mutualPort, httpPort].allSatisfy(TestSupport.portOpen) })
        let control = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set statefile \(directory.path)/state
            set pidfile \(directory.path)/warden.pid
            check host trusted with address 127.0.0.1
              if failed port \(tlsPort) ssl options { verify: enable, cacertificatefile: \(ca.certificate) } with timeout 3 seconds then alert
            check host untrusted with address 127.0.0.1
              if failed port \(tlsPort) ssl options { verify: enable } with timeout 3 seconds then alert
            check host unverified with address 127.0.0.1
              if failed port \(tlsPort) type tcpssl with timeout 3 seconds then alert
            check host notls with address 127.0.0.1
              if failed port \(plainPort) ssl with timeout 3 seconds then alert
            check host anonymous with address 127.0.0.1
              if failed port \(mutualPort) ssl protocol http with timeout 3 seconds then alert
            check host introduced with address 127.0.0.1
              if failed port \(mutualPort) ssl options { verify: enable, cacertificatefile: \(ca.certificate), clientpemfile: \(client.pem) }
                 protocol http with timeout 3 seconds then alert
            check host outgoing with address 127.0.0.1
              if failed port \(httpPort) address 127.0.0.2 protocol http request "/from-outgoing" with timeout 3 seconds then alert
            check host nowhere with address 127.0.0.1
              if failed port \(httpPort) address 192.0.2.1 with timeout 3 seconds then alert

            """)
        let check = try TestSupport.run(TestSupport.wardenBinary, ["-t", "-c", control])
        #expect(check.status == 0, "\(check.stderr)")
        let warden = try WardenProcess(controlFile: control, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(warden.waitForLog("'untrusted' failed protocol test [DEFAULT] at [127.0.0.1]:\(tlsPort) [TCP/IP TLS] -- ", timeout: 15), "\(warden.log)")
        #expect(warden.log.contains("certificate verify failed"), "\(warden.log)")
        #expect(warden.waitForLog("'notls' failed protocol test [DEFAULT] at [127.0.0.1]:\(plainPort) [TCP/IP TLS] -- ", timeout: 15), "\(warden.log)")
        #expect(warden.waitForLog("'anonymous' failed protocol test [HTTP] at [127.0.0.1]:\(mutualPort)/ [TCP/IP TLS] -- ", timeout: 15), "\(warden.log)")
        #expect(TestSupport.waitUntil(timeout: 10) { web.output.contains("127.0.0.2 - - ") && web.output.contains("/from-outgoing") }, "\(web.output)")
        #expect(warden.waitForLog("'nowhere' failed protocol test [DEFAULT] at [127.0.0.1]:\(httpPort) [TCP/IP] -- cannot connect to [127.0.0.1]:\(httpPort) -- ", timeout: 15), "\(warden.log)")
        // Events come with a change only: the tests that pass are those that never failed, over cycles
        // in which the others did.
        usleep(2_500_000)
        for quiet in ["'trusted' failed", "'unverified' failed", "'introduced' failed", "'outgoing' failed"] {
            #expect(!warden.log.contains(quiet), "\(quiet): \(warden.log)")
        }
    }
}
