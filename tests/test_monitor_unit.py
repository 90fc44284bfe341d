"""The monitor over real HTTP(S) on 127.0.0.1 with a handmade snapshot.

The formatting helpers are checked directly; every endpoint is checked over
a real socket: field names (nats-server 2.9 plus the seed README's), value
formats, paging and sorting, subs, JSONP, bad input, HTTPS, /metrics, and
that slow or numerous clients cannot starve the others.
"""

import http.client
import io
import json
import os
import re
import socket
import ssl
import threading
import time
import unittest

from gnats import endpoints as E
from gnats import monitor as M
from gnats.log import Logger
from gnats.options import Options
from gnats.sublist import subject_matches
from tests.util import dependency_missing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CERTS = os.path.join(ROOT, "configs", "certs")
TIMEOUT = 5.0

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")
GO_DURATION = re.compile(r"^(\d+h)?(\d+m)?\d+(\.\d+)?(ns|µs|ms|s)$")
UPTIME = re.compile(r"^(\d+y)?(\d+d)?(\d+h)?(\d+m)?\d+s$")

# The seed README's /varz sample, every field.
SEED_VARZ = ("server_id version go host auth_required ssl_required tls_required tls_verify "
             "max_connections ping_interval ping_max http_port https_port max_control_line "
             "max_pending_size cluster_port tls_timeout port max_payload start now uptime mem "
             "cores cpu connections total_connections routes remotes in_msgs out_msgs in_bytes "
             "out_bytes slow_consumers http_req_stats").split()
# nats-server 2.9.10's /varz (no cluster, no system account), every field.
GO29_VARZ = ("server_id server_name version proto go host port max_connections ping_interval "
             "ping_max http_host http_port http_base_path https_port auth_timeout "
             "max_control_line max_payload max_pending cluster gateway leaf mqtt websocket "
             "jetstream tls_timeout write_deadline start now uptime mem cores gomaxprocs cpu "
             "connections total_connections routes remotes leafnodes in_msgs out_msgs in_bytes "
             "out_bytes slow_consumers subscriptions http_req_stats config_load_time").split()
CONN_FIELDS = ("cid kind type ip port start last_activity rtt uptime idle pending_bytes in_msgs "
               "out_msgs in_bytes out_bytes subscriptions").split()
ROUTE_FIELDS = ("rid remote_id did_solicit is_configured ip port start last_activity rtt uptime "
                "idle pending_size in_msgs out_msgs in_bytes out_bytes subscriptions").split()
SUBSZ_FIELDS = ("num_subscriptions num_cache num_inserts num_removes num_matches cache_hit_rate "
                "max_fanout avg_fanout").split()


class FakeServer:
    """Hands out snapshots like the reactor would; counters grow by
    `step` per call so rates are non-zero."""

    def __init__(self):
        self.calls = 0
        self.fail = False
        self.start = time.time() - (86400 + 2 * 3600 + 3 * 60 + 4) - 0.25
        self.lock = threading.Lock()
        self.extra_conns = []
        self.closed = []
        self.routes = []

    def get_snapshot(self, fresh=True, conns=True):
        with self.lock:
            self.calls += 1
            k = self.calls
        if self.fail:
            raise RuntimeError("reactor is busy")
        now = time.time()
        st = self.start
        conns = [
            # a publisher: in only; oldest; idle 30 s
            dict(cid=1, ip="127.0.0.1", port=50001, start=st + 10, last_activity=now - 30,
                 rtt=0.000547891, pending_bytes=0, in_msgs=1000 * k, out_msgs=0,
                 in_bytes=100000 * k, out_bytes=0, subscriptions=0, subs=[], name="pub",
                 lang="python3", version="2.9.0", tls_version="", tls_cipher_suite="", user=""),
            # a subscriber over TLS, authenticated
            dict(cid=2, ip="127.0.0.1", port=50002, start=st + 20, last_activity=now - 5,
                 rtt=0.0123, pending_bytes=77, in_msgs=3, out_msgs=2000 * k, in_bytes=30,
                 out_bytes=200000 * k, subscriptions=3, subs=["foo", "bar.>", "baz.*"],
                 name="sub", lang="go", version="1.1.9", tls_version="TLSv1.3",
                 tls_cipher_suite="TLS_AES_256_GCM_SHA384", user="alice"),
            # an anonymous telnet: no name/lang/version; newest; busiest subs
            dict(cid=5, ip="::1", port=50005, start=st + 30, last_activity=now - 100,
                 rtt=0, pending_bytes=5, in_msgs=7, out_msgs=9, in_bytes=70, out_bytes=90,
                 subscriptions=4, subs=["a", "b", "c", "d"], name="", lang="", version="",
                 tls_version="", tls_cipher_suite="", user=""),
        ] + list(self.extra_conns)
        return {
            "now": now, "start": st, "config_load_time": st + 1,
            "server": {
                "server_id": "NTESTSERVERID", "server_name": "test-server", "version": "2.9.0",
                "proto": 1, "go": "python3.11.2", "host": "0.0.0.0", "port": 4222,
                "auth_required": True, "tls_required": False, "tls_verify": False,
                "max_connections": 65536, "ping_interval": 120.0, "ping_max": 2,
                "http_host": "127.0.0.1", "http_port": 8222, "https_port": 0, "auth_timeout": 2.0,
                "max_control_line": 4096, "max_payload": 1048576, "max_pending": 67108864,
                "tls_timeout": 0.5, "write_deadline": 2.0, "max_subscriptions": 0,
                "cluster": {"name": "", "host": "", "port": 0, "urls": []},
            },
            "stats": {"connections": len(conns), "total_connections": 9, "routes": len(self.routes),
                      "remotes": len(self.routes), "in_msgs": 1000 * k, "out_msgs": 2000 * k,
                      "in_bytes": 100000 * k, "out_bytes": 200000 * k, "slow_consumers": 1,
                      "subscriptions": 7},
            "sublist": {"num_subscriptions": 7, "num_cache": 1, "num_inserts": 3539,
                        "num_removes": 3532, "num_matches": 103,
                        "cache_hit_rate": 0.6504854368932039, "max_fanout": 1, "avg_fanout": 1.0},
            "connections": conns,
            "closed_connections": list(self.closed),
            "routes": list(self.routes),
        }


