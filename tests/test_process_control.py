"""Operating the server: pid file, ports file, log file and its reopening,
remote syslog, reload on SIGHUP, lame duck on SIGUSR2, --signal, and
command-line-over-config."""

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request

from tests.util import GNATSD, PYTHON, ROOT, RawClient, ServerProcess, port_of, wait_for


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def read(path):
    with open(path) as f:
        return f.read()


def tmpdir(test):
    d = tempfile.TemporaryDirectory(prefix="gnatsd-test-")
    test.addCleanup(d.cleanup)
    return d.name


class TestPidAndLog(unittest.TestCase):
    def test_pid_file_written_and_removed(self):
        d = tmpdir(self)
        pid_path = os.path.join(d, "g.pid")
        srv = ServerProcess("-P", pid_path)
        with open(pid_path) as f:
            self.assertEqual(int(f.read().strip()), srv.proc.pid)
        self.assertEqual(srv.stop(), 0)
        self.assertFalse(os.path.exists(pid_path))

    def test_log_file_and_reopen(self):
        d = tmpdir(self)
        log_path = os.path.join(d, "g.log")
        srv = ServerProcess("-l", log_path, wait=False)
        self.addCleanup(srv.stop)
        self.assertTrue(wait_for(lambda: os.path.exists(log_path) and "Server is ready" in read(log_path), 10))
        self.assertNotIn("Server is ready", srv.output())   # nothing on stdout
        os.rename(log_path, log_path + ".1")
        srv.signal(signal.SIGUSR1)
        self.assertTrue(wait_for(lambda: os.path.exists(log_path)))
        srv.stop()
        self.assertIn("Server Exiting", read(log_path))

    def test_ports_file(self):
        # -1 everywhere: the ports file is the only way to learn the ports
        srv = ServerProcess("-m", "-1", "--cluster", "nats://127.0.0.1:-1")
        self.addCleanup(srv.stop)
        path = srv.ports_file
        self.assertEqual(os.path.basename(path), "gnatsd_%d.ports" % srv.proc.pid)  # <exe>_<pid>.ports
        ports = json.loads(read(path))
        self.assertEqual(sorted(ports), ["cluster", "monitoring", "nats"])
        self.assertEqual(ports["nats"], ["nats://127.0.0.1:%d" % srv.port])
        c = RawClient(srv.port)
        self.assertEqual(c.ping(), b"")
        c.close()
        with urllib.request.urlopen("http://127.0.0.1:%d/varz" % port_of(ports["monitoring"][0]), timeout=5) as r:
            v = json.loads(r.read())
        self.assertEqual((v["port"], v["cluster"]["cluster_port"]), (srv.port, port_of(ports["cluster"][0])))
        socket.create_connection(("127.0.0.1", port_of(ports["cluster"][0])), timeout=5).close()
        srv.signal(signal.SIGTERM)
        self.assertEqual(srv.proc.wait(10), 0)
        self.assertFalse(os.path.exists(path))              # removed on exit, as nats-server does

    # nats-server (2.9 and 2.15) writes the address it listens on to the
    # ports file whatever client_advertise says, so a tool reading the file
    # can connect.
    def test_ports_file_lists_listen_address_not_advertised(self):
        srv = ServerProcess("--client_advertise", "10.1.2.3:4567")
        self.addCleanup(srv.stop)
        self.assertEqual(srv.ports["nats"], ["nats://127.0.0.1:%d" % srv.port])
        self.assertNotEqual(srv.port, 4567)

    def test_remote_syslog_over_udp(self):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(rx.close)
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        srv = ServerProcess("-D", "-r", "udp://127.0.0.1:%d" % rx.getsockname()[1], wait=False)
        self.addCleanup(srv.stop)
        lines = []

        def until(pattern):
            while not any(re.search(pattern, l) for l in lines):
                lines.append(rx.recv(65536).decode())       # socket timeout: 5 s
        until(r"\[INF\] Server is ready")
        self.assertRegex(lines[0], r"^<14>gnatsd\[%d\]: \[INF\] Starting nats-server" % srv.proc.pid)
        c = RawClient(srv.port)
        c.ping()
        until(r"\[DBG\] 127\.0\.0\.1:\d+ - cid:\d+ - Client connection created")
        self.assertTrue(any(l.startswith("<15>gnatsd[") for l in lines), lines)   # debug priority
        c.close()
        self.assertEqual(srv.output(), "")                  # nothing on stdout

    def test_logtime_false(self):
        srv = ServerProcess("-T=false")
        self.assertRegex(srv.output(), r"(?m)^\[\d+\] \[INF\] Server is ready")
        srv.stop()


