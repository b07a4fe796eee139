import Foundation
import Testing
import WardenTestSupport

/// `listen … ssl { certificate: …, key: … }` files replaced while warden runs (issue 23): new
/// connections get the new certificate, open ones keep theirs, and a pair that does not hold together
/// is not served.
@Suite("Certificate files reloaded", .serialized)
struct CertificateReloadTests {
    /// `worker`: the proxy runs as nobody and cannot read the files (0600, root's); the daemon reads
    /// them and sends the pair through the worker's pipe.
    @Test(arguments: [false, true])
    func renewedFilesAreServedToNewConnectionsWhileOpenOnesKeepTheirs(worker: Bool) throws {
        if worker, getuid() != 0 { return }
        let directory = try TemporaryDirectory()
        chmod(directory.path, 0o755)
        let ca = try TestCA("reload", in: directory)
        let one = try ca.issue("one", names: ["app.test"]), two = try ca.issue("two", names: ["app.test"])
        // Valid for longer than the others, so the status tells it apart.
        let three = try ca.issue("three", names: ["app.test"], days: 90)
        let live = directory.path + "/live"
        mkdir(live, 0o700)
        let certificate = live + "/fullchain.pem", key = live + "/privkey.pem"
        /// As certbot does: each file written beside and renamed over the old one.
        func install(certificate source: String, key keySource: String) throws {
            for (from, to) in [(source, certificate), (keySource, key)] {
                try? FileManager.default.removeItem(atPath: to + ".new")
                try FileManager.default.copyItem(atPath: from, toPath: to + ".new")
                chmod(to + ".new", 0o600)
                rename(to + ".new", to)
            }
        }
        try install(certificate: one.certificate, key: one.key)
        try directory.write("public/ping", "pong", mode: 0o644)
        chmod(directory.path + "/public", 0o755)
        let port = TestSupport.freePort(), httpd = TestSupport.freePort()
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set httpd port \(httpd) and use address 127.0.0.1
                allow 127.0.0.1
            set proxy
                listen 127.0.0.1 port \(port) with ssl { certificate: \(certificate), key: \(key) }
                \(worker ? "user nobody group nogroup" : "")
            check site main with host "app.test"
                serve / from \(directory.path)/public
            """)
        let warden = try WardenProcess(controlFile: rc, logPath: directory.path + "/log")
        defer { warden.stop() }
        #expect(warden.waitForLog("proxy listening on https://", timeout: 15), "\(warden.log)")
        if worker { #expect(warden.waitForLog("proxy worker running as nobody", timeout: 15), "\(warden.log)") }

        func fingerprint(_ file: String) throws -> String {
            let out = try TestSupport.run("/usr/bin/openssl", ["x509", "-in", file, "-noout", "-fingerprint", "-sha256"]).stdout
            return String(out.split(separator: "=").last ?? "").replacingOccurrences(of: ":", with: "").trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        }
        /// The certificate a new connection is served.
        func served() -> String? {
            guard let hello = try? TestSupport.run("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(port)", "-servername", "app.test"], timeout: 10),
                let pem = hello.stdout.firstRange(of: "-----BEGIN CERTIFICATE-----").map({ String(hello.stdout[$0.lowerBound...]) }),
                let out = try? TestSupport.run("/usr/bin/openssl", ["x509", "-noout", "-fingerprint", "-sha256"], input: pem)
            else { return nil }
            return String(out.stdout.split(separator: "=").last ?? "").replacingOccurrences(of: ":", with: "").trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        }
        #expect(TestSupport.waitUntil(timeout: 10) { served() == (try? fingerprint(one.certificate)) })

        // A keep-alive connection opened now, asked again after the renewal.
        let gate = directory.path + "/gate", opened = directory.path + "/opened"
        let open = Background {
            (try? TestSupport.run("/usr/bin/python3", ["-c", """
                import hashlib, os, socket, ssl, time
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                s = context.wrap_socket(socket.create_connection(("127.0.0.1", \(port)), timeout=30), server_hostname="app.test")
                peer = hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()
                def ask():
                    s.sendall(b"GET /ping HTTP/1.1\\r\\nHost: app.test\\r\\n\\r\\n")
                    data = b""
                    while not data.endswith(b"pong"):
                        chunk = s.recv(65536)
                        if not chunk: return "closed"
                        data += chunk
                    return data.split(b"\\r\\n")[0].decode()
                print(peer, ask())
                open("\(opened)", "w").close()
                for _ in range(600):
                    if os.path.exists("\(gate)"): break
                    time.sleep(0.05)
                print(peer, ask())
                """], timeout: 60).stdout) ?? ""
        }
        #expect(TestSupport.waitUntil(timeout: 10) { FileManager.default.fileExists(atPath: opened) })

        try install(certificate: two.certificate, key: two.key)
        #expect(TestSupport.waitUntil(timeout: 15) { served() == (try? fingerprint(two.certificate)) }, "\(warden.log)")
        #expect(warden.waitForLog("certificate reloaded from '\(certificate)': serial ", timeout: 5), "\(warden.log)")
        #expect(warden.waitForLog("proxy: serving the new certificate of '\(certificate)'", timeout: 5), "\(warden.log)")
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        let first = try fingerprint(one.certificate)
        #expect(open.value(timeout: 30) == "\(first) HTTP/1.1 200 OK\n\(first) HTTP/1.1 200 OK\n", "the open connection keeps its certificate and stays open")

        // A certificate with the key of another: reported, and the renewed pair is still served.
        try install(certificate: three.certificate, key: two.key)
        #expect(warden.waitForLog("are not served: the key does not match the certificate", timeout: 15), "\(warden.log)")
        #expect(served() == (try fingerprint(two.certificate)))
        func site() throws -> [String: Any]? {
            let json = try TestSupport.run(TestSupport.wardenBinary, ["-c", rc, "status", "--json"]).stdout
            let document = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
            return ((document?["sites"] as? [[String: Any]]) ?? []).first { $0["name"] as? String == "main" }
        }
        /// The days until the certificate the status shows expires: 30 for two, 90 for three.
        func daysShown() throws -> Int? {
            let notAfter = (try site()?["certificate"] as? [String: Any])?["notAfter"] as? Double
            return notAfter.map { Int((($0 - Date().timeIntervalSince1970) / 86400).rounded()) }
        }
        let events = (try site()?["events"] as? [[String: Any]] ?? []).compactMap { $0["message"] as? String }
        #expect(events.contains { $0.hasPrefix("certificate reloaded from") }, "\(events)")
        #expect(events.contains { $0.contains("are not served: the key does not match") }, "\(events)")
        // Wait a cycle: the status shows the pair served, not the refused files.
        Thread.sleep(forTimeInterval: 1.5)
        #expect(try daysShown() == 30)
        // Its key follows: served.
        try install(certificate: three.certificate, key: three.key)
        #expect(TestSupport.waitUntil(timeout: 15) { served() == (try? fingerprint(three.certificate)) }, "\(warden.log)")
        #expect(TestSupport.waitUntil(timeout: 5) { (try? daysShown()) == 90 })
        #expect(!warden.log.contains("Fatal error"))
    }
}
