import Crypto
import FoundationEssentials
import SwiftASN1
import X509
import _CryptoExtras

/// The key of a site's certificate: ECDSA P-256 by default (as Caddy), RSA on request.
public enum CertificateKeyType: String, Sendable, Hashable, Codable {
    case ecdsaP256 = "ecdsa"
    case rsa2048 = "rsa"

    public func generate() throws -> Certificate.PrivateKey {
        switch self {
        case .ecdsaP256: Certificate.PrivateKey(P256.Signing.PrivateKey())
        case .rsa2048: Certificate.PrivateKey(try _RSA.Signing.PrivateKey(keySize: .bits2048))
        }
    }

    public var signatureAlgorithm: Certificate.SignatureAlgorithm {
        switch self {
        case .ecdsaP256: .ecdsaWithSHA256
        case .rsa2048: .sha256WithRSAEncryption
        }
    }
}

/// A certificate and its key as PEM, as the proxy loads them.
public struct CertificatePair: Sendable, Hashable, Codable {
    public var chainPEM: String
    public var keyPEM: String

    public init(chainPEM: String, keyPEM: String) {
        self.chainPEM = chainPEM
        self.keyPEM = keyPEM
    }
}

/// What warden reads from a certificate: validity, names, issuer.
public struct CertificateInfo: Sendable, Hashable, Codable {
    /// Seconds since 1970.
    public var notBefore: Double
    public var notAfter: Double
    public var names: [String]
    public var issuer: String

    /// The first certificate of a PEM chain (the leaf).
    public init(chainPEM: String) throws {
        guard let end = chainPEM.firstRange(of: "-----END CERTIFICATE-----") else {
            throw ACMEFailure(step: "certificate", message: "no certificate in the PEM")
        }
        let leaf = try Certificate(pemEncoded: String(chainPEM[..<end.upperBound]))
        notBefore = leaf.notValidBefore.timeIntervalSince1970
        notAfter = leaf.notValidAfter.timeIntervalSince1970
        names = (try? leaf.extensions.subjectAlternativeNames)?.flatMap { names in
            names.compactMap { if case .dnsName(let name) = $0 { name.lowercased() } else { nil } }
        } ?? []
        issuer = leaf.issuer.description
    }

    public var lifetime: Double { notAfter - notBefore }

    public func covers(_ wanted: [String]) -> Bool { Set(wanted.map { $0.lowercased() }).isSubset(of: names) }
}

/// The certificates warden makes itself: the CSR to finalize an order, the tls-alpn-01 answer,
/// and the self-signed placeholder served until the first real certificate arrives.
public enum CertificateFactory {
    /// A DER CSR naming `names` (the first as the subject's common name, all as DNS SANs).
    public static func csr(names: [String], key: Certificate.PrivateKey, type: CertificateKeyType) throws -> [UInt8] {
        let extensions = try Certificate.Extensions { SubjectAlternativeNames(names.map { .dnsName($0) }) }
        let request = try CertificateSigningRequest(
            version: .v1, subject: try DistinguishedName { CommonName(names.first ?? "") }, privateKey: key,
            attributes: try CertificateSigningRequest.Attributes([.init(ExtensionRequest(extensions: extensions))]),
            signatureAlgorithm: type.signatureAlgorithm)
        var serializer = DER.Serializer()
        try serializer.serialize(request)
        return serializer.serializedBytes
    }

    /// id-pe-acmeIdentifier (RFC 8737 §3).
    static let acmeIdentifier: ASN1ObjectIdentifier = [1, 3, 6, 1, 5, 5, 7, 1, 31]

    /// The tls-alpn-01 certificate (RFC 8737 §3): self-signed for the one name, with the SHA-256 of
    /// the key authorization in a critical acmeIdentifier extension.
    public static func challengeCertificate(for answer: ACMEChallengeAnswer, now: Double) throws -> CertificatePair {
        let digest = Array(SHA256.hash(data: Array(answer.keyAuthorization.utf8)))
        var serializer = DER.Serializer()
        try serializer.serialize(ASN1OctetString(contentBytes: digest[...]))
        let extensions = try Certificate.Extensions {
            SubjectAlternativeNames([.dnsName(answer.name)])
            Certificate.Extension(oid: acmeIdentifier, critical: true, value: serializer.serializedBytes[...])
        }
        return try selfSigned(name: answer.name, extensions: extensions, now: now, days: 7)
    }

    /// A certificate no client trusts, for handshakes before the first real one is there.
    public static func placeholder(names: [String], now: Double) throws -> CertificatePair {
        let extensions = try Certificate.Extensions { SubjectAlternativeNames(names.map { .dnsName($0) }) }
        return try selfSigned(name: names.first ?? "warden", extensions: extensions, now: now, days: 7)
    }

    private static func selfSigned(name: String, extensions: Certificate.Extensions, now: Double, days: Double) throws -> CertificatePair {
        let key = P256.Signing.PrivateKey()
        let privateKey = Certificate.PrivateKey(key)
        let subject = try DistinguishedName { CommonName(name) }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: privateKey.publicKey,
            notValidBefore: Date(timeIntervalSince1970: now - 3600), notValidAfter: Date(timeIntervalSince1970: now + days * 86400),
            issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions, issuerPrivateKey: privateKey)
        return CertificatePair(chainPEM: try certificate.serializeAsPEM().pemString, keyPEM: key.pemRepresentation)
    }
}

extension CertificateFactory {
    /// Whether the key is the leaf certificate's: a stored pair that is not is ordered again.
    public static func keyMatches(_ pair: CertificatePair) throws -> Bool {
        guard let end = pair.chainPEM.firstRange(of: "-----END CERTIFICATE-----") else { return false }
        let leaf = try Certificate(pemEncoded: String(pair.chainPEM[..<end.upperBound]))
        return try Certificate.PrivateKey(pemEncoded: pair.keyPEM).publicKey == leaf.publicKey
    }
}
