#!/usr/bin/python3
"""Chaos scenarios for the supervisor, each bounded in count and time, with a summary table:

  hang          SIGSTOP the app; the URL test times out and warden restarts it
  crashloop     an app that dies at once hits `restarts within … then timeout` and is left alone
  hungstart     a start program that hangs past its timeout is killed and reported; others carry on
  failedstop    a stop program that fails is reported; warden carries on
  stalepid      a pidfile naming an unrelated live process is not mistaken for the app
  wardenkill    warden itself killed -9 N times while the app crashes and alerts queue up (SMTP down,
                then up): the state file is intact every time, no double start, each alert mailed once
  diskfull      state file and event queue on a full (then read-only) tmpfs: warden keeps restarting
                the app, says what fails, and writes its state again once there is room (needs root)
  reloads       N reloads alternating good and bad control files: the running configuration is
                always the last good one

Usage: scripts/chaos/scenarios.py [--quick] [SCENARIO ...]   (exit status 1 if anything broke)
"""
import json, os, signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chaoslib import (BUILD, SMTP_PYTHON, Warden, daemon_start_script, free_port, get, instances,  # noqa: E402
                      kill_all, port_open, read_pid, serving, table, wait)

QUICK = "--quick" in sys.argv
CHOSEN = [a for a in sys.argv[1:] if not a.startswith("--")]
rows = []
broken = False


def record(what, count, result, broke):
    global broken
    broken = broken or broke > 0
    rows.append((what, count, result, broke))
    print("  %s: %s (broke: %d)" % (what, result, broke), flush=True)


def app_service(name, port, pidfile, directory, extra=""):
    return 'check process %s with pidfile %s\n  start program = "%s"\n%s\n' % (
        name, pidfile, daemon_start_script(directory, port, pidfile), extra)


def hang():
    runs = 2 if QUICK else 5
    work = tempfile.mkdtemp(prefix="chaos-hang-")
    port = free_port()
    pidfile = work + "/app.pid"
    warden = Warden("set daemon 1\nset pidfile @DIR@/warden.pid\n" + app_service(
        "app", port, pidfile, work, '  if failed port %d protocol http request "/ping" with timeout 2 seconds then restart' % port)).start()
    times, broke = [], 0
    try:
        wait(lambda: serving(port, pidfile), 30)
        for _ in range(runs):
            time.sleep(1.5)
            old = read_pid(pidfile)
            began = time.time()
            os.kill(old, signal.SIGSTOP)
            if wait(lambda: serving(port, pidfile, old), 20):
                times.append(time.time() - began)
            else:
                broke += 1
            kill_all([old])
    finally:
        warden.stop()
        kill_all(instances(port))
    record("SIGSTOP hang -> URL timeout -> restart", runs, "restarted after %s s" % "/".join("%.1f" % t for t in times), broke)


def crashloop():
    work = tempfile.mkdtemp(prefix="chaos-crashloop-")
    script = work + "/crash.sh"
    counter = work + "/starts"
    with open(script, "w") as f:
        f.write("#!/bin/sh\necho start >> %s\nsetsid /bin/sh -c 'echo $$ > %s/app.pid; sleep 0.7; exit 3' &\nexit 0\n" % (counter, work))
    os.chmod(script, 0o755)
    warden = Warden("set daemon 1\nset pidfile @DIR@/warden.pid\ncheck process app with pidfile %s/app.pid\n" % work
                    + '  start program = "%s"\n  if 3 restarts within 5 cycles then timeout\n' % script).start()
    try:
        stopped = warden.wait_log("cycle(s) - unmonitor", timeout=40)
        starts = len(open(counter).read().split())
        time.sleep(4)
        later = len(open(counter).read().split())
    finally:
        warden.stop()
    broke = (0 if stopped else 1) + (1 if later != starts else 0) + (1 if starts > 5 else 0)
    record("crash loop -> restarts within cycles -> timeout", 1, "%d starts, then unmonitored; %d more in 4 s" % (starts, later - starts), broke)


def sleepers(marker):
    found = set()
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and open("/proc/%s/cmdline" % entry, "rb").read() == b"/bin/sleep\0" + marker.encode() + b"\0":
                found.add(int(entry))
        except OSError:
            pass
    return found


def hungstart():
    # A start program that never exits and is not the service (`matching` finds no such process).
    work = tempfile.mkdtemp(prefix="chaos-hungstart-")
    port = free_port()
    pidfile = work + "/ok.pid"
    marker = str(300 + os.getpid() % 1000)
    warden = Warden("set daemon 1\nset pidfile @DIR@/warden.pid\n"
                    'check process stuck matching "no-such-program-%s"\n  start program = "/bin/sleep %s" with timeout 2 seconds\n' % (marker, marker)
                    + app_service("ok", port, pidfile, work)).start()
    try:
        first = wait(lambda: sleepers(marker), 10) or set()
        reported = warden.wait_log("timed out after 2 s", timeout=20)
        killed = wait(lambda: not (first & sleepers(marker)), 5)
        old = wait(lambda: serving(port, pidfile), 20)
        os.kill(old, signal.SIGKILL)
        other = wait(lambda: serving(port, pidfile, old), 10)
    finally:
        warden.stop()
        kill_all(instances(port) + list(sleepers(marker)))
    broke = (0 if reported else 1) + (0 if first and killed else 1) + (0 if other else 1)
    record("start program hanging past its timeout", 1,
           "reported: %s, killed: %s, other service restarted: %s" % (bool(reported), bool(first and killed), bool(other)), broke)


