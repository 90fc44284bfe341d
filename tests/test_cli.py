"""The command line (gnats.cli): Go flag spellings, nats-server's option
names, errors worded as Go's flag package words them, the command line over
the config file, --signal against a real process, and the entry point's
exits."""

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

from gnats import RELEASE, VERSION, cli
from gnats.cli import UsageError, build_options, parse_command_line
from gnats.conf import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GNATSD = os.path.join(ROOT, "gnatsd.py")


def flags(*argv):
    return parse_command_line(list(argv)).flags


def usage_error(*argv):
    try:
        parse_command_line(list(argv))
    except UsageError as e:
        return str(e)
    raise AssertionError("no UsageError for %r" % (argv,))


class TestFlagSyntax(unittest.TestCase):
    def test_go_spellings_of_one_flag(self):
        for argv in (["-p", "4333"], ["--port", "4333"], ["-port", "4333"], ["-p=4333"],
                     ["--port=4333"], ["-port=4333"]):
            self.assertEqual(flags(*argv), {"port": 4333}, argv)

    def test_value_taken_whatever_it_looks_like(self):
        self.assertEqual(flags("-p", "-1"), {"port": -1})
        self.assertEqual(flags("--user", "-D"), {"username": "-D"})

    def test_bool_flags(self):
        self.assertEqual(flags("-D"), {"debug": True})
        self.assertEqual(flags("-T=false"), {"logtime": False})
        self.assertEqual(flags("--logtime=0"), {"logtime": False})
        self.assertEqual(flags("-T=TRUE"), {"logtime": True})
        self.assertEqual(flags("-DV"), {"debug": True, "trace": True})
        self.assertEqual(flags("-DVV"), {"debug": True, "trace": True})
        self.assertEqual(flags("-VV"), {"trace": True})
        self.assertEqual(flags("--debug", "--trace"), {"debug": True, "trace": True})
        self.assertEqual(flags("-D=f"), {"debug": False})

    def test_bool_flag_takes_no_separate_value(self):
        self.assertEqual(usage_error("-T", "false"), 'unrecognized command: "false"')

    def test_double_dash_ends_flags(self):
        self.assertEqual(flags("-D", "--"), {"debug": True})
        self.assertEqual(usage_error("--", "-D"), 'unrecognized command: "-D"')

    def test_errors_as_go_words_them(self):
        self.assertEqual(usage_error("-x"), "flag provided but not defined: -x")
        self.assertEqual(usage_error("--no-such-flag"), "flag provided but not defined: -no-such-flag")
        self.assertEqual(usage_error("-max_subscriptions", "5"),
                         "flag provided but not defined: -max_subscriptions")
        self.assertEqual(usage_error("-p"), "flag needs an argument: -p")
        self.assertEqual(usage_error("-p", "abc"), 'invalid value "abc" for flag -p: parse error')
        self.assertEqual(usage_error("-p="), 'invalid value "" for flag -p: parse error')
        self.assertEqual(usage_error("-T=maybe"), 'invalid boolean value "maybe" for -T: parse error')
        self.assertEqual(usage_error("foo"), 'unrecognized command: "foo"')
        self.assertEqual(usage_error("---p"), "bad flag syntax: ---p")
        self.assertEqual(usage_error("-=1"), "bad flag syntax: -=1")
        self.assertEqual(usage_error("-p", "70000"), 'invalid value "70000" for flag -p: port out of range')


