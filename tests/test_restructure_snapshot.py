"""Issue 13's monitoring snapshot (gnats/snapshot.py) and endpoints
(gnats/endpoints.py): the guarantees the restructure added.

- the schema is declared once: a misspelled field is an error (a record, a
  plain-data snapshot, a monitor answer), never a silent 0;
- a record built from a real client carries each value in its own field;
- a published snapshot never changes, even when the closed ring trims the
  records it shares;
- /varz shows the options in force: a reload shows at once;
- a reload gives the HTTPS monitor the new certificate, as nats-server.

In-process servers (gnats.run) on 127.0.0.1 with raw-socket clients.
"""

import http.client
import io
import json
import os
import shutil
import socket
import ssl
import tempfile
import time
import unittest

import gnats
from gnats.endpoints import build_connz, build_varz
from gnats.log import Logger
from gnats.monitor import Monitor
from gnats.options import Options
from gnats.procstats import ProcStats
from gnats.reload import ReloadError
from gnats.snapshot import (ClosedRing, ClusterInfo, ConnRecord, ServerInfo, Snapshot,
                            SubDetails)
from tests.util import ROOT, RawClient

CERTS = os.path.join(ROOT, "configs", "certs")
TIMEOUT = 5.0


def wait_for(cond, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    return cond()


def get(port, path, ctx=None):
    if ctx is None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    else:
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=TIMEOUT, context=ctx)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def snapshot(h):
    """What a monitor thread gets: a fresh build by the reactor."""
    return h._server.snapshots.get(True, True)


class TestSchema(unittest.TestCase):
    def test_misspelled_field_raises(self):
        with self.assertRaises(TypeError):
            ConnRecord(cid=1, in_msg=5)
        with self.assertRaises(TypeError):
            ServerInfo(server_idd="N")
        with self.assertRaises(TypeError):
            ClusterInfo(tls_require=True)
        with self.assertRaises(AttributeError):
            ConnRecord(cid=1).in_msg
        for bad in ({"stats": {"in_msg": 5}}, {"server": {"cluster": {"prot": 1}}},
                    {"connections": [{"cid": 1, "subscription": 2}]}, {"conections": []}):
            with self.assertRaises(TypeError, msg=bad):
                Snapshot.from_dict(bad)

    def test_records_cannot_change(self):
        rec = ConnRecord(cid=1, subs=("a",))
        with self.assertRaises(AttributeError):
            rec.subs = ()
        with self.assertRaises(TypeError):
            rec.subs[0] = "b"

    def test_monitor_answers_503_for_a_misspelled_field(self):
        # before: /varz answered 200 with "in_msgs": 0
        log = io.StringIO()
        mon = Monitor(Options(host="127.0.0.1", http_port=-1),
                      lambda fresh, conns: {"now": time.time(), "stats": {"in_msg": 5}},
                      Logger(stream=log))
        mon.start()
        self.addCleanup(mon.stop)
        status, body = get(mon.http_port, "/varz")
        self.assertEqual(status, 503, body)
        self.assertIn("snapshot failed: TypeError", log.getvalue())

    def test_builders_read_cluster_options_from_the_snapshot(self):
        snap = Snapshot(now=time.time(), server=ServerInfo(cluster=ClusterInfo(
            name="c1", host="127.0.0.1", port=6300, auth_timeout=3.0, tls_timeout=1.5,
            tls_required=True, tls_verify=True)))
        self.assertEqual(build_varz(snap, {}, ProcStats())["cluster"],
                         {"name": "c1", "addr": "127.0.0.1", "cluster_port": 6300,
                          "auth_timeout": 3.0, "tls_timeout": 1.5, "tls_required": True,
                          "tls_verify": True})


class TestRecordsFromARealServer(unittest.TestCase):
    def setUp(self):
        self.h = gnats.run()
        self.addCleanup(self.h.stop)

    def client(self, name="c"):
        c = RawClient(self.h.port, connect=json.dumps(
            {"verbose": False, "pedantic": False, "name": name, "lang": "python3",
             "version": "9.8.7"}).encode())
        self.addCleanup(c.close)
        return c

    def test_every_field_of_a_connection_record(self):
        c = self.client("n1")
        c.send(b"SUB foo 1\r\nSUB bar q 2\r\nUNSUB 2 5\r\nPUB foo 3\r\nabc\r\n"
               b"PUB baz 4\r\nabcd\r\nPUB baz 4\r\nabcd\r\n")
        self.assertIn(b"MSG foo 1 3\r\nabc\r\n", c.ping())
        snap = snapshot(self.h)
        (rec,) = snap.connections
        want = dict(cid=rec.cid, ip="127.0.0.1", port=c.sock.getsockname()[1], pending_bytes=0,
                    in_msgs=3, out_msgs=1, in_bytes=11, out_bytes=3, subscriptions=2,
                    subs=("foo", "bar"),
                    subs_detail=SubDetails(("1", "2"), (None, "q"), (0, 5)),
                    name="n1", lang="python3", version="9.8.7", tls_version="",
                    tls_cipher_suite="", user="", stop=0.0, reason="")
        got = rec._asdict()
        self.assertEqual({k: got[k] for k in want}, want)
        self.assertGreater(rec.cid, 0)
        self.assertLessEqual(rec.start, rec.last_activity)
        self.assertLessEqual(rec.last_activity, snap.now)
        self.assertIsInstance(rec.rtt, float)
        detail = build_connz(snap, {"subs": "detail"})["connections"][0]["subscriptions_list_detail"]
        self.assertEqual(detail, [{"subject": "foo", "sid": "1", "cid": rec.cid},
                                  {"subject": "bar", "sid": "2", "cid": rec.cid, "qgroup": "q",
                                   "max": 5}])

    def test_published_snapshot_unchanged_when_the_ring_trims(self):
        # the ring keeps 5 subscription details: the second closed client
        # takes the first one's list away, in the ring but not in a snapshot
        # already handed out (before: the shared record was rewritten)
        self.h._server.snapshots.closed = ClosedRing(maxlen=10, max_details=5)
        a = self.client("a")
        a.send(b"SUB a.1 1\r\nSUB a.2 2\r\nSUB a.3 3\r\nSUB a.4 4\r\n")
        a.ping()
        a.close()
        first = wait_for(lambda: [s for s in [snapshot(self.h)] if s.closed_connections])
        self.assertTrue(first, "the closed client never reached the ring")
        first = first[0]
        self.assertEqual(first.closed_connections[0].subs, ("a.1", "a.2", "a.3", "a.4"))
        b = self.client("b")
        b.send(b"SUB b.1 1\r\nSUB b.2 2\r\nSUB b.3 3\r\n")
        b.ping()
        b.close()
        later = wait_for(lambda: [s for s in [snapshot(self.h)] if len(s.closed_connections) == 2])
        self.assertTrue(later, "the second closed client never reached the ring")
        later = later[0]
        self.assertEqual([(r.name, r.subs) for r in later.closed_connections],
                         [("a", ()), ("b", ("b.1", "b.2", "b.3"))])
        self.assertEqual(later.closed_connections[0].subscriptions, 4)     # the count stays
        rec = first.closed_connections[0]
        self.assertEqual((rec.name, rec.subs, rec.subs_detail.sids),
                         ("a", ("a.1", "a.2", "a.3", "a.4"), ("1", "2", "3", "4")))


