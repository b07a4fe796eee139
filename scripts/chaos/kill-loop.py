#!/usr/bin/python3
"""Chaos: kill -9 a supervised app N times, for a daemonizing app (pidfile) and a foreground child.

Every death must be detected and followed by exactly one new instance: after each kill the script
waits for a new pid that answers /ping, and scans /proc for instances of the app (two alive at once
is a double start). Prints a summary table and the restart latency distribution.

Usage: scripts/chaos/kill-loop.py [KILLS] [pidfile|child|both]   (needs a build: swift build -c release)
"""
import os, signal, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, ".build/release") if os.path.exists(os.path.join(ROOT, ".build/release/warden")) else os.path.join(ROOT, ".build/debug")
WARDEN, MYAPP = BUILD + "/warden", BUILD + "/myapp"
KILLS = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
MODES = ["pidfile", "child"] if len(sys.argv) < 3 or sys.argv[2] == "both" else [sys.argv[2]]


def instances(port):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = open("/proc/%s/cmdline" % entry, "rb").read().replace(b"\0", b" ").decode()
            state = open("/proc/%s/stat" % entry).read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if command.startswith(MYAPP) and ("--port %d " % port) in command + " " and state not in ("Z", "X"):
            found.append(int(entry))
    return found


def serving(port, pidfile, old):
    try:
        pid = int(open(pidfile).read().strip())
    except (OSError, ValueError):
        return None
    if pid == old:
        return None
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/ping" % port, timeout=1) as r:
            return pid if r.read() == b"pong" else None
    except Exception:
        return None


def run(mode):
    work = tempfile.mkdtemp(prefix="chaos-")
    port = 19000 + os.getpid() % 500 + (0 if mode == "pidfile" else 500)
    pidfile = work + "/app.pid"
    command = "%s --port %d --pidfile %s" % (MYAPP, port, pidfile)
    if mode == "pidfile":
        start = work + "/start.sh"
        with open(start, "w") as f:
            f.write("#!/bin/sh\nsetsid %s >/dev/null 2>&1 </dev/null &\nexit 0\n" % command)
        os.chmod(start, 0o755)
        program = start
    else:
        program = command  # the app itself, in the foreground, a direct child of warden
    rc = work + "/rc"
    with open(rc, "w") as f:
        f.write("set daemon 5\nset pidfile %s/warden.pid\nset statefile %s/state\ncheck process app with pidfile %s\n  start program = \"%s\"\n" % (work, work, pidfile, program))
    os.chmod(rc, 0o600)
    warden = subprocess.Popen([WARDEN, "-c", rc, "-I"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latencies, double_starts, missed = [], 0, 0
    try:
        deadline = time.time() + 30
        while serving(port, pidfile, None) is None and time.time() < deadline:
            time.sleep(0.01)
        for _ in range(KILLS):
            time.sleep(1.05)  # warden starts one service at most once a second (crash-loop guard)
            old = int(open(pidfile).read().strip())
            began = time.time()
            os.kill(old, signal.SIGKILL)
            new = None
            end = began + 15
            while new is None and time.time() < end:
                alive = instances(port)
                if len(alive) > 1:
                    double_starts += 1
                    break
                new = serving(port, pidfile, old)
                time.sleep(0.002)
            if new is None:
                missed += 1
            else:
                latencies.append(time.time() - began)
    finally:
        warden.send_signal(signal.SIGKILL)
        warden.wait()
        for pid in instances(port):
            os.kill(pid, signal.SIGKILL)
    return latencies, double_starts, missed


def main():
    print("chaos kill-loop: %d kills per mode, %s, %s" % (KILLS, BUILD, time.strftime("%Y-%m-%d %H:%M")))
    print("%-8s %6s %9s %7s %13s %8s %8s %8s %8s" % ("mode", "kills", "restarted", "missed", "double starts", "min", "p50", "p99", "max"))
    failed = False
    for mode in MODES:
        latencies, doubles, missed = run(mode)
        q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [0] * 99
        print("%-8s %6d %9d %7d %13d %7.3fs %7.3fs %7.3fs %7.3fs" % (
            mode, KILLS, len(latencies), missed, doubles, min(latencies or [0]), statistics.median(latencies or [0]), q[98], max(latencies or [0])))
        failed = failed or missed or doubles
    sys.exit(1 if failed else 0)


main()
