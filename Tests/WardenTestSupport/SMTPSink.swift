import Foundation

/// A test peer that did not become ready: it exited, or did not answer in time. Carries its output.
public struct PeerStartError: Error, CustomStringConvertible {
    public var peer: String
    public var exited: Bool
    public var output: String

    public var description: String {
        "\(peer) \(exited ? "exited before it was ready" : "was not ready in time"); its output:\n\(output)"
    }
}

/// A real SMTP server (aiosmtpd from Debian, run with /usr/bin/python3) that stores every message
/// it accepts as one JSON line: envelope, recipients and the raw data.
public final class SMTPSink {
    public let port: Int
    public let process = Process()
    public let store: String
    public let log: String

    public struct Options {
        public var authUser: String?
        public var authPassword: String?
        public var excludePlain = false
        public var startTLSCertificate: (cert: String, key: String)?
        public var requireTLS = false
        /// Implicit TLS (SMTPS): the whole connection is TLS from its first byte.
        public var implicitTLSCertificate: (cert: String, key: String)?
        public init() {}
    }

    public static var available: Bool {
        (try? TestSupport.run("/usr/bin/python3", ["-c", "import aiosmtpd"]).status) == 0
    }

    public init(directory: TemporaryDirectory, port: Int = TestSupport.freePort(), options: Options = Options()) throws {
        self.port = port
        store = directory.path + "/mail-\(port).jsonl"
        log = directory.path + "/smtpd-\(port).log"
        let script = try directory.write(
            "smtpd.py",
            """
            import asyncio, json, ssl, sys
            from aiosmtpd.controller import Controller
            from aiosmtpd.smtp import AuthResult, LoginPassword
            port, store = int(sys.argv[1]), sys.argv[2]
            user, password = sys.argv[3] or None, sys.argv[4] or None
            exclude_plain, cert, key, require_tls = sys.argv[5] == "1", sys.argv[6], sys.argv[7], sys.argv[8] == "1"
            implicit_cert, implicit_key = sys.argv[9], sys.argv[10]
            class Handler:
                async def handle_DATA(self, server, session, envelope):
                    with open(store, "a") as f:
                        f.write(json.dumps({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                            "data": envelope.content.decode("utf-8", "replace"),
                            "tls": session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None}) + "\\n")
                    return "250 OK queued"
            def authenticator(server, session, envelope, mechanism, auth_data):
                ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user and auth_data.password.decode() == password
                with open(store + ".auth", "a") as f: f.write(mechanism + (" ok" if ok else " fail") + "\\n")
                return AuthResult(success=ok)
            kwargs = {}
            if cert:
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                context.load_cert_chain(cert, key)
                kwargs["tls_context"] = context
                kwargs["require_starttls"] = require_tls
            if implicit_cert:
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                context.load_cert_chain(implicit_cert, implicit_key)
                kwargs["ssl_context"] = context
            if user:
                kwargs["authenticator"] = authenticator
                kwargs["auth_require_tls"] = False
                kwargs["auth_required"] = True
                if exclude_plain: kwargs["auth_exclude_mechanism"] = ["PLAIN"]
            controller = Controller(Handler(), hostname="127.0.0.1", port=port, **kwargs)
            controller.start()
            print("ready", flush=True)
            asyncio.new_event_loop().run_forever()
            """, mode: 0o644)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [
            script, String(port), store, options.authUser ?? "", options.authPassword ?? "", options.excludePlain ? "1" : "0",
            options.startTLSCertificate?.cert ?? "", options.startTLSCertificate?.key ?? "", options.requireTLS ? "1" : "0",
            options.implicitTLSCertificate?.cert ?? "", options.implicitTLSCertificate?.key ?? "",
        ]
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        let logPath = log
        let output = { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
        let peer = self.process
        // Ready, or exited (a missing module, a port in use): either ends the wait at once.
        TestSupport.waitUntil(timeout: 15) { output().contains("ready") || !peer.isRunning }
        guard output().contains("ready"), peer.isRunning else {
            let exited = !peer.isRunning
            stop()
            throw PeerStartError(peer: "SMTP sink on port \(port)", exited: exited, output: output())
        }
    }

    public struct Mail {
        public var from: String
        public var to: [String]
        public var data: String
        public var tls: Bool

        public var subject: String { header("Subject") ?? "" }

        public func header(_ name: String) -> String? {
            let head = data.components(separatedBy: "\n\n").first ?? data
            for line in head.split(separator: "\n") where line.lowercased().hasPrefix(name.lowercased() + ":") {
                return String(line.dropFirst(name.count + 1)).trimmingCharacters(in: .whitespaces)
            }
            return nil
        }
    }

    public var mails: [Mail] {
        let text = (try? String(contentsOfFile: store, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
            return Mail(
                from: object["from"] as? String ?? "", to: object["to"] as? [String] ?? [],
                data: (object["data"] as? String ?? "").replacingOccurrences(of: "\r\n", with: "\n"), tls: object["tls"] as? Bool ?? false)
        }
    }

    public var authAttempts: [String] {
        ((try? String(contentsOfFile: store + ".auth", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    public func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}
