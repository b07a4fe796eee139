import Foundation
import NIOCore
import NIOEmbedded
import NIOSSL
import Testing

@testable import WardenConfig
@testable import WardenProxy
import WardenTestSupport

@Suite("Front door: ClientHello, challenges, redirects")
struct FrontDoorTests {
    /// The first flight of a real TLS client (BoringSSL through NIOSSL), offering `protocols`.
    func clientHello(serverName: String?, protocols: [String]) throws -> ByteBuffer {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.applicationProtocols = protocols
        let context = try NIOSSLContext(configuration: configuration)
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverName))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 443)).wait()
        var hello = ByteBuffer()
        while var part = try channel.readOutbound(as: ByteBuffer.self) { hello.writeBuffer(&part) }
        _ = try? channel.finish()
        return hello
    }

    @Test func readsTheServerNameAndTheOfferedProtocols() throws {
        let hello = try clientHello(serverName: "Www.App.Test", protocols: ["acme-tls/1"])
        #expect(ClientHello.parse(hello) == .hello(serverName: "Www.App.Test", protocols: ["acme-tls/1"]))
        let browser = try clientHello(serverName: "app.test", protocols: ["h2", "http/1.1"])
        #expect(ClientHello.parse(browser) == .hello(serverName: "app.test", protocols: ["h2", "http/1.1"]))
        #expect(ClientHello.parse(try clientHello(serverName: nil, protocols: [])) == .hello(serverName: nil, protocols: []))
    }

    @Test func waitsForAWholeRecordAndRefusesWhatIsNotTLS() throws {
        let hello = try clientHello(serverName: "app.test", protocols: [])
        #expect(ClientHello.parse(hello.getSlice(at: 0, length: 3)!) == .incomplete)
        #expect(ClientHello.parse(hello.getSlice(at: 0, length: hello.readableBytes - 1)!) == .incomplete)
        #expect(ClientHello.parse(ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n")) == .invalid)
    }

    @Test func aClientThatSendsNoHelloIsDisconnectedAfterTheHeaderTimeout() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            CertificateSelector(front: FrontDoor(httpsPort: nil), timeout: .seconds(10)) { $0.eventLoop.makeSucceededVoidFuture() })
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 443)).wait()
        try channel.writeInbound(ByteBuffer(bytes: [22, 3, 1]))
        channel.embeddedEventLoop.advanceTime(by: .seconds(9))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
    }

    @Test func theChallengeCertificateGoesOnlyToAnACMEValidation() throws {
        let front = FrontDoor(httpsPort: 8443)
        #expect(front.context(serverName: "app.test", protocols: ["h2"]) == nil)
        let directory = try TemporaryDirectory()
        let files = try TestSupport.selfSignedCertificate(in: directory)
        let chain = try String(contentsOfFile: files.cert, encoding: .utf8), key = try String(contentsOfFile: files.key, encoding: .utf8)
        try front.install(names: ["app.test"], chainPEM: chain, keyPEM: key)
        try front.setChallengeCertificate(name: "app.test", chainPEM: chain, keyPEM: key)
        #expect(front.context(serverName: "APP.test", protocols: ["acme-tls/1"])?.challenge == true)
        #expect(front.context(serverName: "app.test", protocols: ["acme-tls/1", "h2"])?.challenge == false)
        #expect(front.context(serverName: "other.test", protocols: ["acme-tls/1"]) == nil)
        #expect(front.context(serverName: nil, protocols: [])?.challenge == false)
        try front.setChallengeCertificate(name: "app.test", chainPEM: nil, keyPEM: nil)
        #expect(front.context(serverName: "app.test", protocols: ["acme-tls/1"]) == nil)
    }
}


@Suite("Front door: certificate files")
struct ListenerCertificateTests {
    /// The pair read at bind is replaced by a renewed one for the next connections; the same bytes
    /// again change nothing (the context and its session tickets stay), and a pair that does not load
    /// keeps the current one.
    @Test func aRenewedPairReplacesTheListenersContextAndABrokenOneDoesNot() throws {
        let directory = try TemporaryDirectory()
        let ca = try TestCA("front", in: directory)
        let one = try ca.issue("one", names: ["app.test"]), two = try ca.issue("two", names: ["app.test"])
        func text(_ path: String) throws -> String { try String(contentsOfFile: path, encoding: .utf8) }
        func served(_ listener: ListenerCertificate) -> [NIOSSLCertificateSource] { listener.context.configuration.certificateChain }
        let front = FrontDoor(httpsPort: 443)
        let files = CertificateFiles(certificate: one.certificate, key: one.key)
        let listener = try front.listenerCertificate(files)
        #expect(try front.listenerCertificate(files) === listener, "listeners on the same files share it")
        let loaded = listener.context
        #expect(served(listener) == (try NIOSSLCertificate.fromPEMFile(one.certificate)).map { .certificate($0) })

        #expect(try front.replaceListenerCertificate(files, chainPEM: text(one.certificate), keyPEM: text(one.key)) == false)
        #expect(listener.context === loaded)
        #expect(throws: (any Error).self) { try front.replaceListenerCertificate(files, chainPEM: text(two.certificate), keyPEM: text(one.key)) }
        #expect(listener.context === loaded)
        #expect(try front.replaceListenerCertificate(files, chainPEM: text(two.certificate), keyPEM: text(two.key)) == true)
        #expect(served(listener) == (try NIOSSLCertificate.fromPEMFile(two.certificate)).map { .certificate($0) })
        #expect(listener.context.configuration.applicationProtocols == ["h2", "http/1.1"])
        let other = CertificateFiles(certificate: two.certificate, key: two.key)
        #expect(try front.replaceListenerCertificate(other, chainPEM: text(one.certificate), keyPEM: text(one.key)) == false, "no listener has these files")
    }
}
