import ArgumentParser
import WardenConfig
import WardenCore
import WardenHTTP

#if canImport(Glibc)
import Glibc
#endif

/// Options shared by the commands that talk to the running daemon.
struct ClientOptions: ParsableArguments {
    @OptionGroup var global: GlobalOptions

    func client() throws -> ControlClient {
        let path = try global.resolveControlFile()
        let result = ControlFile.load(path)
        guard let configuration = result.configuration else {
            printError(result.renderedDiagnostics(), terminator: "")
            throw ExitCode(1)
        }
        guard let httpd = configuration.httpd, let client = ControlClient(settings: httpd) else {
            printError("warden: the control file has no 'set httpd'; the CLI reaches the daemon through it")
            throw ExitCode(1)
        }
        return client
    }
}

/// Exit codes: 0 done, 1 refused or failed (message on stderr), 2 no daemon reachable.
func checked(_ response: ControlClient.Response) throws -> ControlClient.Response {
    switch response.status {
    case 200..<400: return response
    case 401:
        printError("warden: access denied -- the daemon refused the credentials")
    case 403:
        printError("warden: forbidden -- \(response.body.contains("read-only") ? "read-only user" : "refused by the daemon")")
    default:
        printError("warden: \(response.body.trimmingTrailingWhitespace)")
    }
    throw ExitCode(1)
}

/// The daemon's answer to `request`; a daemon that cannot be reached is exit status 2.
func reach<T>(_ request: () async throws -> T) async throws -> T {
    do {
        return try await request()
    } catch let error as ControlClient.Failure {
        printError("warden: \(error)")
        throw ExitCode(2)
    }
}