class TestReload(unittest.TestCase):
    def test_reload_changes_auth_and_limits(self):
        conf = "authorization { user: a\n password: b }\nmax_payload: 1000\n"
        srv = ServerProcess(config=conf)
        try:
            old = RawClient(srv.port, b'{"verbose":false,"user":"a","pass":"b"}')
            self.assertEqual(old.ping(), b"")
            self.assertNotIn("[DBG]", srv.output())
            write(srv.config_path, "authorization { user: c\n password: d }\nmax_payload: 2000\ndebug: true\n")
            srv.signal(signal.SIGHUP)
            self.assertTrue(srv.wait_log("Reloaded server configuration"))
            self.assertEqual(old.read_line(), b"-ERR 'Authorization Violation'")
            self.assertTrue(old.closed())
            new = RawClient(srv.port, b'{"verbose":false,"user":"c","pass":"d"}')
            self.assertEqual(json.loads(new.info[5:])["max_payload"], 2000)
            self.assertEqual(new.ping(), b"")
            # debug took effect
            self.assertTrue(srv.wait_log(r"\[DBG\] 127\.0\.0\.1:\d+ - cid:\d+ - Client connection created"))
            new.close()
            old.close()
        finally:
            srv.stop()

    def test_reload_keeps_connections_and_applies_log_and_ping_settings(self):
        srv = ServerProcess(config="max_payload: 1000\n")
        try:
            c = RawClient(srv.port)
            c.send(b"SUB k 1\r\n")
            c.ping()
            out = srv.output()
            self.assertNotIn("[DBG]", out)
            self.assertNotIn("[TRC]", out)
            write(srv.config_path, 'max_payload: 500\nping_interval: "200ms"\n'
                                   'debug: true\ntrace: true\nlogtime: false\n')
            srv.signal(signal.SIGHUP)
            # logtime off: the line that reports the reload has no time stamp
            self.assertTrue(srv.wait_log(r"(?m)^\[\d+\] \[INF\] Reloaded server configuration$"), srv.output())
            c.send(b"PUB k 1\r\nx\r\n")
            self.assertEqual(c.ping(), b"MSG k 1 1\r\nx\r\n")
            c.send(b"PUB k 600\r\n")
            self.assertEqual(c.read_line(), b"-ERR 'Maximum Payload Violation'")
            c.close()
            # a new client: debug and trace lines, and PINGs every 200 ms
            # (the old interval was 2 minutes)
            n = RawClient(srv.port)
            self.assertEqual(n.ping(), b"")
            self.assertTrue(srv.wait_log(r"(?m)^\[\d+\] \[DBG\] 127\.0\.0\.1:\d+ - cid:\d+ - Client connection created"))
            self.assertTrue(srv.wait_log(r"\[TRC\] 127\.0\.0\.1:\d+ - cid:\d+ - <<- \[PING\]"))
            for _ in range(2):
                self.assertEqual(n.read_line(timeout=3), b"PING")
                n.send(b"PONG\r\n")
            n.close()
        finally:
            srv.stop()

    def test_bad_reload_keeps_running_config(self):
        srv = ServerProcess(config="max_payload: 1000\n")
        try:
            write(srv.config_path, "max_payload: [\n")
            srv.signal(signal.SIGHUP)
            self.assertTrue(srv.wait_log("Failed to reload"))
            c = RawClient(srv.port)
            self.assertEqual(json.loads(c.info[5:])["max_payload"], 1000)
            self.assertEqual(c.ping(), b"")
            c.close()
        finally:
            srv.stop()

    def test_signal_flag_reload(self):
        srv = ServerProcess(config="debug: false\n")
        try:
            out = subprocess.run([PYTHON, GNATSD, "--signal", "reload=%d" % srv.proc.pid],
                                 cwd=ROOT, capture_output=True, timeout=10)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertTrue(srv.wait_log("Reloaded server configuration"))
        finally:
            srv.stop()


