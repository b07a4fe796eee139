#!/usr/bin/python3
"""Supervision benchmark: warden and Debian's monit on the same app, the same cycle, in one run.

1. crash -> app serving again: kill -9 the app N times, time until a new pid from the pidfile answers
   GET /ping with "pong" (polled every 5 ms);
2. hang -> restarted: SIGSTOP the app, time until a new pid serves (URL test with a 2 s timeout);
3. daemon cost: RSS and CPU time of the supervisor over 30 s with 1, 50 and 200 `check process`
   (sleep processes) at `set daemon 1`.

Usage: scripts/bench/supervise.py [KILLS] [cost]   (needs monit and release builds; `cost` runs part 3 only)
"""
import os, signal, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WARDEN = os.path.join(ROOT, ".build/release/warden")
MYAPP = os.path.join(ROOT, ".build/release/myapp")
MONIT = "/usr/bin/monit"
KILLS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
COST_ONLY = "cost" in sys.argv[2:]
PORT = 18990


def write(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def read_pid(path):
    try:
        return int(open(path).read().strip())
    except (OSError, ValueError):
        return None


def serving(pidfile, not_pid):
    pid = read_pid(pidfile)
    if pid is None or pid == not_pid:
        return False
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/ping" % PORT, timeout=0.5) as r:
            return r.read() == b"pong"
    except Exception:
        return False


def wait(predicate, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def start_supervisor(kind, rc, work):
    if kind == "warden":
        return subprocess.Popen([WARDEN, "-c", rc, "-I"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = dict(os.environ, HOME=work)
    return subprocess.Popen([MONIT, "-c", rc, "-I"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def app_config(kind, work, hang=False):
    pidfile = work + "/app.pid"
    start = work + "/start.sh"
    write(start, "#!/bin/sh\nsetsid %s --port %d --pidfile %s >/dev/null 2>&1 </dev/null &\nexit 0\n" % (MYAPP, PORT, pidfile), 0o755)
    stop = work + "/stop.sh"
    write(stop, "#!/bin/sh\nkill -TERM $(cat %s); kill -CONT $(cat %s); exit 0\n" % (pidfile, pidfile), 0o755)
    rule = '  if failed url http://127.0.0.1:%d/ping and content == "pong" timeout 2 seconds then restart\n' % PORT if hang else ""
    extra = "set idfile %s/monit.id\nset statefile %s/monit.state\n" % (work, work) if kind == "monit" else "set pidfile %s/warden.pid\n" % work
    rc = work + "/rc"
    write(rc, "set daemon 1\n%scheck process app with pidfile %s\n  start program = \"%s\"\n  stop program = \"%s\"\n%s" % (extra, pidfile, start, stop, rule))
    return rc, pidfile


def kill_all(pattern):
    subprocess.run(["pkill", "-9", "-f", "--", pattern], check=False)


def latency(kind, signal_number, runs, settle):
    work = tempfile.mkdtemp(prefix="bench-%s-" % kind)
    rc, pidfile = app_config(kind, work, hang=signal_number == signal.SIGSTOP)
    supervisor = start_supervisor(kind, rc, work)
    results = []
    try:
        if not wait(lambda: serving(pidfile, None), 30):
            raise SystemExit("%s never started the app" % kind)
        for _ in range(runs):
            time.sleep(settle)
            old = read_pid(pidfile)
            began = time.time()
            os.kill(old, signal_number)
            if wait(lambda: serving(pidfile, old), 60):
                results.append(time.time() - began)
            if signal_number == signal.SIGSTOP:
                try:
                    os.kill(old, signal.SIGKILL)
                except OSError:
                    pass
    finally:
        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait()
        kill_all("--port %d" % PORT)
    return results


def cost(kind, checks, seconds=20):
    work = tempfile.mkdtemp(prefix="cost-%s-" % kind)
    sleepers = []
    lines = ["set daemon 1\n"]
    lines.append("set idfile %s/monit.id\nset statefile %s/monit.state\n" % (work, work) if kind == "monit" else "set pidfile %s/warden.pid\n" % work)
    for i in range(checks):
        p = subprocess.Popen(["/bin/sleep", "100000"])
        sleepers.append(p)
        write("%s/p%d.pid" % (work, i), str(p.pid))
        lines.append("check process p%d with pidfile %s/p%d.pid\n  start program = \"/bin/true\"\n" % (i, work, i))
    rc = work + "/rc"
    write(rc, "".join(lines))
    supervisor = start_supervisor(kind, rc, work)
    time.sleep(seconds)
    status = open("/proc/%d/status" % supervisor.pid).read()
    rss = int([l for l in status.splitlines() if l.startswith("VmRSS:")][0].split()[1])
    stat = open("/proc/%d/stat" % supervisor.pid).read().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    supervisor.send_signal(signal.SIGKILL)
    supervisor.wait()
    for p in sleepers:
        p.kill()
        p.wait()
    return rss, cpu


def summary(values):
    if not values:
        return "no data"
    return "min %.3f s / median %.3f s / max %.3f s (n=%d)" % (min(values), statistics.median(values), max(values), len(values))


def main():
    for binary in (WARDEN, MYAPP, MONIT):
        if not os.access(binary, os.X_OK):
            raise SystemExit("missing %s (swift build -c release; apt-get install monit)" % binary)
    print("machine: %s, %d cpus, %s" % (os.uname().release, os.cpu_count(), time.strftime("%Y-%m-%d")))
    if COST_ONLY:
        return costs()
    crash = {k: latency(k, signal.SIGKILL, KILLS, 1.5) for k in ("warden", "monit")}
    for k, v in crash.items():
        print("kill -9 -> serving, %-6s: %s" % (k, summary(v)))
    print("ratio monit/warden (median): %.1fx" % (statistics.median(crash["monit"]) / statistics.median(crash["warden"])))
    hang = {k: latency(k, signal.SIGSTOP, 3, 35 if k == "monit" else 3) for k in ("warden", "monit")}
    for k, v in hang.items():
        print("SIGSTOP -> serving, %-6s: %s" % (k, summary(v)))
    costs()


def costs():
    for checks in (1, 50, 200):
        w = cost("warden", checks)
        m = cost("monit", checks)
        print("%3d checks, 20 s: warden RSS %d kB CPU %.2f s | monit RSS %d kB CPU %.2f s | RSS ratio %.2f, CPU ratio %.2f"
              % (checks, w[0], w[1], m[0], m[1], w[0] / m[0], (w[1] / m[1]) if m[1] else 0))


main()
