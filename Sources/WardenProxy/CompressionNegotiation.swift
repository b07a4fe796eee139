import WardenConfig
import WardenPlatform

/// Whether one response of a site with `compress` is compressed, and with which coding: what the
/// client accepts (`Accept-Encoding`, RFC 9110 §12.5.3) against what the response is. Decides only;
/// `BodyCompressor` does the work.
///
/// Never compressed: a response to HEAD or to an upgrade request, a 1xx, 204, 206 or 304, one with a
/// `Content-Range`, one already encoded (`Content-Encoding` other than `identity`), one with
/// `Cache-Control: no-transform`, one whose type is not text (see `isCompressible`), and one whose
/// `Content-Length` is under the site's minimum.
struct CompressionNegotiation {
    typealias Coding = Site.Compression.Coding

    struct Request {
        var isHEAD = false
        /// An `Upgrade` request (a WebSocket handshake) or CONNECT: its answer may become a tunnel.
        var upgrade = false
        var acceptEncoding: String?
    }

    struct Response {
        var status = 200
        var contentType: String?
        var contentEncoding: String?
        var cacheControl: String?
        var contentLength: Int?
        var hasContentRange = false
    }

    enum Outcome: Equatable {
        /// Sent as it is, with nothing added.
        case unchanged
        /// Sent as it is, with `Vary: Accept-Encoding`: another client would have had it compressed.
        case varies
        case compress(Coding)
    }

    let settings: Site.Compression

    func decide(_ request: Request, _ response: Response) -> Outcome {
        guard !request.isHEAD, !request.upgrade, Self.mayHaveBody(status: response.status), !response.hasContentRange,
            response.contentEncoding.map({ $0.trimming(" \t").lowercased() == "identity" }) ?? true,
            !Self.hasToken(response.cacheControl, "no-transform"),
            response.contentType.map(Self.isCompressible) ?? false,
            (response.contentLength ?? Int.max) >= settings.minimumBytes
        else { return .unchanged }
        return preferredCoding(request.acceptEncoding).map(Outcome.compress) ?? .varies
    }

    /// The coding the client accepts with the highest q-value among the site's, the site's order
    /// breaking ties; nil when it accepts none of them, or names `identity` with a higher q-value.
    /// A client that sends no `Accept-Encoding` gets the body as it is (RFC 9110 allows any coding,
    /// but a client that names none is usually one that cannot decode any).
    func preferredCoding(_ acceptEncoding: String?) -> Coding? {
        guard let acceptEncoding else { return nil }
        var named: [String: Double] = [:]
        for element in acceptEncoding.split(separator: ",") {
            let parameters = element.split(separator: ";")
            guard let name = parameters.first?.trimming(" \t").lowercased(), !name.isEmpty else { continue }
            // `x-gzip` is gzip's old name (RFC 9110 §8.4.1.3); the first mention of a name counts.
            let key = name == "x-gzip" ? "gzip" : name
            if named[key] == nil { named[key] = Self.quality(parameters.dropFirst()) }
        }
        var best: (coding: Coding, q: Double)?
        for coding in settings.codings {
            let q = named[coding.rawValue] ?? named["*"] ?? 0
            if q > 0, q > best?.q ?? 0 { best = (coding, q) }
        }
        guard let best else { return nil }
        if let identity = named["identity"], identity > best.q { return nil }
        return best.coding
    }

    /// `q=` among an element's parameters: 1 without one, 0 (not acceptable) when it is not a
    /// number from 0 to 1.
    private static func quality(_ parameters: ArraySlice<Substring>) -> Double {
        for parameter in parameters {
            let pair = parameter.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, pair[0].trimming(" \t").lowercased() == "q" else { continue }
            guard let q = Double(pair[1].trimming(" \t")), (0...1).contains(q) else { return 0 }
            return q
        }
        return 1
    }

    static func mayHaveBody(status: Int) -> Bool {
        status >= 200 && status != 204 && status != 206 && status != 304
    }

    /// Text worth compressing: `text/*` (but not `text/event-stream`, whose small events want to go
    /// out at once), JSON, JavaScript, XML, SVG, and any `+json` or `+xml` type. Images, fonts,
    /// archives and video are compressed already.
    static func isCompressible(_ contentType: String) -> Bool {
        let mime = (contentType.split(separator: ";", maxSplits: 1).first ?? "").trimming(" \t").lowercased()
        if mime.hasPrefix("text/") { return mime != "text/event-stream" }
        if mime.hasSuffix("+json") || mime.hasSuffix("+xml") { return true }
        return textApplicationTypes.contains(mime)
    }

    private static let textApplicationTypes: Set<String> = [
        "application/json", "application/javascript", "application/x-javascript", "application/ecmascript",
        "application/xml", "application/x-ndjson", "application/wasm",
    ]

    /// Whether a comma-separated field value has `token` (without its parameters).
    static func hasToken(_ value: String?, _ token: String) -> Bool {
        guard let value else { return false }
        return value.split(separator: ",").contains { element in
            (element.split(separator: "=", maxSplits: 1).first ?? "").trimming(" \t").lowercased() == token
        }
    }
}
