#!/usr/bin/python3
"""HTTP fuzzing of warden's two servers, the proxy and the dashboard: N mutated requests each (valid
seeds with bytes flipped, inserted, deleted, duplicated and cut; CR/LF/NUL and high bytes; huge and
negative lengths; LF-only lines; smuggling pairs), each on its own connection that is half-closed
after the request. Every exchange must end with an HTTP response or a closed connection within
5 s (no hang), warden must not crash, and a normal client must still be served every 1,000
requests and at the end. Prints a summary table.

Usage: scripts/fuzz/http-fuzz.py [N] [SEED]   (default 100000 per server; exit status 1 if anything broke)
"""
import os, random, socket, sys, tempfile, time, urllib.request
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "chaos"))
from chaoslib import BUILD, MYAPP, Warden, free_port, get, instances, kill_all, serving, wait  # noqa: E402

COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
SEED = int(sys.argv[2]) if len(sys.argv) > 2 else 1
AUTH = "Authorization: Basic YWRtaW46czNjcmV0\r\n"  # admin:s3cret

SEEDS = [
    "GET / HTTP/1.1\r\nHost: mydomain.com\r\n\r\n",
    "GET /ping?x=1&y=%20 HTTP/1.1\r\nHost: mydomain.com\r\nUser-Agent: fuzz\r\nAccept: */*\r\n\r\n",
    "HEAD /ping HTTP/1.0\r\nHost: mydomain.com\r\nConnection: keep-alive\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: mydomain.com\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
    "POST /echo HTTP/1.1\r\nHost: mydomain.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "GET /a HTTP/1.1\r\nHost: mydomain.com\r\n\r\nGET /b HTTP/1.1\r\nHost: mydomain.com\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: mydomain.com\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    "GET /ws HTTP/1.1\r\nHost: mydomain.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\r\n",
    "GET /static/../../etc/passwd HTTP/1.1\r\nHost: mydomain.com\r\nRange: bytes=0-10\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: mydomain.com\r\n\r\n",
]
DASHBOARD_SEEDS = [
    "GET / HTTP/1.1\r\nHost: localhost\r\n" + AUTH + "\r\n",
    "GET /_status?format=xml HTTP/1.1\r\nHost: localhost\r\n" + AUTH + "\r\n",
    "GET /_status?format=json HTTP/1.1\r\nHost: localhost\r\n" + AUTH + "\r\n",
    "GET /app HTTP/1.1\r\nHost: localhost\r\n" + AUTH + "\r\n",
    "POST /_doaction HTTP/1.1\r\nHost: localhost\r\n" + AUTH + "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 31\r\n\r\naction=monitor&service=nothere1",
    "GET /metrics HTTP/1.1\r\nHost: localhost\r\n" + AUTH + "\r\n",
    "GET /_summary HTTP/1.0\r\n\r\n",
]
NASTY = [b"\r", b"\n", b"\0", b"\xff", b"\x80", b" ", b":", b"\t", b"%", b"%00", b"\r\n", b"\r\n\r\n", b"-1", b"99999999999999999999", b"chunked", b"Content-Length: 0\r\n", b"Transfer-Encoding: chunked\r\n"]


def mutate(data, rng):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(8)
        at = rng.randrange(len(data) + 1)
        if choice == 0 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif choice == 1:
            data[at:at] = rng.choice(NASTY)
        elif choice == 2 and data:
            del data[at:at + rng.randint(1, 8)]
        elif choice == 3 and data:
            piece = data[at:at + rng.randint(1, 40)]
            data[at:at] = piece * rng.randint(1, 50)
        elif choice == 4:
            data = data[:at]
        elif choice == 5:
            data = data.replace(b"\r\n", b"\n", rng.randint(1, 3))
        elif choice == 6:
            data[at:at] = b"X-F%d: %s\r\n" % (rng.randrange(1000), b"v" * rng.choice([1, 100, 9000]))
        else:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(data)


