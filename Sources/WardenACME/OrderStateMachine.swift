/// What the server must see to validate one name: the token at `/.well-known/acme-challenge/TOKEN`
/// (http-01) or a certificate for `name` under ALPN `acme-tls/1` (tls-alpn-01).
public struct ACMEChallengeAnswer: Sendable, Hashable, Codable {
    public var type: ACME.ChallengeType
    public var name: String
    public var token: String
    public var keyAuthorization: String
}

/// Why an order failed: the step, and the server's problem document when it sent one.
public struct ACMEFailure: Error, Sendable, Hashable, CustomStringConvertible {
    public var step: String
    public var problem: ACME.Problem?
    public var message: String?

    public init(step: String, problem: ACME.Problem? = nil, message: String? = nil) {
        self.step = step
        self.problem = problem
        self.message = message
    }

    public var description: String { "\(step): \(problem.map(String.init(describing:)) ?? message ?? "failed")" }
}

/// One certificate order, RFC 8555 §7 from the directory to the downloaded chain, as a state
/// machine: it takes each response and returns what to do next, so the whole conversation is
/// tested with canned responses. It signs its own requests; the driver sends them, sleeps when
/// told, and publishes the challenge answers it is given.
public struct ACMEOrderStateMachine: Sendable {
    public enum Action: Sendable, Hashable {
        case send(ACMERequest)
        /// Publish this answer, then call `provisioned()`.
        case provision(ACMEChallengeAnswer)
        /// Sleep, then call `waited()`.
        case wait(seconds: Double)
        case finished(chainPEM: String)
        case failed(ACMEFailure)
    }

    enum Step: Sendable, Hashable {
        case directory, newAccount, newOrder
        case authorization(Int)
        case respond(Int, challengeURL: String)
        case pollAuthorization(Int)
        case finalize, pollOrder, certificate

        var name: String {
            switch self {
            case .directory: "directory"
            case .newAccount: "new account"
            case .newOrder: "new order"
            case .authorization, .pollAuthorization: "authorization"
            case .respond: "challenge"
            case .finalize, .pollOrder: "finalize"
            case .certificate: "certificate download"
            }
        }
    }

    public let directoryURL: String
    public let email: String?
    public let names: [String]
    /// In order of preference; an authorization offering none of them fails.
    public let challengeTypes: [ACME.ChallengeType]
    let accountKey: ACMEAccountKey
    let csrDER: [UInt8]

    /// The last `Replay-Nonce` (RFC 8555 §6.5): each is used once.
    private(set) var nonce: String?
    private var directory: ACME.Directory?
    private(set) var accountURL: String?
    private var orderURL: String?
    private var order: ACME.Order?
    private var step = Step.directory
    /// The step waiting for a nonce from newNonce.
    private var fetchingNonce = false
    private var badNonces = 0
    private var polls = 0

    public static let maximumBadNonces = 10
    public static let maximumPolls = 120
    /// Between polls when the server sends no `Retry-After`.
    public static let defaultPollSeconds = 1.0

    public init(
        directoryURL: String, email: String?, names: [String], challengeTypes: [ACME.ChallengeType], accountKey: ACMEAccountKey,
        csrDER: [UInt8]
    ) {
        self.directoryURL = directoryURL
        self.email = email
        self.names = names
        self.challengeTypes = challengeTypes
        self.accountKey = accountKey
        self.csrDER = csrDER
    }

    public mutating func start() -> Action {
        step = .directory
        return .send(ACMERequest(method: .get, url: directoryURL))
    }

    public mutating func provisioned() -> Action {
        guard case .respond = step else { return .failed(ACMEFailure(step: "challenge", message: "no challenge to answer")) }
        return send(step)
    }

    public mutating func waited() -> Action { send(step) }

    /// The response to the last `.send`; `now` (seconds since 1970) reads a `Retry-After` date.
    public mutating func received(_ response: ACMEResponse, now: Double) -> Action {
        if let fresh = response.headers["replay-nonce"] { nonce = fresh }
        if fetchingNonce {
            fetchingNonce = false
            guard nonce != nil else { return .failed(ACMEFailure(step: "new nonce", message: "no Replay-Nonce in the answer (HTTP \(response.status))")) }
            return send(step)
        }
        if response.isProblem {
            let problem = response.problem
            if problem.isBadNonce, badNonces < Self.maximumBadNonces {
                // Retryable by design (§6.5): pebble rejects a share of good nonces to prove clients retry.
                badNonces += 1
                if response.headers["replay-nonce"] == nil { nonce = nil }
                return send(step)
            }
            return .failed(ACMEFailure(step: step.name, problem: problem))
        }
        badNonces = 0
        do {
            return try advance(on: response, now: now)
        } catch let failure as ACMEFailure {
            return .failed(failure)
        } catch {
            return .failed(ACMEFailure(step: step.name, message: "unreadable answer: \(error)"))
        }
    }