def http_get(port, path, method="GET", https_ctx=None, headers=None):
    if https_ctx is not None:
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=TIMEOUT, context=https_ctx)
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, r, r.read()
    finally:
        c.close()


def get_json(port, path):
    status, r, body = http_get(port, path)
    if status != 200:
        raise AssertionError("%s -> %d %r" % (path, status, body[:200]))
    assert r.getheader("Content-Type") == "application/json", r.getheader("Content-Type")
    return json.loads(body)


def test_logger():
    return Logger(stream=io.StringIO())


class MonitorCase(unittest.TestCase):
    """A Monitor on a free port (http_port -1) in front of a FakeServer."""

    https = False

    def setUp(self):
        self.fake = FakeServer()
        self.logbuf = io.StringIO()
        opts = Options(host="127.0.0.1", http_port=-1)
        self.monitor = M.Monitor(opts, self.fake.get_snapshot, Logger(stream=self.logbuf))
        self.monitor.start()
        self.port = self.monitor.http_port

    def tearDown(self):
        self.monitor.stop()


# ---------------------------------------------------------------------------
# pure helpers

class TestFormatting(unittest.TestCase):
    def test_go_duration(self):
        cases = [(0, "0s"), (1, "1ns"), (999, "999ns"), (1500, "1.5µs"), (547000, "547µs"),
                 (1234000, "1.234ms"), (124133071, "124.133071ms"), (1000000000, "1s"),
                 (1500000000, "1.5s"), (120 * 10**9, "2m0s"), (3600 * 10**9, "1h0m0s"),
                 (3723 * 10**9 + 5 * 10**8, "1h2m3.5s"), (-1500, "-1.5µs")]
        for ns, want in cases:
            self.assertEqual(E.go_duration_ns(ns), want, ns)

    def test_go_rtt_truncates_below_a_millisecond(self):
        self.assertEqual(E.go_rtt(0.000547891), "547µs")
        self.assertEqual(E.go_rtt(0.0123), "12.3ms")
        self.assertEqual(E.go_rtt(0), "0s")
        self.assertEqual(E.go_rtt(None), "0s")

    def test_go_uptime(self):
        cases = [(0, "0s"), (4.9, "4s"), (64, "1m4s"), (18 * 3600 + 30 * 60 + 12, "18h30m12s"),
                 (86400 + 2 * 3600 + 3 * 60 + 4, "1d2h3m4s"), (86400, "1d0h0m0s"),
                 (366 * 86400 + 5, "1y1d0h0m5s"), (-3, "0s")]
        for secs, want in cases:
            self.assertEqual(E.go_uptime(secs), want, secs)

    def test_go_time(self):
        ts = 1461702034.684376
        s = E.go_time(ts)
        self.assertRegex(s, RFC3339)
        self.assertTrue(s.split("T")[1].split(".")[1].startswith("684376"), s)
        # the offset is the local one; parse back to the same instant
        from datetime import datetime
        back = datetime.fromisoformat(s.replace("Z", "+00:00"))
        self.assertAlmostEqual(back.timestamp(), ts, places=5)
        whole = E.go_time(1461702034.0)
        self.assertNotIn(".", whole)       # Go omits a zero fraction
        self.assertRegex(E.go_time(1461702034.5), r"\.5(Z|[+-])")   # trailing zeros trimmed
        self.assertEqual(E.go_time(0), "0001-01-01T00:00:00Z")

    def test_go_time_utc_is_z(self):
        old = os.environ.get("TZ")
        os.environ["TZ"] = "UTC"
        try:
            time.tzset()
            self.assertTrue(E.go_time(1461702034.25).endswith(".25Z"))
            os.environ["TZ"] = "EST+5"
            time.tzset()
            self.assertTrue(E.go_time(1461702034.25).endswith(".25-05:00"), E.go_time(1461702034.25))
        finally:
            if old is None:
                del os.environ["TZ"]
            else:
                os.environ["TZ"] = old
            time.tzset()

    def test_to_json_like_go(self):
        out = M.to_json({"a": 2.0, "b": 0.75, "c": 0.0, "s": "foo.>&<", "l": [], "d": {}})
        self.assertEqual(out.decode(), '{\n  "a": 2,\n  "b": 0.75,\n  "c": 0,\n'
                         '  "s": "foo.\\u003e\\u0026\\u003c",\n  "l": [],\n  "d": {}\n}')
        self.assertEqual(M.to_json({"status": "ok"}, indent=False), b'{"status":"ok"}')
        self.assertEqual(json.loads(M.to_json({"rtt": "547µs"})), {"rtt": "547µs"})

    def test_query_values(self):
        self.assertEqual(E.query_int({}, "limit", 1024), 1024)
        self.assertEqual(E.query_int({"limit": ""}, "limit", 1024), 1024)
        self.assertEqual(E.query_int({"limit": "7"}, "limit", 1024), 7)
        for bad in ("abc", "-1", "1.5", " 1", "+1", "9" * 40, "١"):
            with self.assertRaises(M.QueryError, msg=bad):
                E.query_int({"limit": bad}, "limit", 1024)
        for v in ("1", "t", "true", "True", "TRUE"):
            self.assertIs(E.query_bool({"subs": v}, "subs"), True)
        for v in ("", "0", "f", "false"):
            self.assertIs(E.query_bool({"subs": v}, "subs"), False)
        self.assertEqual(E.query_bool({"subs": "detail"}, "subs", allow_detail=True), "detail")
        with self.assertRaises(M.QueryError):
            E.query_bool({"subs": "detail"}, "subs")
        with self.assertRaises(M.QueryError):
            E.query_bool({"subs": "yes"}, "subs")

    def test_callback_names(self):
        for ok in ("cb", "app.cb_1", "$", "jQuery123_456", "a.b.c"):
            self.assertEqual(M.jsonp_callback({"callback": ok}), ok)
        self.assertEqual(M.jsonp_callback({}), "")
        for bad in ("1bad", "a(b)", "a.", ".a", "a..b", "a b", "alert(1)//", "a;b", "<x>",
                    "é", "a" * 200):
            with self.assertRaises(M.QueryError, msg=bad):
                M.jsonp_callback({"callback": bad})

    def test_subject_matches(self):
        m = subject_matches
        self.assertTrue(m("foo", "foo"))
        self.assertFalse(m("foo", "foo.bar"))
        self.assertTrue(m("foo.*", "foo.bar"))
        self.assertFalse(m("foo.*", "foo.bar.baz"))
        self.assertTrue(m("foo.>", "foo.bar.baz"))
        self.assertFalse(m("foo.>", "foo"))
        self.assertTrue(m("*.bar", "foo.bar"))
        self.assertTrue(m(">", "x"))

    def test_builders_tolerate_sparse_snapshots(self):
        # A snapshot missing optional parts still formats (no KeyError).
        snap = {"now": time.time(), "start": time.time() - 5}
        v = E.build_varz(snap, {}, M.ProcStats())
        self.assertEqual(v["connections"], 0)
        self.assertEqual(M.build_connz(snap, {})["connections"], [])
        self.assertEqual(M.build_routez(snap, {})["routes"], [])
        self.assertEqual(M.build_subsz(snap, {})["num_subscriptions"], 0)

    def test_cluster_varz(self):
        snap = FakeServer().get_snapshot()
        snap["server"]["cluster"] = {"name": "c1", "host": "127.0.0.1", "port": 6222,
                                     "urls": ["nats://127.0.0.1:6223", "nats-route://u:p@h2:6224"]}
        v = E.build_varz(snap, {}, M.ProcStats())
        self.assertEqual(v["cluster_port"], 6222)
        self.assertEqual(v["cluster"]["cluster_port"], 6222)
        self.assertEqual(v["cluster"]["name"], "c1")
        self.assertEqual(v["cluster"]["addr"], "127.0.0.1")
        self.assertEqual(v["cluster"]["urls"], ["127.0.0.1:6223", "h2:6224"])   # no credentials