def exchange(port, payload):
    """'closed', 'hang', 'error' or the status code as text."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return "connect failed"
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        if not data:
            return "closed"
        if data[:9] in (b"HTTP/1.1 ", b"HTTP/1.0 "):
            return data[9:12].decode(errors="replace")
        return "garbage"
    except socket.timeout:
        return "hang"
    except OSError:
        return "closed"  # reset by the server
    finally:
        s.close()


def fuzz(name, port, seeds, rng, check):
    counts, failures = {}, []
    batch = 1000
    with ThreadPoolExecutor(max_workers=8) as pool:
        for start in range(0, COUNT, batch):
            payloads = [mutate(rng.choice(seeds).encode(), rng) for _ in range(min(batch, COUNT - start))]
            for outcome in pool.map(lambda p: exchange(port, p), payloads):
                key = outcome if outcome in ("closed", "hang", "garbage", "connect failed") else outcome[0] + "xx"
                counts[key] = counts.get(key, 0) + 1
            answer = check()
            if answer is not True:
                failures.append("after %d: %r" % (start + batch, answer))
    return counts, failures


def main():
    rng = random.Random(SEED)
    work = tempfile.mkdtemp(prefix="warden-fuzz-")
    app_port, proxy_port, httpd_port = free_port(), free_port(), free_port()
    os.makedirs(work + "/public")
    open(work + "/public/hello.txt", "w").write("hello\n")
    warden = Warden(
        "set daemon 1\nset pidfile @DIR@/warden.pid\n"
        "set httpd port %d and use address 127.0.0.1\n  allow 127.0.0.1\n  allow admin:s3cret\n"
        "set proxy\n  listen 127.0.0.1 port %d\n  timeout header 3 seconds\n"
        "check process app with pidfile @DIR@/app.pid\n  start program = \"%s --port %d --pidfile @DIR@/app.pid\"\n"
        "check site main with host \"mydomain.com\" default\n  pass / to http://127.0.0.1:%d/ for service app\n"
        "  serve /static from @DIR@/public\n" % (httpd_port, proxy_port, MYAPP, app_port, app_port), work).start()
    began = time.time()
    rows, broke = [], 0
    try:
        wait(lambda: serving(app_port, work + "/app.pid"), 30)
        pid = warden.process.pid
        proxy_ok = lambda: True if (get(proxy_port, "/ping", timeout=5) or (0, b""))[1] == b"pong" else get(proxy_port, "/ping", timeout=5)
        dashboard_ok = lambda: urllib.request.urlopen(urllib.request.Request(
            "http://127.0.0.1:%d/_summary" % httpd_port, headers={"Authorization": "Basic YWRtaW46czNjcmV0"}), timeout=5).status == 200
        for name, port, seeds, check in (("proxy", proxy_port, SEEDS, proxy_ok), ("dashboard", httpd_port, DASHBOARD_SEEDS, dashboard_ok)):
            counts, failures = fuzz(name, port, seeds, rng, lambda: _safe(check))
            alive = warden.process.poll() is None and warden.process.pid == pid
            final = _safe(check) is True
            bad = counts.get("hang", 0) + counts.get("garbage", 0) + counts.get("connect failed", 0) + len(failures) + (0 if alive and final else 1)
            broke += bad
            rows.append((name, COUNT, " ".join("%s=%d" % kv for kv in sorted(counts.items())), len(failures), alive and final, bad))
            for failure in failures[:5]:
                print("%s: a normal request failed %s" % (name, failure))
    finally:
        warden.stop()
        kill_all(instances(app_port))
    print("HTTP fuzzing, %d requests per server, seed %d, %s, %.0f s" % (COUNT, SEED, BUILD, time.time() - began))
    print("%-10s %8s  %-60s %18s %14s %6s" % ("server", "requests", "outcomes", "missed liveness", "still serving", "broke"))
    for name, count, outcomes, failures, serving_after, bad in rows:
        print("%-10s %8d  %-60s %18d %14s %6d" % (name, count, outcomes, failures, serving_after, bad))
    sys.exit(1 if broke else 0)


def _safe(check):
    try:
        return check()
    except Exception as error:
        return repr(error)


main()
