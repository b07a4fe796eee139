#!/usr/bin/python3
"""Chaos: kill -9 a supervised app N times, for a daemonizing app (pidfile) and a foreground child.

Every death must be detected and followed by exactly one new instance: after each kill the script
waits for a new pid that answers /ping, and scans /proc for instances of the app (two alive at once
is a double start). Prints a summary table and the restart latency distribution.

Usage: scripts/chaos/kill-loop.py [KILLS] [pidfile|child|both]   (needs a build: swift build -c release)
"""
import os, signal, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chaoslib import BUILD, MYAPP, WARDEN, daemon_start_script, free_port, instances, serving  # noqa: E402

KILLS = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
MODES = ["pidfile", "child"] if len(sys.argv) < 3 or sys.argv[2] == "both" else [sys.argv[2]]


def run(mode):
    work = tempfile.mkdtemp(prefix="chaos-")
    port = free_port()
    pidfile = work + "/app.pid"
    if mode == "pidfile":
        program = daemon_start_script(work, port, pidfile)
    else:
        program = "%s --port %d --pidfile %s" % (MYAPP, port, pidfile)  # in the foreground, a direct child of warden
    rc = work + "/rc"
    with open(rc, "w") as f:
        f.write("set daemon 5\nset pidfile %s/warden.pid\nset statefile %s/state\ncheck process app with pidfile %s\n  start program = \"%s\"\n"
                # Kills a second apart would be a crash loop, which backs off by default: this measures
                # how fast a kill is seen, so it asks for monit's spacing.
                "  restart delay 1 second to 1 second\n" % (work, work, pidfile, program))
    os.chmod(rc, 0o600)
    warden = subprocess.Popen([WARDEN, "-c", rc, "-I"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latencies, double_starts, missed = [], 0, 0
    try:
        deadline = time.time() + 30
        while serving(port, pidfile) is None and time.time() < deadline:
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