class TestEveryOption(unittest.TestCase):
    def test_server_options(self):
        for short, long_, value, field, want in (
                ("-a", "--addr", "127.0.0.1", "host", "127.0.0.1"),
                ("-a", "--net", "127.0.0.1", "host", "127.0.0.1"),
                ("-p", "--port", "4333", "port", 4333),
                ("-n", "--name", "srv", "server_name", "srv"),
                ("-n", "--server_name", "srv", "server_name", "srv"),
                ("-P", "--pid", "/tmp/x.pid", "pid_file", "/tmp/x.pid"),
                ("-m", "--http_port", "8222", "http_port", 8222),
                ("-ms", "--https_port", "8443", "https_port", 8443),
                ("-l", "--log", "/tmp/x.log", "log_file", "/tmp/x.log"),
                ("-r", "--remote_syslog", "udp://h:514", "remote_syslog", "udp://h:514")):
            self.assertEqual(flags(short, value), {field: want}, short)
            self.assertEqual(flags(long_, value), {field: want}, long_)

    def test_logging_bools(self):
        for short, long_, field in (("-T", "--logtime", "logtime"), ("-s", "--syslog", "syslog"),
                                    ("-D", "--debug", "debug"), ("-V", "--trace", "trace")):
            self.assertEqual(flags(short), {field: True})
            self.assertEqual(flags(long_ + "=false"), {field: False})

    def test_long_only_options(self):
        self.assertEqual(flags("--user", "u", "--pass", "p", "--auth", "tok"),
                         {"username": "u", "password": "p", "authorization": "tok"})
        self.assertEqual(flags("--ports_file_dir", "/tmp"), {"ports_file_dir": "/tmp"})
        self.assertEqual(flags("--client_advertise", "h:1"), {"client_advertise": "h:1"})
        self.assertEqual(flags("--tls", "--tlscert", "c", "--tlskey", "k", "--tlscacert", "ca",
                               "--tlsverify"),
                         {"tls": True, "tls_cert": "c", "tls_key": "k", "tls_ca_cert": "ca",
                          "tls_verify": True})
        self.assertEqual(flags("--cluster_name", "c1", "--cluster_advertise", "h:2",
                               "--no_advertise", "--connect_retries", "4"),
                         {"cluster_name": "c1", "cluster_advertise": "h:2",
                          "cluster_no_advertise": True, "connect_retries": 4})

    def test_cluster_url(self):
        self.assertEqual(flags("-cluster", "nats://localhost:4248"),
                         {"cluster_host": "localhost", "cluster_port": 4248})
        self.assertEqual(flags("--cluster_listen", "nats://127.0.0.1:-1"),
                         {"cluster_host": "127.0.0.1", "cluster_port": -1})
        self.assertEqual(flags("--cluster", "nats-route://ru:rp@0.0.0.0:6222"),
                         {"cluster_host": "0.0.0.0", "cluster_port": 6222,
                          "cluster_username": "ru", "cluster_password": "rp"})
        self.assertIn("missing port", usage_error("--cluster", "nats://h"))
        self.assertIn("invalid value \"h:1\" for flag -cluster", usage_error("--cluster", "h:1"))

    def test_routes(self):
        self.assertEqual(flags("-routes", "nats://a:1"), {"routes": ["nats://a:1"]})
        self.assertEqual(flags("--routes", "nats://a:1, nats-route://b:2,tls://c:3"),
                         {"routes": ["nats://a:1", "nats-route://b:2", "tls://c:3"]})
        self.assertEqual(flags("--routes", "[nats://a:1, nats://b:2]"),
                         {"routes": ["nats://a:1", "nats://b:2"]})
        self.assertIn("invalid route URL", usage_error("--routes", "nats://a:1,foo"))

    def test_config(self):
        for argv in (["-c", "x.conf"], ["--config", "x.conf"], ["-config", "x.conf"],
                     ["-config=x.conf"]):
            cmd = parse_command_line(argv)
            self.assertEqual((cmd.action, cmd.config_file, cmd.flags), ("run", "x.conf", {}))