def failedstop():
    work = tempfile.mkdtemp(prefix="chaos-failedstop-")
    port = free_port()
    pidfile = work + "/app.pid"
    warden = Warden("set daemon 1\nset pidfile @DIR@/warden.pid\nset httpd port %d and use address 127.0.0.1\n  allow 127.0.0.1\n" % free_port()
                    + app_service("app", port, pidfile, work, '  stop program = "/bin/false"')).start()
    try:
        wait(lambda: serving(port, pidfile), 30)
        warden.cli("stop", "app")
        reported = warden.wait_log("failed to stop", timeout=20)
        alive = warden.process.poll() is None and get(port) is not None
    finally:
        warden.stop()
        kill_all(instances(port))
    record("stop program that fails", 1, "reported: %s, warden and app still up: %s" % (bool(reported), alive), (0 if reported else 1) + (0 if alive else 1))


def stalepid():
    work = tempfile.mkdtemp(prefix="chaos-stalepid-")
    port = free_port()
    pidfile = work + "/app.pid"
    bystander = subprocess.Popen(["/bin/sleep", "120"])
    with open(pidfile, "w") as f:
        f.write("%d\n" % bystander.pid)
    os.utime(pidfile, (time.time() - 3600, time.time() - 3600))  # written before that process existed
    warden = Warden("set daemon 1\nset pidfile @DIR@/warden.pid\n" + app_service("app", port, pidfile, work)).start()
    try:
        started = wait(lambda: serving(port, pidfile, bystander.pid), 30)
        untouched = bystander.poll() is None
    finally:
        warden.stop()
        kill_all(instances(port) + [bystander.pid])
    record("pidfile naming an unrelated live process", 1, "app started: %s, bystander untouched: %s" % (bool(started), untouched),
           (0 if started else 1) + (0 if untouched else 1))


