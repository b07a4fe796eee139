import Foundation
import Testing
import WardenTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Debian's pebble (the ACME server Let's Encrypt publishes for testing) on loopback, with
/// pebble-challtestsrv as its DNS, which resolves every name to 127.0.0.1. Its validation
/// authority connects to warden's listeners (`httpPort`, `tlsPort`). Random badNonce answers are
/// left at pebble's default.
private final class Pebble {
    let directory: TemporaryDirectory
    let port = TestSupport.freePort()
    let managementPort = TestSupport.freePort()
    let dnsPort = TestSupport.freePort()
    /// The CA of pebble's own HTTPS listener: warden's `trust`.
    let listenerCA: String
    var pebble: Peer?
    var dns: Peer?

    init(directory: TemporaryDirectory, httpPort: Int, tlsPort: Int) throws {
        self.directory = directory
        let openssl = "/usr/bin/openssl"
        let d = directory.path
        listenerCA = d + "/pebble-ca.pem"
        try directory.write("ext.cnf", "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        for arguments in [
            ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", d + "/pebble-ca.key", "-out", listenerCA, "-days", "2", "-subj", "/CN=pebble listener CA"],
            ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", d + "/pebble.key", "-out", d + "/pebble.csr", "-subj", "/CN=localhost"],
            ["x509", "-req", "-in", d + "/pebble.csr", "-CA", listenerCA, "-CAkey", d + "/pebble-ca.key", "-CAcreateserial", "-out", d + "/pebble.pem", "-days", "2", "-extfile", d + "/ext.cnf"],
        ] {
            let result = try TestSupport.run(openssl, arguments)
            guard result.status == 0 else { throw PebbleError(description: "openssl: \(result.stderr)") }
        }
        try directory.write(
            "pebble.json",
            """
            {"pebble": {"listenAddress": "127.0.0.1:\(port)", "managementListenAddress": "127.0.0.1:\(managementPort)",
              "certificate": "\(d)/pebble.pem", "privateKey": "\(d)/pebble.key", "httpPort": \(httpPort), "tlsPort": \(tlsPort),
              "ocspResponderURL": "", "externalAccountBindingRequired": false}}
            """)
        try start()
    }

    var directoryURL: String { "https://localhost:\(port)/dir" }

    func start() throws {
        dns = try Peer(
            "/usr/bin/pebble-challtestsrv",
            ["-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01", "127.0.0.1:\(dnsPort)", "-http01", "", "-https01", "", "-tlsalpn01", "",
             "-management", "127.0.0.1:\(TestSupport.freePort())"],
            log: directory.path + "/challtestsrv.log")
        // PEBBLE_VA_NOSLEEP: validate at once rather than after a random pause of up to 15 s.
        pebble = try Peer(
            "/usr/bin/env", ["PEBBLE_VA_NOSLEEP=1", "/usr/bin/pebble", "-config", directory.path + "/pebble.json", "-dnsserver", "127.0.0.1:\(dnsPort)"],
            log: directory.path + "/pebble.log")
        guard TestSupport.waitUntil(timeout: 20, { TestSupport.portOpen(port) && TestSupport.portOpen(managementPort) }) else {
            throw PebbleError(description: "pebble did not start: \(pebble?.output ?? "")")
        }
    }

    func stop() {
        pebble?.stop()
        dns?.stop()
    }

    /// The root pebble issues under (new at each start), from its management interface.
    func root() throws -> String {
        let path = directory.path + "/pebble-root.pem"
        let result = try TestSupport.run("/usr/bin/curl", ["-sS", "--cacert", listenerCA, "-o", path, "https://localhost:\(managementPort)/roots/0"])
        guard result.status == 0 else { throw PebbleError(description: "pebble's root: \(result.stderr)") }
        return path
    }

    /// Certificates pebble issued: one per finalized order.
    var issued: Int { (pebble?.output ?? "").components(separatedBy: "Issued certificate serial").count - 1 }
}

private struct PebbleError: Error, CustomStringConvertible {
    let description: String
}

