import Foundation
import Testing
import WardenTestSupport

/// The command line a person reads: help texts, the forms monit's users type, shell completion.
@Suite("Command line")
struct CLITests {
    /// Help is wrapped to the terminal's width: 80 columns here, as on a terminal that does not say.
    static let environment = ["COLUMNS": "80", "PATH": "/usr/bin:/bin"]

    @Test func rootHelpListsEveryCommandWithValueNamesAndExamples() throws {
        let result = try TestSupport.run(TestSupport.wardenBinary, ["--help"], environment: Self.environment)
        #expect(result.status == 0)
        #expect(result.stdout == Self.rootHelp + "\n")
    }

    @Test func subcommandHelpHasUsageDiscussionAndExamples() throws {
        let result = try TestSupport.run(TestSupport.wardenBinary, ["start", "--help"], environment: Self.environment)
        #expect(result.status == 0)
        #expect(result.stdout == Self.startHelp + "\n\n")  // argument-parser ends a subcommand's help with an empty line
        // `warden help start` is the same page.
        #expect(try TestSupport.run(TestSupport.wardenBinary, ["help", "start"], environment: Self.environment).stdout == result.stdout)
    }

    /// monit's forms: -c before or after the command, an action's name or -g GROUP, -t; the
    /// commands that ask the daemon say so with status 2 when none answers (on a socket of the test's
    /// own, which no other test's daemon can be listening on, as a free TCP port could be by then).
    @Test func monitFormsStillParse() throws {
        let directory = try TemporaryDirectory()
        let rc = try directory.write(
            "wardenrc",
            """
            set pidfile \(directory.path)/warden.pid
            set httpd unixsocket \(directory.path)/warden.sock
            check process app with pidfile \(directory.path)/app.pid
                start program = "/bin/true"
                group web
            """)
        let warden = TestSupport.wardenBinary
        #expect(try TestSupport.run(warden, ["-t", "-c", rc]).stdout == "Control file syntax OK\n")
        #expect(try TestSupport.run(warden, ["-c", rc, "-t"]).status == 0)
        for arguments in [
            ["-c", rc, "start", "app"], ["start", "app", "-c", rc], ["-c", rc, "stop", "all"], ["-c", rc, "restart", "-g", "web"],
            ["-c", rc, "monitor", "app"], ["-c", rc, "unmonitor", "-g", "web"], ["-c", rc, "status"], ["-c", rc, "status", "app"],
            ["-c", rc, "summary"], ["-c", rc, "deploy", "app"], ["-c", rc, "maintenance", "on", "site"],
            // monit's order: the group before the action.
            ["-c", rc, "-g", "web", "stop"], ["-gweb", "-c", rc, "start"],
        ] {
            let result = try TestSupport.run(warden, arguments)
            #expect(result.status == 2, "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains("cannot connect to the warden daemon"), "\(arguments): \(result.stderr)")
        }
        let nothing = try TestSupport.run(warden, ["-c", rc, "start"])
        #expect(nothing.status == 64)
        #expect(nothing.stderr.contains("name a service, 'all', or a group with -g GROUP"), "\(nothing.stderr)")
        #expect(try TestSupport.run(warden, ["-c", rc, "quit"]).stderr == "warden daemon is not running\n")
    }

    /// The bash completion script, sourced in bash, completes the command names.
    @Test func bashCompletionOffersTheCommands() throws {
        let script = try TestSupport.run(TestSupport.wardenBinary, ["--generate-completion-script", "bash"])
        #expect(script.status == 0)
        let directory = try TemporaryDirectory()
        let path = try directory.write("warden.bash", script.stdout)
        func complete(_ line: String) throws -> [String] {
            let words = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            let program = """
                source \(path)
                COMP_WORDS=(\(words.map { "'\($0)'" }.joined(separator: " ")))
                COMP_CWORD=\(words.count - 1)
                COMP_LINE='\(line)'
                COMP_POINT=${#COMP_LINE}
                _warden warden '\(words.last ?? "")' '\(words.dropLast().last ?? "")'
                printf '%s\\n' "${COMPREPLY[@]}"
                """
            let result = try TestSupport.run("/bin/bash", ["-c", program])
            #expect(result.status == 0, "\(result.stderr)")
            return result.stdout.split(separator: "\n").map(String.init)
        }
        #expect(try complete("warden sta") == ["start", "status"])
        #expect(try Set(complete("warden st")) == ["start", "stop", "status"])
        #expect(try complete("warden unm") == ["unmonitor"])
    }

