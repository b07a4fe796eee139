import Testing

@testable import WardenConfig

@Suite("Config: compress")
struct CompressConfigTests {
    func parse(_ text: String) -> LoadResult { ControlFile.parse(text, path: "test.rc") }

    func site(_ statement: String) -> String {
        """
        set proxy listen 127.0.0.1 port 8000
        check site app with host "app.test"
            pass / to http://127.0.0.1:8080/
            \(statement)
            access log /tmp/app-access.log
        """
    }

    @Test func bareCompressIsGzipAtLevel5Over512Bytes() throws {
        let result = parse(site("compress"))
        #expect(!result.diagnostics.hasErrors, "\(result.renderedDiagnostics())")
        let site = try #require(result.configuration?.sites.first)
        #expect(site.compression == Site.Compression(codings: [.gzip], level: 5, minimumBytes: 512))
        #expect(site.accessLog == "/tmp/app-access.log", "the next statement is read as one")
    }

    @Test func withoutCompressASiteIsNotCompressed() throws {
        let result = parse(site(""))
        #expect(try #require(result.configuration?.sites.first).compression == nil)
    }

    @Test(arguments: [
        ("compress gzip deflate min-size 1 kB", Site.Compression(codings: [.gzip, .deflate], level: 5, minimumBytes: 1024)),
        ("compress deflate gzip level 9", Site.Compression(codings: [.deflate, .gzip], level: 9, minimumBytes: 512)),
        ("compress min-size 0 level 1 deflate", Site.Compression(codings: [.deflate], level: 1, minimumBytes: 0)),
        ("compress gzip gzip min-size 2kb", Site.Compression(codings: [.gzip], level: 5, minimumBytes: 2048)),
        ("compress min-size 100 bytes", Site.Compression(codings: [.gzip], level: 5, minimumBytes: 100)),
    ])
    func optionsInAnyOrder(statement: String, expected: Site.Compression) throws {
        let result = parse(site(statement))
        #expect(!result.diagnostics.hasErrors, "\(result.renderedDiagnostics())")
        #expect(result.configuration?.sites.first?.compression == expected)
    }

    @Test(arguments: [
        ("compress gzip br", "test.rc:4:19: error: unknown 'compress' option 'br'", "hint: warden compresses with 'gzip' and 'deflate' only"),
        ("compress gzp", "test.rc:4:14: error: unknown 'compress' option 'gzp'", "hint: did you mean 'gzip'?"),
        ("compress level 0", "test.rc:4:20: error: a compression level '0' is out of range (1...9)", nil),
        ("compress level fast", "test.rc:4:20: error: expected a compression level, found 'fast'", nil),
        ("compress min-size 1 second", "test.rc:4:23: error: expected a size unit (B, KB, MB, GB), found 'second'", nil),
        ("compress min-size big", "test.rc:4:23: error: expected a size, found 'big'", nil),
    ])
    func mistakesAreReportedAtTheirToken(statement: String, error: String, hint: String?) {
        let rendered = parse(site(statement)).renderedDiagnostics()
        #expect(rendered.contains(error), "\(rendered)")
        if let hint { #expect(rendered.contains(hint), "\(rendered)") }
    }

    @Test func compressOutsideASiteIsAnError() {
        let rendered = parse("set proxy listen port 8000\ncompress gzip").renderedDiagnostics()
        #expect(rendered.contains("test.rc:2:1: error: 'compress' must follow a 'check site' statement"), "\(rendered)")
    }
}