class TestActions(unittest.TestCase):
    def action(self, *argv):
        return parse_command_line(list(argv)).action

    def test_actions(self):
        self.assertEqual(self.action(), "run")
        for a in ("-h", "--help", "-help"):
            self.assertEqual(self.action(a), "help")
        for a in ("-v", "--version", "-version"):
            self.assertEqual(self.action(a), "version")
        self.assertEqual(self.action("--help_tls"), "help_tls")
        self.assertEqual(self.action("-t", "-c", "x"), "check")
        self.assertEqual(self.action("--signal", "reload"), "signal")
        # nats-server's order: version, then help, then TLS help
        self.assertEqual(self.action("-h", "-v"), "version")
        self.assertEqual(self.action("--help_tls", "-h"), "help")
        self.assertEqual(self.action("-h=false"), "run")

    def test_signal_forms(self):
        for argv, want in ((["--signal", "reload"], ("reload", "")),
                           (["-sl", "stop=123"], ("stop", "123")),
                           (["-signal=ldm=/tmp/x.pid"], ("ldm", "/tmp/x.pid")),
                           (["--signal", "quit"], ("quit", "")),
                           (["--signal", "reopen"], ("reopen", "")),
                           (["--signal", "term=9"], ("term", "9"))):
            cmd = parse_command_line(argv)
            self.assertEqual((cmd.signal, cmd.signal_pid), want, argv)
        self.assertEqual(usage_error("--signal", "bogus"),
                         'unknown signal "bogus" (use one of: ldm, quit, reload, reopen, stop, term)')

    def test_signal_numbers(self):
        self.assertEqual(cli.SIGNALS, {"stop": signal.SIGKILL, "quit": signal.SIGINT,
                                       "term": signal.SIGTERM, "reopen": signal.SIGUSR1,
                                       "reload": signal.SIGHUP, "ldm": signal.SIGUSR2})

    def test_usage_mentions_every_seed_option(self):
        for opt in ("-a, --addr", "-p, --port", "-P, --pid", "-m, --http_port", "-ms,--https_port",
                    "-c, --config", "-l, --log", "-T, --logtime", "-s, --syslog",
                    "-r, --remote_syslog", "-D, --debug", "-V, --trace", "-DV", "--user",
                    "--pass", "--tls ", "--tlscert", "--tlskey", "--tlsverify", "--tlscacert",
                    "--routes", "--cluster ", "-h, --help", "-v, --version", "--help_tls",
                    "--auth", "--cluster_name", "-sl,--signal", "--ports_file_dir"):
            self.assertIn(opt, cli.USAGE)
        self.assertTrue(cli.USAGE.startswith("Usage: gnatsd [options]"))
        # every flag in the table is documented, every documented flag exists
        for name in cli.FLAGS:
            self.assertRegex(cli.USAGE, r"(?m)(-|--)%s\b" % name, name)

    def test_version_line(self):
        self.assertEqual(cli.version_line(), "gnatsd.py: v%s (release %s)" % (VERSION, RELEASE))
        self.assertRegex(cli.version_line(), r"^gnatsd\.py: v\d+\.\d+\.\d+ \(release \d+\.\d+\.\d+\)$")