    /// The zsh script is generated too (zsh itself is not needed to check that it names the commands).
    @Test func zshCompletionScriptNamesTheCommands() throws {
        let script = try TestSupport.run(TestSupport.wardenBinary, ["--generate-completion-script", "zsh"])
        #expect(script.status == 0)
        #expect(script.stdout.hasPrefix("#compdef warden"))
        for command in ["start", "stop", "restart", "monitor", "unmonitor", "status", "deploy"] {
            #expect(script.stdout.contains("'\(command):"), "\(command)")
        }
    }

    static let rootHelp = #"""
            OVERVIEW: Supervise services as monit does, and proxy their web traffic as
            nginx does.

            Without a command, warden runs the daemon: it reads the control file (monit's
            language; a monitrc works), starts and checks the services it declares every
            cycle, serves the dashboard of 'set httpd' and proxies the sites of 'set
            proxy'. It leaves the terminal unless -I is given or the control file says 'set
            init'. SIGHUP re-reads the control file, SIGUSR1 re-opens the log files,
            SIGTERM ends the daemon and leaves the services running.

            The commands that act on services (start, stop, restart, monitor, unmonitor,
            status, summary, deploy, maintenance) ask the running daemon through the 'set
            httpd' interface named in the same control file.

            Without -c, the control file is the first of ~/.wardenrc, /etc/warden/wardenrc
            and ./wardenrc that exists.

            EXIT STATUS
              0   success
              1   an invalid control file, or an action refused or failed
              2   no daemon reachable
              64  a usage error

            EXAMPLES
              warden -t -c /etc/warden/wardenrc   check a control file
              warden -c /etc/warden/wardenrc      start the daemon
              warden status                       the status of every service
              warden restart myapp                restart one service
              warden stop -g web                  stop every service of group 'web'
              warden deploy myapp                 new instances, switched to once ready

            USAGE: warden [-c FILE] [-v] [-I]
                   warden [-c FILE] -t
                   warden [-c FILE] <command> [<arguments>]

            OPTIONS:
              -c <FILE>               Use this control file (a monitrc works too).
                    Without -c: the first of ~/.wardenrc, /etc/warden/wardenrc and
                    ./wardenrc that exists.
              -v                      Verbose logging to standard error.
              -t                      Check the control file's syntax and exit.
              -I                      Stay in the foreground (do not daemonize).
              --version               Show the version.
              -h, --help              Show help information.

            SERVICE SUBCOMMANDS:
              start                   Start a service and monitor it.
              stop                    Stop a service and stop monitoring it.
              restart                 Stop and start a service again.
              monitor                 Monitor a service again.
              unmonitor               Stop monitoring a service; it keeps running.
              deploy                  Deploy a service with instances without a pause for
                                      its clients.
              maintenance             Put a proxied site into planned maintenance, or take
                                      it out.

            STATUS SUBCOMMANDS:
              status                  Print the status of every service, or of one.
              summary                 Print one line per service: its name, status and type.
              log                     Print the last lines of a service's own log (its
                                      program's output), and follow it with -f.

            DAEMON SUBCOMMANDS:
              validate                Check the control file and print every problem,
                                      compiler-style.
              reload                  Re-read the control file in the running daemon
                                      (checked here first).
              quit                    Stop the daemon; services keep running unless
                                      --stop-services is given.

            OTHER SUBCOMMANDS:
              demo                    Run the chapter's deployment on 127.0.0.1: app,
                                      supervisor, proxy and dashboard.
              service                 Write what a deployment needs around an app.
              import                  Translate an nginx server block or an Apache
                                      VirtualHost into set proxy / check site.

              See 'warden help <subcommand>' for detailed help.
            """#

    static let startHelp = #"""
            OVERVIEW: Start a service and monitor it.

            Runs the service's start program, unless it is running already, and monitors it
            from then on. Its dependencies ('depends on') that are not monitored are
            started first.

            EXAMPLES
              warden start myapp
              warden -c /etc/warden/wardenrc start all
              warden start -g web

            USAGE: warden [-c FILE] start NAME|all
                   warden [-c FILE] start -g GROUP

            ARGUMENTS:
              <NAME>                  A service, or 'all' for every service but the system.

            OPTIONS:
              -c <FILE>               Use this control file (a monitrc works too).
                    Without -c: the first of ~/.wardenrc, /etc/warden/wardenrc and
                    ./wardenrc that exists.
              -v                      Verbose logging to standard error.
              -g <GROUP>              Every service of this group instead of NAME.
              --version               Show the version.
              -h, --help              Show help information.
            """#
}
