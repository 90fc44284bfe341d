"""Server processes under test: start, wait until they serve, measure, stop.

A server is started without a shell, so the PID we hold is the server itself;
CPU and RSS are still summed over the process tree in case a wrapper command
(--ours-cmd) forks the real server as a child.
"""

import os
import signal
import socket
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
GO_SERVER = "/usr/sbin/nats-server"


def free_port():
    """A port that was free a moment ago (the caller races other processes)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def system_python():
    """The distribution's python3 (first on the default system PATH), or None.

    PERF-NOTES: the distribution's optimised build is the one whose figures
    count; the python3 first on PATH here may be a source build.
    """
    for d in os.confstr("CS_PATH").split(":"):
        p = os.path.join(d, "python3")
        if os.access(p, os.X_OK):
            # /bin is often a link to /usr/bin: name it the way people know it
            usr = "/usr/bin/python3"
            if p != usr and os.path.exists(usr) and os.path.samefile(p, usr):
                return usr
            return p
    return None


def describe_python(path):
    """'/usr/bin/python3 (3.11.2)' or the path alone if it cannot be asked."""
    try:
        out = subprocess.run([path, "-c", "import sys;print(sys.version.split()[0])"],
                             capture_output=True, text=True, timeout=10)
        return "%s (Python %s)" % (path, out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return path


def go_version(path=GO_SERVER):
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or out.stderr.strip()
    except (OSError, subprocess.SubprocessError):
        return "unavailable"


def _tree(pid):
    """pid and all its descendants, found through /proc/PID/task/*/children."""
    out, todo = [], [pid]
    while todo and len(out) < 1000:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, tid)) as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def cpu_seconds(pid):
    """utime+stime of pid and its descendants, in seconds (all threads included)."""
    total = 0
    for p in _tree(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after the last ')'.
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])   # utime, stime (fields 14, 15)
    return total / CLK_TCK


def rss_kb(pid):
    """VmRSS of pid and its descendants, in KiB."""
    total = 0
    for p in _tree(pid):
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


class ServerError(Exception):
    pass


class Server:
    """One server process listening for clients on 127.0.0.1:port."""

    def __init__(self, label, cmd, port, logdir, cwd=None):
        self.label = label
        self.port = port
        self.cmd = list(cmd)
        self.log_path = os.path.join(logdir, "%s-%d.log" % (label, port))
        self.proc = None
        self.cwd = cwd

    def start(self, timeout=15.0):
        """Start and wait until the port answers with an INFO line."""
        logf = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(self.cmd, stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.cwd)
        except OSError as e:
            raise ServerError("cannot run %s: %s" % (self.cmd[0], e))
        finally:
            logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError("%s exited with %s at start: %s"
                                  % (self.label, self.proc.returncode, self.log_tail()))
            if self._answers_info():
                return self
            time.sleep(0.05)
        self.stop()
        raise ServerError("%s did not serve on port %d within %.0fs: %s"
                          % (self.label, self.port, timeout, self.log_tail()))

    def _answers_info(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                data = b""
                while b"\r\n" not in data and len(data) < 65536:
                    chunk = s.recv(4096)
                    if not chunk:
                        return False
                    data += chunk
                return data.startswith(b"INFO ")
        except OSError:
            return False

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cpu(self):
        return cpu_seconds(self.proc.pid)

    def rss_kb(self):
        return rss_kb(self.proc.pid)

    def log_tail(self, n=400):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return ""
        return data[-n:].decode("utf-8", "replace").strip().replace("\n", " | ")

    def stop(self, timeout=5.0):
        """SIGTERM, then SIGKILL if it has not exited within timeout."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            try:
                self.proc.wait(5.0)
            except subprocess.TimeoutExpired:
                pass
