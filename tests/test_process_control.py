"""Operating the server: pid file, log file and its reopening, reload on
SIGHUP, lame duck on SIGUSR2, --signal, and command-line-over-config."""

import json
import os
import signal
import subprocess
import tempfile
import time
import unittest

from tests.util import GNATSD, PYTHON, ROOT, RawClient, ServerProcess


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


class TestPidAndLog(unittest.TestCase):
    def test_pid_file_written_and_removed(self):
        d = tempfile.mkdtemp()
        pid_path = os.path.join(d, "g.pid")
        srv = ServerProcess("-P", pid_path)
        with open(pid_path) as f:
            self.assertEqual(int(f.read().strip()), srv.proc.pid)
        self.assertEqual(srv.stop(), 0)
        self.assertFalse(os.path.exists(pid_path))

    def test_log_file_and_reopen(self):
        d = tempfile.mkdtemp()
        log_path = os.path.join(d, "g.log")
        srv = ServerProcess("-l", log_path, wait=False)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.path.exists(log_path) and "Server is ready" in open(log_path).read():
                break
            time.sleep(0.05)
        self.assertIn("Server is ready", open(log_path).read())
        self.assertNotIn("Server is ready", srv.output())   # nothing on stdout
        os.rename(log_path, log_path + ".1")
        srv.signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not os.path.exists(log_path):
            time.sleep(0.05)
        self.assertTrue(os.path.exists(log_path))
        srv.stop()
        self.assertIn("Server Exiting", open(log_path).read())

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
            write(srv.config_path, "authorization { user: c\n password: d }\nmax_payload: 2000\ndebug: true\n")
            srv.signal(signal.SIGHUP)
            self.assertTrue(srv.wait_log("Reloaded server configuration"))
            self.assertEqual(old.read_line(), b"-ERR 'Authorization Violation'")
            self.assertTrue(old.closed())
            new = RawClient(srv.port, b'{"verbose":false,"user":"c","pass":"d"}')
            self.assertEqual(json.loads(new.info[5:])["max_payload"], 2000)
            self.assertEqual(new.ping(), b"")
            new.close()
            old.close()
        finally:
            srv.stop()

    def test_reload_keeps_connections_without_auth_change(self):
        srv = ServerProcess(config="max_payload: 1000\n")
        try:
            c = RawClient(srv.port)
            c.send(b"SUB k 1\r\n")
            c.ping()
            write(srv.config_path, "max_payload: 500\nping_interval: 100\n")
            srv.signal(signal.SIGHUP)
            self.assertTrue(srv.wait_log("Reloaded server configuration"))
            c.send(b"PUB k 1\r\nx\r\n")
            self.assertEqual(c.ping(), b"MSG k 1 1\r\nx\r\n")
            c.send(b"PUB k 600\r\n")
            self.assertEqual(c.read_line(), b"-ERR 'Maximum Payload Violation'")
            c.close()
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
    def test_lame_duck(self):
        conf = 'lame_duck_duration: "2s"\nlame_duck_grace_period: "300ms"\n'
        srv = ServerProcess(config=conf)
        try:
            clients = [RawClient(srv.port, b'{"verbose":false,"protocol":1}') for _ in range(4)]
            for c in clients:
                self.assertEqual(c.ping(), b"")
            t0 = time.monotonic()
            srv.signal(signal.SIGUSR2)
            line = clients[0].read_line(timeout=3)
            self.assertTrue(line.startswith(b"INFO "), line)
            self.assertTrue(json.loads(line[5:]).get("ldm"))
            # the listener closes at once
            deadline = time.monotonic() + 2
            refused = False
            while time.monotonic() < deadline and not refused:
                try:
                    RawClient(srv.port, None, timeout=0.5).close()
                    time.sleep(0.05)
                except OSError:
                    refused = True
            self.assertTrue(refused)
            self.assertEqual(srv.proc.wait(10), 0)
            self.assertGreater(time.monotonic() - t0, 0.3)
            for c in clients:
                c.close()
        finally:
            srv.stop()


class TestCommandLineOverridesConfig(unittest.TestCase):
    def test_port_flag_wins(self):
        from tests.util import free_port
        other = free_port()
        srv = ServerProcess(config="port: %d\nmax_payload: 777\n" % other)
        try:
            c = RawClient(srv.port, None)      # -p from the command line
            self.assertEqual(json.loads(c.info[5:])["max_payload"], 777)
            c.close()
        finally:
            srv.stop()

    def test_config_error_exits_nonzero(self):
        d = tempfile.mkdtemp()
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
