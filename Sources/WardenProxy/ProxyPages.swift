/// The small HTML pages the proxy answers with itself.
enum ProxyPages {
    static func page(_ status: Int, _ title: String, _ text: String) -> [UInt8] {
        Array("<!DOCTYPE html><html><head><title>\(status) \(title)</title></head><body><center><h1>\(status) \(title)</h1></center><hr><center>\(text)</center></body></html>\n".utf8)
    }

    static let badGateway = page(502, "Bad Gateway", "warden")
    static let gatewayTimeout = page(504, "Gateway Time-out", "warden")
    static let notFound = page(404, "Not Found", "warden")
    static let defaultMaintenance = page(503, "Service Temporarily Unavailable", "The application is being restarted; please try again in a moment.")
}
