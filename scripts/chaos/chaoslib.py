"""Shared pieces of the chaos scripts: the binaries, a warden started on a control file, the example
app's instances as /proc sees them, and bounded waiting. Everything binds 127.0.0.1 and every
process started here is ended by its pid."""
import os, signal, socket, subprocess, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_release = os.path.join(ROOT, ".build/release")
# WARDEN_BUILD: the directory of the binaries (the tests pass theirs); else a release build if there is one.
BUILD = os.environ.get("WARDEN_BUILD") or (
    _release if os.path.exists(_release + "/warden") and os.path.exists(_release + "/myapp") else os.path.join(ROOT, ".build/debug"))
WARDEN, MYAPP = BUILD + "/warden", BUILD + "/myapp"
SMTP_PYTHON = "/usr/bin/python3"  # Debian's interpreter, which has python3-aiosmtpd


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    """Whether something accepts connections on 127.0.0.1:`port`."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def wait(condition, timeout, step=0.02):
    """Polls `condition` until it returns something truthy or `timeout` seconds pass."""
    end = time.time() + timeout
    while time.time() < end:
        value = condition()
        if value:
            return value
        time.sleep(step)
    return None


def instances(port):
    """Live (not zombie) example apps serving `port`."""
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


def get(port, path="/ping", timeout=1, host=None):
    """(status, body) or None."""
    request = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception:
        return None


def read_pid(path):
    try:
        return int(open(path).read().strip())
    except (OSError, ValueError):
        return None


def serving(port, pidfile, old=None):
    """The app's pid once a new instance (not `old`) answers /ping."""
    pid = read_pid(pidfile)
    if pid is None or pid == old:
        return None
    answer = get(port)
    return pid if answer and answer[1] == b"pong" else None


def daemon_start_script(directory, port, pidfile):
    """An init-script style start program: the app detaches and writes its pidfile."""
    path = directory + "/start-%d.sh" % port
    with open(path, "w") as f:
        f.write("#!/bin/sh\nsetsid %s --port %d --pidfile %s >>%s/app-%d.log 2>&1 </dev/null &\nexit 0\n" % (MYAPP, port, pidfile, directory, port))
    os.chmod(path, 0o755)
    return path


class Warden:
    """warden -I on a control file written into a fresh directory; log to a file there."""

    def __init__(self, control, directory=None):
        self.directory = directory or tempfile.mkdtemp(prefix="warden-chaos-")
        os.chmod(self.directory, 0o755)
        self.rc = self.directory + "/rc"
        self.log = self.directory + "/log"
        self.write(control)
        self.process = None

    def write(self, control):
        with open(self.rc, "w") as f:
            f.write(control.replace("@DIR@", self.directory))
        os.chmod(self.rc, 0o600)

    def start(self):
        self.process = subprocess.Popen([WARDEN, "-c", self.rc, "-I", "-v"], stdout=open(self.log, "a"), stderr=subprocess.STDOUT)
        return self

    def text(self):
        try:
            return open(self.log, errors="replace").read()
        except OSError:
            return ""

    def wait_log(self, needle, count=1, timeout=20):
        return wait(lambda: self.text().count(needle) >= count, timeout)

    def signal(self, number):
        self.process.send_signal(number)

    def kill9(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill9()

    def cli(self, *arguments):
        return subprocess.run([WARDEN, "-c", self.rc] + list(arguments), capture_output=True, text=True, timeout=30)


def kill_all(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def table(title, rows):
    """Prints rows of (what, count, result, broke) as a table."""
    print("\n" + title)
    print("%-58s %7s  %-52s %s" % ("scenario", "count", "result", "broke"))
    for what, count, result, broke in rows:
        print("%-58s %7s  %-52s %s" % (what, count, result, broke))
