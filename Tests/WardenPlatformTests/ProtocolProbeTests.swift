import Foundation
import Testing
import WardenConfig
@testable import WardenPlatform
import WardenTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Each protocol test against the real Debian server on a free port of 127.0.0.1: it passes while the
/// server is up, and fails once the server is stopped and when something answering garbage holds the port.
@Suite("Protocol tests against real servers", .serialized)
struct ProtocolProbeTests {
    /// The whole life of one protocol test; `garbage` is what its failure message says about the garbage answer.
    func exercise(
        _ name: String, port: Int, udp: Bool = false, tls: Bool = false, dialogue: [DialogueStep] = [],
        options: [String: String] = [:], server: Peer, directory: TemporaryDirectory, garbage: String
    ) async throws {
        let passing = await Probe.untilPassing(name, port: port, udp: udp, tls: tls, dialogue: dialogue, options: options)
        #expect(passing.succeeded, "\(name): \(passing.message)\n\(server.output)")
        server.stop()
        let stopped = await Probe.check(name, port: port, udp: udp, tls: tls, dialogue: dialogue, options: options)
        #expect(!stopped.succeeded, "\(name) passed with its server stopped")
        #expect(stopped.message.contains("Connection refused"), "\(name): \(stopped.message)")
        let impostor = try GarbageServer(port: port, directory: directory)
        defer { impostor.peer.stop() }
        let wrong = await Probe.check(name, port: port, udp: udp, tls: tls, dialogue: dialogue, options: options)
        #expect(!wrong.succeeded, "\(name) passed against garbage")
        #expect(wrong.message.contains(garbage), "\(name): \(wrong.message)")
        print("\(name): up: \(passing.message); stopped: \(stopped.message); garbage: \(wrong.message)")
    }

    @Test func smtp() async throws {
        guard let python = TestSupport.server("/usr/bin/python3"), SMTPSink.available else {
            if TestSupport.isCI { Issue.record("aiosmtpd is missing") }
            return
        }
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        let server = try Peer(python, ["-m", "aiosmtpd", "-n", "-l", "127.0.0.1:\(port)"], log: directory.path + "/smtpd.log")
        try await exercise("smtp", port: port, server: server, directory: directory, garbage: "SMTP error: garbage")
    }

    /// 'protocol smtp username "u" password "p"': AUTH PLAIN where offered, AUTH LOGIN otherwise.
    @Test(arguments: [false, true]) func smtpLogin(excludePlain: Bool) async throws {
        guard SMTPSink.available else {
            if TestSupport.isCI { Issue.record("aiosmtpd is missing") }
            return
        }
        let directory = try TemporaryDirectory()
        var options = SMTPSink.Options()
        options.authUser = "monit"
        options.authPassword = "secret"
        options.excludePlain = excludePlain
        let sink = try SMTPSink(directory: directory, options: options)
        defer { sink.stop() }
        let login = await Probe.check("smtp", port: sink.port, options: ["username": "monit", "password": "secret"])
        #expect(login.succeeded, "\(login.message)")
        // aiosmtpd holds back its 535 to a wrong password for longer than the test's timeout.
        let refused = await Probe.check("smtp", port: sink.port, timeout: .seconds(1), options: ["username": "monit", "password": "wrong"])
        #expect(!refused.succeeded)
        let used = (try? String(contentsOfFile: sink.store + ".auth", encoding: .utf8)) ?? ""
        #expect(used == (excludePlain ? "LOGIN ok\nLOGIN fail\n" : "PLAIN ok\nPLAIN fail\n"), "\(used)")
    }

    @Test func ssh() async throws {
        guard let sshd = TestSupport.server("/usr/sbin/sshd") else { return }
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        // sshd insists on its privilege separation directory.
        mkdir("/run/sshd", 0o755)
        try TestSupport.run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", directory.path + "/hostkey"])
        let config = try directory.write(
            "sshd_config",
            "Port \(port)\nListenAddress 127.0.0.1\nHostKey \(directory.path)/hostkey\nPidFile \(directory.path)/sshd.pid\nUsePAM no\n")
        let server = try Peer(sshd, ["-D", "-e", "-f", config], log: directory.path + "/sshd.log")
        try await exercise("ssh", port: port, server: server, directory: directory, garbage: "SSH: protocol error garbage")
    }