class TestBuildOptions(unittest.TestCase):
    def setUp(self):
        self.d = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.d)

    def conf(self, text):
        p = os.path.join(self.d, "s.conf")
        with open(p, "w") as f:
            f.write(text)
        return p

    def test_defaults(self):
        o = build_options(parse_command_line([]))
        self.assertEqual((o.host, o.port, o.logtime, o.config_file), ("0.0.0.0", 4222, True, ""))

    def test_port_zero_and_random(self):
        self.assertEqual(build_options(parse_command_line(["-p", "0"])).port, 4222)
        self.assertEqual(build_options(parse_command_line(["-p", "-1"])).port, -1)
        self.assertEqual(build_options(parse_command_line(["--port", "-1"])).port, -1)

    def test_command_line_wins(self):
        p = self.conf("port: 5555\ndebug: true\nlogtime: false\nmax_payload: 777\n"
                      "authorization { user: a\n password: b }\nhttp: 8222\n")
        o = build_options(parse_command_line(["-c", p, "-p", "6666", "-D=false", "--user", "z",
                                              "-m", "9222"]))
        self.assertEqual((o.port, o.debug, o.username, o.http_port), (6666, False, "z", 9222))
        # what the command line did not give comes from the file
        self.assertEqual((o.logtime, o.max_payload, o.password), (False, 777, "b"))
        self.assertEqual(o.config_file, p)
        # flag order does not matter: -c last still loses to the flags
        o = build_options(parse_command_line(["-p", "6666", "-c", p]))
        self.assertEqual(o.port, 6666)

    def test_tlsverify_turns_tls_on(self):
        o = build_options(parse_command_line(["--tlsverify", "--tlscert", "c", "--tlskey", "k"]))
        self.assertTrue(o.tls and o.tls_verify)

    def test_cmdline_kept_for_reload(self):
        p = self.conf("max_payload: 100\n")
        cmd = parse_command_line(["-c", p, "-p", "-1"])
        o = build_options(cmd)
        self.assertIs(o.cmdline, cmd)
        self.assertEqual(o.copy().cmdline.config_file, p)
        with open(p, "w") as f:
            f.write("max_payload: 200\n")
        o2 = build_options(o.cmdline)
        self.assertEqual((o2.max_payload, o2.port), (200, -1))

    def test_config_errors(self):
        p = self.conf("port: 4222\nmax_paylod: 5\n")
        with self.assertRaises(ConfigError) as cm:
            build_options(parse_command_line(["-c", p]))
        self.assertEqual(str(cm.exception), '%s:2:1: unknown field "max_paylod"' % p)
        with self.assertRaises(ConfigError) as cm:
            build_options(parse_command_line(["-c", os.path.join(self.d, "nope.conf")]))
        self.assertIn("No such file or directory", str(cm.exception))


