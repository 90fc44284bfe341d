"""gnats.run(): the in-process server API, gnats.testing, the pytest plugin
and `python3 -m gnats`. Real servers in this process, real sockets, raw
protocol clients; the pytest example project (tests/embed_example, a user's
project using the fixtures with nats-py) runs in a pytest subprocess."""

import contextlib
import errno
import gc
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

import gnats
from gnats.embed import ServerError
from gnats.testing import NatsServerTestCase
from tests.util import GNATSD, ROOT, RawClient

EXAMPLE = os.path.join(ROOT, "tests", "embed_example")
EXAMPLE_TESTS = 9       # the test functions and methods in EXAMPLE


def info_of(client):
    assert client.info.startswith(b"INFO ")
    return json.loads(client.info[5:])


def first_info(port):
    c = RawClient(port, connect=None)
    try:
        return info_of(c)
    finally:
        c.close()


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def server_threads():
    return [t for t in threading.enumerate() if t.name.startswith("gnats-server")]


class RunStopTest(unittest.TestCase):
    def test_context_manager_serves_then_frees_the_port(self):
        with gnats.run() as srv:
            self.assertEqual(srv.client_url, "nats://127.0.0.1:%d" % srv.port)
            self.assertIsNone(srv.monitor_url)
            self.assertIsNone(srv.cluster_url)
            c = RawClient(srv.port)
            self.assertEqual(info_of(c)["port"], srv.port)
            self.assertEqual(c.ping(), b"")
            port = srv.port
        self.assertTrue(c.closed())         # the server closed its client
        c.close()
        self.assertTrue(refused(port))
        self.assertEqual(server_threads(), [])
        # the port is free at once: a new server takes it (its connection in
        # TIME_WAIT does not stand in the way of a listener)
        with gnats.run(port=port) as again:
            self.assertEqual(again.port, port)
            RawClient(port).close()

    def test_port_can_be_bound_right_after_stop(self):
        srv = gnats.run()
        port = srv.port
        srv.stop()
        s = socket.socket()         # no SO_REUSEADDR: the listener is really gone
        try:
            s.bind(("127.0.0.1", port))
        finally:
            s.close()

    def test_stop_is_idempotent_and_works_from_any_thread(self):
        srv = gnats.run(http_port=-1)
        mon_port = int(srv.monitor_url.rsplit(":", 1)[1])
        c = RawClient(srv.port)
        returned = []

        def stopper():
            srv.stop()
            # stop() only returns once the thread has ended and sockets closed
            returned.append((srv.running, refused(srv.port), refused(mon_port)))
        threads = [threading.Thread(target=stopper) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        self.assertEqual(returned, [(False, True, True)] * 3)
        srv.stop()
        self.assertTrue(c.closed())
        c.close()
        self.assertEqual(server_threads(), [])
        self.assertFalse([t for t in threading.enumerate() if t.name.startswith("monitor-")])

    @unittest.skipUnless(os.path.isdir("/proc/self/fd"), "needs /proc/self/fd")
    def test_stop_closes_every_descriptor(self):
        gc.collect()
        before = len(os.listdir("/proc/self/fd"))
        a = gnats.run(http_port=-1, cluster={"port": -1})
        b = gnats.run(cluster={"port": -1, "routes": [a.cluster_url]})
        self.assertTrue(wait_for(lambda: a.route_count() == 1 == b.route_count()))
        c = RawClient(a.port)
        c.ping()
        with urllib.request.urlopen(a.monitor_url + "/varz", timeout=5) as r:
            r.read()
        b.stop()
        a.stop()
        c.close()
        gc.collect()    # sockets are closed explicitly; this only rules out finalizers
        self.assertEqual(len(os.listdir("/proc/self/fd")), before)

    def test_monitor_url(self):
        with gnats.run(http_port=-1, ping_interval="2s") as srv:
            self.assertRegex(srv.monitor_url, r"^http://127\.0\.0\.1:\d+$")
            with urllib.request.urlopen(srv.monitor_url + "/varz", timeout=5) as r:
                varz = json.loads(r.read())
            self.assertEqual(varz["port"], srv.port)
            self.assertEqual(varz["ping_interval"], 2000000000)

    def test_a_failing_start_raises_and_leaves_nothing_behind(self):
        with gnats.run() as taken:
            before = threading.active_count()
            with self.assertRaises(OSError) as cm:
                gnats.run(port=taken.port)
            self.assertEqual(cm.exception.errno, errno.EADDRINUSE)
            self.assertEqual(threading.active_count(), before)
            self.assertEqual(len(server_threads()), 1)

    def test_an_error_inside_the_server_is_logged_and_raised_by_stop(self):
        srv = gnats.run()

        def bug():
            raise KeyError("simulated bug")
        with self.assertLogs("gnats", "ERROR") as logs:
            # a reactor callback that raises stands for a bug in the server
            srv._server.reactor.call_soon_threadsafe(bug)
            c = RawClient(srv.port)
            self.assertEqual(c.ping(), b"")     # the server keeps serving
            c.close()
            with self.assertRaises(ServerError) as cm:
                srv.stop()
        self.assertIsInstance(cm.exception.__cause__, KeyError)
        self.assertTrue(any("simulated bug" in line for line in logs.output))
        srv.stop()      # once raised, a second stop() is quiet
        self.assertTrue(refused(srv.port))


    def test_a_dead_loop_still_closes_every_socket(self):
        srv = gnats.run()
        c = RawClient(srv.port)
        c.ping()

        class Fatal(BaseException):     # not an Exception: the reactor lets it through
            pass

        def die():
            raise Fatal("loop killed")
        with self.assertLogs("gnats", "ERROR"):
            srv._server.reactor.call_soon_threadsafe(die)
            self.assertTrue(c.closed())
            with self.assertRaises(ServerError) as cm:
                srv.stop()
        self.assertIsInstance(cm.exception.__cause__, Fatal)
        c.close()
        self.assertTrue(refused(srv.port))
        self.assertEqual(server_threads(), [])


class OptionsTest(unittest.TestCase):
    def assert_refused(self, key, **options):
        before = threading.active_count()
        with self.assertRaises(ValueError) as cm:
            gnats.run(**options)
        self.assertIn(key, str(cm.exception))
        self.assertEqual(threading.active_count(), before)    # nothing started
        return str(cm.exception)

    def test_bad_options_raise_value_error_naming_the_key(self):
        self.assertEqual(self.assert_refused("bogus", bogus=1), 'bogus: unknown field "bogus"')
        self.assertEqual(self.assert_refused("cluster.bogus", cluster={"bogus": 1}),
                         'cluster.bogus: unknown field "bogus"')
        self.assertEqual(self.assert_refused("max_payload", max_payload="lots"),
                         'max_payload: expected an integer, got string "lots"')
        self.assert_refused("ping_interval", ping_interval="-2s")
        self.assert_refused("authorization.users[0]",
                            authorization={"users": [{"password": "x"}]})
        self.assert_refused("port", port=70000)
        self.assert_refused("server_name", server_name=None)

    def test_value_forms_of_the_config_file(self):
        with gnats.run(max_payload="64KB", max_pending="1MB", server_name="forms") as srv:
            info = first_info(srv.port)
        self.assertEqual((info["max_payload"], info["server_name"]), (65536, "forms"))

    def test_config_file_with_keywords_over_it(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "s.conf")
            with open(path, "w") as f:
                f.write('server_name: "from-file"\nmax_payload: 4096\n')
            with gnats.run(config=path, max_payload=8192) as srv:
                info = first_info(srv.port)
            self.assertEqual((info["server_name"], info["max_payload"]), ("from-file", 8192))
            with open(path, "w") as f:
                f.write("max_payload: [1\n")
            with self.assertRaises(ValueError) as cm:
                gnats.run(config=path)
            self.assertTrue(str(cm.exception).startswith(path + ":"), cm.exception)

    def test_authorization_option(self):
        with gnats.run(authorization={"user": "a", "password": "b"}) as srv:
            bad = RawClient(srv.port, connect=b'{"verbose":false,"user":"a","pass":"x"}')
            self.assertTrue(bad.read_line().startswith(b"-ERR 'Authorization Violation'"))
            bad.close()
            good = RawClient(srv.port, connect=b'{"verbose":false,"user":"a","pass":"b"}')
            self.assertEqual(good.ping(), b"")
            good.close()

    def test_reload(self):
        with gnats.run(max_payload=4096) as srv:
            srv.reload(max_payload=2048)
            self.assertEqual(first_info(srv.port)["max_payload"], 2048)
            with self.assertRaises(ValueError) as cm:
                srv.reload(max_payload="huge")
            self.assertIn("max_payload", str(cm.exception))
            # the running configuration stays, and later reloads build on it
            srv.reload(authorization={"token": "t0k"})
            info = first_info(srv.port)
            self.assertEqual((info["max_payload"], info["auth_required"]), (2048, True))
            bad = RawClient(srv.port)
            self.assertTrue(bad.read_line().startswith(b"-ERR 'Authorization Violation'"))
            bad.close()
        with self.assertRaises(RuntimeError):
            srv.reload(max_payload=1024)


class IsolationTest(unittest.TestCase):
    def test_logs_go_to_the_gnats_logger_not_stdout(self):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), self.assertLogs("gnats", "INFO") as logs:
            gnats.run().stop()
        self.assertEqual(out.getvalue(), "")
        self.assertIn("INFO:gnats:Server is ready", logs.output)

    def test_no_signal_handlers_no_gc_change(self):
        sigs = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2]
        before = [signal.getsignal(s) for s in sigs]
        # PyPy has no gc.get_threshold (nor set_threshold): nothing to change there
        get_threshold = getattr(gc, "get_threshold", lambda: None)
        threshold = get_threshold()
        with gnats.run():
            self.assertEqual([signal.getsignal(s) for s in sigs], before)
            self.assertEqual(get_threshold(), threshold)

    def test_two_servers_form_a_cluster_and_exchange_messages(self):
        a = gnats.run(cluster={"name": "embed", "port": -1})
        b = gnats.run(cluster={"name": "embed", "port": -1, "routes": [a.cluster_url]})
        try:
            self.assertNotEqual(a.port, b.port)
            self.assertTrue(wait_for(lambda: a.route_count() == 1 and b.route_count() == 1))
            sub = RawClient(a.port)
            sub.send(b"SUB greet 1\r\n")
            sub.ping()
            pub = RawClient(b.port)
            # interest crosses the route asynchronously: probe until it has
            self.assertTrue(wait_for(lambda: b"MSG" in _probe(pub, sub)))
            for i in range(50):
                pub.send(b"PUB greet 2\r\n%02d\r\n" % i)
            pub.ping()
            got = [sub.read_msg()[2] for _ in range(50)]
            self.assertEqual(got, [b"%02d" % i for i in range(50)])
            self.assertEqual(sub.ping(), b"")    # exactly 50
            # stopping one leaves the other serving
            b.stop()
            self.assertEqual(sub.ping(), b"")
            sub.close()
            pub.close()
        finally:
            b.stop()
            a.stop()
        self.assertEqual(server_threads(), [])