extension Warden {
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the status of every service, or of one.",
            discussion: """
                Asks the running daemon, as monit's status does: each service's state, monitoring, pid, \
                uptime, resources and the result of its last checks. --json prints the document the \
                dashboard's /_status?format=json serves, for scripts.

                EXAMPLES
                  warden status
                  warden status myapp
                  warden status --json
                """)
        @OptionGroup var options: ClientOptions
        @Argument(help: ArgumentHelp("Only this service.", valueName: "NAME")) var name: String?
        @Flag(help: "Print the documented JSON status of every service.") var json = false

        mutating func run() async throws {
            let client = try options.client()
            if json {
                let response = try checked(try await reach { try await client.get("/_status?format=json") })
                print(response.body)
                return
            }
            let path = StatusTable.path(service: name, colour: isatty(1) != 0 && getenv("NO_COLOR") == nil)
            let response = try checked(try await reach { try await client.get(path) })
            if let name, !response.body.contains("'\(name)'") {
                printError("warden: there is no service named \"\(name)\"")
                throw ExitCode(1)
            }
            print(response.body, terminator: "")
        }
    }

    struct Summary: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print one line per service: its name, status and type.",
            discussion: """
                EXAMPLES
                  warden summary
                """)
        @OptionGroup var options: ClientOptions

        mutating func run() async throws {
            let client = try options.client()
            print(try checked(try await reach { try await client.get("/_summary") }).body, terminator: "")
        }
    }

    /// Planned work on a site: its requests get the maintenance page (503, Retry-After) until `off`.
    struct Maintenance: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Put a proxied site into planned maintenance, or take it out.",
            discussion: """
                While on, every request to the site is answered with its maintenance page (503 and \
                Retry-After). The setting survives a restart of warden.

                EXAMPLES
                  warden maintenance on myapp
                  warden maintenance off myapp
                """)
        @OptionGroup var options: ClientOptions
        @Argument(help: ArgumentHelp("on or off.", valueName: "on|off")) var state: String
        @Argument(help: ArgumentHelp("The name of a 'check site'.", valueName: "SITE")) var site: String

        mutating func validate() throws {
            guard state == "on" || state == "off" else { throw ValidationError("say 'on' or 'off', not '\(state)'") }
        }

        mutating func run() async throws {
            let client = try options.client()
            print(try checked(try await reach { try await client.post("/_maintenance", form: ["site": site, "action": state]) }).body, terminator: "")
        }
    }

    /// A new generation of a service's instances, switched to once ready; the old one drains and stops.
    struct Deploy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Deploy a service with instances without a pause for its clients.",
            discussion: """
                Starts a new generation of the service's instances on its spare ports with the start program as the \
                control file says it now, waits until every one is ready (its connection tests pass), switches the \
                proxy's traffic to them in one step, lets the requests in flight on the old generation finish, and \
                stops it. If the new generation is not ready within its deploy timeout, it is stopped, the old one \
                keeps serving, and the exit status is 1. The steps are printed as they happen.

                EXAMPLES
                  warden deploy myapp
                """)
        @OptionGroup var options: ClientOptions
        @Argument(help: ArgumentHelp("A service with 'instances N ports A-B'.", valueName: "NAME")) var name: String

        mutating func run() async throws {
            let client = try options.client()
            _ = try checked(try await reach { try await client.post("/_deploy", form: ["service": name]) })
            var printed = 0
            // Followed until it ends: a deploy is bounded by its deploy and drain timeouts.
            while true {
                let response = try checked(try await reach { try await client.get("/_deploy?service=\(Pages.escapeURL(name))") })
                let record = try JSONCoding.decode(DeployRecord.self, from: Array(response.body.utf8))
                for line in record.lines.dropFirst(printed) { print("\(name): \(line)") }
                printed = record.lines.count
                if record.finished {
                    if !record.succeeded { throw ExitCode(1) }
                    return
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }
}

/// What start, stop, restart, monitor and unmonitor act on: one service, `all`, or a group with -g.
struct ServiceTarget: ParsableArguments {
    @OptionGroup var options: ClientOptions
    @Argument(help: ArgumentHelp("A service, or 'all' for every service but the system.", valueName: "NAME"))
    var name: String?
    @Option(name: .customShort("g", allowingJoined: true), help: ArgumentHelp("Every service of this group instead of NAME.", valueName: "GROUP"))
    var group: String?

    func validate() throws {
        if name == nil, group == nil { throw ValidationError("name a service, 'all', or a group with -g GROUP") }
    }

    /// Asks the daemon for `action` on each service named, one after the other.
    func perform(_ action: UserAction) async throws {
        let client = try options.client()
        var targets: [String]
        if let group {
            targets = try await statusDocument(client).services.filter { $0.groups.contains(group) }.map(\.name)
            guard !targets.isEmpty else {
                printError("warden: there is no service in group \"\(group)\"")
                throw ExitCode(1)
            }
        } else if name == "all" {
            targets = try await statusDocument(client).services.filter { $0.type != "System" }.map(\.name)
        } else {
            targets = name.map { [$0] } ?? []
        }
        for target in targets {
            _ = try checked(try await reach { try await client.post("/_doaction", form: ["action": action.rawValue, "service": target]) })
        }
    }

    func statusDocument(_ client: ControlClient) async throws -> StatusDocument {
        let response = try checked(try await reach { try await client.get("/_status?format=json") })
        return try JSONCoding.decode(StatusDocument.self, from: Array(response.body.utf8))
    }
}

extension Warden {
    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start a service and monitor it.",
            usage: "warden [-c FILE] start NAME|all\nwarden [-c FILE] start -g GROUP",
            discussion: """
                Runs the service's start program, unless it is running already, and monitors it from then on. \
                Its dependencies ('depends on') that are not monitored are started first.

                EXAMPLES
                  warden start myapp
                  warden -c /etc/warden/wardenrc start all
                  warden start -g web
                """)
        @OptionGroup var target: ServiceTarget
        func run() async throws { try await target.perform(.start) }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop a service and stop monitoring it.",
            usage: "warden [-c FILE] stop NAME|all\nwarden [-c FILE] stop -g GROUP",
            discussion: """
                Runs the service's stop program and stops monitoring it, so that warden does not start it \
                again; the services that depend on it are stopped first. A service behind the proxy is drained \
                first: its requests in flight finish.

                EXAMPLES
                  warden stop myapp
                  warden stop -g web
                """)
        @OptionGroup var target: ServiceTarget
        func run() async throws { try await target.perform(.stop) }
    }

    struct Restart: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop and start a service again.",
            usage: "warden [-c FILE] restart NAME|all\nwarden [-c FILE] restart -g GROUP",
            discussion: """
                Runs the restart program when the service has one, else its stop program and then its start \
                program, and monitors it.

                EXAMPLES
                  warden restart myapp
                  warden restart all
                """)
        @OptionGroup var target: ServiceTarget
        func run() async throws { try await target.perform(.restart) }
    }

    struct Monitor: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Monitor a service again.",
            usage: "warden [-c FILE] monitor NAME|all\nwarden [-c FILE] monitor -g GROUP",
            discussion: """
                Checks the service every cycle again, so one that is not running is started again. The \
                opposite of unmonitor.

                EXAMPLES
                  warden monitor myapp
                """)
        @OptionGroup var target: ServiceTarget
        func run() async throws { try await target.perform(.monitor) }
    }

    struct Unmonitor: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop monitoring a service; it keeps running.",
            usage: "warden [-c FILE] unmonitor NAME|all\nwarden [-c FILE] unmonitor -g GROUP",
            discussion: """
                warden stops checking the service and the services that depend on it, and neither starts nor \
                restarts them until they are monitored again: for work on them by hand.

                EXAMPLES
                  warden unmonitor myapp
                  warden unmonitor -g web
                """)
        @OptionGroup var target: ServiceTarget
        func run() async throws { try await target.perform(.unmonitor) }
    }
}
