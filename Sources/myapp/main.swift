import WardenZinc

#if canImport(Glibc)
import Glibc
#endif

// The chapter's myapp.st, in Swift:
//   ZnServer defaultOn: 8080. ZnServer default logToStandardOutput.
//   ZnServer default delegate map: 'image' to: MyFirstWebApp new;
//       map: 'redirect-to-image' to: [ :request | ZnResponse redirect: 'image' ]; map: '/' to: 'redirect-to-image'.
//   ZnServer default start
// Usage: myapp [--port N] [--bind ADDRESS] [--pidfile PATH] [--load-time SECONDS]
// (--load-time: waits before it listens, as an image that takes a while to load; for benchmarks)

var port = 8080
var bind = "127.0.0.1"
var pidfile: String?
var loadTime = 0.0
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--port": port = Int(arguments.next() ?? "") ?? port
    case "--bind": bind = arguments.next() ?? bind
    case "--pidfile": pidfile = arguments.next()
    case "--load-time": loadTime = Double(arguments.next() ?? "") ?? loadTime
    default:
        print("usage: myapp [--port N] [--bind ADDRESS] [--pidfile PATH] [--load-time SECONDS]")
        exit(64)
    }
}

let server = ZnServer(port: port, bindAddress: bind)
server.logToStandardOutput()
server.delegate
    .map("image", to: MyFirstWebApp())
    .map("redirect-to-image") { _ in .redirect("image") }
    .map("/", toKey: "redirect-to-image")
    .map("ping") { _ in .ok("pong") }

if loadTime > 0 { try? await Task.sleep(for: .seconds(loadTime)) }
do {
    try await server.start()
} catch {
    print("myapp: cannot listen on \(bind):\(port): \(error)")
    exit(1)
}
if let pidfile {
    // Written after the socket listens, so a supervisor that sees the pid can reach the app.
    let text = "\(getpid())\n"
    let temporary = pidfile + ".tmp"
    if let file = fopen(temporary, "w") {
        fputs(text, file)
        fclose(file)
        rename(temporary, pidfile)
    }
}
// Graceful stop on SIGTERM/SIGINT: no new connections, requests in flight finish.
await server.runUntilTerminated()
if let pidfile { unlink(pidfile) }