    private mutating func advance(on response: ACMEResponse, now: Double) throws -> Action {
        switch step {
        case .directory:
            directory = try ACME.decode(ACME.Directory.self, response.body)
            return send(.newAccount)
        case .newAccount:
            guard let location = response.headers["location"] else { throw ACMEFailure(step: step.name, message: "no account URL (Location)") }
            accountURL = location
            return send(.newOrder)
        case .newOrder:
            guard let location = response.headers["location"] else { throw ACMEFailure(step: step.name, message: "no order URL (Location)") }
            orderURL = location
            order = try ACME.decode(ACME.Order.self, response.body)
            return nextAuthorization(from: 0)
        case .authorization(let index):
            let authorization = try ACME.decode(ACME.Authorization.self, response.body)
            switch authorization.status {
            case "valid": return nextAuthorization(from: index + 1)
            case "pending": break
            default: throw ACMEFailure(step: step.name, message: "authorization for \(authorization.identifier.value) is \(authorization.status)")
            }
            let offered = Dictionary(authorization.challenges.map { ($0.type, $0) }, uniquingKeysWith: { first, _ in first })
            guard let type = challengeTypes.first(where: { offered[$0.rawValue] != nil }), let challenge = offered[type.rawValue],
                let token = challenge.token
            else {
                throw ACMEFailure(
                    step: step.name,
                    message: "\(authorization.identifier.value): the server offers \(authorization.challenges.map(\.type).joined(separator: ", ")), none of \(challengeTypes.map(\.rawValue).joined(separator: ", "))")
            }
            step = .respond(index, challengeURL: challenge.url)
            return .provision(
                ACMEChallengeAnswer(type: type, name: authorization.identifier.value, token: token, keyAuthorization: accountKey.keyAuthorization(token)))
        case .respond(let index, _):
            polls = 0
            step = .pollAuthorization(index)
            return .wait(seconds: response.retryAfter(now: now) ?? Self.defaultPollSeconds)
        case .pollAuthorization(let index):
            let authorization = try ACME.decode(ACME.Authorization.self, response.body)
            switch authorization.status {
            case "valid":
                return nextAuthorization(from: index + 1)
            case "pending", "processing":
                return try poll(response, now: now)
            default:
                let problem = authorization.challenges.compactMap(\.error).first
                throw ACMEFailure(
                    step: "validation of \(authorization.identifier.value)", problem: problem,
                    message: "authorization is \(authorization.status)")
            }
        case .finalize, .pollOrder:
            let order = try ACME.decode(ACME.Order.self, response.body)
            self.order = order
            switch order.status {
            case "valid":
                guard order.certificate != nil else { throw ACMEFailure(step: step.name, message: "valid order without a certificate URL") }
                return send(.certificate)
            case "processing", "ready":
                if step == .finalize { polls = 0 }
                step = .pollOrder
                return try poll(response, now: now)
            default:
                throw ACMEFailure(step: step.name, problem: order.error, message: "order is \(order.status)")
            }
        case .certificate:
            let pem = String(decoding: response.body, as: UTF8.self)
            guard pem.contains("-----BEGIN CERTIFICATE-----") else {
                throw ACMEFailure(step: step.name, message: "the answer is not a PEM certificate chain")
            }
            return .finished(chainPEM: pem)
        }
    }

    private mutating func poll(_ response: ACMEResponse, now: Double) throws -> Action {
        polls += 1
        guard polls <= Self.maximumPolls else { throw ACMEFailure(step: step.name, message: "still not done after \(Self.maximumPolls) polls") }
        return .wait(seconds: min(response.retryAfter(now: now) ?? Self.defaultPollSeconds, 60))
    }

    private mutating func nextAuthorization(from index: Int) -> Action {
        guard let order else { return .failed(ACMEFailure(step: "new order", message: "no order")) }
        if index < order.authorizations.count { return send(.authorization(index)) }
        return send(.finalize)
    }

    /// Signs the request of `next` with the last nonce, or first asks newNonce for one.
    private mutating func send(_ next: Step) -> Action {
        step = next
        // Everything but the directory itself is signed, with a nonce from the directory's newNonce.
        guard next != .directory, let directory else { return .send(ACMERequest(method: .get, url: directoryURL)) }
        guard let nonce else {
            fetchingNonce = true
            return .send(ACMERequest(method: .head, url: directory.newNonce))
        }
        let (url, payload): (String, [UInt8]?)
        switch next {
        case .directory:
            return .send(ACMERequest(method: .get, url: directoryURL))
        case .newAccount:
            struct NewAccount: Encodable {
                var termsOfServiceAgreed = true
                var contact: [String]?
            }
            (url, payload) = (directory.newAccount, ACME.encode(NewAccount(contact: email.map { ["mailto:\($0)"] })))
        case .newOrder:
            struct NewOrder: Encodable { var identifiers: [ACME.Identifier] }
            (url, payload) = (directory.newOrder, ACME.encode(NewOrder(identifiers: names.map { ACME.Identifier(value: $0) })))
        case .authorization(let index), .pollAuthorization(let index):
            (url, payload) = (order?.authorizations[index] ?? "", nil)
        case .respond(_, let challengeURL):
            (url, payload) = (challengeURL, Array("{}".utf8))
        case .finalize:
            struct Finalize: Encodable { var csr: String }
            (url, payload) = (order?.finalize ?? "", ACME.encode(Finalize(csr: Base64URL.encode(csrDER))))
        case .pollOrder:
            (url, payload) = (orderURL ?? "", nil)
        case .certificate:
            (url, payload) = (order?.certificate ?? "", nil)
        }
        let signer: ACMEAccountKey.Signer = accountURL.map { .kid($0) } ?? .jwk
        self.nonce = nil
        do {
            return .send(ACMERequest(method: .post, url: url, body: try accountKey.sign(payload: payload, url: url, nonce: nonce, signer: signer)))
        } catch {
            return .failed(ACMEFailure(step: next.name, message: "cannot sign: \(error)"))
        }
    }
}
