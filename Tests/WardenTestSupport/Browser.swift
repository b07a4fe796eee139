import Foundation

/// Headless Chromium driven through the DevTools protocol (python3-websocket from Debian, run with
/// /usr/bin/python3): the browser itself answers the server's Basic challenge, loads pages, takes a
/// screenshot and presses buttons, as a person at the dashboard would.
public enum Browser {
    public static var chromium: String? {
        TestSupport.peer("chromium", candidates: ["/usr/bin/chromium", "/usr/bin/chromium-browser"])
    }

    public static var driverAvailable: Bool {
        (try? TestSupport.run("/usr/bin/python3", ["-c", "import websocket"]).status) == 0
    }

    /// One step after a page has loaded: `dom` records the page, `screenshot` saves a PNG, `navigate`
    /// goes to a path, `click` presses the first element matching a CSS selector and waits for the
    /// page that follows.
    public enum Step: Sendable {
        case dom
        case screenshot(String)
        case navigate(String)
        case click(String)

        var json: [String: String] {
            switch self {
            case .dom: ["do": "dom"]
            case .screenshot(let path): ["do": "screenshot", "path": path]
            case .navigate(let path): ["do": "navigate", "path": path]
            case .click(let selector): ["do": "click", "selector": selector]
            }
        }
    }

    public struct Session: Sendable {
        /// The DOM of each `dom` step, in order.
        public var doms: [String]
        /// How many times the browser answered an authentication challenge.
        public var authChallenges: Int
        /// "METHOD URL" of every request the browser sent, in order.
        public var requests: [String]
        /// "STATUS URL" of every response it received, in order.
        public var responses: [String]
        /// What each `click` found: "clicked" or "no element".
        public var clicks: [String]
        public var error: String?
        public var output: String
    }

    /// Opens `http://127.0.0.1:PORT/` (logging in as `user`:`password` when challenged) and runs `steps`,
    /// in a window of `viewport` CSS pixels (one device pixel each) when given.
    public static func session(
        port: Int, user: String?, password: String?, steps: [Step], viewport: (width: Int, height: Int)? = nil, timeout: Double = 90
    ) throws -> Session {
        guard let chromium else { throw PeerStartError(peer: "chromium", exited: true, output: "not installed") }
        let profile = try TemporaryDirectory("chromium")
        let plan = try JSONSerialization.data(withJSONObject: steps.map(\.json))
        let script = """
            import json, subprocess, sys, time, urllib.request, websocket
            chromium, profile, base, user, password, deadline = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], time.time() + float(sys.argv[6])
            viewport = json.loads(sys.argv[7])
            steps = json.loads(sys.stdin.read())
            result = {"doms": [], "auth": 0, "requests": [], "responses": [], "clicks": [], "error": None}
            browser = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--user-data-dir=" + profile, "--remote-debugging-port=0", "--remote-allow-origins=*", "about:blank"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                port = None
                while port is None and time.time() < deadline:
                    try:
                        port = int(open(profile + "/DevToolsActivePort").read().split()[0])
                    except (OSError, ValueError, IndexError):
                        time.sleep(0.1)
                target = None
                while target is None and time.time() < deadline:
                    try:
                        pages = json.load(urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=2))
                        target = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
                    except Exception:
                        time.sleep(0.1)
                ws = websocket.create_connection(target, timeout=5, suppress_origin=True)
                ids = [0]
                loads = [0]
                def handle(message):
                    method, params = message.get("method"), message.get("params", {})
                    if method == "Fetch.requestPaused":
                        result["requests"].append(params["request"]["method"] + " " + params["request"]["url"])
                        send("Fetch.continueRequest", {"requestId": params["requestId"]}, wait=False)
                    elif method == "Fetch.authRequired":
                        result["auth"] += 1
                        answer = {"response": "ProvideCredentials", "username": user, "password": password} if user else {"response": "CancelAuth"}
                        send("Fetch.continueWithAuth", {"requestId": params["requestId"], "authChallengeResponse": answer}, wait=False)
                    elif method == "Network.responseReceived":
                        result["responses"].append("%d %s" % (params["response"]["status"], params["response"]["url"]))
                    elif method == "Page.loadEventFired":
                        loads[0] += 1
                def receive():
                    if time.time() > deadline: raise TimeoutError("the browser session took too long")
                    try:
                        return json.loads(ws.recv())
                    except websocket.WebSocketTimeoutException:
                        return None
                def send(method, params, wait=True):
                    ids[0] += 1
                    mine = ids[0]
                    ws.send(json.dumps({"id": mine, "method": method, "params": params}))
                    while wait:
                        message = receive()
                        if message is None: continue
                        if message.get("id") == mine:
                            if "error" in message: raise RuntimeError(method + ": " + json.dumps(message["error"]))
                            return message.get("result", {})
                        handle(message)
                def wait_load(count):
                    while loads[0] < count:
                        message = receive()
                        if message is not None: handle(message)
                def evaluate(expression):
                    return send("Runtime.evaluate", {"expression": expression, "returnByValue": True})["result"].get("value")
                send("Fetch.enable", {"handleAuthRequests": True, "patterns": [{"urlPattern": "*"}]})
                send("Network.enable", {})
                send("Page.enable", {})
                if viewport:
                    send("Emulation.setDeviceMetricsOverride", {"width": viewport[0], "height": viewport[1], "deviceScaleFactor": 1, "mobile": False})
                send("Page.navigate", {"url": base + "/"})
                wait_load(1)
                for step in steps:
                    if step["do"] == "dom":
                        result["doms"].append(evaluate("document.documentElement.outerHTML"))
                    elif step["do"] == "screenshot":
                        import base64
                        shot = send("Page.captureScreenshot", {"format": "png"})
                        open(step["path"], "wb").write(base64.b64decode(shot["data"]))
                    elif step["do"] == "navigate":
                        expected = loads[0] + 1
                        send("Page.navigate", {"url": base + step["path"]})
                        wait_load(expected)
                    elif step["do"] == "click":
                        expected = loads[0] + 1
                        found = evaluate("(function(){var e=document.querySelector(%s); if(!e) return 'no element'; e.click(); return 'clicked';})()" % json.dumps(step["selector"]))
                        result["clicks"].append(found)
                        if found == "clicked": wait_load(expected)
            except Exception as error:
                result["error"] = "%s: %s" % (type(error).__name__, error)
            finally:
                browser.kill()
                browser.wait()
            print(json.dumps(result))
            """
        let run = try TestSupport.run(
            "/usr/bin/python3",
            [
                "-c", script, chromium, profile.path, "http://127.0.0.1:\(port)", user ?? "", password ?? "", String(timeout),
                viewport.map { "[\($0.width), \($0.height)]" } ?? "null",
            ],
            input: String(decoding: plan, as: UTF8.self), timeout: timeout + 30)
        let line = run.stdout.split(separator: "\n").last.map(String.init) ?? ""
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            return Session(doms: [], authChallenges: 0, requests: [], responses: [], clicks: [], error: "no result from the driver", output: run.stdout + run.stderr)
        }
        return Session(
            doms: object["doms"] as? [String] ?? [], authChallenges: object["auth"] as? Int ?? 0,
            requests: object["requests"] as? [String] ?? [], responses: object["responses"] as? [String] ?? [],
            clicks: object["clicks"] as? [String] ?? [], error: object["error"] as? String, output: run.stderr)
    }
}
