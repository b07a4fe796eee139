import Crypto
import Foundation
import SwiftASN1
import Testing
import X509

@testable import WardenACME

/// Decodes a flattened JWS into its protected header, payload and whether the signature verifies.
private func open(_ body: [UInt8], key: P256.Signing.PublicKey) throws -> (header: [String: Any], payload: String, valid: Bool) {
    let jws = try #require(JSONSerialization.jsonObject(with: Data(body)) as? [String: String])
    let protected = try #require(jws["protected"]), payload = try #require(jws["payload"]), signature = try #require(jws["signature"])
    let headerBytes = try #require(Base64URL.decode(protected))
    let header = try #require(JSONSerialization.jsonObject(with: Data(headerBytes)) as? [String: Any])
    let raw = try P256.Signing.ECDSASignature(rawRepresentation: try #require(Base64URL.decode(signature)))
    let valid = key.isValidSignature(raw, for: Array("\(protected).\(payload)".utf8))
    return (header, String(decoding: Base64URL.decode(payload) ?? [], as: UTF8.self), valid)
}

private func json(_ text: String, status: Int = 200, _ headers: [String: String] = [:]) -> ACMEResponse {
    ACMEResponse(status: status, headers: headers.merging(["Content-Type": "application/json"]) { a, _ in a }, body: Array(text.utf8))
}

@Suite("ACME: JWS")
struct JWSTests {
    @Test func newAccountIsSignedWithItsJWKAndVerifies() throws {
        let key = ACMEAccountKey()
        let body = try key.sign(payload: Array(#"{"a":1}"#.utf8), url: "https://ca/new-acct", nonce: "n1", signer: .jwk)
        let opened = try open(body, key: key.key.publicKey)
        #expect(opened.valid)
        #expect(opened.header["alg"] as? String == "ES256")
        #expect(opened.header["nonce"] as? String == "n1")
        #expect(opened.header["url"] as? String == "https://ca/new-acct")
        #expect(opened.header["kid"] == nil)
        let jwk = try #require(opened.header["jwk"] as? [String: String])
        let raw = try #require(Base64URL.decode(jwk["x"] ?? "")) + (try #require(Base64URL.decode(jwk["y"] ?? "")))
        #expect(try P256.Signing.PublicKey(rawRepresentation: raw).rawRepresentation == key.key.publicKey.rawRepresentation)
        #expect(opened.payload == #"{"a":1}"#)
    }

    @Test func laterRequestsNameTheAccountAndPostAsGetHasAnEmptyPayload() throws {
        let key = ACMEAccountKey()
        let body = try key.sign(payload: nil, url: "https://ca/order/1", nonce: "n2", signer: .kid("https://ca/acct/7"))
        let opened = try open(body, key: key.key.publicKey)
        #expect(opened.valid)
        #expect(opened.header["kid"] as? String == "https://ca/acct/7")
        #expect(opened.header["jwk"] == nil)
        let jws = try #require(JSONSerialization.jsonObject(with: Data(body)) as? [String: String])
        #expect(jws["payload"] == "")
    }

    @Test func keyAuthorizationIsTokenDotThumbprintOfTheSortedJWK() throws {
        let key = ACMEAccountKey()
        let raw = key.key.publicKey.rawRepresentation
        let canonical = #"{"crv":"P-256","kty":"EC","x":"\#(Base64URL.encode(raw.prefix(32)))","y":"\#(Base64URL.encode(raw.suffix(32)))"}"#
        #expect(key.keyAuthorization("tok") == "tok." + Base64URL.encode(SHA256.hash(data: Array(canonical.utf8))))
        #expect(!key.thumbprint.contains("=") && !key.thumbprint.contains("+") && !key.thumbprint.contains("/"))
    }

    @Test func accountKeyRoundTripsThroughPEM() throws {
        let key = ACMEAccountKey()
        #expect(try ACMEAccountKey(pem: key.pem).thumbprint == key.thumbprint)
    }
}

@Suite("ACME: order state machine")
struct OrderStateMachineTests {
    let key = ACMEAccountKey()
    static let directory = #"{"newNonce":"https://ca/nonce","newAccount":"https://ca/acct","newOrder":"https://ca/order","meta":{}}"#
    static let order = #"{"status":"pending","authorizations":["https://ca/authz/1"],"finalize":"https://ca/finalize/1","identifiers":[{"type":"dns","value":"a.test"}]}"#
    static let authorization = #"{"status":"pending","identifier":{"type":"dns","value":"a.test"},"challenges":[{"type":"dns-01","url":"https://ca/chal/dns","status":"pending","token":"T0"},{"type":"http-01","url":"https://ca/chal/http","status":"pending","token":"T1"},{"type":"tls-alpn-01","url":"https://ca/chal/alpn","status":"pending","token":"T2"}]}"#

    func machine(_ types: [ACME.ChallengeType] = [.http01, .tlsALPN01]) -> ACMEOrderStateMachine {
        ACMEOrderStateMachine(
            directoryURL: "https://ca/dir", email: "ops@a.test", names: ["a.test"], challengeTypes: types, accountKey: key, csrDER: [1, 2, 3])
    }

    func request(_ action: ACMEOrderStateMachine.Action) throws -> ACMERequest {
        guard case .send(let request) = action else { throw ACMEFailure(step: "test", message: "expected a request, got \(action)") }
        return request
    }

    /// Up to the challenge: directory, nonce, account, order, authorization.
    func toChallenge(_ m: inout ACMEOrderStateMachine) throws -> ACMEOrderStateMachine.Action {
        #expect(try request(m.start()) == ACMERequest(method: .get, url: "https://ca/dir"))
        let nonce = try request(m.received(json(Self.directory), now: 0))
        #expect(nonce.method == .head && nonce.url == "https://ca/nonce")
        let account = try request(m.received(ACMEResponse(status: 200, headers: ["Replay-Nonce": "n1"], body: []), now: 0))
        let opened = try open(try #require(account.body), key: key.key.publicKey)
        #expect(account.url == "https://ca/acct" && opened.valid && opened.header["nonce"] as? String == "n1" && opened.header["jwk"] != nil)
        #expect(opened.payload == #"{"contact":["mailto:ops@a.test"],"termsOfServiceAgreed":true}"#)
        let newOrder = try request(m.received(json("{}", status: 201, ["Location": "https://ca/acct/1", "Replay-Nonce": "n2"]), now: 0))
        let orderOpened = try open(try #require(newOrder.body), key: key.key.publicKey)
        #expect(orderOpened.header["kid"] as? String == "https://ca/acct/1")
        #expect(orderOpened.payload == #"{"identifiers":[{"type":"dns","value":"a.test"}]}"#)
        let authz = try request(m.received(json(Self.order, status: 201, ["Location": "https://ca/order/1", "Replay-Nonce": "n3"]), now: 0))
        #expect(authz.url == "https://ca/authz/1")
        return m.received(json(Self.authorization, ["Replay-Nonce": "n4"]), now: 0)
    }

    @Test func wholeOrderOverHTTP01() throws {
        var m = machine()
        let provision = try toChallenge(&m)
        guard case .provision(let answer) = provision else { Issue.record("expected provision, got \(provision)"); return }
        #expect(answer == ACMEChallengeAnswer(type: .http01, name: "a.test", token: "T1", keyAuthorization: key.keyAuthorization("T1")))
        let respond = try request(m.provisioned())
        #expect(respond.url == "https://ca/chal/http")
        #expect(try open(try #require(respond.body), key: key.key.publicKey).payload == "{}")
        #expect(m.received(json(#"{"type":"http-01","url":"https://ca/chal/http","status":"processing"}"#, ["Replay-Nonce": "n5", "Retry-After": "3"]), now: 0) == .wait(seconds: 3))
        let poll = try request(m.waited())
        #expect(poll.url == "https://ca/authz/1")
        #expect(try open(try #require(poll.body), key: key.key.publicKey).payload == "")
        // Still pending: poll again after the default delay.
        #expect(m.received(json(Self.authorization, ["Replay-Nonce": "n6"]), now: 0) == .wait(seconds: 1))
        _ = try request(m.waited())
        let valid = Self.authorization.replacingOccurrences(of: #"{"status":"pending","identifier""#, with: #"{"status":"valid","identifier""#)
        let finalize = try request(m.received(json(valid, ["Replay-Nonce": "n7"]), now: 0))
        #expect(finalize.url == "https://ca/finalize/1")
        #expect(try open(try #require(finalize.body), key: key.key.publicKey).payload == #"{"csr":"AQID"}"#)
        let processing = Self.order.replacingOccurrences(of: #""status":"pending""#, with: #""status":"processing""#)
        #expect(m.received(json(processing, ["Replay-Nonce": "n8"]), now: 0) == .wait(seconds: 1))
        #expect(try request(m.waited()).url == "https://ca/order/1")
        let done = Self.order.replacingOccurrences(of: #""status":"pending""#, with: #""status":"valid","certificate":"https://ca/cert/1""#)
        let download = try request(m.received(json(done, ["Replay-Nonce": "n9"]), now: 0))
        #expect(download.url == "https://ca/cert/1")
        let pem = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"
        #expect(m.received(ACMEResponse(status: 200, headers: [:], body: Array(pem.utf8)), now: 0) == .finished(chainPEM: pem))
    }

    @Test func tlsALPN01WhenItIsTheOnlyTypeAllowed() throws {
        var m = machine([.tlsALPN01])
        guard case .provision(let answer) = try toChallenge(&m) else { Issue.record("no provision"); return }
        #expect(answer.type == .tlsALPN01 && answer.token == "T2")
        #expect(try request(m.provisioned()).url == "https://ca/chal/alpn")
    }

    @Test func badNonceIsRetriedWithTheNonceOfTheRejection() throws {
        var m = machine()
        _ = m.start()
        _ = m.received(json(Self.directory), now: 0)
        let first = try request(m.received(ACMEResponse(status: 200, headers: ["Replay-Nonce": "n1"], body: []), now: 0))
        let bad = json(#"{"type":"urn:ietf:params:acme:error:badNonce","detail":"JWS has an invalid anti-replay nonce"}"#, status: 400, ["Replay-Nonce": "n2"])
        let again = try request(m.received(bad, now: 0))
        #expect(again.url == first.url)
        #expect(try open(try #require(again.body), key: key.key.publicKey).header["nonce"] as? String == "n2")
        // Past the limit, the rejection is the order's failure.
        var last = ACMEOrderStateMachine.Action.wait(seconds: 0)
        for _ in 0..<ACMEOrderStateMachine.maximumBadNonces { last = m.received(bad, now: 0) }
        guard case .failed(let failure) = last else { Issue.record("expected failure, got \(last)"); return }
        #expect(failure.problem?.isBadNonce == true)
    }

    @Test func aProblemIsReportedWithItsTypeAndDetail() throws {
        var m = machine()
        _ = m.start()
        _ = m.received(json(Self.directory), now: 0)
        _ = m.received(ACMEResponse(status: 200, headers: ["Replay-Nonce": "n1"], body: []), now: 0)
        let action = m.received(
            json(#"{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"a.test is forbidden"}"#, status: 403), now: 0)
        guard case .failed(let failure) = action else { Issue.record("expected failure"); return }
        #expect(failure.problem?.type == "urn:ietf:params:acme:error:rejectedIdentifier")
        #expect(failure.description == "new account: acme:rejectedIdentifier: a.test is forbidden")
    }

    @Test func aFailedValidationReportsTheChallengesError() throws {
        var m = machine()
        _ = try toChallenge(&m)
        _ = m.provisioned()
        _ = m.received(json(#"{"type":"http-01","url":"u","status":"processing"}"#, ["Replay-Nonce": "n5"]), now: 0)
        _ = m.waited()
        let invalid = #"{"status":"invalid","identifier":{"type":"dns","value":"a.test"},"challenges":[{"type":"http-01","url":"u","status":"invalid","token":"T1","error":{"type":"urn:ietf:params:acme:error:connection","detail":"connection refused"}}]}"#
        guard case .failed(let failure) = m.received(json(invalid, ["Replay-Nonce": "n6"]), now: 0) else { Issue.record("expected failure"); return }
        #expect(failure.description == "validation of a.test: acme:connection: connection refused")
    }

    @Test func aServerWithoutTheWantedChallengeFailsWithWhatItOffers() throws {
        var m = machine([.tlsALPN01])
        let only = Self.authorization.replacingOccurrences(of: #",{"type":"tls-alpn-01","url":"https://ca/chal/alpn","status":"pending","token":"T2"}"#, with: "")
        _ = m.start()
        _ = m.received(json(Self.directory), now: 0)
        _ = m.received(ACMEResponse(status: 200, headers: ["Replay-Nonce": "n1"], body: []), now: 0)
        _ = m.received(json("{}", status: 201, ["Location": "https://ca/acct/1", "Replay-Nonce": "n2"]), now: 0)
        _ = m.received(json(Self.order, status: 201, ["Location": "https://ca/order/1", "Replay-Nonce": "n3"]), now: 0)
        guard case .failed(let failure) = m.received(json(only, ["Replay-Nonce": "n4"]), now: 0) else { Issue.record("expected failure"); return }
        #expect(failure.message?.contains("offers dns-01, http-01, none of tls-alpn-01") == true)
    }

    @Test func retryAfterAsAnHTTPDate() {
        let response = ACMEResponse(status: 200, headers: ["Retry-After": "Thu, 01 Jan 1970 00:01:40 GMT"], body: [])
        #expect(response.retryAfter(now: 90) == 10)
        #expect(ACMEResponse(status: 200, headers: ["retry-after": " 7 "], body: []).retryAfter(now: 0) == 7)
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT") == 784_111_777)
    }
}

@Suite("ACME: certificates")
struct CertificateTests {
    @Test(arguments: [CertificateKeyType.ecdsaP256, .rsa2048])
    func csrNamesEveryHostAndIsSignedByTheCertificateKey(_ type: CertificateKeyType) throws {
        let key = try type.generate()
        let der = try CertificateFactory.csr(names: ["a.test", "www.a.test"], key: key, type: type)
        let csr = try CertificateSigningRequest(derEncoded: der)
        #expect(csr.publicKey == key.publicKey)
        #expect(csr.publicKey.isValidSignature(csr.signature, for: csr))
        let request = try #require(try csr.attributes.extensionRequest)
        let names = try #require(try request.extensions.subjectAlternativeNames)
        #expect(Array(names) == [.dnsName("a.test"), .dnsName("www.a.test")])
        #expect(csr.subject.description == "CN=a.test")
    }

    @Test func tlsALPN01CertificateCarriesTheDigestInACriticalExtension() throws {
        let answer = ACMEChallengeAnswer(type: .tlsALPN01, name: "a.test", token: "T", keyAuthorization: "T.print")
        let pair = try CertificateFactory.challengeCertificate(for: answer, now: 1_000_000)
        let certificate = try Certificate(pemEncoded: pair.chainPEM)
        let ext = try #require(certificate.extensions.first { $0.oid == [1, 3, 6, 1, 5, 5, 7, 1, 31] })
        #expect(ext.critical)
        #expect(Array(ext.value) == [0x04, 0x20] + Array(SHA256.hash(data: Array("T.print".utf8))))
        #expect(try CertificateInfo(chainPEM: pair.chainPEM).names == ["a.test"])
        #expect(try CertificateFactory.keyMatches(pair))
    }

    @Test func infoReadsTheLeafOfAChain() throws {
        let pair = try CertificateFactory.placeholder(names: ["a.test", "B.test"], now: 1_000_000)
        let other = try CertificateFactory.placeholder(names: ["c.test"], now: 2_000_000)
        let info = try CertificateInfo(chainPEM: pair.chainPEM + other.chainPEM)
        #expect(info.names == ["a.test", "b.test"])
        #expect(info.notBefore == 1_000_000 - 3600 && info.notAfter == 1_000_000 + 7 * 86400)
        #expect(info.covers(["A.test"]) && !info.covers(["c.test"]))
        #expect(try !CertificateFactory.keyMatches(CertificatePair(chainPEM: pair.chainPEM, keyPEM: other.keyPEM)))
    }
}

@Suite("ACME: renewal")
struct RenewalTests {
    func info(_ notBefore: Double, _ notAfter: Double, names: [String] = ["a.test"]) throws -> CertificateInfo {
        var info = try CertificateInfo(chainPEM: CertificateFactory.placeholder(names: names, now: 0).chainPEM)
        info.notBefore = notBefore
        info.notAfter = notAfter
        return info
    }

    @Test func noCertificateIsOrderedAtOnceAndOneIsRenewedAtTwoThirds() throws {
        var scheduler = RenewalScheduler(renewBefore: nil)
        scheduler.configure([("a", ["a.test"], nil), ("b", ["b.test"], try info(0, 90 * 86400, names: ["b.test"]))])
        #expect(scheduler.due(now: 100) == [.obtain(site: "a")])
        #expect(scheduler.due(now: 60 * 86400 - 1).contains(.obtain(site: "b")) == false)
        #expect(scheduler.due(now: 60 * 86400).contains(.obtain(site: "b")))
    }

    @Test func renewBeforeMovesTheRenewalAndACertificateMissingANameIsReplaced() throws {
        var scheduler = RenewalScheduler(renewBefore: 30 * 86400)
        scheduler.configure([("a", ["a.test"], try info(0, 90 * 86400)), ("w", ["a.test", "www.a.test"], try info(0, 90 * 86400))])
        #expect(scheduler.due(now: 59 * 86400) == [.obtain(site: "w")])
        #expect(scheduler.due(now: 60 * 86400).contains(.obtain(site: "a")))
    }

    @Test func failuresBackOffAndASuccessResetsThem() throws {
        var scheduler = RenewalScheduler(renewBefore: nil)
        scheduler.configure([("a", ["a.test"], nil)])
        #expect(scheduler.failed(site: "a", now: 1000) == 1060)
        #expect(scheduler.due(now: 1059).isEmpty)
        #expect(scheduler.due(now: 1060) == [.obtain(site: "a")])
        #expect(scheduler.failed(site: "a", now: 1060) == 1180)
        for _ in 0..<20 { scheduler.failed(site: "a", now: 0) }
        #expect(scheduler.failed(site: "a", now: 0) == RenewalScheduler.longestRetry)
        #expect(scheduler.obtained(site: "a", certificate: try info(0, 90 * 86400), now: 10) == false)
        #expect(scheduler.due(now: 11).isEmpty)
    }

    @Test func anExpiringCertificateWithoutARenewalIsReportedOnce() throws {
        var scheduler = RenewalScheduler(renewBefore: nil)
        scheduler.configure([("a", ["a.test"], try info(0, 90 * 86400))])
        let now = 90 * 86400 - 13 * 86400.0
        #expect(scheduler.due(now: now) == [.expiring(site: "a", notAfter: 90 * 86400), .obtain(site: "a")])
        scheduler.failed(site: "a", now: now)
        #expect(scheduler.due(now: now + 30).isEmpty)
    }

    @Test func renewBeforeLongerThanTheLifetimeDoesNotOrderInALoop() throws {
        var scheduler = RenewalScheduler(renewBefore: 3000 * 86400)
        scheduler.configure([("a", ["a.test"], try info(0, 1826 * 86400))])
        #expect(scheduler.due(now: 10) == [.obtain(site: "a")])
        #expect(scheduler.obtained(site: "a", certificate: try info(10, 1826 * 86400 + 10), now: 20))
        #expect(scheduler.due(now: 21).isEmpty)
        #expect(scheduler.due(now: 20 + RenewalScheduler.dueAgainDelay) == [.obtain(site: "a")])
    }
}
