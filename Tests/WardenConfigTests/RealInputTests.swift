import Foundation
import Testing
import WardenTestSupport
@testable import WardenConfig

@Suite("Real control files: the seed chapter, Debian's monit package, and monit itself")
struct RealInputTests {
    static let corpus = TestSupport.packageRoot + "/Tests/WardenConfigTests/Corpus"

    func load(_ path: String) -> LoadResult { ControlFile.load(path, checkPermissions: false) }

    // MARK: - The seed chapter

    /// The chapter, where it is checked out beside the project, proves the snippets are verbatim.
    static let chapter: String? = [
        TestSupport.packageRoot + "/../shared/seed/deploying-a-pharo-web-application.txt",
        "/work/shared/seed/deploying-a-pharo-web-application.txt",
    ].lazy.compactMap { try? String(contentsOfFile: $0, encoding: .utf8) }.first

    @Test(arguments: ["httpd.rc", "mailserver.rc", "myapp-pidfile.rc", "myapp-url.rc"])
    func seedSnippetParses(_ name: String) throws {
        let path = Self.corpus + "/seed/" + name
        let text = try String(contentsOfFile: path, encoding: .utf8)
        if let chapter = Self.chapter {
            #expect(chapter.contains(text), "\(name) is not verbatim from the chapter")
        }
        let result = load(path)
        #expect(!result.diagnostics.hasErrors, "\(result.renderedDiagnostics())")
        #expect(result.configuration != nil)
    }

    @Test func seedApacheLineParsesInsideDebiansApacheCheck() throws {
        let line = try String(contentsOfFile: Self.corpus + "/seed/apache-line.rc", encoding: .utf8)
        if let chapter = Self.chapter { #expect(chapter.contains(line)) }
        let result = ControlFile.parse(
            "check process apache with pidfile /var/run/apache2/apache2.pid\n  start program = \"/etc/init.d/apache2 start\"\n" + line)
        #expect(!result.diagnostics.hasErrors, "\(result.renderedDiagnostics())")
        let rule = try #require(result.configuration?.services.first?.rules.first)
        #expect(rule.window == FailureWindow(times: 4, cycles: 5))
        #expect(rule.action == .restart)
    }

    @Test func seedChapterObfuscatedAddressIsAWarningNotAnError() throws {
        let result = load(Self.corpus + "/seed/myapp-url.rc")
        #expect(result.diagnostics.contains { $0.id == .obfuscatedAddress })
        #expect(result.diagnostics.contains { $0.id == .alertBeforeCheck })
        let myapp = try #require(result.configuration?.service(named: "myapp"))
        #expect(myapp.alerts.count == 1)
    }

    // MARK: - Debian's monit package

    static let debianFiles: [String] = {
        let available = "/etc/monit/conf-available"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: available)) ?? []
        return ["/etc/monit/monitrc"] + names.sorted().map { available + "/" + $0 }
    }()

    @Test func debianMonitPackageIsInstalled() {
        // The per-file test below has nothing to run without it; under CI that is a failure.
        let installed = FileManager.default.fileExists(atPath: "/etc/monit/monitrc")
        if TestSupport.isCI || installed {
            #expect(installed, "Debian's monit package is not installed (.ci/run installs it)")
            #expect(Self.debianFiles.count >= 15)
        }
    }

    @Test(arguments: debianFiles)
    func debianControlFileParses(_ path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else { return }
        let result = load(path)
        // Debian's files test ssh, mysql, smtp, … by protocol: one warden does not speak yet is refused,
        // and that must be the only error.
        #expect(!result.diagnostics.contains { $0.severity == .error && $0.id != .unsupportedTest }, "\(result.renderedDiagnostics())")
        #expect(result.diagnostics.allSatisfy { $0.id != .unsupportedTest || $0.message.hasPrefix("'protocol ") }, "\(result.renderedDiagnostics())")
        if path.hasSuffix("/nginx") {
            let nginx = try #require(result.configuration?.service(named: "nginx"))
            #expect(nginx.dependencies == ["nginx_bin", "nginx_rc"])
            #expect(nginx.groups == ["www", "nginx"])
            // `include /etc/monit/templates/rootbin` inside `check file` continues that service.
            let bin = try #require(result.configuration?.service(named: "nginx_bin"))
            #expect(bin.rules.contains { $0.condition == .permission(0o755) })
        }
    }

    // MARK: - Side by side with monit -t

    struct Expectation: Sendable, CustomStringConvertible {
        var file: String
        var warden: Bool
        var monit: Bool
        var reason: String
        var description: String { file }
    }

    static let expectations: [Expectation] = {
        let text = (try? String(contentsOfFile: corpus + "/differential/expectations.tsv", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            return Expectation(file: fields[0], warden: fields[1] == "ok", monit: fields[2] == "ok", reason: fields.count > 3 ? fields[3] : "")
        }
    }()

    @Test func corpusIsLargeAndFullyListed() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.corpus + "/differential").filter { $0.hasSuffix(".rc") }
        #expect(files.count >= 60)
        #expect(Set(files) == Set(Self.expectations.map(\.file)))
        #expect(Self.expectations.contains { !$0.warden } && Self.expectations.contains { $0.warden })
        // Every disagreement is explained in the docs.
        let docs = try String(contentsOfFile: TestSupport.packageRoot + "/docs/config-language.md", encoding: .utf8)
        for expectation in Self.expectations where expectation.warden != expectation.monit {
            #expect(!expectation.reason.isEmpty)
            #expect(docs.contains(expectation.file), "docs/config-language.md does not list \(expectation.file)")
        }
    }

    @Test(arguments: expectations)
    func wardenAndMonitAgreeExceptWhereDocumented(_ expectation: Expectation) throws {
        let directory = try TemporaryDirectory("warden-diff")
        let text = try String(contentsOfFile: Self.corpus + "/differential/" + expectation.file, encoding: .utf8)
        let path = try directory.write(expectation.file, text, mode: 0o600)

        let warden = try TestSupport.run(TestSupport.wardenBinary, ["-t", "-c", path])
        #expect((warden.status == 0) == expectation.warden, "warden: \(warden.stdout)\(warden.stderr)")
        if expectation.warden {
            #expect(warden.stdout.contains("Control file syntax OK"))
        } else {
            #expect(warden.stderr.contains("\(path):"), "errors carry file:line:col")
            #expect(warden.stderr.contains(": error: "))
        }

        guard let monit = TestSupport.peer("monit") else {
            #expect(!TestSupport.isCI, "monit is not installed (.ci/run installs it)")
            return
        }
        let result = try TestSupport.run(
            monit, ["-t", "-c", path], environment: ["HOME": directory.path, "PATH": "/usr/bin:/bin"])
        #expect((result.status == 0) == expectation.monit, "monit: \(result.stdout)\(result.stderr)")
    }
}
