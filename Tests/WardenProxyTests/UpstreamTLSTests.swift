import NIOCore
import NIOEmbedded
import NIOSSL
import Testing

@testable import WardenConfig
@testable import WardenProxy
import WardenTestSupport

@Suite("Proxy: https upstreams")
struct UpstreamTLSTests {
    let here = FileLocation(file: "test", line: 1, column: 1)

    func site(_ tls: UpstreamTLS, host: String = "127.0.0.1") -> Site {
        var site = Site(name: "a", hosts: ["*"], location: here)
        site.routes = [.init(prefix: "/", target: .upstream(HTTPURL(scheme: "https", host: host, port: 8443, path: "/"), service: nil), tls: tls)]
        return site
    }

    func client(_ table: SiteTable) -> UpstreamTLSClient? {
        guard case .upstream(let upstream)? = table.snapshot.entries.first?.routes.first?.target else { return nil }
        return upstream.tls
    }

    /// One context per upstream and options: a reload that keeps them keeps it (and the pool's
    /// connections with it); changed options make a new one.
    @Test func theContextIsBuiltOncePerUpstreamAndOptions() throws {
        let table = SiteTable(sites: [site(UpstreamTLS())], availability: ServiceAvailability())
        let first = try #require(client(table))
        table.load([site(UpstreamTLS())])
        #expect(client(table) === first)
        var other = UpstreamTLS()
        other.serverName = "api.internal"
        table.load([site(other)])
        #expect(client(table) !== first)
        #expect(client(table)?.serverName == "api.internal")
    }

    @Test func sniIsTheHostNameUnlessAnAddressOrOverridden() {
        #expect(UpstreamTLSClient(.init(settings: UpstreamTLS(), host: "api.example.com")).serverName == "api.example.com")
        #expect(UpstreamTLSClient(.init(settings: UpstreamTLS(), host: "10.0.0.5")).serverName == nil)
        #expect(UpstreamTLSClient(.init(settings: UpstreamTLS(), host: "::1")).serverName == nil)
        var named = UpstreamTLS()
        named.serverName = "backend.internal"
        #expect(UpstreamTLSClient(.init(settings: named, host: "10.0.0.5")).serverName == "backend.internal")
    }

    @Test func optionsBecomeTheClientConfiguration() throws {
        let directory = try TemporaryDirectory()
        let ca = try TestCA("unit", in: directory)
        #expect(try UpstreamTLSClient.configuration(UpstreamTLS()).certificateVerification == .fullVerification)
        var off = UpstreamTLS()
        off.verify = false
        #expect(try UpstreamTLSClient.configuration(off).certificateVerification == .none)
        var trusted = UpstreamTLS()
        trusted.caFile = ca.certificate
        let configuration = try UpstreamTLSClient.configuration(trusted)
        #expect(configuration.certificateVerification == .fullVerification)
        #expect(configuration.trustRoots == .certificates(try NIOSSLCertificate.fromPEMFile(ca.certificate)))
        var missing = UpstreamTLS()
        missing.caFile = directory.path + "/missing.pem"
        #expect(throws: (any Error).self) { try UpstreamTLSClient(.init(settings: missing, host: "a")).makeHandler() }
        #expect(throws: Never.self) { try UpstreamTLSClient(.init(settings: trusted, host: "a")).makeHandler() }
    }

    /// The pool tells upstreams apart by address and TLS settings: a plain connection to the same
    /// port is never handed to a TLS route, nor one made with other options.
    @Test func thePoolKeyIncludesTheTLSSettings() throws {
        let pool = UpstreamPool()
        let channel = EmbeddedChannel()
        let local = pool.local(on: channel.eventLoop)
        let tls = UpstreamTLSClient(.init(settings: UpstreamTLS(), host: "127.0.0.1"))
        var otherSettings = UpstreamTLS()
        otherSettings.serverName = "other.test"
        let other = UpstreamTLSClient(.init(settings: otherSettings, host: "127.0.0.1"))
        let handler = UpstreamHandler(host: "127.0.0.1", port: 8443, tls: tls, pool: local)
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 8443)).wait()
        #expect(local.release(handler))
        #expect(local.acquire(host: "127.0.0.1", port: 8443, tls: nil) == nil)
        #expect(local.acquire(host: "127.0.0.1", port: 8443, tls: other) == nil)
        #expect(local.acquire(host: "127.0.0.1", port: 8443, tls: tls) === handler)
        _ = try? channel.finish()
    }
}
