import WardenPlatform
import Testing
import WardenConfig

/// What the parser keeps of a protocol test for the checkers: the dialogue, the certificate's validity,
/// the options a checker would need, and the transport.
@Suite("Protocol rules as parsed")
struct ProtocolRuleParsingTests {
    func tests(_ rules: String) throws -> [ConnectionTest] {
        let result = ControlFile.parse("check host db with address 127.0.0.1\n" + rules, path: "test.rc")
        #expect(result.diagnostics.filter { $0.severity == .error }.isEmpty, "\(result.renderedDiagnostics())")
        let service = try #require(result.configuration?.services.first)
        return service.rules.compactMap { rule in
            if case .connection(let test) = rule.condition { return test }
            return nil
        }
    }

    @Test func dialogueCertificateAndOptions() throws {
        let parsed = try tests(
            """
              if failed port 4001 send "HELO\\r\\n" expect "^OK" send "QUIT\\r\\n" then alert
              if failed port 443 protocol https and certificate valid > 30 days then alert
              if failed port 993 type tcpssl protocol imap and certificate valid >= 7 days then alert
              if failed port 3306 protocol mysql username "monit" password "secret" then alert
              if failed port 123 type udp protocol ntp3 then alert
              if failed port 443 protocol https and certificate checksum = "1E:D9:48:A6:F4:25:8A:CA:B9:64:22:7E:F4:EB:19:FC:C4:53:B0:F8" then alert
              if failed port 993 type tcpssl certificate checksum md5 "0123456789abcdef0123456789ABCDEF" then alert

            """)
        #expect(parsed.count == 7)
        #expect(parsed[5].certificateChecksum == CertificateChecksum(kind: .sha1, expected: "1ed948a6f4258acab964227ef4eb19fcc453b0f8"))
        #expect(parsed[6].certificateChecksum?.kind == .md5)
        let timed = try tests("  if failed url http://127.0.0.1/ping responsetime < 2 s and timeout 5 seconds then alert\n")
        #expect(timed.first?.responseTime == Comparison(.less, 2))
        #expect(parsed[0].proto == .named("generic"))
        #expect(parsed[0].dialogue == [.send("HELO\\r\\n"), .expect("^OK"), .send("QUIT\\r\\n")])
        #expect(parsed[1].certificateMinimumDays == 30)
        #expect(parsed[1].target == .port(host: "localhost", port: 443, transport: .tcpSSL))
        #expect(parsed[2].certificateMinimumDays == 6)
        #expect(parsed[2].proto == .named("imap"))
        #expect(parsed[3].protocolOptions == ["username": "monit", "password": "secret"])
        #expect(parsed[4].target == .port(host: "localhost", port: 123, transport: .udp))
    }
}
