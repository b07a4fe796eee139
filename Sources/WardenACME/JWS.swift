import Crypto
import WardenPlatform

/// base64url without padding (RFC 7515 §2), as every JWS field and the key authorization use it.
public enum Base64URL {
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var text = Base64.encode(Array(bytes))
        while text.hasSuffix("=") { text.removeLast() }
        return String(text.map { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 })
    }

    public static func decode(_ text: String) -> [UInt8]? {
        guard !text.contains(where: { $0 == "+" || $0 == "/" || $0 == "=" }) else { return nil }
        return Base64.decode(text)
    }
}

/// The ACME account key: ECDSA P-256, signing every request as ES256 (RFC 8555 §6.2).
public struct ACMEAccountKey: Sendable {
    public let key: P256.Signing.PrivateKey

    public init(key: P256.Signing.PrivateKey = P256.Signing.PrivateKey()) {
        self.key = key
    }

    public init(pem: String) throws {
        key = try P256.Signing.PrivateKey(pemRepresentation: pem)
    }

    public var pem: String { key.pemRepresentation }

    /// The public key as a JWK (RFC 7518 §6.2.1), members in the order RFC 7638 hashes them.
    public var jwk: String {
        let raw = key.publicKey.rawRepresentation
        return #"{"crv":"P-256","kty":"EC","x":"\#(Base64URL.encode(raw.prefix(32)))","y":"\#(Base64URL.encode(raw.suffix(32)))"}"#
    }

    /// RFC 7638 thumbprint: SHA-256 of the JWK with its required members only, sorted, no blanks.
    public var thumbprint: String { Base64URL.encode(SHA256.hash(data: Array(jwk.utf8))) }

    /// `token.thumbprint` (RFC 8555 §8.1): what the server expects a challenge to show.
    public func keyAuthorization(_ token: String) -> String { "\(token).\(thumbprint)" }

    /// Who signs: the new account names its key (`jwk`), every later request its account URL (`kid`).
    public enum Signer: Sendable, Hashable {
        case jwk
        case kid(String)
    }

    /// A flattened JWS (RFC 7515 §7.2.2). A nil payload is a POST-as-GET (RFC 8555 §6.3): the empty string.
    public func sign(payload: [UInt8]?, url: String, nonce: String, signer: Signer) throws -> [UInt8] {
        let identity = switch signer {
        case .jwk: #""jwk":\#(jwk)"#
        case .kid(let account): #""kid":\#(Self.quoted(account))"#
        }
        let header = #"{"alg":"ES256",\#(identity),"nonce":\#(Self.quoted(nonce)),"url":\#(Self.quoted(url))}"#
        let protected = Base64URL.encode(header.utf8)
        let body = payload.map { Base64URL.encode($0) } ?? ""
        let signature = try key.signature(for: Array("\(protected).\(body)".utf8))
        let jws = #"{"protected":"\#(protected)","payload":"\#(body)","signature":"\#(Base64URL.encode(signature.rawRepresentation))"}"#
        return Array(jws.utf8)
    }

    /// A JSON string literal (the server's URLs and nonces are ASCII, but are escaped all the same).
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"", "\\": out += "\\\(scalar)"
            case _ where scalar.value < 0x20: out += "\\u00" + (scalar.value < 16 ? "0" : "") + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
