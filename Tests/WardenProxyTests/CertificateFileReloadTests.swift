import Foundation
import NIOSSL
import Testing
import WardenPlatform

@testable import WardenConfig
@testable import WardenProxy
import WardenTestSupport

/// Renewed certificate files served without a restart (issue 23): when to read the files, when to
/// serve what they hold, and when to keep the current pair and say why.
@Suite("Certificate files followed")
struct CertificateFileReloadTests {
    let files: [FileStamp?] = [FileStamp(device: 1, inode: 10, size: 900, modified: 1), FileStamp(device: 1, inode: 11, size: 200, modified: 1)]
    let renewed: [FileStamp?] = [FileStamp(device: 1, inode: 20, size: 910, modified: 2), FileStamp(device: 1, inode: 21, size: 200, modified: 2)]
    let now = 1_000_000.0
    let valid = 2_000_000.0

    @Test func theFirstLookSendsWhatTheProxyLoadedQuietlyThenOnlyAChangedFileIsRead() {
        var reload = CertificateFileReload()
        #expect(reload.look(files, now: now) == .read)
        #expect(reload.decide(.pair(digest: [1], notAfter: valid), now: now) == .serve(first: true))
        #expect(reload.look(files, now: now + 60) == .none, "unchanged stamps: nothing read")
        // Touched, or copied over with the same bytes: read, and nothing to serve.
        var touched = files
        touched[0]?.modified = 5
        #expect(reload.look(touched, now: now + 120) == .read)
        #expect(reload.decide(.pair(digest: [1], notAfter: valid), now: now + 120) == .none)
        #expect(reload.look(renewed, now: now + 180) == .read)
        #expect(reload.decide(.pair(digest: [2], notAfter: valid), now: now + 180) == .serve(first: false))
        #expect(reload.look(renewed, now: now + 240) == .none)
    }

    @Test func aPairThatDoesNotHoldTogetherIsReportedOnceOnlyWhenItStaysSo() {
        var reload = CertificateFileReload()
        _ = reload.look(files, now: now)
        _ = reload.decide(.pair(digest: [1], notAfter: valid), now: now)
        // The certificate is written, the key not yet: quiet, and looked at again soon.
        let halfway = [renewed[0], files[1]]
        #expect(reload.look(halfway, now: now + 60) == .read)
        #expect(reload.decide(.problem("the key does not match the certificate"), now: now + 60) == .wait(2))
        #expect(reload.look(halfway, now: now + 61) == .wait(1))
        // The key follows: the new pair is served, nothing was reported.
        #expect(reload.look(renewed, now: now + 61.5) == .read)
        #expect(reload.decide(.pair(digest: [2], notAfter: valid), now: now + 61.5) == .serve(first: false))

        // A key for another certificate that stays: reported once, after `settle` seconds.
        let mismatched = [files[0], renewed[1]]
        #expect(reload.look(mismatched, now: now + 120) == .read)
        #expect(reload.decide(.problem("the key does not match the certificate"), now: now + 120) == .wait(CertificateFileReload.settle))
        #expect(reload.look(mismatched, now: now + 122) == .refuse("the key does not match the certificate"))
        #expect(reload.look(mismatched, now: now + 180) == .none)
        // A file gone is the same kind of trouble, reported again since the files changed.
        #expect(reload.look([nil, renewed[1]], now: now + 240) == .read)
        #expect(reload.decide(.problem("cannot read the files"), now: now + 240) == .wait(2))
        #expect(reload.look([nil, renewed[1]], now: now + 242) == .refuse("cannot read the files"))
        // Put back as served: nothing to say or serve.
        #expect(reload.look(renewed, now: now + 300) == .read)
        #expect(reload.decide(.pair(digest: [2], notAfter: valid), now: now + 300) == .none)
        #expect(reload.look(renewed, now: now + 302) == .none)
    }

    @Test func anExpiredCertificateIsNotServedInPlaceOfTheCurrentOne() {
        var reload = CertificateFileReload()
        _ = reload.look(files, now: now)
        _ = reload.decide(.pair(digest: [1], notAfter: valid), now: now)
        _ = reload.look(renewed, now: now + 60)
        #expect(reload.decide(.pair(digest: [2], notAfter: now), now: now + 60) == .wait(2))
        guard case .refuse(let reason) = reload.look(renewed, now: now + 62) else { Issue.record("not refused"); return }
        #expect(reason.hasPrefix("the certificate expired on "))
        // At the first look the proxy serves it already: the expiry alert speaks of it, not this.
        var first = CertificateFileReload()
        _ = first.look(files, now: now)
        #expect(first.decide(.pair(digest: [1], notAfter: now - 1), now: now) == .serve(first: true))
    }