class TestLameDuck(unittest.TestCase):
    DURATION, GRACE = 2.0, 0.3

    def test_lame_duck_closes_clients_gradually(self):
        conf = 'lame_duck_duration: "2s"\nlame_duck_grace_period: "300ms"\n'
        srv = ServerProcess(config=conf)
        self.addCleanup(srv.stop)
        clients = [RawClient(srv.port, b'{"verbose":false,"protocol":1}') for _ in range(4)]
        old = RawClient(srv.port, b'{"verbose":false,"protocol":0}')   # no async INFO for it
        everyone = clients + [old]
        for c in everyone:
            self.assertEqual(c.ping(), b"")
        t0 = time.monotonic()
        srv.signal(signal.SIGUSR2)
        self.assertTrue(srv.wait_log("Entering lame duck mode, stop accepting new clients"))
        # every protocol-1 client is told; the protocol-0 one is not
        for c in clients:
            line = c.read_line(timeout=3)
            self.assertTrue(line.startswith(b"INFO "), line)
            self.assertTrue(json.loads(line[5:]).get("ldm"))
        # the listener closes at once
        def refused():
            try:
                socket.create_connection(("127.0.0.1", srv.port), timeout=0.5).close()
                return False
            except OSError:
                return True
        self.assertTrue(wait_for(refused, 2))
        # when each client sees its connection end
        closed_at = {}
        deadline = time.monotonic() + self.DURATION + 8
        while len(closed_at) < len(everyone) and time.monotonic() < deadline:
            for i, c in enumerate(everyone):
                if i in closed_at:
                    continue
                try:
                    c._fill(time.monotonic() + 0.02)
                except TimeoutError:
                    continue
                except (EOFError, OSError):
                    closed_at[i] = time.monotonic() - t0
        self.assertEqual(len(closed_at), len(everyone), closed_at)
        self.assertEqual(old.buf, b"")                   # the protocol-0 client got no INFO
        times = sorted(closed_at.values())
        self.assertGreaterEqual(times[0], self.GRACE)     # nothing closed during the grace period
        # spread over the duration: 5 clients, one every (2 - 0.3) / 5 s, so
        # 1.36 s from the first close to the last (lower bounds only: a busy
        # machine can only stretch them)
        self.assertGreater(times[-1] - times[0], 1.0, times)
        self.assertEqual(srv.proc.wait(10), 0)
        for c in everyone:
            c.close()


class TestCommandLineOverridesConfig(unittest.TestCase):
    def test_port_flag_wins(self):
        from tests.util import free_port
        other = free_port()
        srv = ServerProcess(config="port: %d\nmax_payload: 777\n" % other)
        try:
            self.assertNotEqual(srv.port, other)   # -p -1 from the command line
            c = RawClient(srv.port, None)
            self.assertEqual(json.loads(c.info[5:])["max_payload"], 777)
            c.close()
        finally:
            srv.stop()

    def test_config_error_exits_nonzero(self):
        d = tmpdir(self)
        path = os.path.join(d, "bad.conf")
        write(path, "port: 4222\nmax_paylod: 5\n")
        out = subprocess.run([PYTHON, GNATSD, "-c", path, "-p", "-1"], cwd=ROOT,
                             capture_output=True, timeout=10)
        self.assertNotEqual(out.returncode, 0)
        text = (out.stdout + out.stderr).decode()
        self.assertIn('%s:2:1: unknown field "max_paylod"' % path, text)
        self.assertNotIn("Traceback", text)

    def test_unknown_flag(self):
        out = subprocess.run([PYTHON, GNATSD, "--no-such-flag"], cwd=ROOT, capture_output=True, timeout=10)
        self.assertEqual(out.returncode, 1)
        self.assertNotIn("Traceback", (out.stdout + out.stderr).decode())


if __name__ == "__main__":
    unittest.main()
