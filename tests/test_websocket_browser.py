"""nats.ws, the NATS client browsers use, against gnatsd.py (issue 21): a
page in headless Chromium connects over ws:// and wss://, subscribes,
publishes, does request/reply with headers and moves a 200 KiB message,
then writes the result into its DOM, which `chromium --dump-dom` prints;
the same script runs in Node 20 with --experimental-websocket.

Nothing is vendored: nats.ws is installed from the npm registry into a
temporary directory when the class starts (`npm install nats.ws@1`). With
no npm, no Chromium, no Node or no registry the tests are skipped, and
fail instead under GNATSD_REQUIRE_DEPS / CI (tests/util.py's rule), so
.ci/run must provide: chromium, node >= 20 with npm, and access to the npm
registry (or an npm cache holding nats.ws).

wss: Chromium does not trust the test CA (configs/certs/ca.pem), so the
wss run passes --ignore-certificate-errors (a throwaway profile, loopback
only); Node is given the CA with NODE_EXTRA_CA_CERTS, so its wss run does
check the certificate (the server certificate names localhost).

--dump-dom prints the DOM when the page's load event fires, which does not
wait for the module's asynchronous work; so the page also holds an image
(/hold) that the test's HTTP server answers only once the page has posted
its result (/result): the load event, and the dump, come after it.
"""

import json
import os
import shutil
import subprocess
import tempfile
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.util import REQUIRE_DEPS, ROOT, ServerProcess, port_of

CERTS = os.path.join(ROOT, "configs", "certs")
NPM = shutil.which("npm")
NODE = shutil.which("node")


def _node_major():
    """Node's major version (20 brings --experimental-websocket), 0 if unknown."""
    try:
        out = subprocess.run([NODE, "--version"], capture_output=True, text=True, timeout=20).stdout
        return int(out.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return 0


NODE_OK = bool(NODE) and _node_major() >= 20
CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "",
                             shutil.which("chromium-browser") or "") if p and os.access(p, os.X_OK)),
                None)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
RUN_TIMEOUT = 60

# The script the page and Node both run: every figure it reports is checked.
CHECK_JS = r"""
import { connect, StringCodec, headers } from "./nats.js";

export async function check(url) {
  const sc = StringCodec();
  const nc = await connect({ servers: url, timeout: 5000 });
  const out = { port: nc.info.port, tls: !!nc.info.tls_required };
  const svc = nc.subscribe("browser.echo");
  (async () => {
    for await (const m of svc) {
      const h = headers();
      h.set("X-Echo", m.headers ? m.headers.get("X-In") : "none");
      m.respond(sc.encode("echo:" + sc.decode(m.data)), { headers: h });
    }
  })();
  const sub = nc.subscribe("browser.count", { max: 100 });
  const got = [];
  const done = (async () => { for await (const m of sub) got.push(sc.decode(m.data)); })();
  for (let i = 0; i < 100; i++) nc.publish("browser.count", sc.encode("m" + i));
  await done;
  out.count = got.length;
  out.ordered = got.every((v, i) => v === "m" + i);
  const h = headers();
  h.set("X-In", "abc");
  const r = await nc.request("browser.echo", sc.encode("hi"), { timeout: 5000, headers: h });
  out.reply = sc.decode(r.data);
  out.replyHeader = r.headers ? r.headers.get("X-Echo") : "";
  const big = new Uint8Array(200 * 1024).map((_, i) => i % 251);
  const bsub = nc.subscribe("browser.big", { max: 1 });
  nc.publish("browser.big", big);
  for await (const m of bsub) {
    out.bigOk = m.data.length === big.length && m.data.every((v, i) => v === i % 251);
  }
  await nc.drain();
  return out;
}
"""

PAGE_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>nats.ws check</title></head>
<body><pre id="out">pending</pre><img src="/hold" alt="">
<script type="module">
import { check } from "./check.js";
const url = new URLSearchParams(location.search).get("url");
const el = document.getElementById("out");
let text;
try { text = "RESULT " + JSON.stringify(await check(url)); }
catch (e) { text = "ERROR " + e; }
el.textContent = text;
await fetch("/result", { method: "POST", body: text });
</script></body></html>
"""

NODE_RUN = """import { check } from "./check.js";
check(process.argv[2]).then(
  (r) => { console.log("RESULT " + JSON.stringify(r)); process.exit(0); },
  (e) => { console.log("ERROR " + e); process.exit(1); });
