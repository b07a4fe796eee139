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

