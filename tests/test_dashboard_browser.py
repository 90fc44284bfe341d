"""The dashboard in a real headless Chromium, driven through chromedriver's
W3C WebDriver HTTP API with the standard library only (no selenium).

A Monitor serves a fake snapshot whose counters grow with time; the test
loads /, waits (bounded) until every rate chart shows traffic, checks the
connection table and the phone layout, and saves screenshots to
tests/artifacts/ (a directory git ignores).
"""

import base64
import json
import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from gnats.log import Logger
from gnats.monitor import Monitor
from gnats.options import Options
from tests.util import free_port, needs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(ROOT, "tests", "artifacts")
WAIT = 25.0

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                  "--window-size=1280,1000"]
RATE_CHARTS = ("in_msgs_rate", "out_msgs_rate", "in_bytes_rate", "out_bytes_rate")
LEVEL_CHARTS = ("connections", "subscriptions", "slow_consumers", "routes")


def _find(*names):
    for n in names:
        p = shutil.which(n) or (n if os.path.isabs(n) and os.access(n, os.X_OK) else None)
        if p:
            return p
    return None


CHROMEDRIVER = _find("chromedriver", "/usr/lib/chromium/chromedriver")
# The real binary rather than Debian's wrapper script, when present.
CHROMIUM = _find("/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome")


def _wave(t):
    """Messages published by time t at a rate of 500 * (1 + 0.5 sin(t / 2))
    per second: between 250 and 750 msgs/s, so the charts have a shape."""
    return 500.0 * (t - math.cos(t / 2.0) + 1.0)


class GrowingServer:
    """Snapshots of a server under load: 250..750 msgs/s in, twice that out,
    128 bytes a message."""

    def __init__(self, conns=12):
        self.t0 = time.time()
        self.conns = conns

    def get_snapshot(self, fresh=True, conns=True):
        now = time.time()
        sent = _wave(now - self.t0)
        conns = []
        for i in range(self.conns):
            conns.append(dict(
                cid=i + 1, ip="127.0.0.1", port=50000 + i, start=self.t0 - 3600 + i,
                last_activity=now - i, rtt=0.0002 * (i + 1), pending_bytes=0,
                in_msgs=int(sent / self.conns), out_msgs=int(2 * sent / self.conns),
                in_bytes=int(128 * sent / self.conns), out_bytes=int(256 * sent / self.conns),
                subscriptions=i % 4, subs=["orders.%d" % j for j in range(i % 4)],
                name="svc-%d" % (i + 1), lang="python3" if i % 2 else "go", version="2.9.0",
                tls_version="", tls_cipher_suite="", user=""))
        return {
            "now": now, "start": self.t0 - 3600, "config_load_time": self.t0 - 3600,
            "server": {"server_id": "NDASHBOARDTEST", "server_name": "dashboard-demo",
                       "version": "2.9.0", "proto": 1, "go": "python3.11", "host": "127.0.0.1",
                       "port": 4222, "max_connections": 65536, "ping_interval": 120.0,
                       "ping_max": 2, "max_payload": 1048576, "max_pending": 67108864,
                       "cluster": {"port": 0}},
            "stats": {"connections": self.conns, "total_connections": self.conns + 3, "routes": 0,
                      "remotes": 0, "in_msgs": int(sent), "out_msgs": int(2 * sent),
                      "in_bytes": int(128 * sent), "out_bytes": int(256 * sent),
                      "slow_consumers": 0, "subscriptions": sum(i % 4 for i in range(self.conns))},
            "sublist": {"num_subscriptions": 18},
            "connections": conns,
            "routes": [],
        }