def _probe(pub, sub):
    pub.send(b"PUB greet 0\r\n\r\n")
    pub.ping()
    try:
        return sub.ping(timeout=0.2)
    except TimeoutError:
        return b""


class EchoCase(NatsServerTestCase):
    nats_options = {"max_payload": 4096}

    def test_a_server_per_class(self):
        self.assertEqual(self.nats_url, self.nats_server.client_url)
        c = RawClient(self.nats_server.port)
        self.assertEqual(info_of(c)["max_payload"], 4096)
        c.send(b"SUB x 1\r\nPUB x 2\r\nhi\r\n")
        self.assertEqual(c.read_msg(), (b"MSG", [b"x", b"1", b"2"], b"hi"))
        c.close()


class NatsServerTestCaseLifecycle(unittest.TestCase):
    def test_stopped_after_the_class(self):
        class Inner(NatsServerTestCase):
            def test_ok(self):
                RawClient(self.nats_server.port).close()
        result = unittest.TestResult()
        unittest.defaultTestLoader.loadTestsFromTestCase(Inner).run(result)
        self.assertEqual((result.testsRun, result.errors, result.failures), (1, [], []))
        self.assertFalse(Inner.nats_server.running)
        self.assertTrue(refused(Inner.nats_server.port))


class CommandLineTest(unittest.TestCase):
    def run_both(self, *args):
        env = dict(os.environ, PYTHONPATH=ROOT)
        a = subprocess.run([sys.executable, "-m", "gnats"] + list(args), cwd=ROOT, env=env,
                           capture_output=True, timeout=60)
        b = subprocess.run([sys.executable, GNATSD] + list(args), cwd=ROOT, env=env,
                           capture_output=True, timeout=60)
        return a, b

    def test_python_m_gnats_is_gnatsd_py(self):
        for args in (["-v"], ["-h"], ["--bogus"]):
            a, b = self.run_both(*args)
            self.assertEqual((a.returncode, a.stdout, a.stderr),
                             (b.returncode, b.stdout, b.stderr), args)
        a, _ = self.run_both("-v")
        self.assertRegex(a.stdout, rb"^gnatsd\.py: v")