class TestMainOptions(unittest.TestCase):
    """cli.main_options in-process: what it prints and its exit codes."""

    def run_main(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        code = None
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                result = cli.main_options(list(argv))
            except SystemExit as e:
                code = e.code
                result = None
        return code, out.getvalue(), err.getvalue(), result

    def test_help_version_tls(self):
        code, out, err, _ = self.run_main("-h")
        self.assertEqual((code, out, err), (0, cli.USAGE, ""))
        code, out, err, _ = self.run_main("--version")
        self.assertEqual((code, out, err), (0, cli.version_line() + "\n", ""))
        code, out, err, _ = self.run_main("--help_tls")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("cert_file", out)

    def test_usage_error(self):
        code, out, err, _ = self.run_main("-x")
        self.assertEqual(code, 1)
        self.assertEqual(out, "")
        self.assertEqual(err, "flag provided but not defined: -x\n%s\n" % cli.USAGE_HINT)

    def test_config_error(self):
        d = tempfile.mkdtemp()
        p = os.path.join(d, "b.conf")
        with open(p, "w") as f:
            f.write("debug: [\n")
        code, out, err, _ = self.run_main("-c", p, "-D")
        shutil.rmtree(d)
        self.assertEqual(code, 1)
        self.assertEqual(err, "gnatsd.py: %s:2:1: unexpected end of file: array opened at "
                              "1:8 is not closed\n" % p)

    def test_check(self):
        p = os.path.join(ROOT, "configs", "seed.conf")
        code, out, err, _ = self.run_main("-t", "-c", p)
        self.assertEqual((code, out), (0, "gnatsd.py: configuration file %s is valid\n" % p))

    def test_run_returns_options(self):
        code, out, err, o = self.run_main("-p", "-1", "-DV")
        self.assertIsNone(code)
        self.assertEqual((o.port, o.debug, o.trace), (-1, True, True))
        self.assertIsInstance(o.cmdline, cli.CommandLine)


# A stand-in for a running server: records the signals it gets.
_SIGNAL_CATCHER = r"""
import signal, sys, time
out = sys.argv[1]
def record(sig, frame):
    with open(out, "a") as f:
        f.write("%d\n" % sig)
for s in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGTERM):
    signal.signal(s, record)
print("ready", flush=True)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    time.sleep(0.02)
"""


class TestRunSignal(unittest.TestCase):
    def setUp(self):
        self.d = tempfile.mkdtemp()
        self.out = os.path.join(self.d, "signals")
        self.proc = subprocess.Popen([sys.executable, "-c", _SIGNAL_CATCHER, self.out],
                                     stdout=subprocess.PIPE)
        self.assertEqual(self.proc.stdout.readline().strip(), b"ready")
        self.pid_file = os.path.join(self.d, "srv.pid")
        with open(self.pid_file, "w") as f:
            f.write("%d\n" % self.proc.pid)

    def tearDown(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        self.proc.stdout.close()
        shutil.rmtree(self.d)

    def received(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.out):
                with open(self.out) as f:
                    got = [int(x) for x in f.read().split()]
                if len(got) >= n:
                    return got
            time.sleep(0.02)
        return []

    def signal(self, *argv):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli.run_signal(parse_command_line(list(argv)))
        return code, err.getvalue()

    def test_by_pid_and_pid_file(self):
        steps = ((("--signal", "reload=%d" % self.proc.pid), signal.SIGHUP),
                 (("-sl", "reopen=" + self.pid_file), signal.SIGUSR1),
                 (("--signal", "ldm", "-P", self.pid_file), signal.SIGUSR2),
                 (("--signal=quit=%d" % self.proc.pid,), signal.SIGINT),
                 (("--signal", "term=%d" % self.proc.pid), signal.SIGTERM))
        want = []
        for argv, sig in steps:
            # one at a time: pending signals are not delivered in send order
            self.assertEqual(self.signal(*argv), (0, ""), argv)
            want.append(sig)
            self.assertEqual(self.received(len(want)), want, argv)

    def test_pid_file_from_config(self):
        conf = os.path.join(self.d, "s.conf")
        with open(conf, "w") as f:
            f.write('pid_file: "%s"\n' % self.pid_file)
        self.assertEqual(self.signal("--signal", "reload", "-c", conf), (0, ""))
        self.assertEqual(self.received(1), [signal.SIGHUP])

    def test_stop_kills(self):
        self.assertEqual(self.signal("--signal", "stop=%d" % self.proc.pid), (0, ""))
        self.assertEqual(self.proc.wait(5), -signal.SIGKILL)

    def test_errors(self):
        code, err = self.signal("--signal", "reload")
        self.assertEqual(code, 1)
        self.assertEqual(err, "gnatsd.py: no process to signal: give reload=PID, or a pid file "
                              "with -P or pid_file in the config\n")
        code, err = self.signal("--signal", "reload=/nonexistent/x.pid")
        self.assertEqual((code, err), (1, "gnatsd.py: invalid pid: /nonexistent/x.pid\n"))
        self.proc.kill()
        self.proc.wait(5)
        code, err = self.signal("--signal", "reload=%d" % self.proc.pid)
        self.assertEqual((code, err), (1, "gnatsd.py: no such process: %d\n" % self.proc.pid))


class TestEntryPoint(unittest.TestCase):
    """The same through `python3 gnatsd.py` as a user runs it."""

    def run_gnatsd(self, *argv):
        return subprocess.run([sys.executable, GNATSD] + list(argv), cwd=ROOT,
                              capture_output=True, timeout=20)

    def test_version(self):
        r = self.run_gnatsd("-v")
        self.assertEqual((r.returncode, r.stdout.decode()), (0, cli.version_line() + "\n"))

    def test_help(self):
        r = self.run_gnatsd("--help")
        self.assertEqual((r.returncode, r.stdout.decode()), (0, cli.USAGE))

    def test_unknown_flag(self):
        r = self.run_gnatsd("--bogus")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.decode().splitlines()[0], "flag provided but not defined: -bogus")
        self.assertNotIn("Traceback", r.stderr.decode())

    def test_config_error_exit(self):
        d = tempfile.mkdtemp()
        p = os.path.join(d, "bad.conf")
        with open(p, "w") as f:
            f.write("port: 4222\nmax_paylod: 5\n")
        r = self.run_gnatsd("-c", p, "-p", "-1", "-D")
        shutil.rmtree(d)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.decode(), 'gnatsd.py: %s:2:1: unknown field "max_paylod"\n' % p)


if __name__ == "__main__":
    unittest.main()