@Suite("Automatic HTTPS (ACME) against pebble", .serialized)
struct ACMETests {
    /// A TLS client in Python: the SHA-256 of the certificate a new connection gets, or (with a gate
    /// file) one connection kept open across a renewal, asked once before and once after.
    static let client = """
        import hashlib, os, socket, ssl, sys, time
        port, name, ca, gate = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
        context = ssl.create_default_context(cafile=ca)
        s = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=name)
        def get(path):
            s.sendall(("GET %s HTTP/1.1\\r\\nHost: %s\\r\\n\\r\\n" % (path, name)).encode())
            data = b""
            while b"\\r\\n\\r\\n" not in data: data += s.recv(65536)
            head, body = data.split(b"\\r\\n\\r\\n", 1)
            length = int([l.split(b":")[1] for l in head.split(b"\\r\\n") if l.lower().startswith(b"content-length")][0])
            while len(body) < length: body += s.recv(65536)
            return head.split(b"\\r\\n")[0].decode() + " " + body.decode()
        print("certificate", hashlib.sha256(s.getpeercert(True)).hexdigest(), flush=True)
        print("first", get("/before"), flush=True)
        if gate == "-": sys.exit(0)
        deadline = time.time() + 60
        while not os.path.exists(gate) and time.time() < deadline: time.sleep(0.05)
        print("second", get("/after"), flush=True)
        """

