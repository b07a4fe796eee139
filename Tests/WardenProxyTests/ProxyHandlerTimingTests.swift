import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import WardenConfig
@testable import WardenProxy

#if canImport(Glibc)
import Glibc
#endif

/// Upstream connections as `EmbeddedChannel`s on the client's loop: each attempt takes the next
/// scripted outcome (accepted when none is left), so a test plays the upstream by hand.
private final class ScriptedConnector: UpstreamConnector {
    enum Outcome {
        case accept
        case refuse
        /// No answer to the SYN: the attempt fails when its timeout ends, as `ClientBootstrap`'s does.
        case unanswered
    }

    final class Script {
        var outcomes: [Outcome] = []
        var upstreams: [EmbeddedChannel] = []
        var timeouts: [TimeAmount] = []
    }

    let script: NIOLoopBoundBox<Script>

    init(loop: EmbeddedEventLoop) {
        script = NIOLoopBoundBox(Script(), eventLoop: loop)
    }

    func connect(
        host: String, port: Int, tls: UpstreamTLSClient?, timeout: TimeAmount, pool: UpstreamPool, on loop: any EventLoop,
        _ done: @escaping (Result<UpstreamHandler, any Error>) -> Void
    ) {
        let script = script.value
        script.timeouts.append(timeout)
        let outcome = script.outcomes.isEmpty ? .accept : script.outcomes.removeFirst()
        switch outcome {
        case .accept:
            let channel = EmbeddedChannel(loop: loop as! EmbeddedEventLoop)
            let upstream = UpstreamHandler(host: host, port: port, tls: tls, pool: pool.local(on: loop))
            do {
                try channel.pipeline.syncOperations.addHandler(upstream)
                try channel.connect(to: SocketAddress(ipAddress: host, port: port)).wait()
            } catch {
                return done(.failure(error))
            }
            script.upstreams.append(channel)
            done(.success(upstream))
        case .refuse:
            done(.failure(IOError(errnoCode: ECONNREFUSED, reason: "connect")))
        case .unanswered:
            loop.assumeIsolated().scheduleTask(in: timeout) { done(.failure(ChannelError.connectTimeout(timeout))) }
        }
    }
}

/// One client connection through a `ProxyHandler` on an `EmbeddedEventLoop`, to one site that passes
/// everything to the service `app`; time moves only when the test says.
private struct Lab {
    static let timeouts = (connect: 5, read: 30, send: 40, idle: 75, header: 10)

    let client = EmbeddedChannel()
    let availability = ServiceAvailability()
    let connector: ScriptedConnector
    let shared: ProxyContext

    init(hold: Int = 0) throws {
        var settings = ProxySettings()
        (settings.connectTimeout, settings.readTimeout, settings.sendTimeout) = (Self.timeouts.connect, Self.timeouts.read, Self.timeouts.send)
        (settings.idleTimeout, settings.headerTimeout) = (Self.timeouts.idle, Self.timeouts.header)
        var site = Site(name: "app", hosts: ["*"], location: FileLocation(file: "test", line: 1, column: 1))
        site.routes = [.init(prefix: "/", target: .upstream(HTTPURL(scheme: "http", host: "127.0.0.1", port: 8080, path: "/"), service: "app"))]
        site.hold = hold
        connector = ScriptedConnector(loop: client.embeddedEventLoop)
        var shared = ProxyContext(
            settings: settings, sites: SiteTable(sites: [site], availability: availability), pool: UpstreamPool(), availability: availability,
            scheme: "http", sendsFileRegions: false)
        shared.connector = connector
        self.shared = shared
        let proxy = ProxyHandler(shared: shared)
        try client.pipeline.syncOperations.addHandlers([RequestDecoder(deliveringTo: proxy), proxy])
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 80)).wait()
    }

    var script: ScriptedConnector.Script { connector.script.value }

    func send(_ request: String) throws {
        try client.writeInbound(ByteBuffer(string: request))
    }

    func advance(_ amount: TimeAmount) {
        client.embeddedEventLoop.advanceTime(by: amount)
    }

    /// What the proxy wrote to the client since the last call.
    func response() throws -> String {
        var text = ""
        while let data = try client.readOutbound(as: IOData.self) {
            if case .byteBuffer(let buffer) = data { text += String(buffer: buffer) }
        }
        return text
    }

    /// What the proxy wrote to upstream connection `index` since the last call.
    func upstreamReceived(_ index: Int) throws -> String {
        var text = ""
        while let buffer = try script.upstreams[index].readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    func answer(_ index: Int, _ response: String = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong") throws {
        try script.upstreams[index].writeInbound(ByteBuffer(string: response))
    }

    func finish() {
        _ = try? client.finish(acceptAlreadyClosed: true)
        for upstream in script.upstreams { _ = try? upstream.finish(acceptAlreadyClosed: true) }
    }
}