class PluginTest(unittest.TestCase):
    def test_loading_the_plugin_costs_nothing(self):
        # what pytest does with an installed plugin it was not asked to use
        code = ("import sys, threading, gnats.pytest_plugin\n"
                "print(sorted(m for m in sys.modules if m.startswith('gnats')))\n"
                "print(threading.active_count())\n")
        try:
            import pytest  # noqa: F401
        except ImportError:
            self.skipTest("pytest is not installed")
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                             timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
        self.assertEqual(out.stdout.decode().split("\n")[:2],
                         ["['gnats', 'gnats.pytest_plugin']", "1"], out.stderr)

    def test_example_project_passes_under_pytest(self):
        try:
            import nats  # noqa: F401
            import pytest  # noqa: F401
        except ImportError as e:
            self.skipTest("needs pytest and nats-py: %s" % e)
        # The plugin named explicitly and entry-point autoload off: the run
        # uses this checkout whatever else the environment has installed.
        env = dict(os.environ, PYTHONPATH=ROOT, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
        out = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "-p", "gnats.pytest_plugin", EXAMPLE],
            cwd=EXAMPLE, env=env, capture_output=True, timeout=300)
        text = out.stdout.decode(errors="replace")
        self.assertEqual(out.returncode, 0, text[-3000:] + out.stderr.decode(errors="replace"))
        self.assertRegex(text, r"(?m)^%d passed in " % EXAMPLE_TESTS)

    def test_unittest_discovery_skips_the_example_project(self):
        names = []

        def walk(suite):
            for t in suite:
                if isinstance(t, unittest.TestSuite):
                    walk(t)
                else:
                    names.append(t.id())
        walk(unittest.defaultTestLoader.discover(os.path.join(ROOT, "tests"),
                                                 top_level_dir=ROOT))
        self.assertTrue(any(n.startswith("tests.test_embed.") for n in names))
        self.assertFalse([n for n in names if "embed_example" in n or "Failed" in n])


if __name__ == "__main__":
    unittest.main()