class TestVarzAfterReload(unittest.TestCase):
    def varz(self, h):
        status, body = get(h._server.monitor.http_port, "/varz")
        self.assertEqual(status, 200, body)
        return json.loads(body)

    def test_cluster_options_show_at_once(self):
        # before: /varz read the cluster's TLS and auth fields from the
        # options the monitor captured at start
        h = gnats.run(http_port=-1, cluster={"name": "c1", "listen": "127.0.0.1:-1"})
        self.addCleanup(h.stop)
        cl = self.varz(h)["cluster"]
        self.assertEqual((cl["name"], cl["auth_timeout"]), ("c1", 2))
        self.assertNotIn("tls_required", cl)
        tls = {"cert_file": os.path.join(CERTS, "srva-cert.pem"),
               "key_file": os.path.join(CERTS, "srva-key.pem"),
               "ca_file": os.path.join(CERTS, "ca.pem"), "verify": True, "timeout": 3}
        h.reload(cluster={"name": "c1", "listen": "127.0.0.1:-1",
                          "authorization": {"user": "r", "password": "p", "timeout": 4},
                          "tls": tls})
        cl = self.varz(h)["cluster"]
        self.assertEqual((cl["auth_timeout"], cl["tls_timeout"], cl.get("tls_required"),
                          cl.get("tls_verify")), (4, 3, True, True))

    def test_client_options_show_at_once(self):
        h = gnats.run(http_port=-1, max_payload=1000, ping_interval=30)
        self.addCleanup(h.stop)
        v = self.varz(h)
        self.assertEqual((v["max_payload"], v["ping_interval"]), (1000, 30 * 10 ** 9))
        h.reload(max_payload=2000, ping_interval=45)
        v = self.varz(h)
        self.assertEqual((v["max_payload"], v["ping_interval"]), (2000, 45 * 10 ** 9))


class TestHTTPSCertificateReload(unittest.TestCase):
    """nats-server's HTTPS monitor takes the TLS config in force at each
    handshake (getMonitoringTLSConfig): a rotated certificate is served."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="r13-https-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.use("srva")
        self.conf = os.path.join(self.dir, "server.conf")
        self.write_conf(True)
        self.h = gnats.run(config=self.conf)
        self.addCleanup(self.h.stop)
        self.port = self.h._server.monitor.https_port

    def use(self, name):
        for part in ("cert", "key"):
            shutil.copy(os.path.join(CERTS, "%s-%s.pem" % (name, part)),
                        os.path.join(self.dir, "%s.pem" % part))

    def write_conf(self, tls):
        with open(os.path.join(self.dir, "server.conf"), "w") as f:
            f.write("https: 127.0.0.1:-1\n")
            if tls:
                f.write('tls { cert_file: "%s", key_file: "%s" }\n'
                        % (os.path.join(self.dir, "cert.pem"), os.path.join(self.dir, "key.pem")))

    def served_cn(self):
        ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca.pem"))
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT),
                             server_hostname="127.0.0.1") as t:
            return dict(x[0] for x in t.getpeercert()["subject"])["commonName"]

    def test_rotated_certificate_is_served(self):
        self.assertEqual(self.served_cn(), "srva")
        self.use("srvb")                    # same file names, new content
        self.h.reload()
        self.assertEqual(self.served_cn(), "srvb")
        ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca.pem"))
        self.assertEqual(get(self.port, "/healthz", ctx)[0], 200)

    def test_dropping_the_certificate_is_refused(self):
        self.write_conf(False)
        with self.assertRaises(ReloadError) as e:
            self.h.reload()
        self.assertIn("TLS cert and key required for HTTPS", str(e.exception))
        self.assertEqual(self.served_cn(), "srva")


if __name__ == "__main__":
    unittest.main()