/// The status code of a response's first line (0 for none).
private func status(_ response: String) -> Int {
    response.hasPrefix("HTTP/1.1 ") ? Int(response.dropFirst(9).prefix(3)) ?? 0 : 0
}

/// The `ProxyHandler`'s waits, each driven by the embedded loop's clock: the hold while a service comes
/// back, the resend of an idempotent request, 502 and 504, and every timeout of a client connection
/// firing at its deadline and not a millisecond before.
@Suite("Proxy handler timing")
struct ProxyHandlerTimingTests {
    static let get = "GET /ping HTTP/1.1\r\nHost: app\r\n\r\n"

    @Test func aRequestWaitsWhileTheServiceIsDownAndIsServedWhenItIsBack() throws {
        let lab = try Lab(hold: 5)
        defer { lab.finish() }
        lab.availability.set("app", up: false)
        try lab.send(Self.get)
        lab.advance(.seconds(2))
        #expect(lab.script.upstreams.isEmpty, "no connection while the service is down")
        #expect(try lab.response() == "")
        lab.availability.set("app", up: true)
        lab.advance(.milliseconds(25))
        try #require(lab.script.upstreams.count == 1)
        #expect(try lab.upstreamReceived(0).hasPrefix("GET /ping HTTP/1.1\r\n"))
        try lab.answer(0)
        let response = try lab.response()
        #expect(status(response) == 200)
        #expect(response.hasSuffix("\r\n\r\npong"))
    }

    @Test func theHoldEndsWithTheMaintenancePageAtItsDeadline() throws {
        let lab = try Lab(hold: 5)
        defer { lab.finish() }
        lab.availability.set("app", up: false)
        try lab.send(Self.get)
        lab.advance(.seconds(5) - .milliseconds(1))
        #expect(try lab.response() == "")
        lab.advance(.milliseconds(1))
        let response = try lab.response()
        #expect(status(response) == 503)
        #expect(response.contains("Retry-After: 5\r\n"))
        #expect(lab.script.upstreams.isEmpty)
    }

    /// A kept-alive upstream connection the upstream closed while it sat in the pool: a GET that went
    /// out on it is sent once more on a new connection; a POST, which may have been acted on, gets 502.
    @Test(arguments: [true, false])
    func aRequestOnAStalePooledConnectionIsResentOnlyWhenIdempotent(idempotent: Bool) throws {
        let lab = try Lab()
        defer { lab.finish() }
        try lab.send(Self.get)
        try lab.answer(0)
        #expect(status(try lab.response()) == 200)
        _ = try lab.upstreamReceived(0)

        try lab.send(idempotent ? Self.get : "POST /cart HTTP/1.1\r\nHost: app\r\nContent-Length: 3\r\n\r\nabc")
        #expect(lab.script.upstreams.count == 1, "the pooled connection is taken")
        #expect(try lab.upstreamReceived(0).hasPrefix(idempotent ? "GET /ping" : "POST /cart"))
        try lab.script.upstreams[0].close().wait()
        lab.advance(.milliseconds(10))
        if idempotent {
            try #require(lab.script.upstreams.count == 2)
            #expect(try lab.upstreamReceived(1).hasPrefix("GET /ping HTTP/1.1\r\n"))
            try lab.answer(1)
            #expect(status(try lab.response()) == 200)
        } else {
            #expect(lab.script.upstreams.count == 1, "not sent again")
            #expect(status(try lab.response()) == 502)
        }
    }