    fileprivate func controlFile(
        _ directory: TemporaryDirectory, pebble: Pebble, httpPort: Int, tlsPort: Int, upstream: EchoUpstream, host: String,
        acme: String = "", proxy: String = "", extra: String = ""
    ) throws -> String {
        try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            \(extra)
            set acme directory "\(pebble.directoryURL)" email "ops@example.com" storage \(directory.path)/acme
                trust "\(pebble.listenerCA)" \(acme)
            set proxy
                listen 127.0.0.1 port \(httpPort)
                listen 127.0.0.1 port \(tlsPort) tls auto
                \(proxy)
            check site app with host "\(host)" alias "www.\(host)"
                pass / to http://127.0.0.1:\(upstream.port)/
                redirect to https
                hsts max-age 1 year include subdomains
            """, mode: 0o600)
    }

    func curl(_ arguments: [String]) throws -> TestSupport.ProcessResult {
        try TestSupport.run("/usr/bin/curl", ["-sS", "--max-time", "10"] + arguments)
    }

    @Test func certificatesAreObtainedServedRenewedKeptAndTheirFailuresAlerted() throws {
        guard let _ = TestSupport.peer("pebble"), TestSupport.peer("pebble-challtestsrv") != nil else {
            #expect(!TestSupport.isCI, "pebble is not installed (.ci/run installs it)")
            return
        }
        let directory = try TemporaryDirectory()
        let httpPort = TestSupport.freePort(), tlsPort = TestSupport.freePort()
        let pebble = try Pebble(directory: directory, httpPort: httpPort, tlsPort: tlsPort)
        defer { pebble.stop() }
        let upstream = try EchoUpstream(directory: directory)
        defer { upstream.stop() }

        // 1. http-01, through a privilege-dropped proxy worker.
        let rc = try controlFile(
            directory, pebble: pebble, httpPort: httpPort, tlsPort: tlsPort, upstream: upstream, host: "app.test", acme: "challenge http-01",
            proxy: "user nobody")
        var warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/warden.log")
        defer { warden.stop() }
        #expect(warden.waitForLog("certificate obtained for app.test, www.app.test", timeout: 60), "\(warden.log)\n\(pebble.pebble?.output ?? "")")
        let root = try pebble.root()
        let served = try curl(["-i", "--cacert", root, "--resolve", "www.app.test:\(tlsPort):127.0.0.1", "https://www.app.test:\(tlsPort)/hello"])
        #expect(served.status == 0, "\(served.stderr)")
        #expect(served.stdout.contains("\"path\": \"/hello\"") || served.stdout.contains("/hello"), "\(served.stdout)")
        #expect(served.stdout.lowercased().contains("strict-transport-security: max-age=31536000; includesubdomains"), "\(served.stdout)")
        let redirect = try curl(["-i", "--resolve", "app.test:\(httpPort):127.0.0.1", "http://app.test:\(httpPort)/x?y=1"])
        #expect(redirect.stdout.hasPrefix("HTTP/1.1 301"), "\(redirect.stdout)")
        #expect(redirect.stdout.contains("Location: https://app.test:\(tlsPort)/x?y=1"), "\(redirect.stdout)")
        let post = try curl(["-i", "-X", "POST", "--data", "a", "--resolve", "app.test:\(httpPort):127.0.0.1", "http://app.test:\(httpPort)/form"])
        #expect(post.stdout.hasPrefix("HTTP/1.1 308"), "\(post.stdout)")
        var info = stat()
        stat(directory.path + "/acme", &info)
        #expect(info.st_mode & 0o777 == 0o700)
        for file in ["/acme/account.key", "/acme/certificates/app.pem"] {
            stat(directory.path + file, &info)
            #expect(info.st_mode & 0o777 == 0o600, "\(file)")
        }
        let workers = TestSupport.processes(containing: "proxy-worker -c \(rc)")
        #expect(!workers.isEmpty, "the proxy ran as a worker")
        // A worker started again after a crash gets the certificate too.
        for pid in workers { kill(pid, SIGKILL) }
        #expect(warden.waitForLog("starting it again", timeout: 10))
        #expect(TestSupport.waitUntil(timeout: 10) {
            (try? curl(["--cacert", root, "--resolve", "app.test:\(tlsPort):127.0.0.1", "https://app.test:\(tlsPort)/respawned"]).status) == 0
        }, "\(warden.log)")

        // 2. Killed and started again: the stored certificate is served, no new order.
        let issuedBefore = pebble.issued
        warden.kill9()
        for pid in TestSupport.processes(containing: "proxy-worker -c \(rc)") { kill(pid, SIGKILL) }
        #expect(TestSupport.waitUntil(timeout: 10) { TestSupport.processes(containing: "proxy-worker -c \(rc)").isEmpty })
        warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/warden2.log")
        #expect(warden.waitForLog("'app' serves its stored certificate", timeout: 20), "\(warden.log)")
        #expect(TestSupport.waitUntil(timeout: 10) {
            (try? curl(["--cacert", root, "--resolve", "app.test:\(tlsPort):127.0.0.1", "https://app.test:\(tlsPort)/again"]).status) == 0
        })
        sleep(3)
        #expect(pebble.issued == issuedBefore, "\(warden.log)")
        #expect(!warden.log.contains("ordering a certificate"), "\(warden.log)")
        warden.stop()

        // 3. tls-alpn-01, with the proxy in the daemon's process; then a renewal forced by
        // `renew before` (pebble's certificates live 5 years) while a connection stays open.
        let rcALPN = try controlFile(
            directory, pebble: pebble, httpPort: httpPort, tlsPort: tlsPort, upstream: upstream, host: "alpn.test", acme: "challenge tls-alpn-01")
        warden = try WardenProcess(controlFile: rcALPN, logPath: directory.path + "/warden3.log")
        #expect(warden.waitForLog("certificate obtained for alpn.test, www.alpn.test", timeout: 60), "\(warden.log)\n\(pebble.pebble?.output ?? "")")
        let alpn = try curl(["--cacert", root, "--resolve", "alpn.test:\(tlsPort):127.0.0.1", "https://alpn.test:\(tlsPort)/alpn"])
        #expect(alpn.status == 0 && alpn.stdout.contains("/alpn"), "\(alpn.stderr)")

        let script = try directory.write("client.py", Self.client)
        let gate = directory.path + "/gate"
        let heldOpen = Process()
        heldOpen.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        heldOpen.arguments = ["python3", script, String(tlsPort), "alpn.test", root, gate]
        let output = Pipe()
        heldOpen.standardOutput = output
        try heldOpen.run()
        defer { if heldOpen.isRunning { kill(heldOpen.processIdentifier, SIGKILL) } }
        let lines = LinesReader(output.fileHandleForReading)
        let before = lines.next(timeout: 10) ?? ""
        #expect(lines.next(timeout: 10)?.hasPrefix("first HTTP/1.1 200") == true)
        _ = try controlFile(
            directory, pebble: pebble, httpPort: httpPort, tlsPort: tlsPort, upstream: upstream, host: "alpn.test",
            acme: "challenge tls-alpn-01 renew before 3000 days")
        warden.signal(SIGHUP)
        #expect(warden.waitForLog("certificate renewed for alpn.test", timeout: 60), "\(warden.log)")
        let fresh = try TestSupport.run("/usr/bin/env", ["python3", script, String(tlsPort), "alpn.test", root, "-"])
        let after = fresh.stdout.split(separator: "\n").first.map(String.init) ?? ""
        #expect(after.hasPrefix("certificate ") && before.hasPrefix("certificate ") && after != before, "\(before) / \(after) \(fresh.stderr)")
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        #expect(lines.next(timeout: 10)?.hasPrefix("second HTTP/1.1 200") == true, "the connection opened before the renewal")
        heldOpen.waitUntilExit()
        warden.stop()

        // 4. The ACME server is gone when a renewal is due: the failure is an event, and its alert is mailed.
        pebble.stop()
        let smtp = try SMTPSink(directory: directory)
        defer { smtp.stop() }
        let rcDown = try controlFile(
            directory, pebble: pebble, httpPort: httpPort, tlsPort: tlsPort, upstream: upstream, host: "alpn.test",
            acme: "challenge tls-alpn-01 renew before 3000 days",
            extra: """
                set mailserver 127.0.0.1 port \(smtp.port)
                set alert ops@example.com
                check site new with host "new.test"
                    pass / to http://127.0.0.1:\(upstream.port)/
                """)
        warden = try WardenProcess(controlFile: rcDown, logPath: directory.path + "/warden4.log")
        #expect(warden.waitForLog("certificate renewal failed", timeout: 30), "\(warden.log)")
        #expect(TestSupport.waitUntil(timeout: 20) { smtp.mails.contains { $0.subject.contains("Certificate failed") && $0.subject.contains("app") } },
            "\(smtp.mails.map(\.subject)) \(warden.log)")
        // The stored certificate is still served meanwhile.
        let still = try curl(["--cacert", root, "--resolve", "alpn.test:\(tlsPort):127.0.0.1", "https://alpn.test:\(tlsPort)/still"])
        #expect(still.status == 0, "\(still.stderr)")
        // A site without a certificate yet is served with a self-signed placeholder, which no client trusts.
        #expect(warden.waitForLog("'new' certificate order failed", timeout: 30), "\(warden.log)")
        let untrusted = try curl(["--cacert", root, "--resolve", "new.test:\(tlsPort):127.0.0.1", "https://new.test:\(tlsPort)/"])
        #expect(untrusted.status == 60, "\(untrusted.stderr)")
        let placeholder = try curl(["-k", "-v", "--resolve", "new.test:\(tlsPort):127.0.0.1", "https://new.test:\(tlsPort)/placeholder"])
        #expect(placeholder.status == 0 && placeholder.stdout.contains("/placeholder"), "\(placeholder.stderr)")
        #expect(placeholder.stderr.contains("subject: CN=new.test") && placeholder.stderr.contains("issuer: CN=new.test"), "\(placeholder.stderr)")
        warden.stop()
    }
}

/// Lines of a child's output, read as they come, each wait bounded.
private final class LinesReader: @unchecked Sendable {
    private let handle: FileHandle
    private var buffer = Data()

    init(_ handle: FileHandle) {
        self.handle = handle
    }

    func next(timeout: Double) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let newline = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            var poller = pollfd(fd: handle.fileDescriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) > 0 else { continue }
            let chunk = handle.availableData
            if chunk.isEmpty { return nil }
            buffer.append(chunk)
        }
        return nil
    }
}