class WebDriver:
    """Just enough of the W3C WebDriver protocol over urllib."""

    def __init__(self, port):
        self.base = "http://127.0.0.1:%d" % port
        self.session = None

    def call(self, method, path, body=None, timeout=30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read() or b"{}").get("value")
        except urllib.error.HTTPError as e:
            raise AssertionError("webdriver %s %s: %s" % (method, path, e.read()[:500]))

    def ready(self):
        try:
            return bool(self.call("GET", "/status", timeout=2).get("ready"))
        except (OSError, AssertionError, ValueError):
            return False

    def start(self, binary, args):
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": binary, "args": args}}}}
        self.session = self.call("POST", "/session", caps, timeout=60)["sessionId"]

    def s(self, path):
        return "/session/%s%s" % (self.session, path)

    def get(self, url):
        self.call("POST", self.s("/url"), {"url": url})

    def js(self, script, *args):
        return self.call("POST", self.s("/execute/sync"), {"script": script, "args": list(args)})

    def set_size(self, width, height):
        self.call("POST", self.s("/window/rect"), {"width": width, "height": height})

    def screenshot(self, path):
        png = base64.b64decode(self.call("GET", self.s("/screenshot")))
        with open(path, "wb") as f:
            f.write(png)
        return png

    def quit(self):
        if self.session:
            try:
                self.call("DELETE", "/session/%s" % self.session, timeout=15)
            except (OSError, AssertionError):
                pass
            self.session = None


def ensure_artifacts_dir():
    os.makedirs(ARTIFACTS, exist_ok=True)
    ignore = os.path.join(ARTIFACTS, ".gitignore")
    if not os.path.exists(ignore):
        with open(ignore, "w") as f:
            f.write("# test output, never committed\n*\n")


READ_STATE = """
var out = {status: document.getElementById('status').textContent, charts: {}};
document.querySelectorAll('[data-metric]').forEach(function (e) {
  out.charts[e.getAttribute('data-metric')] = parseFloat(e.getAttribute('data-last'));
});
out.rows = document.querySelectorAll('#conns-body tr[data-cid]').length;
out.firstRow = out.rows ? document.querySelector('#conns-body tr[data-cid]').textContent : '';
out.points = document.querySelector('[data-metric=in_msgs_rate] polyline').getAttribute('points');
out.scrollWidth = document.documentElement.scrollWidth;
out.innerWidth = window.innerWidth;
return out;
"""


# Absent binaries are a skip on a developer's machine and a failure in CI
# (GNATSD_REQUIRE_DEPS); binaries that are present but do not start are
# always a failure.
@needs(CHROMEDRIVER and CHROMIUM,
       "chromium and its driver are not installed (apt-get install chromium chromium-driver)")