    @Test func aRefusedConnectionIsABadGateway() throws {
        let lab = try Lab()
        defer { lab.finish() }
        lab.script.outcomes = [.refuse]
        try lab.send(Self.get)
        #expect(status(try lab.response()) == 502)
    }

    /// With a hold, refusals are tried again every 25 ms until it ends (a service that is starting).
    @Test func refusalsAreTriedAgainUntilTheHoldEnds() throws {
        let lab = try Lab(hold: 1)
        defer { lab.finish() }
        lab.script.outcomes = Array(repeating: .refuse, count: 100)
        try lab.send(Self.get)
        lab.advance(.milliseconds(975))
        #expect(try lab.response() == "")
        #expect(lab.script.timeouts.count == 40)
        lab.advance(.milliseconds(25))
        #expect(status(try lab.response()) == 502)
    }

    /// The connect timeout belongs to the connection attempt (NIO's own, in production); the handler
    /// gives it the configured one and answers 502 when it ends.
    @Test func anUnansweredConnectEndsAtTheConnectTimeout() throws {
        let lab = try Lab()
        defer { lab.finish() }
        lab.script.outcomes = [.unanswered]
        try lab.send(Self.get)
        #expect(lab.script.timeouts == [.seconds(Int64(Lab.timeouts.connect))])
        lab.advance(.seconds(Int64(Lab.timeouts.connect)) - .milliseconds(1))
        #expect(try lab.response() == "")
        lab.advance(.milliseconds(1))
        #expect(status(try lab.response()) == 502)
    }

    @Test func anUpstreamThatDoesNotAnswerIsAGatewayTimeoutAtTheReadTimeout() throws {
        let lab = try Lab()
        defer { lab.finish() }
        try lab.send(Self.get)
        lab.advance(.seconds(Int64(Lab.timeouts.read)) - .milliseconds(1))
        #expect(try lab.response() == "")
        #expect(lab.script.upstreams[0].isActive)
        lab.advance(.milliseconds(1))
        #expect(status(try lab.response()) == 504)
        #expect(!lab.script.upstreams[0].isActive, "the upstream connection is not reused")
    }

    @Test func aClientThatSendsNoHeadIsClosedAtTheHeaderTimeout() throws {
        let lab = try Lab()
        defer { lab.finish() }
        lab.advance(.seconds(Int64(Lab.timeouts.header)) - .milliseconds(1))
        #expect(lab.client.isActive)
        lab.advance(.milliseconds(1))
        #expect(!lab.client.isActive)
    }

    @Test func aKeptAliveConnectionIsClosedAtTheIdleTimeout() throws {
        let lab = try Lab()
        defer { lab.finish() }
        lab.advance(.seconds(5))
        try lab.send(Self.get)
        try lab.answer(0)
        #expect(status(try lab.response()) == 200)
        // The header timeout would have ended by now: the idle one replaced it with the response.
        lab.advance(.seconds(Int64(Lab.timeouts.idle)) - .milliseconds(1))
        #expect(lab.client.isActive)
        lab.advance(.milliseconds(1))
        #expect(!lab.client.isActive)
    }

