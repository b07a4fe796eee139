import Foundation
import Testing

@testable import WardenACME

#if canImport(Glibc)
import Glibc
#endif

@Suite("ACME: storage")
struct StoreTests {
    func mode(_ path: String) -> mode_t {
        var info = stat()
        lstat(path, &info)
        return info.st_mode & 0o777
    }

    func temporary() -> String {
        var template = Array("/tmp/warden-acme-XXXXXX".utf8CString)
        return String(cString: mkdtemp(&template))
    }

    @Test func accountKeyIsKeptAndFilesAreForTheOwnerOnly() throws {
        let base = temporary()
        defer { _ = try? FileManager.default.removeItem(atPath: base) }
        umask(0o022)
        let store = try CertificateStore(directory: base + "/acme")
        let key = try store.accountKey()
        #expect(try CertificateStore(directory: base + "/acme").accountKey().thumbprint == key.thumbprint)
        #expect(mode(base + "/acme") == 0o700)
        #expect(mode(base + "/acme/account.key") == 0o600)
        chmod(base + "/acme", 0o755)
        _ = try CertificateStore(directory: base + "/acme")
        #expect(mode(base + "/acme") == 0o700)
    }

    @Test func aSavedPairIsLoadedAgainAndAMismatchedOneIsNot() throws {
        let base = temporary()
        defer { _ = try? FileManager.default.removeItem(atPath: base) }
        let store = try CertificateStore(directory: base)
        let pair = try CertificateFactory.placeholder(names: ["a.test"], now: Date().timeIntervalSince1970)
        let other = try CertificateFactory.placeholder(names: ["a.test"], now: Date().timeIntervalSince1970)
        try store.save(pair, site: "my/site")
        #expect(store.path(forSite: "my/site") == base + "/certificates/my_site.pem")
        #expect(mode(store.path(forSite: "my/site")) == 0o600)
        let loaded = try #require(store.load(site: "my/site"))
        #expect(loaded.pair.keyPEM == pair.keyPEM)
        #expect(loaded.info.names == ["a.test"])
        try store.save(CertificatePair(chainPEM: pair.chainPEM, keyPEM: other.keyPEM), site: "bad")
        #expect(store.load(site: "bad") == nil)
        #expect(store.load(site: "none") == nil)
    }
}