class TestDashboardInChromium(unittest.TestCase):
    def setUp(self):
        self.fake = GrowingServer()
        self.monitor = Monitor(Options(host="127.0.0.1", http_port=-1), self.fake.get_snapshot,
                               Logger(stream=open(os.devnull, "w")))
        self.monitor.start()
        self.profile = tempfile.mkdtemp(prefix="gnatsd-chromium-")
        self.driver_log = open(os.path.join(self.profile, "chromedriver.log"), "wb")
        port = free_port()
        # Own session: if the browser outlives chromedriver we can still end
        # exactly the processes this test started.
        self.driver_proc = subprocess.Popen(
            [CHROMEDRIVER, "--port=%d" % port], stdout=self.driver_log,
            stderr=subprocess.STDOUT, start_new_session=True)
        self.wd = WebDriver(port)
        deadline = time.monotonic() + 15
        while not self.wd.ready():
            if time.monotonic() > deadline or self.driver_proc.poll() is not None:
                self._stop_driver()
                self.fail("chromedriver did not start: %s" % self._driver_output())
            time.sleep(0.1)
        args = CHROMIUM_FLAGS + ["--user-data-dir=" + os.path.join(self.profile, "profile")]
        try:
            self.wd.start(CHROMIUM, args)
        except (OSError, AssertionError) as e:
            self._stop_driver()
            self.fail("chromium would not start under chromedriver: %s\n%s" % (e, self._driver_output()))

    def _driver_output(self):
        try:
            with open(os.path.join(self.profile, "chromedriver.log"), "rb") as f:
                return f.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def tearDown(self):
        self.wd.quit()
        self._stop_driver()
        self.monitor.stop()
        shutil.rmtree(self.profile, ignore_errors=True)

    def _stop_driver(self):
        p = self.driver_proc
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        try:
            os.killpg(p.pid, signal.SIGKILL)     # a leftover browser in its group
        except OSError:
            pass
        self.driver_log.close()

    def wait_state(self, ok, what):
        deadline = time.monotonic() + WAIT
        state = None
        while time.monotonic() < deadline:
            state = self.wd.js(READ_STATE)
            if ok(state):
                return state
            time.sleep(0.25)
        self.fail("dashboard never showed %s; last state: %s" % (what, state))

    def test_dashboard_shows_live_traffic(self):
        ensure_artifacts_dir()
        self.wd.get("http://127.0.0.1:%d/" % self.monitor.http_port)
        self.assertEqual(self.wd.js("return document.title"), "gnatsd.py monitor")
        links = self.wd.js("return Array.from(document.querySelectorAll('nav a'))"
                           ".map(function (a) { return a.getAttribute('href'); })")
        self.assertEqual(links, ["./varz", "./connz", "./routez", "./subsz", "./healthz", "./metrics"])

        state = self.wait_state(
            lambda s: s["status"] == "live" and all(s["charts"].get(m, 0) > 0 for m in RATE_CHARTS)
            and s["rows"] == self.fake.conns and len(s["points"].split()) >= 3,
            "non-zero rates")
        self.assertEqual(set(state["charts"]), set(RATE_CHARTS + LEVEL_CHARTS))
        # 250..750 msgs/s in, twice that out, 128 bytes each. The magnitude
        # depends on when the page polled (a loaded machine stretches it), so
        # it is bounded loosely; the ratios come from the same two samples
        # and must hold closely.
        rates = state["charts"]
        self.assertTrue(50 <= rates["in_msgs_rate"] <= 5000, rates)
        self.assertAlmostEqual(rates["out_msgs_rate"] / rates["in_msgs_rate"], 2.0, delta=0.1, msg=rates)
        self.assertAlmostEqual(rates["in_bytes_rate"] / rates["in_msgs_rate"], 128.0, delta=6, msg=rates)
        self.assertEqual(state["charts"]["connections"], self.fake.conns)
        self.assertEqual(state["charts"]["subscriptions"], 18)
        self.assertEqual(state["charts"]["routes"], 0)
        self.assertIn("svc-1", state["firstRow"])
        self.assertLessEqual(state["scrollWidth"], state["innerWidth"])
        png = self.wd.screenshot(os.path.join(ARTIFACTS, "dashboard.png"))
        self.assertTrue(png.startswith(b"\x89PNG"))

        # sorting by clicking a header asks /connz for that order
        self.wd.js("Array.from(document.querySelectorAll('#conns-head th'))"
                   ".filter(function (t) { return t.textContent === 'idle'; })[0].click()")
        self.wait_state(lambda s: "svc-12" in s["firstRow"], "the idle sort")

        # phone width: no horizontal page scroll, charts still there
        self.wd.set_size(390, 844)
        state = self.wait_state(lambda s: s["innerWidth"] <= 420, "the phone width")
        self.assertLessEqual(state["scrollWidth"], state["innerWidth"])
        self.wd.screenshot(os.path.join(ARTIFACTS, "dashboard-phone.png"))

    def test_dashboard_says_when_the_server_is_gone(self):
        self.wd.get("http://127.0.0.1:%d/" % self.monitor.http_port)
        self.wait_state(lambda s: s["status"] == "live", "live status")
        self.monitor.stop()
        self.wait_state(lambda s: s["status"] == "disconnected", "the disconnected status")


if __name__ == "__main__":
    unittest.main()