    @Test func aClientThatStopsReadingIsClosedAtTheSendTimeout() throws {
        let lab = try Lab()
        defer { lab.finish() }
        try lab.send(Self.get)
        try lab.answer(0, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nfirst")
        lab.client.isWritable = false
        lab.client.pipeline.fireChannelWritabilityChanged()
        lab.advance(.seconds(Int64(Lab.timeouts.send)) - .milliseconds(1))
        #expect(lab.client.isActive)
        lab.advance(.milliseconds(1))
        #expect(!lab.client.isActive)
    }
}

/// The decisions behind the handler's timer and its upstream attempts, without a channel.
@Suite("Proxy timeouts and attempts")
struct ProxyTimeoutDecisionTests {
    @Test func theTaskIsArmedOnlyForAnEarlierDeadlineAndFiresEarlyForAMovedOne() {
        var settings = ProxySettings()
        (settings.headerTimeout, settings.idleTimeout, settings.readTimeout) = (10, 75, 30)
        var timeouts = ConnectionTimeouts(settings: settings)
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        #expect(timeouts.set(.header, now: start) == start + .seconds(10))
        #expect(timeouts.set(.none, now: start) == nil)
        #expect(timeouts.set(.idle, now: start + .seconds(1)) == nil, "the armed task fires before, and moves on from there")
        #expect(timeouts.fired(now: start + .seconds(10)) == .early(start + .seconds(76)))
        #expect(timeouts.set(.upstreamRead, now: start + .seconds(20)) == start + .seconds(50), "earlier than the armed task")
        #expect(timeouts.fired(now: start + .seconds(50) - .nanoseconds(1)) == .early(start + .seconds(50)))
        #expect(timeouts.fired(now: start + .seconds(50)) == .expired(.upstreamRead))
        #expect(timeouts.kind == .none)
        #expect(timeouts.fired(now: start + .seconds(76)) == .nothing)
    }

    @Test func aHeldRequestWaitsUntilTheHoldEndsOrTheServicesNextStart() {
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var attempt = UpstreamAttempt()
        attempt.begin(hold: 5, idempotent: true, now: start)
        #expect(attempt.serviceDown(now: start, secondsUntilStart: nil) == .retry(after: .milliseconds(25)))
        #expect(attempt.serviceDown(now: start + .seconds(1), secondsUntilStart: 3) == .retry(after: .milliseconds(25)))
        #expect(attempt.serviceDown(now: start + .seconds(1), secondsUntilStart: 30) == .maintenance(retryAfter: 30), "starts after the hold")
        #expect(attempt.serviceDown(now: start + .seconds(5), secondsUntilStart: nil) == .maintenance(retryAfter: nil))
        #expect(attempt.endHold(now: start + .seconds(5)) == 5_000_000_000)
        #expect(attempt.endHold(now: start + .seconds(6)) == nil)
    }

    @Test func failedConnectionsAreHeldThenAnsweredByWhetherTheServiceIsUp() {
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var attempt = UpstreamAttempt()
        attempt.begin(hold: 0, idempotent: true, now: start)
        #expect(attempt.connectFailed(now: start, instance: false) { true } == (true, .badGateway))
        #expect(attempt.connectFailed(now: start, instance: false) { false } == (true, .maintenance(retryAfter: nil)))
        #expect(attempt.connectFailed(now: start, instance: true) { true } == (true, .anotherInstance))
        attempt.begin(hold: 2, idempotent: true, now: start)
        #expect(attempt.connectFailed(now: start + .seconds(1), instance: false) { true } == (false, .retry(after: .milliseconds(25))))
        #expect(attempt.connectFailed(now: start + .seconds(2), instance: false) { true } == (true, .badGateway))
    }

    /// Three resends after fresh connections died; those on pooled connections do not count.
    @Test func anIdempotentRequestIsResentAFewTimesAtMost() {
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var attempt = UpstreamAttempt()
        attempt.begin(hold: 0, idempotent: false, now: start)
        #expect(attempt.upstreamFailed(now: start, responseStarted: false, resendable: true) == .badGateway)
        attempt.begin(hold: 0, idempotent: true, now: start)
        #expect(attempt.upstreamFailed(now: start, responseStarted: true, resendable: true) == .close)
        #expect(attempt.upstreamFailed(now: start, responseStarted: false, resendable: false) == .badGateway)
        attempt.sent(pooled: true)
        for _ in 0..<5 { #expect(attempt.upstreamFailed(now: start, responseStarted: false, resendable: true) == .retry(after: .milliseconds(10))) }
        #expect(attempt.deadline == start + .seconds(1), "held a second at least")
        attempt.sent(pooled: false)
        for _ in 0..<3 { #expect(attempt.upstreamFailed(now: start, responseStarted: false, resendable: true) == .retry(after: .milliseconds(10))) }
        #expect(attempt.upstreamFailed(now: start, responseStarted: false, resendable: true) == .badGateway)
    }
}
