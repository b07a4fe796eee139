import Foundation
import Testing
import WardenTestSupport

/// `set mailserver … using ssl { verify: enable }`: the mail server's certificate is checked (issue 23),
/// against aiosmtpd with implicit TLS and a certificate from a CA of the test's own.
@Suite("Mail server certificate verification", .serialized)
struct MailTLSTests {
    func run(ssl: String, in directory: TemporaryDirectory, smtp: SMTPSink) throws -> (warden: WardenProcess, queue: String, app: TestApp) {
        let app = try TestApp(in: directory)
        let queue = directory.path + "/events-\(UUID().uuidString.prefix(8))"
        let rc = try directory.write(
            "wardenrc",
            """
            set daemon 1
            set pidfile \(directory.path)/warden.pid
            set mailserver 127.0.0.1 port \(smtp.port) using ssl \(ssl) with timeout 5 seconds
            set eventqueue basedir \(queue) slots 100
            set alert ops@example.com
            check process app with pidfile \(app.pidfile)
              start program = "\(app.startScript)"
              stop program = "\(app.stopScript)"
            """)
        return (try WardenProcess(controlFile: rc, logPath: directory.path + "/log-\(UUID().uuidString.prefix(8))"), queue, app)
    }

    @Test func anUntrustedServerIsRefusedAndTheMailQueuedThenDeliveredWithItsCA() throws {
        guard SMTPSink.available else {
            #expect(!TestSupport.isCI, "python3-aiosmtpd is not installed (.ci/run installs it)")
            return
        }
        let directory = try TemporaryDirectory()
        let ca = try TestCA("mail", in: directory)
        let leaf = try ca.issue("smtp", names: ["127.0.0.1"])
        var options = SMTPSink.Options()
        options.implicitTLSCertificate = (leaf.certificate, leaf.key)
        let smtp = try SMTPSink(directory: directory, options: options)
        let queued = { (queue: String) in (try? FileManager.default.contentsOfDirectory(atPath: queue).filter { $0.hasSuffix(".mail") }) ?? [] }

        let refused = try run(ssl: "{ verify: enable }", in: directory, smtp: smtp)
        #expect(TestSupport.waitUntil(timeout: 20) { refused.warden.log.contains("certificate verify failed") }, "\(refused.warden.log)")
        #expect(!queued(refused.queue).isEmpty, "the refused mail stays queued")
        refused.warden.stop()
        refused.app.killAll()
        #expect(smtp.mails.isEmpty, "nothing reached the untrusted server")

        let trusted = try run(ssl: "{ verify: enable, cacertificatefile: \(ca.certificate) }", in: directory, smtp: smtp)
        defer {
            trusted.warden.stop()
            trusted.app.killAll()
        }
        #expect(TestSupport.waitUntil(timeout: 20) { smtp.mails.contains { $0.subject.contains("Monit instance changed") } }, "\(trusted.warden.log)")
        #expect(smtp.mails.first?.tls == true)
        #expect(!trusted.warden.log.contains("cannot deliver"), "\(trusted.warden.log)")
    }
}