def smtp_sink(port, store):
    code = ("import asyncio, sys\nfrom aiosmtpd.controller import Controller\n"
            "class H:\n    async def handle_DATA(self, server, session, envelope):\n"
            "        open(sys.argv[2], 'a').write(envelope.content.decode(errors='replace').replace('\\n', ' ') + '\\n')\n"
            "        return '250 OK'\n"
            "c = Controller(H(), hostname='127.0.0.1', port=int(sys.argv[1])); c.start()\n"
            "import time\nwhile True: time.sleep(3600)\n")
    process = subprocess.Popen([SMTP_PYTHON, "-c", code, str(port), store], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait(lambda: port_open(port), 10)
    return process


def wardenkill():
    rounds = 5 if QUICK else 50
    work = tempfile.mkdtemp(prefix="chaos-wardenkill-")
    port, smtp = free_port(), free_port()
    pidfile = work + "/app.pid"
    store = work + "/mail.txt"
    control = ("set daemon 1\nset pidfile @DIR@/warden.pid\nset statefile @DIR@/state\n"
               "set mailserver 127.0.0.1 port %d with timeout 2 seconds\nset eventqueue basedir @DIR@/queue slots 1000\n"
               "set alert ops@example.com\n" % smtp) + app_service("app", port, pidfile, work)
    warden = Warden(control, work)
    sink, doubles, bad_state, kills = None, 0, 0, 0
    try:
        for index in range(rounds):
            if index == rounds // 2:
                sink = smtp_sink(smtp, store)  # the first half queues alerts, the second half delivers them
            warden.start()
            old = wait(lambda: serving(port, pidfile), 30)
            if old:
                time.sleep(1.1)
                os.kill(old, signal.SIGKILL)  # an alert-worthy event while alerts may be queued
                kills += 1
                wait(lambda: serving(port, pidfile, old), 10)
            time.sleep((index % 5) * 0.1)
            if len(instances(port)) > 1:
                doubles += 1
            warden.kill9()
            try:
                json.load(open(work + "/state"))
            except (OSError, ValueError):
                bad_state += 1
        warden.start()
        wait(lambda: not os.listdir(work + "/queue") if os.path.isdir(work + "/queue") else True, 60)
        time.sleep(3)
        if len(instances(port)) > 1:
            doubles += 1
        warden.stop()
        mails = open(store).read().splitlines() if os.path.exists(store) else []
        ids = [part.split(":", 1)[1].split()[0] for mail in mails for part in [mail[mail.find("Message-Id:"):]] if "Message-Id:" in mail]
        duplicates = len(ids) - len(set(ids))
        left = len(os.listdir(work + "/queue")) if os.path.isdir(work + "/queue") else 0
    finally:
        if warden.process and warden.process.poll() is None:
            warden.kill9()
        if sink:
            sink.kill()
        kill_all(instances(port))
    record("warden kill -9 with alerts pending", rounds,
           "%d app kills, %d mails, %d duplicates, %d left queued, %d bad state files, %d double starts"
           % (kills, len(ids), duplicates, left, bad_state, doubles), duplicates + left + bad_state + doubles + (0 if ids else 1))


def diskfull():
    if os.geteuid() != 0:
        record("disk full / read-only state and queue directory", 0, "skipped: needs root for a tmpfs", 1 if os.environ.get("CI") == "true" else 0)
        return
    work = tempfile.mkdtemp(prefix="chaos-diskfull-")
    os.chmod(work, 0o755)
    mount = work + "/small"
    os.mkdir(mount)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", mount], check=True)
    port = free_port()
    pidfile = work + "/app.pid"
    warden = Warden("set daemon 1\nset pidfile @DIR@/warden.pid\nset statefile %s/state\n"
                    "set mailserver 127.0.0.1 port %d with timeout 1 seconds\nset eventqueue basedir %s/queue slots 100\n"
                    "set alert ops@example.com\n" % (mount, free_port(), mount) + app_service("app", port, pidfile, work), work)
    results, broke = [], 0
    try:
        warden.start()
        wait(lambda: serving(port, pidfile), 30)
        for mode in ("full", "read-only"):
            if mode == "full":
                subprocess.run(["dd", "if=/dev/zero", "of=%s/filler" % mount, "bs=4k"], stderr=subprocess.DEVNULL)
            else:
                subprocess.run(["mount", "-o", "remount,ro", mount], check=True)
            before = warden.text().count("cannot write the state file")
            old = read_pid(pidfile)
            kill_all([old])  # it may have died already (then warden is restarting it anyway)
            restarted = wait(lambda: serving(port, pidfile, old), 15)
            complained = warden.wait_log("cannot write the state file", count=before + 1, timeout=10)
            if mode == "full":
                os.remove(mount + "/filler")
            else:
                subprocess.run(["mount", "-o", "remount,rw", mount], check=True)
            stamp = os.path.getmtime(mount + "/state") if os.path.exists(mount + "/state") else 0
            old = read_pid(pidfile)
            kill_all([old])  # it may have died already (then warden is restarting it anyway)
            wait(lambda: serving(port, pidfile, old), 15)
            recovered = wait(lambda: os.path.exists(mount + "/state") and os.path.getmtime(mount + "/state") > stamp, 15)
            results.append("%s: restarted %s, logged %s, recovered %s" % (mode, bool(restarted), bool(complained), bool(recovered)))
            broke += (0 if restarted else 1) + (0 if complained else 1) + (0 if recovered else 1)
    finally:
        warden.stop()
        kill_all(instances(port))
        subprocess.run(["umount", "-l", mount])
    record("disk full / read-only state and queue directory", 2, "; ".join(results), broke)


def reloads():
    count = 10 if QUICK else 100
    work = tempfile.mkdtemp(prefix="chaos-reloads-")
    httpd = free_port()
    base = "set daemon 1\nset pidfile @DIR@/warden.pid\nset httpd port %d and use address 127.0.0.1\n  allow 127.0.0.1\n" % httpd

    def good(index):
        return base + "check host h%d with address 127.0.0.1\n  if failed port %d then alert\n" % (index, httpd)

    warden = Warden(good(0), work).start()
    wrong, reloaded = 0, 0
    last_good = "h0"
    try:
        warden.wait_log("started", timeout=20)
        for index in range(1, count + 1):
            if index % 2:
                warden.write(base + "check host broken%d with address\n  if failed port then\n" % index)
            else:
                warden.write(good(index))
                last_good = "h%d" % index
            warden.signal(signal.SIGHUP)
            needle = "reloaded" if index % 2 == 0 else "keeping the running configuration"
            done = warden.wait_log(needle, count=(index // 2) if index % 2 == 0 else (index + 1) // 2, timeout=10)
            reloaded += 1 if done else 0
            # Straight to the daemon: the CLI itself would refuse the broken control file on disk.
            answer = get(httpd, "/_status?format=json", timeout=5)
            names = [s["name"] for s in json.loads(answer[1])["services"]] if answer and answer[0] == 200 else []
            if last_good not in names or any(n.startswith("broken") for n in names):
                wrong += 1
        alive = warden.process.poll() is None
    finally:
        warden.stop()
    record("reload storm, good and bad control files alternating", count,
           "%d reloads seen, %d times the wrong configuration, warden up: %s" % (reloaded, wrong, alive), wrong + (count - reloaded) + (0 if alive else 1))


SCENARIOS = [hang, crashloop, hungstart, failedstop, stalepid, wardenkill, diskfull, reloads]

if __name__ == "__main__":
    print("chaos scenarios (%s), %s, %s" % ("quick" if QUICK else "full", BUILD, time.strftime("%Y-%m-%d %H:%M")), flush=True)
    began = time.time()
    for scenario in SCENARIOS:
        if not CHOSEN or scenario.__name__ in CHOSEN:
            print("%s ..." % scenario.__name__, flush=True)
            scenario()
    table("chaos scenarios, %.0f s" % (time.time() - began), rows)
    sys.exit(1 if broken else 0)
