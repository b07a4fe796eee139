import SwiftASN1
import X509

/// Where challenge answers go while an order waits for validation: the proxy's listeners.
public protocol ACMEChallengePublisher: Sendable {
    func publish(_ answer: ACMEChallengeAnswer) async
    func withdraw(_ answer: ACMEChallengeAnswer) async
}

/// Runs `ACMEOrderStateMachine` over a transport: sends what it asks, sleeps on its clock,
/// publishes and then withdraws the challenge answers.
public struct ACMEClient<C: Clock>: Sendable where C.Duration == Duration {
    public struct Order: Sendable {
        public var directoryURL: String
        public var email: String?
        public var names: [String]
        public var challengeTypes: [ACME.ChallengeType]
        public var keyType: CertificateKeyType

        public init(directoryURL: String, email: String?, names: [String], challengeTypes: [ACME.ChallengeType], keyType: CertificateKeyType) {
            self.directoryURL = directoryURL
            self.email = email
            self.names = names
            self.challengeTypes = challengeTypes
            self.keyType = keyType
        }
    }

    let transport: @Sendable (ACMERequest) async throws -> ACMEResponse
    let clock: C
    /// Seconds since 1970, for `Retry-After` dates.
    let now: @Sendable () -> Double
    /// Requests and sleeps of one order, at most: a server that never finishes cannot hold warden.
    public static var maximumSteps: Int { 1000 }

    public init(clock: C, now: @escaping @Sendable () -> Double, transport: @escaping @Sendable (ACMERequest) async throws -> ACMEResponse) {
        self.clock = clock
        self.now = now
        self.transport = transport
    }

    public func obtain(_ order: Order, accountKey: ACMEAccountKey, publisher: some ACMEChallengePublisher) async throws -> CertificatePair {
        let key = try order.keyType.generate()
        let csr = try CertificateFactory.csr(names: order.names, key: key, type: order.keyType)
        var machine = ACMEOrderStateMachine(
            directoryURL: order.directoryURL, email: order.email, names: order.names, challengeTypes: order.challengeTypes,
            accountKey: accountKey, csrDER: csr)
        var published: [ACMEChallengeAnswer] = []
        do {
            let chainPEM = try await run(&machine, publisher: publisher, published: &published)
            for answer in published { await publisher.withdraw(answer) }
            return CertificatePair(chainPEM: chainPEM, keyPEM: try key.serializeAsPEM().pemString)
        } catch {
            for answer in published { await publisher.withdraw(answer) }
            throw error
        }
    }

    private func run(
        _ machine: inout ACMEOrderStateMachine, publisher: some ACMEChallengePublisher, published: inout [ACMEChallengeAnswer]
    ) async throws -> String {
        var action = machine.start()
        var step = ""
        for _ in 0..<Self.maximumSteps {
            try Task.checkCancellation()
            switch action {
            case .send(let request):
                step = "\(request.method.rawValue) \(request.url)"
                let response: ACMEResponse
                do {
                    response = try await transport(request)
                } catch {
                    throw ACMEFailure(step: step, message: "\(error)")
                }
                action = machine.received(response, now: now())
            case .provision(let answer):
                await publisher.publish(answer)
                published.append(answer)
                action = machine.provisioned()
            case .wait(let seconds):
                try await clock.sleep(for: .milliseconds(Int64(seconds * 1000)))
                action = machine.waited()
            case .finished(let chainPEM):
                return chainPEM
            case .failed(let failure):
                throw failure
            }
        }
        throw ACMEFailure(step: step, message: "no certificate after \(Self.maximumSteps) steps")
    }
}