# ---------------------------------------------------------------------------
# over HTTP

class TestEndpoints(MonitorCase):
    def test_start_log_line_and_port(self):
        self.assertGreater(self.port, 0)
        self.assertEqual(self.monitor.https_port, 0)
        self.assertIn("[INF] Starting http monitor on 127.0.0.1:%d" % self.port, self.logbuf.getvalue())

    def test_varz_fields(self):
        v = get_json(self.port, "/varz")
        for name in SEED_VARZ + GO29_VARZ:
            self.assertIn(name, v, name)
        self.assertEqual(v["server_id"], "NTESTSERVERID")
        self.assertEqual(v["server_name"], "test-server")
        self.assertEqual(v["proto"], 1)
        self.assertEqual(v["go"], "python3.11.2")
        self.assertEqual(v["ping_interval"], 120000000000)      # nanoseconds
        self.assertEqual(v["write_deadline"], 2000000000)
        self.assertIs(type(v["auth_timeout"]), int)              # Go prints 2, not 2.0
        self.assertEqual(v["tls_timeout"], 0.5)
        self.assertIs(v["auth_required"], True)
        self.assertIs(v["ssl_required"], False)
        self.assertEqual(v["max_pending_size"], 67108864)
        self.assertEqual(v["max_pending"], 67108864)
        self.assertEqual(v["cluster_port"], 0)
        self.assertEqual(v["cluster"], {})
        self.assertRegex(v["start"], RFC3339)
        self.assertRegex(v["now"], RFC3339)
        self.assertRegex(v["config_load_time"], RFC3339)
        self.assertEqual(v["uptime"], "1d2h3m4s")
        self.assertGreater(v["mem"], 1000000)
        self.assertEqual(v["cores"], os.cpu_count())
        self.assertGreaterEqual(v["gomaxprocs"], 1)
        self.assertIsInstance(v["cpu"], (int, float))
        self.assertEqual(v["connections"], 3)
        self.assertEqual(v["in_msgs"], 1000 * self.fake.calls)
        self.assertEqual(v["slow_consumers"], 1)
        self.assertEqual(v["subscriptions"], 7)
        self.assertEqual(v["leafnodes"], 0)
        self.assertEqual(v["http_req_stats"], {"/varz": 1})

    def test_http_req_stats_counts_each_endpoint(self):
        for path in ("/", "/", "/connz", "/connz?limit=abc", "/routez", "/subsz",
                     "/subscriptionsz", "/healthz", "/metrics", "/nope", "/varz/"):
            http_get(self.port, path)
        v = get_json(self.port, "/varz")
        self.assertEqual(v["http_req_stats"], {"/": 2, "/connz": 2, "/routez": 1, "/subsz": 2,
                                               "/healthz": 1, "/metrics": 1, "/varz": 1})
        self.assertEqual(list(v["http_req_stats"]), sorted(v["http_req_stats"]))

    def test_cpu_is_measured(self):
        get_json(self.port, "/varz")
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:     # burn CPU in this process
            sum(range(10000))
        v = get_json(self.port, "/varz")
        self.assertGreater(v["cpu"], 10)
        self.assertLess(v["cpu"], 100.0 * os.cpu_count() + 1)

    def test_connz_defaults(self):
        c = get_json(self.port, "/connz")
        self.assertEqual(list(c), ["server_id", "now", "num_connections", "total", "offset",
                                   "limit", "connections"])
        self.assertEqual((c["num_connections"], c["total"], c["offset"], c["limit"]), (3, 3, 0, 1024))
        self.assertEqual([x["cid"] for x in c["connections"]], [1, 2, 5])
        pub, sub, anon = c["connections"]
        for ci in c["connections"]:
            for name in CONN_FIELDS:
                self.assertIn(name, ci, name)
            self.assertNotIn("subscriptions_list", ci)
            self.assertNotIn("authorized_user", ci)
            self.assertRegex(ci["start"], RFC3339)
            self.assertRegex(ci["last_activity"], RFC3339)
            self.assertRegex(ci["rtt"], GO_DURATION)
            self.assertRegex(ci["uptime"], UPTIME)
            self.assertRegex(ci["idle"], UPTIME)
            self.assertEqual((ci["kind"], ci["type"]), ("Client", "nats"))
        self.assertEqual(pub["rtt"], "547µs")
        self.assertEqual(sub["rtt"], "12.3ms")
        self.assertEqual(anon["rtt"], "0s")
        self.assertEqual(pub["idle"], "30s")
        self.assertEqual(anon["idle"], "1m40s")
        self.assertEqual(pub["uptime"], "1d2h2m54s")
        self.assertEqual((pub["name"], pub["lang"], pub["version"]), ("pub", "python3", "2.9.0"))
        for absent in ("name", "lang", "version", "tls_version", "tls_cipher_suite"):
            self.assertNotIn(absent, anon)
        self.assertEqual(sub["tls_version"], "1.3")
        self.assertEqual(sub["tls_cipher_suite"], "TLS_AES_256_GCM_SHA384")
        self.assertNotIn("tls_version", pub)
        self.assertEqual(sub["pending_bytes"], 77)
        self.assertEqual(sub["subscriptions"], 3)
        self.assertEqual(anon["ip"], "::1")

    def test_connz_paging(self):
        c = get_json(self.port, "/connz?limit=1&offset=1")
        self.assertEqual((c["num_connections"], c["total"], c["offset"], c["limit"]), (1, 3, 1, 1))
        self.assertEqual([x["cid"] for x in c["connections"]], [2])
        c = get_json(self.port, "/connz?limit=2")
        self.assertEqual([x["cid"] for x in c["connections"]], [1, 2])
        c = get_json(self.port, "/connz?offset=2")
        self.assertEqual([x["cid"] for x in c["connections"]], [5])
        c = get_json(self.port, "/connz?offset=10")
        self.assertEqual((c["num_connections"], c["total"], c["connections"]), (0, 3, []))
        c = get_json(self.port, "/connz?limit=0")       # 0 means the default, as in Go
        self.assertEqual(c["limit"], 1024)

    def test_connz_paging_many(self):
        base = time.time()
        self.fake.extra_conns = [dict(cid=100 + i, ip="127.0.0.1", port=60000 + i, start=base,
                                      last_activity=base, subs=[]) for i in range(2000)]
        c = get_json(self.port, "/connz")
        self.assertEqual((c["num_connections"], c["total"]), (1024, 2003))
        c = get_json(self.port, "/connz?offset=2000&limit=10")
        self.assertEqual([x["cid"] for x in c["connections"]], [2097, 2098, 2099])

    def test_connz_sort(self):
        def order(sort):
            return [x["cid"] for x in get_json(self.port, "/connz?sort=" + sort)["connections"]]
        self.assertEqual(order("cid"), [1, 2, 5])
        self.assertEqual(order("start"), [1, 2, 5])
        self.assertEqual(order("subs"), [5, 2, 1])
        self.assertEqual(order("pending"), [2, 5, 1])
        self.assertEqual(order("msgs_to"), [2, 5, 1])
        self.assertEqual(order("msgs_from"), [1, 5, 2])
        self.assertEqual(order("bytes_to"), [2, 5, 1])
        self.assertEqual(order("bytes_from"), [1, 5, 2])
        self.assertEqual(order("last"), [2, 1, 5])      # most recent activity first
        self.assertEqual(order("idle"), [5, 1, 2])      # longest idle first
        self.assertEqual(order("uptime"), [5, 2, 1])    # ascending, as nats-server
        # sort then page
        c = get_json(self.port, "/connz?sort=subs&limit=1&offset=1")
        self.assertEqual([x["cid"] for x in c["connections"]], [2])

    def test_connz_subs(self):
        c = get_json(self.port, "/connz?subs=1")
        lists = {x["cid"]: x["subscriptions_list"] for x in c["connections"]}
        self.assertEqual(lists, {1: [], 2: ["foo", "bar.>", "baz.*"], 5: ["a", "b", "c", "d"]})
        c = get_json(self.port, "/connz?subs=true&cid=2")
        self.assertEqual(c["connections"][0]["subscriptions_list"], ["foo", "bar.>", "baz.*"])
        c = get_json(self.port, "/connz?subs=0")
        self.assertNotIn("subscriptions_list", c["connections"][1])
        c = get_json(self.port, "/connz?subs=detail&cid=2")
        self.assertEqual([d["subject"] for d in c["connections"][0]["subscriptions_list_detail"]],
                         ["foo", "bar.>", "baz.*"])

    def test_connz_raw_subject_escaping(self):
        status, r, body = http_get(self.port, "/connz?subs=1&cid=2")
        self.assertIn(b'"bar.\\u003e"', body)          # like Go's encoder

    def test_connz_cid_and_auth(self):
        c = get_json(self.port, "/connz?cid=2")
        self.assertEqual((c["num_connections"], c["total"], c["limit"]), (1, 3, 1))
        self.assertEqual(c["connections"][0]["cid"], 2)
        self.assertEqual(get_json(self.port, "/connz?cid=99")["connections"], [])
        c = get_json(self.port, "/connz?auth=1")
        users = {x["cid"]: x.get("authorized_user") for x in c["connections"]}
        self.assertEqual(users, {1: None, 2: "alice", 5: None})

    def test_connz_state(self):
        c = get_json(self.port, "/connz?state=closed")
        self.assertEqual((c["total"], c["connections"]), (0, []))
        now = time.time()

        def closed(cid, stop, reason):
            return dict(cid=cid, ip="127.0.0.1", port=51000 + cid, start=now - 100, last_activity=stop - 1,
                        stop=stop, reason=reason, rtt=0, pending_bytes=0, in_msgs=cid, out_msgs=0,
                        in_bytes=10 * cid, out_bytes=0, subscriptions=1, subs=["s.%d" % cid],
                        name="gone%d" % cid, lang="go", version="1.0", tls_version="",
                        tls_cipher_suite="", user="")
        self.fake.closed = [closed(3, now - 30, "Slow Consumer (Write Deadline)"),
                            closed(4, now - 10, "Client Closed"),
                            closed(6, now - 20, "Authentication Timeout")]
        c = get_json(self.port, "/connz?state=closed&subs=1")
        self.assertEqual((c["num_connections"], c["total"]), (3, 3))
        by_cid = {x["cid"]: x for x in c["connections"]}
        self.assertEqual(sorted(by_cid), [3, 4, 6])
        self.assertEqual(by_cid[4]["reason"], "Client Closed")
        self.assertEqual(by_cid[4]["subscriptions_list"], ["s.4"])
        self.assertEqual(by_cid[3]["uptime"], "1m10s")             # start to stop, not to now
        for x in c["connections"]:
            self.assertRegex(x["stop"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
        by_stop = get_json(self.port, "/connz?state=closed&sort=stop")["connections"]
        self.assertEqual([x["cid"] for x in by_stop], [4, 6, 3])    # most recent first
        by_reason = get_json(self.port, "/connz?state=closed&sort=reason")["connections"]
        self.assertEqual([x["reason"] for x in by_reason],
                         sorted(["Slow Consumer (Write Deadline)", "Client Closed", "Authentication Timeout"]))
        page = get_json(self.port, "/connz?state=closed&sort=stop&limit=1&offset=1")
        self.assertEqual([x["cid"] for x in page["connections"]], [6])
        self.assertEqual((page["total"], page["offset"], page["limit"]), (3, 1, 1))
        any_ = get_json(self.port, "/connz?state=any")
        self.assertEqual(sorted(x["cid"] for x in any_["connections"]), [1, 2, 3, 4, 5, 6])
        self.assertEqual(get_json(self.port, "/connz?state=open")["total"], 3)
        self.assertEqual(http_get(self.port, "/connz?sort=stop")[0], 400)

    def test_routez(self):
        r = get_json(self.port, "/routez")
        self.assertEqual(r, {"server_id": "NTESTSERVERID", "now": r["now"], "num_routes": 0, "routes": []})
        now = time.time()
        self.fake.routes = [dict(rid=1, remote_id="NREMOTE", did_solicit=True, is_configured=True,
                                 ip="127.0.0.1", port=6222, pending_size=0, in_msgs=4, out_msgs=5,
                                 in_bytes=40, out_bytes=50, subscriptions=2, subs=["foo", "bar.>"],
                                 start=now - 65, last_activity=now - 2)]
        r = get_json(self.port, "/routez")
        self.assertEqual(r["num_routes"], 1)
        ri = r["routes"][0]
        for name in ROUTE_FIELDS:
            self.assertIn(name, ri, name)
        self.assertEqual((ri["rid"], ri["remote_id"], ri["did_solicit"], ri["in_msgs"]),
                         (1, "NREMOTE", True, 4))
        self.assertEqual(ri["uptime"], "1m5s")
        self.assertNotIn("subscriptions_list", ri)
        r = get_json(self.port, "/routez?subs=1")
        self.assertEqual(r["routes"][0]["subscriptions_list"], ["foo", "bar.>"])
        self.assertEqual(get_json(self.port, "/varz")["routes"], 1)

    def test_subsz(self):
        s = get_json(self.port, "/subsz")
        self.assertEqual(list(s), SUBSZ_FIELDS)
        self.assertEqual(s["num_inserts"], 3539)
        self.assertEqual(s["cache_hit_rate"], 0.6504854368932039)
        self.assertIs(type(s["avg_fanout"]), int)        # Go prints 1, not 1.0
        self.assertEqual(get_json(self.port, "/subscriptionsz"), s)
        d = get_json(self.port, "/subsz?subs=1&limit=2&offset=1")
        self.assertEqual((d["total"], d["offset"], d["limit"]), (7, 1, 2))
        self.assertEqual([x["subject"] for x in d["subscriptions_list"]], ["bar.>", "baz.*"])
        d = get_json(self.port, "/subsz?subs=1&test=bar.x")
        self.assertEqual([(x["subject"], x["cid"]) for x in d["subscriptions_list"]], [("bar.>", 2)])

    def test_healthz(self):
        status, r, body = http_get(self.port, "/healthz")
        self.assertEqual((status, body), (200, b'{"status":"ok"}'))
        self.assertEqual(r.getheader("Content-Type"), "application/json")

    def test_jsonp(self):
        for path in ("/varz", "/connz", "/routez", "/subsz", "/healthz"):
            for cb in ("cb", "app.cb_1"):
                status, r, body = http_get(self.port, "%s?callback=%s" % (path, cb))
                self.assertEqual(status, 200, path)
                self.assertEqual(r.getheader("Content-Type"), "application/javascript")
                self.assertTrue(body.startswith(cb.encode() + b"("), body[:30])
                self.assertTrue(body.endswith(b")"), body[-10:])
                json.loads(body[len(cb) + 1:-1])
        # an empty callback is plain JSON
        status, r, body = http_get(self.port, "/varz?callback=")
        self.assertEqual(r.getheader("Content-Type"), "application/json")

    def test_jsonp_bad_callback_is_400_and_not_echoed(self):
        for cb in ("alert(document.cookie)//", "1bad", "a.b(", "%3Cscript%3E", "x%0Ay"):
            status, r, body = http_get(self.port, "/connz?callback=" + cb)
            self.assertEqual(status, 400, cb)
            self.assertEqual(r.getheader("Content-Type"), "application/json")
            self.assertIn("error", json.loads(body))
            for piece in (b"alert", b"1bad", b"script", b"x\ny"):
                self.assertNotIn(piece, body)

    def test_bad_query_values(self):
        for path in ("/connz?limit=abc", "/connz?limit=-1", "/connz?offset=-3", "/connz?offset=x",
                     "/connz?limit=1e3", "/connz?sort=foo", "/connz?sort=rtt", "/connz?sort=stop",
                     "/connz?subs=x", "/connz?subs=yes", "/connz?auth=2", "/connz?cid=x",
                     "/connz?cid=-1", "/connz?state=gone", "/routez?subs=maybe",
                     "/subsz?subs=x", "/subsz?limit=-5", "/subsz?test=foo.*",
                     "/connz?limit=" + "9" * 5000):
            status, r, body = http_get(self.port, path)
            self.assertEqual(status, 400, path)
            self.assertEqual(r.getheader("Content-Type"), "application/json", path)
            err = json.loads(body)["error"]
            self.assertIsInstance(err, str)
            self.assertNotIn("Traceback", err)

    def test_unknown_paths_404(self):
        for path in ("/nope", "/varz/", "/connz/x", "/VARZ", "/%00", "/varz%3F", "/x/varz"):
            status, r, body = http_get(self.port, path)
            self.assertEqual(status, 404, path)

    def test_methods(self):
        for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW"):
            status, r, body = http_get(self.port, "/varz", method=method)
            self.assertEqual(status, 405, method)
            self.assertEqual(r.getheader("Allow"), "GET, HEAD")
        status, r, body = http_get(self.port, "/varz", method="HEAD")
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(r.getheader("Content-Type"), "application/json")
        self.assertGreater(int(r.getheader("Content-Length")), 500)

    def test_cors_header(self):
        for path in ("/varz", "/connz?callback=cb", "/healthz", "/metrics", "/", "/connz?limit=x"):
            status, r, body = http_get(self.port, path)
            self.assertEqual(r.getheader("Access-Control-Allow-Origin"), "*", path)

    def test_root_page(self):
        status, r, body = http_get(self.port, "/")
        self.assertEqual(status, 200)
        self.assertEqual(r.getheader("Content-Type"), "text/html; charset=utf-8")
        page = body.decode()
        for link in ("./varz", "./connz", "./routez", "./subsz", "./healthz", "./metrics"):
            self.assertIn('href="%s"' % link, page)
        self.assertIn('name="viewport"', page)
        self.assertNotRegex(page, r'(src|href)="(https?:)?//')    # nothing external
        self.assertIn("data-metric", page)

    def test_metrics(self):
        status, r, body = http_get(self.port, "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(r.getheader("Content-Type").startswith("text/plain; version=0.0.4"))
        text = body.decode()
        types, helps, values = {}, set(), {}
        for line in text.splitlines():
            if line.startswith("# HELP "):
                helps.add(line.split()[2])
            elif line.startswith("# TYPE "):
                _, _, name, kind = line.split()
                types[name] = kind
            else:
                m = re.match(r'^([a-z_]+)(\{[^}]*\})? (-?[0-9.e+]+)$', line)
                self.assertIsNotNone(m, line)
                self.assertIn(m.group(1), types, "sample before its TYPE: " + line)
                values[m.group(1) + (m.group(2) or "")] = float(m.group(3))
        self.assertEqual(set(types), helps)
        for name in ("in_msgs", "out_msgs", "in_bytes", "out_bytes", "total_connections",
                     "slow_consumers"):
            self.assertEqual(types["gnatsd_varz_" + name], "counter", name)
        for name in ("connections", "subscriptions", "mem", "routes", "cpu", "uptime_seconds"):
            self.assertEqual(types["gnatsd_varz_" + name], "gauge", name)
        for name in ("num_subscriptions", "num_cache", "num_inserts", "num_removes",
                     "num_matches", "cache_hit_rate", "max_fanout", "avg_fanout"):
            self.assertIn("gnatsd_subsz_" + name, types)
        k = self.fake.calls
        self.assertEqual(values["gnatsd_varz_in_msgs"], 1000 * k)
        self.assertEqual(values["gnatsd_varz_out_bytes"], 200000 * k)
        self.assertEqual(values["gnatsd_varz_connections"], 3)
        self.assertEqual(values["gnatsd_varz_slow_consumers"], 1)
        self.assertEqual(values["gnatsd_subsz_num_inserts"], 3539)
        self.assertAlmostEqual(values["gnatsd_varz_uptime_seconds"], 93784.25, delta=5)
        self.assertEqual(values['gnatsd_varz_http_req_stats{path="/metrics"}'], 1)

    def test_snapshot_failure_is_503(self):
        self.fake.fail = True
        status, r, body = http_get(self.port, "/varz")
        self.assertEqual(status, 503)
        self.assertIn("error", json.loads(body))
        self.fake.fail = False
        self.assertEqual(http_get(self.port, "/varz")[0], 200)

    def test_keep_alive(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            for path in ("/varz", "/connz", "/healthz", "/nope", "/connz?limit=x", "/varz"):
                c.request("GET", path)
                r = c.getresponse()
                r.read()
                self.assertIn(r.status, (200, 400, 404))
                self.assertFalse(r.will_close, path)
        finally:
            c.close()

    def test_concurrent_requests(self):
        errors, done = [], []

        def worker():
            try:
                for _ in range(20):
                    for path in ("/varz", "/connz?subs=1"):
                        status, r, body = http_get(self.port, path)
                        if status != 200:
                            errors.append(status)
                        json.loads(body)
                        done.append(1)
            except Exception as e:
                errors.append(e)
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(len(done), 8 * 20 * 2)
        v = get_json(self.port, "/varz")
        self.assertEqual(v["http_req_stats"]["/varz"], 8 * 20 + 1)
        self.assertEqual(v["http_req_stats"]["/connz"], 8 * 20)


class TestAbuse(MonitorCase):
    def test_silent_clients_do_not_block(self):
        silent = [socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT) for _ in range(5)]
        partial = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        partial.sendall(b"GET /varz HTTP/1.1\r\nHost: x\r\n")     # headers never end
        try:
            t0 = time.monotonic()
            for _ in range(3):
                self.assertEqual(get_json(self.port, "/varz")["server_id"], "NTESTSERVERID")
            self.assertLess(time.monotonic() - t0, 2.0)
        finally:
            for s in silent + [partial]:
                s.close()

    def test_silent_client_is_timed_out(self):
        old = M._Handler.timeout
        M._Handler.timeout = 0.5
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
            t0 = time.monotonic()
            self.assertEqual(s.recv(100), b"")       # the server closes it
            self.assertLess(time.monotonic() - t0, 3.0)
            s.close()
        finally:
            M._Handler.timeout = old

    def test_idle_sockets_at_the_cap_do_not_block_a_new_request(self):
        # At the cap, a new connection takes the slot of the one that has
        # waited longest for its headers (issue 11, D6): sockets that send
        # nothing cannot turn requests into 503s. (A 503 when every slot is
        # busy answering: tests/test_hardening_misc.py TestMonitorBusyCap.)
        old = M.MAX_HTTP_CONNECTIONS
        M.MAX_HTTP_CONNECTIONS = 4
        silent = []
        try:
            silent = [socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT) for _ in range(4)]
            for _ in range(3):
                status, r, body = http_get(self.port, "/varz")
                self.assertEqual(status, 200)
                self.assertIn("server_id", json.loads(body))
        finally:
            M.MAX_HTTP_CONNECTIONS = old
            for s in silent:
                s.close()

    def test_dribbling_client_is_cut_at_lifetime(self):
        old = M.CONN_LIFETIME
        M.CONN_LIFETIME = 1.0
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
            t0 = time.monotonic()
            closed = False
            for ch in b"GET /varz HTTP/1.1\r\nX-Slow: " + b"a" * 100:
                try:
                    s.sendall(bytes([ch]))
                    s.settimeout(0.2)
                    if s.recv(100) == b"":
                        closed = True
                        break
                except socket.timeout:
                    continue
                except OSError:
                    closed = True
                    break
                if time.monotonic() - t0 > 4:
                    break
            self.assertTrue(closed)
            self.assertLess(time.monotonic() - t0, 3.0)
            s.close()
        finally:
            M.CONN_LIFETIME = old

    def test_huge_request_line_and_headers(self):
        status, r, body = http_get(self.port, "/varz?x=" + "a" * 70000)
        self.assertEqual(status, 414)
        self.assertIn("error", json.loads(body))
        headers = {"X-H%d" % i: "v" for i in range(150)}
        status, r, body = http_get(self.port, "/varz", headers=headers)
        self.assertEqual(status, 431)

    def test_garbage_request(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        try:
            s.sendall(b"\x16\x03\x01garbage that is not http\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            # a 400 with a JSON error, then the server closes (the loop
            # above ended on EOF)
            self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data[:40])
            self.assertIn(b"\r\nConnection: close\r\n", data)
            self.assertIn("error", json.loads(data.split(b"\r\n\r\n", 1)[1]))
            self.assertNotIn(b"Traceback", data)
        finally:
            s.close()
        self.assertEqual(http_get(self.port, "/healthz")[0], 200)

    def test_post_body_is_not_read(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        try:
            s.sendall(b"POST /varz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\nabc")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            self.assertTrue(data.startswith(b"HTTP/1.1 405"), data[:40])
        finally:
            s.close()


class TestLifecycle(unittest.TestCase):
    def test_stop_is_bounded_and_frees_the_port(self):
        fake = FakeServer()
        mon = M.Monitor(Options(host="127.0.0.1", http_port=-1), fake.get_snapshot, test_logger())
        mon.start()
        port = mon.http_port
        silent = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.assertEqual(http_get(port, "/healthz")[0], 200)
        t0 = time.monotonic()
        mon.stop()
        self.assertLess(time.monotonic() - t0, 3.0)
        silent.settimeout(TIMEOUT)
        try:
            self.assertEqual(silent.recv(10), b"")
        except ConnectionResetError:
            pass
        silent.close()
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        mon.stop()      # twice is harmless
        # the port can be bound again at once
        mon2 = M.Monitor(Options(host="127.0.0.1", http_port=port), fake.get_snapshot, test_logger())
        mon2.start()
        try:
            self.assertEqual(mon2.http_port, port)
            self.assertEqual(http_get(port, "/healthz")[0], 200)
        finally:
            mon2.stop()

    def test_bind_failure_raises_oserror(self):
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        try:
            mon = M.Monitor(Options(host="127.0.0.1", http_port=port), FakeServer().get_snapshot,
                            test_logger())
            with self.assertRaises(OSError) as cm:
                mon.start()
            self.assertIn("127.0.0.1:%d" % port, str(cm.exception))
            mon.stop()
        finally:
            holder.close()

    def test_https_without_context_is_an_error(self):
        mon = M.Monitor(Options(host="127.0.0.1", https_port=-1), FakeServer().get_snapshot,
                        test_logger())
        with self.assertRaises(ValueError):
            mon.start()

    def test_http_host_overrides_host(self):
        buf = io.StringIO()
        mon = M.Monitor(Options(host="0.0.0.0", http_host="127.0.0.1", http_port=-1),
                        FakeServer().get_snapshot, Logger(stream=buf))
        mon.start()
        try:
            self.assertIn("Starting http monitor on 127.0.0.1:%d" % mon.http_port, buf.getvalue())
        finally:
            mon.stop()

    def test_ipv6_loopback(self):
        if not socket.has_ipv6:
            self.skipTest("no IPv6")
        try:
            probe = socket.socket(socket.AF_INET6)
            probe.bind(("::1", 0))
            probe.close()
        except OSError:
            self.skipTest("IPv6 loopback unavailable")
        buf = io.StringIO()
        mon = M.Monitor(Options(host="::1", http_port=-1), FakeServer().get_snapshot,
                        Logger(stream=buf))
        mon.start()
        try:
            self.assertIn("Starting http monitor on [::1]:%d" % mon.http_port, buf.getvalue())
            c = http.client.HTTPConnection("::1", mon.http_port, timeout=TIMEOUT)
            c.request("GET", "/healthz")
            self.assertEqual(c.getresponse().read(), b'{"status":"ok"}')
            c.close()
        finally:
            mon.stop()


def _https_material(tmp):
    """(cert, key, cafile): the project's test certificates, or a throwaway
    self-signed pair made with openssl."""
    cert = os.path.join(CERTS, "server-cert.pem")
    key = os.path.join(CERTS, "server-key.pem")
    ca = os.path.join(CERTS, "ca.pem")
    if os.path.exists(cert) and os.path.exists(key) and os.path.exists(ca):
        return cert, key, ca
    import shutil
    import subprocess
    if not shutil.which("openssl"):
        return None
    cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    return cert, key, cert


class TestHTTPS(unittest.TestCase):
    def setUp(self):
        import tempfile
        self.tmp = tempfile.mkdtemp(prefix="monitor-https-")
        material = _https_material(self.tmp)
        if material is None:
            dependency_missing(self, "no certificates and no openssl to make one")
        cert, key, ca = material
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(cert, key)
        self.client_ctx = ssl.create_default_context(cafile=ca)
        self.fake = FakeServer()
        self.buf = io.StringIO()
        self.monitor = M.Monitor(Options(host="127.0.0.1", http_port=-1, https_port=-1),
                                 self.fake.get_snapshot, Logger(stream=self.buf), server_ctx)
        self.monitor.start()

    def tearDown(self):
        self.monitor.stop()
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_https_endpoints(self):
        port = self.monitor.https_port
        self.assertGreater(port, 0)
        self.assertNotEqual(port, self.monitor.http_port)
        self.assertIn("Starting https monitor on 127.0.0.1:%d" % port, self.buf.getvalue())
        status, r, body = http_get(port, "/varz", https_ctx=self.client_ctx)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["server_id"], "NTESTSERVERID")
        status, r, body = http_get(port, "/connz?callback=cb", https_ctx=self.client_ctx)
        self.assertTrue(body.startswith(b"cb({"))
        # and plain HTTP on its own port at the same time
        self.assertEqual(http_get(self.monitor.http_port, "/healthz")[0], 200)

    def test_silent_tls_client_does_not_block_accept(self):
        port = self.monitor.https_port
        silent = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)   # no ClientHello
        plain = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        plain.sendall(b"GET /varz HTTP/1.1\r\n\r\n")                              # not TLS
        try:
            t0 = time.monotonic()
            status, r, body = http_get(port, "/healthz", https_ctx=self.client_ctx)
            self.assertEqual((status, body), (200, b'{"status":"ok"}'))
            self.assertLess(time.monotonic() - t0, 2.0)
            try:
                self.assertEqual(plain.recv(100), b"")    # failed handshake: closed
            except ConnectionResetError:
                pass
        finally:
            silent.close()
            plain.close()


if __name__ == "__main__":
    unittest.main()