"""

EXPECTED = {"count": 100, "ordered": True, "reply": "echo:hi", "replyHeader": "abc",
            "bigOk": True}


def install_nats_ws(directory):
    """npm install nats.ws into directory; returns the path of its ESM
    bundle, or None with the reason."""
    try:
        p = subprocess.run([NPM, "install", "--prefix", directory, "--no-audit", "--no-fund",
                            "--loglevel=error", "nats.ws@1"], capture_output=True, text=True,
                           timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, "npm install nats.ws: %s" % e
    bundle = os.path.join(directory, "node_modules", "nats.ws", "esm", "nats.js")
    if p.returncode != 0 or not os.path.exists(bundle):
        return None, "npm install nats.ws failed: %s" % (p.stderr.strip()[-300:] or p.returncode)
    return bundle, ""


class PageServer:
    """Serves the page directory, and /hold until /result is posted."""

    def __init__(self, directory):
        self.directory = directory
        self.result = None
        self.posted = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path == "/hold":
                    outer.posted.wait(RUN_TIMEOUT)
                    return self.reply(b"GIF89a", "image/gif")
                name = os.path.basename(path) or "page.html"
                full = os.path.join(outer.directory, name)
                if not os.path.isfile(full):
                    self.send_error(404)
                    return
                ctype = "text/html" if name.endswith(".html") else "text/javascript"
                with open(full, "rb") as f:
                    self.reply(f.read(), ctype)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                outer.result = self.rfile.read(n).decode("utf-8", "replace")
                outer.posted.set()
                self.reply(b"ok", "text/plain")

            def reply(self, body, ctype):
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.posted.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def parse_result(text):
    for line in text.splitlines():
        i = line.find("RESULT {")
        if i >= 0:
            end = line.find("}", i) + 1
            return json.loads(line[i + 7:end])
    return None


class TestNatsWs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.skip_reason = ""
        cls.tmp = tempfile.mkdtemp(prefix="gnatsd-natsws-")
        cls.srv = None
        if not NPM:
            cls.skip_reason = "npm is not installed"
            return
        bundle, why = install_nats_ws(os.path.join(cls.tmp, "npm"))
        if bundle is None:
            cls.skip_reason = why
            return
        cls.page_dir = os.path.join(cls.tmp, "page")
        os.mkdir(cls.page_dir)
        shutil.copy(bundle, os.path.join(cls.page_dir, "nats.js"))
        for name, text in (("check.js", CHECK_JS), ("page.html", PAGE_HTML),
                           ("run.js", NODE_RUN), ("package.json", '{"type": "module"}\n')):
            with open(os.path.join(cls.page_dir, name), "w") as f:
                f.write(text)
        config = ('websocket { host: 127.0.0.1, port: -1, no_tls: true }\n')
        cls.srv = ServerProcess(config=config)
        cls.ws_port = port_of(cls.srv.ports["websocket"][0])
        cls.z_srv = ServerProcess(
            config="websocket { host: 127.0.0.1, port: -1, no_tls: true, compression: true }\n")
        cls.z_port = port_of(cls.z_srv.ports["websocket"][0])
        tls_config = ('websocket { host: 127.0.0.1, port: -1, tls { cert_file: "%s",'
                      ' key_file: "%s" } }\n' % (os.path.join(CERTS, "server-cert.pem"),
                                                 os.path.join(CERTS, "server-key.pem")))
        cls.tls_srv = ServerProcess(config=tls_config)
        cls.wss_port = port_of(cls.tls_srv.ports["websocket"][0])

    @classmethod
    def tearDownClass(cls):
        if cls.srv is not None:
            cls.srv.stop()
            cls.z_srv.stop()
            cls.tls_srv.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        if self.skip_reason:
            if REQUIRE_DEPS:
                self.fail("dependency missing (GNATSD_REQUIRE_DEPS is set): %s" % self.skip_reason)
            self.skipTest(self.skip_reason)

    def need(self, tool, name):
        if not tool:
            if REQUIRE_DEPS:
                self.fail("dependency missing (GNATSD_REQUIRE_DEPS is set): %s" % name)
            self.skipTest("%s is not installed" % name)

    def check(self, result, port, tls):
        self.assertIsNotNone(result)
        self.assertEqual(result["port"], port)
        self.assertEqual(result["tls"], tls)
        for k, v in EXPECTED.items():
            self.assertEqual(result[k], v, k)

    def browser(self, url, extra=()):
        self.need(CHROMIUM, "chromium")
        page = PageServer(self.page_dir)
        self.addCleanup(page.close)
        profile = tempfile.mkdtemp(prefix="chromium-", dir=self.tmp)
        cmd = [CHROMIUM] + CHROMIUM_FLAGS + list(extra) + [
            "--user-data-dir=" + profile, "--dump-dom",
            "http://127.0.0.1:%d/page.html?url=%s" % (page.port, url)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT + 30)
        self.assertIn("RESULT", p.stdout, "dom: %s\nposted: %s\nstderr: %s"
                      % (p.stdout[-2000:], page.result, p.stderr[-2000:]))
        return parse_result(p.stdout)

    def node(self, url, env=None):
        self.need(NODE_OK, "node >= 20")
        e = dict(os.environ)
        e.update(env or {})
        p = subprocess.run([NODE, "--experimental-websocket", "run.js", url], cwd=self.page_dir,
                           capture_output=True, text=True, timeout=RUN_TIMEOUT, env=e)
        self.assertIn("RESULT", p.stdout, p.stdout[-2000:] + p.stderr[-2000:])
        return parse_result(p.stdout)

    def test_chromium_ws(self):
        self.check(self.browser("ws://127.0.0.1:%d" % self.ws_port), self.ws_port, False)

    def test_chromium_wss(self):
        self.check(self.browser("wss://localhost:%d" % self.wss_port,
                                ["--ignore-certificate-errors"]), self.wss_port, True)

    def test_chromium_ws_compressed(self):
        # Chromium offers permessage-deflate: frames both ways are compressed
        self.check(self.browser("ws://127.0.0.1:%d" % self.z_port), self.z_port, False)

    def test_node_ws(self):
        self.check(self.node("ws://127.0.0.1:%d" % self.ws_port), self.ws_port, False)

    def test_node_wss(self):
        self.check(self.node("wss://localhost:%d" % self.wss_port,
                             {"NODE_EXTRA_CA_CERTS": os.path.join(CERTS, "ca.pem")}),
                   self.wss_port, True)


if __name__ == "__main__":
    unittest.main()
