import Testing
import WardenTestSupport
@testable import WardenZinc

@Suite("Zinc-style app server")
struct ZincTests {
    func delegate() -> ZnDispatcherDelegate {
        let delegate = ZnDispatcherDelegate()
        delegate.map("image") { request in .ok("image \(request.uri)") }
            .map("redirect-to-image") { _ in .redirect("image") }
            .map("/", toKey: "redirect-to-image")
        return delegate
    }

    @Test func dispatchMatchesTheFirstSegmentExactly() {
        let delegate = delegate()
        #expect(delegate.handleRequest(ZnRequest(method: "GET", uri: "/image")).status == 200)
        #expect(delegate.handleRequest(ZnRequest(method: "GET", uri: "/image?raw=true")).status == 200)
        #expect(delegate.handleRequest(ZnRequest(method: "GET", uri: "/image/sub")).status == 200)
        #expect(delegate.handleRequest(ZnRequest(method: "GET", uri: "/images")).status == 404)
        #expect(delegate.handleRequest(ZnRequest(method: "GET", uri: "/redirect-to-image")).status == 302)
    }

    @Test func rootKeyIsAnAliasAndMatchesOnlyTheRoot() {
        let delegate = delegate()
        let root = delegate.handleRequest(ZnRequest(method: "GET", uri: "/"))
        #expect(root.status == 302)
        #expect(root.headers.first { $0.name == "Location" }?.value == "image")
        #expect(String(decoding: root.body, as: UTF8.self) == "Redirect image\r\n")
        #expect(root.body.count == 16, "the chapter's 16B")
        let notFound = delegate.handleRequest(ZnRequest(method: "GET", uri: "/nothing?a=b"))
        #expect(notFound.status == 404)
        #expect(String(decoding: notFound.body, as: UTF8.self) == "Not Found /nothing?a=b\r\n")
        #expect(notFound.contentType == "text/plain;charset=utf-8")
        #expect(root.logDescription == "ZnResponse(302 Found text/plain;charset=utf-8 16B)")
    }

    @Test func pngEncoderWritesAValidPNG() {
        let png = PNG.encode(width: 4, height: 3) { x, y in (UInt8(x * 60), UInt8(y * 80), 0) }
        #expect(PNG.isPNG(png))
        #expect(!PNG.isPNG(Array("GIF89a, not a png at all, clearly not".utf8)))
        #expect(PNG.crc32(Array("IEND".utf8)) == 0xAE42_6082)
    }

    @Test func multipartUploadIsParsed() {
        let body = Array("--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\nDATA\r\n--XyZ--\r\n".utf8)
        #expect(Multipart.firstFile(body, contentType: "multipart/form-data; boundary=XyZ") == Array("DATA".utf8))
    }

    @Test func serverSpeaksHTTPWithKeepAliveAndLogsLikeZinc() async throws {
        let server = ZnServer(port: 0, delegate: delegate())
        try await server.start()
        let port = try #require(server.boundPort)
        let response = try #require(TestSupport.httpGet(port: port, path: "/"))
        #expect(response.status == 302)
        #expect(response.body == "Redirect image\r\n")
        #expect(response.headers["content-type"] == "text/plain;charset=utf-8")
        #expect(TestSupport.httpGet(port: port, path: "/image")?.body == "image /image")
        await server.stop()
        #expect(TestSupport.httpGet(port: port, path: "/") == nil, "stopped")
    }
}
