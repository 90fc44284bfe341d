"""The monitor inside a real `python3 gnatsd.py -p PORT -m MPORT` process:
exact counts after a real workload over raw sockets, paging, subs, and a
monitor hammered with requests while messages flow (none lost)."""

import http.client
import json
import os
import re
import ssl
import threading
import time
import unittest

from tests.util import ROOT, RawClient, ServerProcess, wait_for

MONITOR_WAIT = 5.0
HTTP_TIMEOUT = 5.0


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
        # Both ports come from the ports file: no probe connection, which
        # would count in total_connections.
        self.server = ServerProcess("-m", "-1")
        self.addCleanup(self.server.stop)
        self.port = self.server.port
        self.mport = self.server.monitor_port
        if not wait_monitor(self.mport):
            self.fail("the server did not answer on the monitor port within %.0f s:\n%s"
                      % (MONITOR_WAIT, self.server.output()[-2000:]))
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


def system_subscriptions(mport):
    """The system account's own subscriptions (its request handlers,
    gnats/sysacct.py), which /varz counts with everyone's, as nats-server."""
    return get_json(mport, "/accountz?acc=%24SYS")["account_detail"]["subscriptions"]


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
        self.assertEqual(v["subscriptions"], 1 + system_subscriptions(self.mport))
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
        # one lookup in the subject index: the publisher's own cache (as in
        # nats-server) answers the other 999 PUBs to the same subject
        self.assertEqual(sz["num_matches"], 1)

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
        self.assertEqual(get_json(self.mport, "/varz")["subscriptions"],
                         10 + system_subscriptions(self.mport))

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

    def test_closed_connections_with_reason(self):
        keep = self.connect("keep")
        gone = self.connect("gone")
        gone.send(b"SUB a.b 1\r\nSUB c.d 2\r\n")
        gone.ping()
        gone_cid = json.loads(gone.info[5:])["client_id"]
        gone.close()
        bad = self.connect("bad")
        bad_cid = json.loads(bad.info[5:])["client_id"]
        bad.send(b"PUB x 99999999999\r\n")         # over max_payload: the server closes it
        self.assertTrue(bad.closed(5))

        def closed():
            cz = get_json(self.mport, "/connz?state=closed&subs=1")
            return cz if cz["total"] == 2 else None
        cz = wait_for(closed)
        self.assertTrue(cz, get_json(self.mport, "/connz?state=closed"))
        by_cid = {c["cid"]: c for c in cz["connections"]}
        self.assertEqual(sorted(by_cid), sorted([gone_cid, bad_cid]))
        self.assertEqual(by_cid[gone_cid]["reason"], "Client Closed")
        self.assertEqual(by_cid[gone_cid]["name"], "gone")
        self.assertEqual(sorted(by_cid[gone_cid]["subscriptions_list"]), ["a.b", "c.d"])
        self.assertEqual(by_cid[bad_cid]["reason"], "Maximum Payload Exceeded")   # as nats-server
        for c in by_cid.values():
            self.assertRegex(c["stop"], r"^\d{4}-\d\d-\d\dT")
        # open, any, and the sorts only closed connections have
        self.assertEqual([c["name"] for c in get_json(self.mport, "/connz")["connections"]], ["keep"])
        any_ = get_json(self.mport, "/connz?state=any")
        self.assertEqual(sorted(c["name"] for c in any_["connections"]), ["bad", "gone", "keep"])
        by_stop = get_json(self.mport, "/connz?state=closed&sort=stop")["connections"]
        self.assertEqual([c["cid"] for c in by_stop], [bad_cid, gone_cid])   # most recent first
        by_reason = get_json(self.mport, "/connz?state=closed&sort=reason")["connections"]
        self.assertEqual([c["reason"] for c in by_reason], sorted(c["reason"] for c in by_reason))
        page = get_json(self.mport, "/connz?state=closed&limit=1&offset=1")
        self.assertEqual((page["num_connections"], page["total"]), (1, 2))
        self.assertEqual(fetch(self.mport, "/connz?sort=stop")[0], 400)    # open connections have no stop
        keep.ping()

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



CERTS = os.path.join(ROOT, "configs", "certs")


class TestHTTPSMonitorProcess(unittest.TestCase):
    """-ms through the server process: HTTPS with the client port's certificate."""

    def test_https_monitoring(self):
        srv = ServerProcess("--tls", "--tlscert", os.path.join(CERTS, "server-cert.pem"),
                            "--tlskey", os.path.join(CERTS, "server-key.pem"), "-ms", "-1")
        self.addCleanup(srv.stop)
        self.assertTrue(srv.wait_log(r"Starting https monitor on 127\.0\.0\.1:\d+"), srv.output())
        mport = int(re.search(r"Starting https monitor on 127\.0\.0\.1:(\d+)", srv.output()).group(1))
        ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca.pem"))
        c = http.client.HTTPSConnection("localhost", mport, timeout=HTTP_TIMEOUT, context=ctx)
        try:
            c.request("GET", "/varz")
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            v = json.loads(r.read())
        finally:
            c.close()
        self.assertEqual((v["https_port"], v["http_port"], v["port"]), (mport, 0, srv.port))
        self.assertTrue(v["tls_required"])
        # no plain HTTP on the HTTPS port
        with self.assertRaises((http.client.HTTPException, OSError)):
            fetch(mport, "/varz")


if __name__ == "__main__":
    unittest.main()
