import Foundation
import Testing
@testable import WardenConfig

@Suite("Importing the chapter's Apache and nginx configurations")
struct ImportTests {
    func seed(_ name: String) throws -> String {
        let text = try String(contentsOfFile: RealInputTests.corpus + "/seed/" + name, encoding: .utf8)
        if let chapter = RealInputTests.chapter { #expect(chapter.contains(text.dropLast()), "\(name) is verbatim") }
        return text
    }

    @Test func nginxServerBlock() throws {
        let result = FrontServerImport.nginx(try seed("nginx.conf"), path: "nginx.conf")
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics.map(\.message))")
        #expect(result.controlFile.contains("listen 0.0.0.0 port 80"))
        #expect(result.controlFile.contains("check site mydomain.com with host \"mydomain.com\""))
        #expect(result.controlFile.contains("pass / to http://127.0.0.1:8080/"))
        #expect(result.controlFile.contains("access log /var/log/nginx/myapp-access.log combined"))
        #expect(result.controlFile.contains("error log /var/log/nginx/myapp-error.log"))
        let parsed = ControlFile.parse(result.controlFile)
        #expect(!parsed.diagnostics.hasErrors, "\(parsed.renderedDiagnostics())")
        #expect(parsed.configuration?.sites.first?.hosts == ["mydomain.com"])
    }

    @Test func apacheVirtualHost() throws {
        let result = FrontServerImport.apache(try seed("apache.conf"), path: "apache.conf")
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics.map(\.message))")
        #expect(result.controlFile.contains("pass / to http://127.0.0.1:8080/"))
        #expect(result.controlFile.contains("ProxyPreserveHost On: warden preserves Host by default"))
        #expect(!result.controlFile.contains("anothercooldomain"), "the commented-out ServerAlias stays out")
        let parsed = ControlFile.parse(result.controlFile)
        #expect(!parsed.diagnostics.hasErrors, "\(parsed.renderedDiagnostics())")
        let site = try #require(parsed.configuration?.sites.first)
        #expect(site.accessLog == "/var/log/apache2/myapp-access.log")
        #expect(site.errorLog == "/var/log/apache2/myapp-error.log")
    }

    @Test func untranslatableDirectivesAreNamedWithTheirLine() {
        let nginx = FrontServerImport.nginx("server {\n  listen 80;\n  gzip on;\n  location / { proxy_pass http://127.0.0.1:8080; }\n}\n", path: "x.conf")
        #expect(nginx.diagnostics.map(\.location?.line) == [3])
        #expect(nginx.diagnostics.first?.message == "cannot translate 'gzip on'")
        let apache = FrontServerImport.apache("<VirtualHost *:8080>\nServerName a.example\nServerAlias b.example\nRewriteEngine On\nProxyPass / http://127.0.0.1:9000/\n</VirtualHost>\n", path: "y.conf")
        #expect(apache.diagnostics.map(\.location?.line) == [4])
        #expect(apache.controlFile.contains("with host \"a.example\" alias \"b.example\""))
        #expect(apache.controlFile.contains("listen 0.0.0.0 port 8080"))
    }
}