    @Test func redis() async throws {
        guard let redis = TestSupport.server("/usr/bin/redis-server") else { return }
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        let server = try Peer(
            redis, ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory.path],
            log: directory.path + "/redis.log")
        try await exercise("redis", port: port, server: server, directory: directory, garbage: "REDIS: PING response error -- garbage")
    }

    @Test func memcache() async throws {
        guard let memcached = TestSupport.server("/usr/bin/memcached") else { return }
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        let server = try Peer(memcached, ["-l", "127.0.0.1", "-p", "\(port)", "-U", "0", "-u", "root"], log: directory.path + "/memcached.log")
        try await exercise("memcache", port: port, server: server, directory: directory, garbage: "MEMCACHE:")
    }

    @Test func mysql() async throws {
        guard let mariadbd = TestSupport.server("/usr/sbin/mariadbd"), let install = TestSupport.server("/usr/bin/mariadb-install-db") else { return }
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        let data = directory.path + "/data"
        let installed = try TestSupport.run(
            install, ["--no-defaults", "--datadir=\(data)", "--user=root", "--skip-test-db", "--auth-root-authentication-method=normal"],
            timeout: 120)
        #expect(installed.status == 0, "\(installed.stdout)\(installed.stderr)")
        let server = try Peer(
            mariadbd,
            [
                "--no-defaults", "--datadir=\(data)", "--user=root", "--port=\(port)", "--bind-address=127.0.0.1",
                "--socket=\(directory.path)/mysql.sock", "--pid-file=\(directory.path)/mysql.pid", "--skip-log-bin",
            ], log: directory.path + "/mariadb.log")
        #expect(await Probe.untilPassing("mysql", port: port).succeeded, "\(server.output)")
        // A login as monit makes it, with 'username "monit" password "secret"'.
        let created = try TestSupport.run(
            "/usr/bin/mariadb",
            ["--no-defaults", "-S", "\(directory.path)/mysql.sock", "-u", "root", "-e", "CREATE USER 'monit'@'127.0.0.1' IDENTIFIED BY 'secret'"])
        #expect(created.status == 0, "\(created.stderr)")
        let login = await Probe.check("mysql", port: port, options: ["username": "monit", "password": "secret"])
        #expect(login.succeeded, "\(login.message)")
        let refused = await Probe.check("mysql", port: port, options: ["username": "monit", "password": "wrong"])
        #expect(refused.message.hasPrefix("Server returned error code 1045 -- Access denied for user 'monit'@"), "\(refused.message)")
        try await exercise("mysql", port: port, server: server, directory: directory, garbage: "not MySQL protocol")
    }

    @Test func pgsql() async throws {
        guard let postgres = TestSupport.server("/usr/lib/postgresql/15/bin/postgres") else { return }
        let bin = (postgres as NSString).deletingLastPathComponent
        guard let user = getpwnam("postgres")?.pointee.pw_uid else {
            Issue.record("no postgres user: the postgresql package makes it")
            return
        }
        let directory = try TemporaryDirectory()
        // postgres runs as its own user, which must reach the directory.
        chmod(directory.path, 0o755)
        let data = directory.path + "/data"
        mkdir(data, 0o700)
        chown(data, user, getpwuid(user).pointee.pw_gid)
        let port = TestSupport.freePort()
        let initdb = try TestSupport.run(
            "/usr/bin/setpriv",
            ["--reuid=\(user)", "--regid=\(getpwuid(user).pointee.pw_gid)", "--clear-groups", bin + "/initdb", "-D", data, "-A", "trust", "-U", "postgres"],
            timeout: 120)
        #expect(initdb.status == 0, "\(initdb.stdout)\(initdb.stderr)")
        // monit's logins: `monit` with an MD5 password, `clear` with a cleartext one; root/root (no
        // credentials) has no entry and gets an error, which monit takes as the server's answer.
        try """
            local all all trust
            host all monit 127.0.0.1/32 md5
            host all clear 127.0.0.1/32 password
            """.write(toFile: data + "/pg_hba.conf", atomically: true, encoding: .utf8)
        let server = try Peer(
            bin + "/postgres", ["-D", data, "-p", "\(port)", "-k", data, "-c", "listen_addresses=127.0.0.1"],
            log: directory.path + "/postgres.log", uid: user)
        let up = await Probe.untilPassing("pgsql", port: port)
        #expect(up.succeeded, "\(up.message)\n\(server.output)")
        let roles = try TestSupport.run(
            bin + "/psql",
            ["-h", data, "-p", "\(port)", "-U", "postgres", "-c",
             "SET password_encryption = 'md5'; CREATE ROLE monit LOGIN PASSWORD 'secret'; CREATE ROLE clear LOGIN PASSWORD 'secret';"])
        #expect(roles.status == 0, "\(roles.stdout)\(roles.stderr)")
        for user in ["monit", "clear"] {
            let login = await Probe.check("pgsql", port: port, options: ["username": user, "password": "secret", "database": "postgres"])
            #expect(login.succeeded, "\(user): \(login.message)")
        }
        let wrong = await Probe.check("pgsql", port: port, options: ["username": "monit", "password": "wrong", "database": "postgres"])
        #expect(wrong.message.hasPrefix("PGSQL: startup message error -- Severity=FATAL, Code=28P01"), "\(wrong.message)")
        let missing = await Probe.check("pgsql", port: port, options: ["username": "monit", "password": "secret", "database": "nosuch"])
        #expect(missing.message.hasPrefix("PGSQL: startup message error -- Severity=FATAL, Code=3D000"), "\(missing.message)")
        let ownDatabase = await Probe.check("pgsql", port: port, options: ["username": "monit", "password": "secret"])
        #expect(!ownDatabase.succeeded && ownDatabase.message.contains("3D000"), "the database defaults to the user's name: \(ownDatabase.message)")
        try await exercise("pgsql", port: port, server: server, directory: directory, garbage: "PGSQL:")
    }

    /// dovecot with plain IMAP and POP3 listeners (and their TLS twins when `certificate` is given).
    func dovecot(_ directory: TemporaryDirectory, imap: Int, pop: Int, imaps: Int = 0, pops: Int = 0, certificate: (cert: String, key: String)? = nil) throws -> Peer? {
        guard let dovecot = TestSupport.server("/usr/sbin/dovecot") else { return nil }
        let ssl = certificate.map { "ssl = yes\nssl_cert = <\($0.cert)\nssl_key = <\($0.key)\n" } ?? "ssl = no\n"
        let config = try directory.write(
            "dovecot.conf",
            """
            base_dir = \(directory.path)/run
            state_dir = \(directory.path)/state
            log_path = \(directory.path)/dovecot.log
            protocols = imap pop3
            listen = 127.0.0.1
            \(ssl)
            service imap-login {
              inet_listener imap {
                port = \(imap)
              }
              inet_listener imaps {
                port = \(imaps)
              }
            }
            service pop3-login {
              inet_listener pop3 {
                port = \(pop)
              }
              inet_listener pop3s {
                port = \(pops)
              }
            }
            passdb {
              driver = static
              args = password=unused
            }
            userdb {
              driver = static
              args = uid=nobody gid=nogroup home=/nonexistent
            }

            """)
        return try Peer(dovecot, ["-F", "-c", config], log: directory.path + "/dovecot.out")
    }

    @Test func imap() async throws {
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        guard let server = try dovecot(directory, imap: port, pop: TestSupport.freePort()) else { return }
        try await exercise("imap", port: port, server: server, directory: directory, garbage: "IMAP: invalid greeting -- garbage")
    }

    @Test func pop() async throws {
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        guard let server = try dovecot(directory, imap: TestSupport.freePort(), pop: port) else { return }
        try await exercise("pop", port: port, server: server, directory: directory, garbage: "POP: invalid greeting -- garbage")
    }

    @Test func ftp() async throws {
        guard let vsftpd = TestSupport.server("/usr/sbin/vsftpd") else { return }
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        let empty = directory.path + "/empty"
        mkdir(empty, 0o755)
        // vsftpd wants a root-owned configuration and an empty directory for its chroot.
        let config = try directory.write(
            "vsftpd.conf",
            """
            listen=YES
            listen_address=127.0.0.1
            listen_port=\(port)
            background=NO
            anonymous_enable=YES
            anon_root=\(empty)
            local_enable=NO
            secure_chroot_dir=\(empty)
            run_as_launching_user=YES
            seccomp_sandbox=NO

            """)
        let server = try Peer(vsftpd, [config], log: directory.path + "/vsftpd.log")
        try await exercise("ftp", port: port, server: server, directory: directory, garbage: "FTP: invalid greeting -- garbage")
    }

    func unbound(_ directory: TemporaryDirectory, port: Int) throws -> Peer? {
        guard let unbound = TestSupport.server("/usr/sbin/unbound") else { return nil }
        // The root zone served locally: no network, yet an answer with records, as monit wants.
        let config = try directory.write(
            "unbound.conf",
            """
            server:
              interface: 127.0.0.1
              port: \(port)
              do-daemonize: no
              username: ""
              chroot: ""
              directory: "\(directory.path)"
              pidfile: ""
              use-syslog: no
              logfile: ""
              do-ip6: no
              local-zone: "." static
              local-data: ". 3600 IN NS localhost."
              local-data: ". 3600 IN SOA localhost. nobody.invalid. 1 3600 600 86400 3600"
            remote-control:
              control-enable: no

            """)
        return try Peer(unbound, ["-d", "-c", config], log: directory.path + "/unbound.log")
    }

    @Test func dnsOverTCP() async throws {
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        guard let server = try unbound(directory, port: port) else { return }
        try await exercise("dns", port: port, server: server, directory: directory, garbage: "DNS:")
    }

    @Test func dnsOverUDP() async throws {
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        guard let server = try unbound(directory, port: port) else { return }
        try await exercise("dns", port: port, udp: true, server: server, directory: directory, garbage: "DNS:")
    }

    @Test func ntp3() async throws {
        guard let chronyd = TestSupport.server("/usr/sbin/chronyd") else { return }
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        // A server of its own local clock (stratum 10), which leaves the system clock alone (-x).
        let config = try directory.write(
            "chrony.conf",
            "port \(port)\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 10\ncmdport 0\npidfile \(directory.path)/chronyd.pid\n")
        let server = try Peer(chronyd, ["-d", "-x", "-u", "root", "-f", config], log: directory.path + "/chronyd.log")
        try await exercise("ntp3", port: port, udp: true, server: server, directory: directory, garbage: "NTP: Received 9 bytes from server, expected 48 bytes")
    }

    @Test func ldap3() async throws {
        guard let slapd = TestSupport.server("/usr/sbin/slapd") else { return }
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        let config = try directory.write("slapd.conf", "pidfile \(directory.path)/slapd.pid\nargsfile \(directory.path)/slapd.args\n")
        let server = try Peer(slapd, ["-d", "0", "-h", "ldap://127.0.0.1:\(port)/", "-f", config], log: directory.path + "/slapd.log")
        try await exercise("ldap3", port: port, server: server, directory: directory, garbage: "LDAP: invalid response")
    }

    @Test func mqtt() async throws {
        guard let mosquitto = TestSupport.server("/usr/sbin/mosquitto") else { return }
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        let config = try directory.write("mosquitto.conf", "listener \(port) 127.0.0.1\nallow_anonymous true\n")
        let server = try Peer(mosquitto, ["-c", config], log: directory.path + "/mosquitto.log")
        try await exercise("mqtt", port: port, server: server, directory: directory, garbage: "MQTT: unexpected response")
    }

    @Test func websocket() async throws {
        guard let python = TestSupport.server("/usr/bin/python3") else { return }
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        // python3-websockets answers pings itself; it upgrades /ws only.
        let script = try directory.write(
            "ws.py",
            """
            import asyncio, http, sys, websockets
            async def handler(ws, path=None):
                async for _ in ws:
                    pass
            async def only_ws(path, headers):
                if path != "/ws":
                    return http.HTTPStatus.NOT_FOUND, [], b"not here\\n"
            async def main():
                async with websockets.serve(handler, "127.0.0.1", int(sys.argv[1]), process_request=only_ws):
                    await asyncio.Future()
            asyncio.run(main())

            """)
        let server = try Peer(python, [script, "\(port)"], log: directory.path + "/ws.log")
        #expect(await Probe.untilPassing("websocket", port: port, options: ["request": "/ws"]).succeeded, "\(server.output)")
        let elsewhere = await Probe.check("websocket", port: port)
        #expect(elsewhere.message == "WEBSOCKET: invalid status -- HTTP/1.1 404 Not Found", "\(elsewhere.message)")
        try await exercise(
            "websocket", port: port, options: ["request": "/ws"], server: server, directory: directory,
            garbage: "WEBSOCKET: invalid status -- garbage")
    }

    @Test func genericSendExpect() async throws {
        guard let redis = TestSupport.server("/usr/bin/redis-server") else { return }
        let directory = try TemporaryDirectory()
        let port = TestSupport.freePort()
        let server = try Peer(
            redis, ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory.path],
            log: directory.path + "/redis.log")
        try await exercise(
            "generic", port: port, dialogue: [.send("PING\\0x0d\\0x0a"), .expect("^\\+PONG")], server: server, directory: directory,
            garbage: "GENERIC: received unexpected data [garbage]")
    }
}

/// Every protocol `-t` accepts has a checker of its own, and no other name passes on a connection alone.
@Test func everySpokenProtocolHasAChecker() async throws {
    let directory = try TemporaryDirectory()
    let port = TestSupport.freePort()
    let impostor = try GarbageServer(port: port, directory: directory)
    defer { impostor.peer.stop() }
    for name in SpokenProtocols.names.subtracting(["default", "generic"]).sorted() {
        let result = await Probe.check(name, port: port, udp: name == "ntp3", timeout: .seconds(2))
        #expect(!result.succeeded, "\(name) passed against garbage")
        #expect(!result.message.contains("does not speak"), "\(name): \(result.message)")
    }
    let unknown = await Probe.check("clamav", port: port)
    #expect(unknown.message == "warden does not speak protocol 'clamav'")
    let unusedOption = await Probe.check("redis", port: port, options: ["username": "monit"])
    #expect(unusedOption.message == "warden does not use option 'username' of protocol 'redis'")
    #expect(await Probe.check("default", port: port).succeeded)
}
