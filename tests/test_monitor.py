"""The monitor inside a real `python3 gnatsd.py -p PORT -m MPORT` process:
exact counts after a real workload over raw sockets, paging, subs, and a
monitor hammered with requests while messages flow (none lost)."""

import http.client
import json
import os
import re
import threading
import time
import unittest

from tests.util import ROOT, RawClient, ServerProcess, free_port

MONITOR_WAIT = 5.0
HTTP_TIMEOUT = 5.0
SERVER_PY = os.path.join(ROOT, "gnats", "server.py")


def fetch(mport, path):
    c = http.client.HTTPConnection("127.0.0.1", mport, timeout=HTTP_TIMEOUT)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type"), r.read()
    finally:
        c.close()


def get_json(mport, path):
    status, ctype, body = fetch(mport, path)
    if status != 200:
        raise AssertionError("%s -> %d %r" % (path, status, body[:300]))
    return json.loads(body)


def wait_monitor(mport, timeout=MONITOR_WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if fetch(mport, "/healthz")[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def client(port, name, lang="raw", version="1.0"):
    c = RawClient(port, connect=json.dumps({"verbose": False, "pedantic": False, "name": name,
                                            "lang": lang, "version": version}).encode())
    c.ping()
    return c


class ServerWithMonitor(unittest.TestCase):
    """A fresh server per test, so every counter starts at zero."""

    def setUp(self):
        if not os.path.exists(SERVER_PY):
            self.skipTest("gnats/server.py does not exist yet")
        self.mport = free_port()
        self.server = ServerProcess("-m", str(self.mport), wait=False)
        self.port = self.server.port
        self.addCleanup(self.server.stop)
        if not wait_monitor(self.mport):
            self.skipTest("the server did not answer on the monitor port within %.0f s:\n%s"
                          % (MONITOR_WAIT, self.server.output()[-2000:]))
        # The log line, not a probe connection: a probe would count in
        # total_connections.
        if not self.server.wait_log("Server is ready", MONITOR_WAIT):
            self.fail("server not ready:\n" + self.server.output()[-2000:])
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()

    def connect(self, name, **kw):
        c = client(self.port, name, **kw)
        self.clients.append(c)
        return c

    def publish(self, pub, subject, count, size, batch=250):
        payload = b"x" * size
        line = b"PUB %s %d\r\n%s\r\n" % (subject.encode(), size, payload)
        sent = 0
        while sent < count:
            n = min(batch, count - sent)
            pub.send(line * n)
            sent += n
        pub.ping(timeout=10)

    def receive(self, sub, count, size):
        for i in range(count):
            op, args, data = sub.read_msg(timeout=10)
            self.assertEqual(op, b"MSG", (i, args))
            self.assertEqual(len(data), size)
        sub.send(b"PING\r\n")
        self.assertEqual(sub.read_line(timeout=5), b"PONG")   # nothing extra arrived


class TestMonitorWithServer(ServerWithMonitor):
    def test_log_line(self):
        self.assertTrue(self.server.wait_log(r"\[INF\] Starting http monitor on 127\.0\.0\.1:%d"
                                             % self.mport), self.server.output())

    def test_exact_counts_after_workload(self):
        sub = self.connect("the-sub", lang="python3", version="9.9")
        sub.send(b"SUB foo 1\r\n")
        sub.ping()
        pub = self.connect("the-pub")
        self.publish(pub, "foo", 1000, 100)
        self.receive(sub, 1000, 100)

        v = get_json(self.mport, "/varz")
        self.assertEqual((v["in_msgs"], v["in_bytes"]), (1000, 100000))
        self.assertEqual((v["out_msgs"], v["out_bytes"]), (1000, 100000))
        self.assertEqual((v["connections"], v["total_connections"]), (2, 2))
        self.assertEqual(v["subscriptions"], 1)
        self.assertEqual(v["port"], self.port)
        self.assertEqual(v["http_port"], self.mport)
        self.assertEqual(v["slow_consumers"], 0)

        cz = get_json(self.mport, "/connz")
        self.assertEqual((cz["num_connections"], cz["total"]), (2, 2))
        by_name = {c["name"]: c for c in cz["connections"]}
        s, p = by_name["the-sub"], by_name["the-pub"]
        self.assertLess(s["cid"], p["cid"])
        self.assertEqual([c["cid"] for c in cz["connections"]], [s["cid"], p["cid"]])
        self.assertEqual((s["in_msgs"], s["in_bytes"], s["out_msgs"], s["out_bytes"]),
                         (0, 0, 1000, 100000))
        self.assertEqual((p["in_msgs"], p["in_bytes"], p["out_msgs"], p["out_bytes"]),
                         (1000, 100000, 0, 0))
        self.assertEqual((s["subscriptions"], p["subscriptions"]), (1, 0))
        self.assertEqual((s["lang"], s["version"]), ("python3", "9.9"))
        self.assertEqual(s["ip"], "127.0.0.1")
        self.assertEqual(s["pending_bytes"], 0)
        self.assertNotIn("subscriptions_list", s)

        cz = get_json(self.mport, "/connz?subs=1")
        lists = {c["name"]: c["subscriptions_list"] for c in cz["connections"]}
        self.assertEqual(lists, {"the-sub": ["foo"], "the-pub": []})

        sz = get_json(self.mport, "/subsz")
        self.assertEqual(sz["num_subscriptions"], 1)
        self.assertGreaterEqual(sz["num_matches"], 1)

    def test_cid_is_info_client_id(self):
        c = self.connect("who")
        info = json.loads(c.info.split(b" ", 1)[1])
        cz = get_json(self.mport, "/connz")
        self.assertEqual([x["cid"] for x in cz["connections"]], [info["client_id"]])
        one = get_json(self.mport, "/connz?cid=%d" % info["client_id"])
        self.assertEqual(one["connections"][0]["name"], "who")

    def test_paging_and_sorting(self):
        subs_per = [0, 3, 1, 4, 2]
        for i, n in enumerate(subs_per):
            c = self.connect("c%d" % i)
            for j in range(n):
                c.send(b"SUB s.%d.%d %d\r\n" % (i, j, j + 1))
            c.ping()
        all_ = get_json(self.mport, "/connz")
        cids = [c["cid"] for c in all_["connections"]]
        self.assertEqual(cids, sorted(cids))
        self.assertEqual(all_["total"], 5)
        page = get_json(self.mport, "/connz?limit=2&offset=1")
        self.assertEqual((page["num_connections"], page["total"], page["offset"], page["limit"]),
                         (2, 5, 1, 2))
        self.assertEqual([c["cid"] for c in page["connections"]], cids[1:3])
        last = get_json(self.mport, "/connz?limit=2&offset=4")
        self.assertEqual([c["cid"] for c in last["connections"]], cids[4:])
        by_subs = get_json(self.mport, "/connz?sort=subs")
        self.assertEqual([c["name"] for c in by_subs["connections"]], ["c3", "c1", "c4", "c2", "c0"])
        top = get_json(self.mport, "/connz?sort=subs&limit=1&subs=1")
        self.assertEqual(sorted(top["connections"][0]["subscriptions_list"]),
                         ["s.3.0", "s.3.1", "s.3.2", "s.3.3"])
        self.assertEqual(get_json(self.mport, "/varz")["subscriptions"], 10)

    def test_closed_connection_leaves_connz(self):
        a = self.connect("a")
        b = self.connect("b")
        b.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            cz = get_json(self.mport, "/connz")
            if cz["total"] == 1:
                break
            time.sleep(0.05)
        self.assertEqual([c["name"] for c in cz["connections"]], ["a"])
        v = get_json(self.mport, "/varz")
        self.assertEqual((v["connections"], v["total_connections"]), (1, 2))
        a.ping()

    def test_bad_input_and_other_endpoints(self):
        self.assertEqual(fetch(self.mport, "/connz?limit=abc")[0], 400)
        self.assertEqual(fetch(self.mport, "/nope")[0], 404)
        self.assertEqual(fetch(self.mport, "/healthz")[2], b'{"status":"ok"}')
        status, ctype, body = fetch(self.mport, "/varz?callback=cb")
        self.assertEqual((status, ctype), (200, "application/javascript"))
        self.assertTrue(body.startswith(b"cb({") and body.endswith(b"})"))
        r = get_json(self.mport, "/routez")
        self.assertEqual((r["num_routes"], r["routes"]), (0, []))
        status, ctype, body = fetch(self.mport, "/metrics")
        self.assertEqual(status, 200)
        self.assertRegex(body.decode(), r"(?m)^gnatsd_varz_connections 0$")
        status, ctype, body = fetch(self.mport, "/")
        self.assertIn(b'data-metric', body)

    def test_monitor_hammered_while_messages_flow(self):
        total, size = 10000, 64
        sub = self.connect("sub")
        sub.send(b"SUB flow.> 1\r\n")
        sub.ping()
        pub = self.connect("pub")
        stop = threading.Event()
        results = {"ok": 0, "bad": []}
        lock = threading.Lock()

        def hammer():
            paths = ("/varz", "/connz?subs=1", "/subsz", "/connz?sort=msgs_to&limit=1", "/metrics")
            i = 0
            while not stop.is_set():
                path = paths[i % len(paths)]
                i += 1
                try:
                    status = fetch(self.mport, path)[0]
                except OSError as e:
                    status = repr(e)
                with lock:
                    if status == 200:
                        results["ok"] += 1
                    else:
                        results["bad"].append((path, status))
        threads = [threading.Thread(target=hammer, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        received = []

        def read_all():
            try:
                for _ in range(total):
                    op, args, data = sub.read_msg(timeout=20)
                    received.append(len(data))
            except Exception as e:
                received.append(e)
        reader = threading.Thread(target=read_all, daemon=True)
        reader.start()
        try:
            payload = b"y" * size
            for i in range(0, total, 100):
                pub.send(b"".join(b"PUB flow.%d %d\r\n%s\r\n" % (i + k, size, payload)
                                  for k in range(100)))
                if i % 2000 == 0:
                    time.sleep(0.02)        # let the monitor interleave
            pub.ping(timeout=20)
            reader.join(30)
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        self.assertFalse(reader.is_alive())
        self.assertEqual(len(received), total)
        self.assertTrue(all(x == size for x in received), [x for x in received if x != size][:3])
        self.assertEqual(results["bad"], [])
        self.assertGreater(results["ok"], 10)
        v = get_json(self.mport, "/varz")
        self.assertEqual((v["in_msgs"], v["out_msgs"]), (total, total))
        self.assertEqual((v["in_bytes"], v["out_bytes"]), (total * size, total * size))
        reqs = v["http_req_stats"]
        self.assertEqual(sum(reqs.values()), results["ok"] + 1 + reqs.get("/healthz", 0))


if __name__ == "__main__":
    unittest.main()
