import Synchronization
import WardenZinc

/// The chapter's `MyFirstWebApp`: `/image` is a page showing an image, `/image?raw=…` the PNG itself,
/// and a form on the page replaces the image with an uploaded PNG.
final class MyFirstWebApp: ZnHandler {
    static let maximumUpload = 1_048_576

    private let image = Mutex<[UInt8]>(MyFirstWebApp.defaultImage)

    /// A 128×128 gradient with a ring: a real PNG, drawn in code.
    static let defaultImage: [UInt8] = PNG.encode(width: 128, height: 128) { x, y in
        let dx = x - 64
        let dy = y - 64
        let ring = abs(dx * dx + dy * dy - 1600) < 200
        return ring ? (255, 255, 255) : (UInt8(x * 2), UInt8(y * 2), 160)
    }

    func handleRequest(_ request: ZnRequest) -> ZnResponse {
        // Exactly `image`: `/image/other` is not this app's.
        guard request.path == "/image" else { return .notFound(request.uri) }
        switch request.method {
        case "GET", "HEAD":
            if request.query["raw"] != nil {
                return .ok(bytes: image.withLock { $0 }, contentType: "image/png")
            }
            return .html(page())
        case "POST":
            return upload(request)
        default:
            return ZnResponse(status: 405, reason: "Method Not Allowed", contentType: "text/plain;charset=utf-8", body: Array("Method Not Allowed\r\n".utf8))
        }
    }

    private func upload(_ request: ZnRequest) -> ZnResponse {
        let contentType = request.header("Content-Type") ?? ""
        let file = contentType.lowercased().hasPrefix("multipart/form-data")
            ? Multipart.firstFile(request.body, contentType: contentType) : request.body
        guard let file, !file.isEmpty else {
            return refused("No file was uploaded; choose a PNG image.")
        }
        guard file.count <= Self.maximumUpload else {
            return refused("The file is \(file.count) bytes; the limit is \(Self.maximumUpload) bytes. The old image is kept.")
        }
        guard PNG.isPNG(file) else {
            return refused("That is not a PNG image. The old image is kept.")
        }
        image.withLock { $0 = file }
        return .redirect("image")
    }

    private func refused(_ message: String) -> ZnResponse {
        var response = ZnResponse.html(page(message: message))
        response.status = 400
        response.reason = "Bad Request"
        return response
    }

    private func page(message: String? = nil) -> String {
        let notice = message.map { "<p class=\"error\">\($0)</p>" } ?? ""
        return """
            <!DOCTYPE html><html><head><title>Image</title><meta name="viewport" content="width=device-width">\
            </head><body><h1>Image</h1>\(notice)<img src="image?raw=true" alt="the image"><br>\
            <form method="post" action="image" enctype="multipart/form-data">\
            <input type="file" name="file" accept="image/png"> <input type="submit" value="Upload PNG"></form>\
            </body></html>
            """
    }
}