    @Test func aPairIsCheckedAsTheProxyWillLoadIt() throws {
        let directory = try TemporaryDirectory()
        let ca = try TestCA("reload", in: directory)
        let one = try ca.issue("one", names: ["app.test"], days: 30)
        let two = try ca.issue("two", names: ["app.test"], days: 30)
        let pair = try CertificatePair.read(CertificateFiles(certificate: one.certificate, key: one.key))
        let serial = try TestSupport.run("/usr/bin/openssl", ["x509", "-in", one.certificate, "-noout", "-serial"]).stdout
        #expect(serial.lowercased() == "serial=\(pair.serial)\n")
        #expect(abs(pair.notAfter - (Date().timeIntervalSince1970 + 30 * 86400)) < 3600)
        #expect(try CertificatePair.read(CertificateFiles(certificate: one.pem, key: one.pem)).digest != pair.digest)

        func problem(_ certificate: String, _ key: String) -> String {
            do {
                _ = try CertificatePair.read(CertificateFiles(certificate: certificate, key: key))
                return "accepted"
            } catch {
                return error.description
            }
        }
        #expect(problem(one.certificate, two.key).hasPrefix("the key does not match the certificate"))
        let certificate = try String(contentsOfFile: one.certificate, encoding: .utf8)
        let half = try directory.write("half.pem", String(certificate.prefix(certificate.count / 2)))
        #expect(problem(half, one.key).hasPrefix("the certificate does not parse") || problem(half, one.key) == "no certificate in it", "\(problem(half, one.key))")
        let key = try String(contentsOfFile: one.key, encoding: .utf8)
        let halfKey = try directory.write("half.key", String(key.prefix(key.count / 2)))
        #expect(problem(one.certificate, halfKey).hasPrefix("the key does not parse"))
        #expect(problem(one.certificate, directory.path + "/missing.key").hasPrefix("cannot read the files"))
    }

    @Test func theFollowerTellsTheProxyOfARenewalAndReportsARefusal() throws {
        let directory = try TemporaryDirectory()
        let ca = try TestCA("follow", in: directory)
        let one = try ca.issue("one", names: ["app.test"]), two = try ca.issue("two", names: ["app.test"])
        let certificate = directory.path + "/live.crt", key = directory.path + "/live.key"
        func install(_ issued: TestCA.Issued, key keyFile: String? = nil) throws {
            try FileManager.default.removeItem(atPath: certificate)
            try FileManager.default.copyItem(atPath: issued.certificate, toPath: certificate)
            try FileManager.default.removeItem(atPath: key)
            try FileManager.default.copyItem(atPath: keyFile ?? issued.key, toPath: key)
        }
        try FileManager.default.copyItem(atPath: one.certificate, toPath: certificate)
        try FileManager.default.copyItem(atPath: one.key, toPath: key)
        var listen = WardenConfig.ProxySettings.Listen(address: "127.0.0.1", port: 443)
        listen.certificate = certificate
        listen.key = key
        var follower = CertificateFileFollower()
        let now = Date().timeIntervalSince1970
        let first = follower.look([listen, listen], now: now)
        #expect(first.outcomes.count == 1 && first.outcomes[0].report == nil, "listeners on the same files share a pair; the first is quiet")
        guard case .listenerCertificate(let files, let chain, _) = first.outcomes.first?.message else { Issue.record("no message"); return }
        #expect(files == CertificateFiles(certificate: certificate, key: key))
        #expect(chain == (try String(contentsOfFile: one.certificate, encoding: .utf8)))

        try install(two)
        let renewal = follower.look([listen], now: now + 1)
        #expect(renewal.outcomes.first?.report?.succeeded == true)
        #expect(renewal.outcomes.first?.report?.text.contains("certificate reloaded from '\(certificate)': serial ") == true)
        guard case .listenerCertificate(_, let renewedChain, _) = renewal.outcomes.first?.message else { Issue.record("no message"); return }
        #expect(renewedChain == (try String(contentsOfFile: two.certificate, encoding: .utf8)))
        #expect(follower.servedChain(files) == Array(renewedChain.utf8))

        try install(one, key: two.key)
        let mismatch = follower.look([listen], now: now + 2)
        #expect(mismatch.outcomes.isEmpty && mismatch.again == CertificateFileReload.settle)
        let refusal = follower.look([listen], now: now + 2 + CertificateFileReload.settle)
        #expect(refusal.outcomes.first?.message == nil)
        #expect(refusal.outcomes.first?.report?.succeeded == false)
        #expect(refusal.outcomes.first?.report?.text.contains("changed but are not served: the key does not match the certificate") == true)
        #expect(follower.servedChain(files) == Array(renewedChain.utf8), "the status shows the pair served, not the refused files")
    }
}
