import WardenPlatform
import Testing
import WardenConfig
import WardenCore
@testable import WardenHTTP

@Suite("Access policy: monit's allow rules")
struct AccessPolicyTests {
    func basic(_ user: String, _ password: String) -> String {
        "Basic " + Base64.encode(Array("\(user):\(password)".utf8))
    }

    @Test func hostsAndNetworksAdmitAddresses() {
        let policy = AccessPolicy(rules: [.host("localhost"), .network(address: "10.1.0.0", prefix: 16), .network(address: "192.168.0.0", prefix: 24)])
        #expect(policy.admits(address: [127, 0, 0, 1]))
        #expect(policy.admits(address: [10, 1, 200, 3]))
        #expect(!policy.admits(address: [10, 2, 0, 1]))
        #expect(policy.admits(address: [192, 168, 0, 77]))
        #expect(!policy.admits(address: [192, 168, 1, 1]))
        #expect(!policy.admits(address: [8, 8, 8, 8]))
        // An IPv4-mapped IPv6 address is the IPv4 address.
        #expect(policy.admits(address: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]))
    }

    @Test func usersAndReadOnly() {
        let policy = AccessPolicy(rules: [.user(name: "admin", password: "monit", readOnly: false), .user(name: "guest", password: "guest", readOnly: true)])
        #expect(policy.authenticate(authorization: basic("admin", "monit")) == .granted(user: "admin", readOnly: false))
        #expect(policy.authenticate(authorization: basic("guest", "guest")) == .granted(user: "guest", readOnly: true))
        #expect(policy.authenticate(authorization: basic("admin", "wrong")) == .denied)
        #expect(policy.authenticate(authorization: basic("nobody", "monit")) == .denied)
        #expect(policy.authenticate(authorization: nil) == .denied)
        #expect(policy.authenticate(authorization: "Basic !!!") == .denied)
        #expect(policy.authenticate(authorization: "Bearer abc") == .denied)
    }

    @Test func htpasswdFilesWithMD5AndCrypt() {
        // `openssl passwd -apr1 -salt abcdefgh secret` and `openssl passwd -1 -salt saltsalt secret`.
        let files = [
            "/etc/warden/htpasswd": "alice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\nbob:$1$saltsalt$9xy1btjgzLYfb7hivXtC//\n",
            "/etc/warden/plain": "carol:cleartext-pw\n",
        ]
        let policy = AccessPolicy(
            rules: [
                .htpasswd(path: "/etc/warden/htpasswd", hash: .md5, users: [], readOnly: false),
                .htpasswd(path: "/etc/warden/plain", hash: .cleartext, users: ["carol"], readOnly: true),
            ], readFile: { files[$0] })
        #expect(policy.authenticate(authorization: basic("alice", "secret")) == .granted(user: "alice", readOnly: false))
        #expect(policy.authenticate(authorization: basic("alice", "Secret")) == .denied)
        #expect(policy.authenticate(authorization: basic("bob", "secret")) == .granted(user: "bob", readOnly: false))
        #expect(policy.authenticate(authorization: basic("carol", "cleartext-pw")) == .granted(user: "carol", readOnly: true))
    }

    @Test func constantTimeComparisonIsCorrect() {
        #expect(AccessPolicy.constantTimeEquals(Array("abc".utf8), Array("abc".utf8)))
        #expect(!AccessPolicy.constantTimeEquals(Array("abc".utf8), Array("abd".utf8)))
        #expect(!AccessPolicy.constantTimeEquals(Array("abc".utf8), Array("abcd".utf8)))
        #expect(!AccessPolicy.constantTimeEquals([], Array("a".utf8)))
    }
}

@Suite("Dashboard formatting")
struct PagesTests {
    @Test func numbersThatCannotBeIntegersDoNotCrashThePage() {
        // A CPU sample across a pid change once produced ~1e17 %; the page must never trap on it.
        #expect(Pages.format(1.25) == "1.3" || Pages.format(1.25) == "1.2")
        #expect(!Pages.format(.infinity).isEmpty)
        #expect(Pages.format(.nan) == "-")
        #expect(!Pages.format(1.8e19).isEmpty)
        #expect(Pages.duration(.infinity) == "-")
        #expect(Pages.duration(3725) == "1h 2m")
    }
}
