"""tools/mkpasswd.py, run as users run it: a real process."""

import importlib.util
import io
import os
import re
import subprocess
import sys
import unittest
from unittest import mock

from tests.util import GO_SERVER, RawClient, ServerProcess, needs

try:
    import bcrypt
except ImportError:  # optional: the tool then only explains how to get it
    bcrypt = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "mkpasswd.py")
needs_bcrypt = needs(bcrypt is not None, "the optional bcrypt package is not installed")
HASH_RE = re.compile(r"^bcrypt hash: (\$2a\$(\d\d)\$[./A-Za-z0-9]{53})$")


def run(args=(), stdin="", env_hide_bcrypt=False):
    if env_hide_bcrypt:
        cmd = [sys.executable, "-c",
               "import sys, runpy; sys.modules['bcrypt'] = None; "
               "sys.argv = [%r] + %r; runpy.run_path(%r, run_name='__main__')"
               % (TOOL, list(args), TOOL)]
    else:
        cmd = [sys.executable, TOOL] + list(args)
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60)


def load_tool():
    spec = importlib.util.spec_from_file_location("mkpasswd", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_bcrypt
class TestGenerate(unittest.TestCase):
    def test_no_args_makes_password_and_hash(self):
        r = run()
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 2, r.stdout)
        m = re.match(r"^pass: (.*)$", lines[0])
        self.assertIsNotNone(m, lines[0])
        password = m.group(1)
        self.assertEqual(len(password), 22)
        tool = load_tool()
        self.assertTrue(set(password) <= set(tool.PASSWORD_CHARS))
        h = HASH_RE.match(lines[1])
        self.assertIsNotNone(h, lines[1])
        self.assertEqual(h.group(2), "11")  # default cost
        self.assertTrue(bcrypt.checkpw(password.encode(), h.group(1).encode()))

    def test_passwords_differ(self):
        tool = load_tool()
        seen = {tool.gen_password() for _ in range(50)}
        self.assertEqual(len(seen), 50)


class TestGivenPassword(unittest.TestCase):
    @needs_bcrypt
    def test_stdin(self):
        r = run(["-p", "--cost", "4"], stdin="T0pS3cr3t\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("pass:", r.stdout)
        h = HASH_RE.match(r.stdout.strip())
        self.assertIsNotNone(h, r.stdout)
        self.assertEqual(h.group(2), "04")
        self.assertTrue(bcrypt.checkpw(b"T0pS3cr3t", h.group(1).encode()))
        self.assertFalse(bcrypt.checkpw(b"T0pS3cr3t\n", h.group(1).encode()))

    @needs_bcrypt
    def test_crlf_and_spaces_kept(self):
        r = run(["-p", "-c", "5"], stdin="  two words \r\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        h = HASH_RE.match(r.stdout.strip())
        self.assertEqual(h.group(2), "05")
        self.assertTrue(bcrypt.checkpw(b"  two words ", h.group(1).encode()))

    @needs_bcrypt
    def test_empty_stdin(self):
        r = run(["-p"], stdin="")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.strip(), "mkpasswd: no password given on stdin")
        self.assertEqual(r.stdout, "")

    @needs_bcrypt
    def test_too_long(self):
        r = run(["-p", "-c", "4"], stdin="x" * 73 + "\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn("longer than 72 bytes", r.stderr)
        self.assertNotIn("Traceback", r.stderr)

    def test_terminal_asks_twice_without_echo(self):
        tool = load_tool()
        tty = mock.Mock()
        tty.isatty.return_value = True
        with mock.patch.object(tool.getpass, "getpass", side_effect=["s3cret", "s3cret"]) as gp:
            self.assertEqual(tool.read_password(tty), "s3cret")
        self.assertEqual([c.args[0] for c in gp.call_args_list],
                         ["Enter Password: ", "Reenter Password: "])
        with mock.patch.object(tool.getpass, "getpass", side_effect=["a", "b"]):
            with self.assertRaisesRegex(tool.UsageError, "passwords do not match"):
                tool.read_password(tty)

    @needs_bcrypt
    def test_main_reports_mismatch(self):
        tool = load_tool()
        tty = mock.Mock()
        tty.isatty.return_value = True
        err = io.StringIO()
        with mock.patch.object(tool.sys, "stdin", tty), \
                mock.patch.object(tool.getpass, "getpass", side_effect=["a", "b"]), \
                mock.patch.object(tool.sys, "stderr", err):
            self.assertEqual(tool.main(["-p"]), 1)
        self.assertEqual(err.getvalue().strip(), "mkpasswd: passwords do not match")


class TestErrors(unittest.TestCase):
    def test_bad_cost(self):
        for cost in ("3", "32", "x"):
            r = run(["--cost", cost])
            self.assertEqual(r.returncode, 2, cost)
            self.assertIn("cost must be", r.stderr)
            self.assertNotIn("Traceback", r.stderr)

    def test_without_bcrypt(self):
        r = run([], env_hide_bcrypt=True)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.strip(),
                         "mkpasswd: bcrypt password hashes need the bcrypt package: pip install bcrypt")
        self.assertEqual(r.stdout, "")


@needs_bcrypt
@needs(GO_SERVER, "nats-server (the Go reference server) is not installed")
class TestNatsServerAcceptsTheHash(unittest.TestCase):
    def test_login(self):
        r = run(["-p", "-c", "4"], stdin="T0pS3cr3t\n")
        hashed = HASH_RE.match(r.stdout.strip()).group(1)
        srv = ServerProcess("--user", "derek", "--pass", hashed, exe=GO_SERVER)
        self.addCleanup(srv.stop)
        good = RawClient(srv.port, b'{"verbose":false,"user":"derek","pass":"T0pS3cr3t"}')
        self.assertEqual(good.ping(), b"")
        bad = RawClient(srv.port, b'{"verbose":false,"user":"derek","pass":"wrong"}')
        self.assertEqual(bad.read_line(), b"-ERR 'Authorization Violation'")
        good.close()
        bad.close()


if __name__ == "__main__":
    unittest.main()
