import WardenPlatform

/// Translates the chapter's two front-server configurations (nginx `server { … }` and Apache
/// `<VirtualHost>`) into warden's `set proxy` / `check site` statements. Every directive that has no
/// equivalent is reported with its file and line instead of being dropped silently.
public enum FrontServerImport {
    public struct Result: Sendable {
        public var controlFile: String
        public var diagnostics: [Diagnostic]
    }

    struct Site {
        var hosts: [String] = []
        var listens: [(address: String, port: Int)] = []
        var routes: [(prefix: String, upstream: String)] = []
        var accessLog: String?
        var errorLog: String?
        var notes: [String] = []
    }

    // MARK: - nginx

    public static func nginx(_ text: String, path: String) -> Result {
        var diagnostics: [Diagnostic] = []
        var sites: [Site] = []
        var stack: [String] = []
        var current = Site()
        var location = "/"
        for (number, statement) in nginxStatements(text) {
            let at = FileLocation(file: path, line: number, column: 1)
            let words = statement.split(whereSeparator: \.isWhitespace).map(String.init)
            guard let name = words.first else { continue }
            if name == "}" {
                let closed = stack.popLast()
                if closed == "server" {
                    sites.append(current)
                    current = Site()
                } else if closed == "location" {
                    location = "/"
                }
                continue
            }
            if words.last == "{" {
                stack.append(name)
                if name == "location" { location = words.count > 2 ? words[1] : "/" }
                if name != "server" && name != "location" && name != "http" {
                    diagnostics.append(.warning(.invalidValue, "cannot translate block '\(name)'", at: at))
                }
                continue
            }
            let arguments = Array(words.dropFirst())
            switch name {
            case "listen":
                let target = arguments.first ?? "80"
                let parts = target.split(separator: ":")
                let port = Int(parts.last ?? "80") ?? 80
                current.listens.append((parts.count > 1 ? String(parts[0]) : "0.0.0.0", port))
                if arguments.count > 1 { diagnostics.append(.warning(.invalidValue, "cannot translate listen options '\(arguments.dropFirst().joined(separator: " "))'", at: at)) }
            case "server_name":
                current.hosts += arguments
            case "access_log":
                if arguments.first != "off" { current.accessLog = arguments.first }
            case "error_log":
                current.errorLog = arguments.first
            case "proxy_pass":
                current.routes.append((location, arguments.first ?? ""))
            case "proxy_set_header" where arguments.first?.lowercased() == "host" && arguments.dropFirst().first == "$host":
                current.notes.append("proxy_set_header Host $host: warden preserves Host by default")
            default:
                diagnostics.append(.warning(.invalidValue, "cannot translate '\(statement)'", at: at))
            }
        }
        return Result(controlFile: render(sites), diagnostics: diagnostics)
    }

    /// nginx statements with the line each starts on: `name args;`, `name args {`, `}`.
    static func nginxStatements(_ text: String) -> [(Int, String)] {
        var result: [(Int, String)] = []
        var buffer = ""
        var startLine = 1
        var line = 1
        var inComment = false
        for character in text {
            if character == "\n" {
                line += 1
                inComment = false
                buffer.append(" ")
                continue
            }
            if inComment { continue }
            if character == "#" {
                inComment = true
                continue
            }
            if buffer.allSatisfy(\.isWhitespace) { startLine = line }
            switch character {
            case ";":
                result.append((startLine, buffer.trimmed))
                buffer = ""
            case "{":
                result.append((startLine, buffer.trimmed + " {"))
                buffer = ""
            case "}":
                if !buffer.trimmed.isEmpty { result.append((startLine, buffer.trimmed)) }
                result.append((line, "}"))
                buffer = ""
            default:
                buffer.append(character)
            }
        }
        return result
    }

    // MARK: - Apache

    public static func apache(_ text: String, path: String) -> Result {
        var diagnostics: [Diagnostic] = []
        var sites: [Site] = []
        var current: Site?
        var skippedBlock: String?
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let at = FileLocation(file: path, line: index + 1, column: 1)
            let line = raw.trimmed
            if line.isEmpty || line.hasPrefix("#") { continue }
            let words = line.split(whereSeparator: \.isWhitespace).map(String.init)
            let name = words[0].lowercased()
            if let block = skippedBlock {
                if name == "</\(block)>" { skippedBlock = nil }
                continue
            }
            switch name {
            case "<virtualhost":
                var site = Site()
                for address in words.dropFirst() {
                    let target = address.trimming(">")
                    let parts = target.split(separator: ":")
                    site.listens.append((parts.first == "*" || parts.count < 2 ? "0.0.0.0" : String(parts[0]), Int(parts.last ?? "80") ?? 80))
                }
                current = site
            case "</virtualhost>":
                if let site = current { sites.append(site) }
                current = nil
            case "servername":
                current?.hosts.insert(words.count > 1 ? words[1] : "", at: 0)
            case "serveralias":
                current?.hosts += words.dropFirst()
            case "proxypreservehost" where words.count > 1 && words[1].lowercased() == "on":
                current?.notes.append("ProxyPreserveHost On: warden preserves Host by default")
            case "proxyrequests" where words.count > 1 && words[1].lowercased() == "off":
                current?.notes.append("ProxyRequests Off: warden is never a forward proxy")
            case "proxypass" where words.count > 2:
                current?.routes.append((words[1], words[2]))
            case "proxypassreverse":
                current?.notes.append("ProxyPassReverse: warden rewrites Location, Content-Location and Refresh by default")
            case "errorlog":
                current?.errorLog = words.count > 1 ? words[1] : nil
            case "customlog":
                current?.accessLog = words.count > 1 ? words[1] : nil
                if words.count > 2, words[2] != "combined" {
                    diagnostics.append(.warning(.invalidValue, "cannot translate log format '\(words[2])'; warden writes 'combined'", at: at))
                }
            case "<proxy":
                // `Order allow,deny` / `Allow from all` is what warden does anyway.
                skippedBlock = "proxy"
                current?.notes.append("<Proxy *> Allow from all: warden proxies only to the configured upstreams")
            default:
                diagnostics.append(.warning(.invalidValue, "cannot translate '\(line)'", at: at))
            }
        }
        return Result(controlFile: render(sites), diagnostics: diagnostics)
    }

    // MARK: - Output

    static func render(_ sites: [Site]) -> String {
        var listens: [String] = []
        for site in sites {
            for listen in site.listens where !listens.contains("\(listen.address) port \(listen.port)") {
                listens.append("\(listen.address) port \(listen.port)")
            }
        }
        var out = "# Translated by `warden import`.\nset proxy\n"
        for listen in listens.isEmpty ? ["0.0.0.0 port 80"] : listens { out += "    listen \(listen)\n" }
        out += "    # user www-data group www-data   # drop root after binding port 80\n"
        for site in sites {
            let name = site.hosts.first ?? "default"
            let hosts = site.hosts.isEmpty ? " default" : " with host \"\(site.hosts[0])\"" + site.hosts.dropFirst().map { " alias \"\($0)\"" }.joined()
            out += "\ncheck site \(name)\(hosts)\n"
            for note in site.notes { out += "    # \(note)\n" }
            for route in site.routes {
                var upstream = route.upstream
                if !upstream.hasSuffix("/"), upstream.filter({ $0 == "/" }).count == 2 { upstream += "/" }
                out += "    pass \(route.prefix) to \(upstream)\n"
            }
            if let access = site.accessLog { out += "    access log \(access) combined\n" }
            if let error = site.errorLog { out += "    error log \(error)\n" }
        }
        return out
    }
}
