"""Config fuzzing (`fuzz-config`): random and mutated config files through
the in-process loader and through `gnatsd.py -c FILE`; every bad file
must give a FILE:LINE:COL error, never a traceback.
"""

import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from gnats import cli
from gnats.conf import ConfigError
from gnats.log import Logger
from gnats.server import Server
from tests import util
from tests.util import ROOT, free_port
from .common import Report
from .bed import LogSink, crash_signature
from .fuzz import mutate


BCRYPT_MISSING = "bcrypt password hashes need the bcrypt package"


CONF_VALUES = ["4222", "-1", "0", "65536", "99999999999999999999", "1MB", "1mb", "64KB", "1GB",
               "10EB", "-5KB", "2s", "1m", "-1s", "1.5", "1h30m", "true", "false", "yes", "off",
               '"str"', "str", "''", '""', "127.0.0.1:0", "localhost:4242", "[1, 2, 3]", "[]",
               "{}", "{ a: 1 }", "$VAR", "$HOME", "$NOPE", '"\\u0000"', "nats://u:p@127.0.0.1:1",
               "$2a$11$W2zko751KUvVy59mUTWmpOdWjpEm5qhcCZRd05GjI/sSOT.xtiHyG", "1e400", "0x10",
               "\u00e9t\u00e9"]


CONF_KEYS = ["port", "host", "listen", "net", "max_payload", "max_pending", "max_connections",
             "max_control_line", "max_subscriptions", "ping_interval", "ping_max",
             "write_deadline", "debug", "trace", "logtime", "server_name", "lame_duck_duration",
             "lame_duck_grace_period", "client_advertise", "authorization", "tls", "cluster",
             "http", "http_port", "unknown_key", "VAR", "include"]


CONF_BLOCK_KEYS = {"authorization": ["user", "password", "token", "timeout", "users"],
                   "tls": ["cert_file", "key_file", "ca_file", "verify", "timeout", "cipher_suites"],
                   "cluster": ["listen", "port", "host", "name", "routes", "authorization",
                               "no_advertise", "tls"]}


SAFE_CONF_KEYS = {"port", "host", "listen", "net", "max_payload", "max_pending",
                  "max_connections", "max_control_line", "max_subscriptions", "ping_interval",
                  "ping_max", "write_deadline", "debug", "trace", "logtime", "server_name",
                  "authorization", "tls", "lame_duck_duration", "lame_duck_grace_period"}


def gen_config(rnd, depth=0):
    """A config text from the format's grammar, with typed and mistyped values."""
    lines = []
    for _ in range(rnd.randrange(1, 8 if depth == 0 else 4)):
        key = rnd.choice(CONF_KEYS)
        sep = rnd.choice((": ", " = ", " ", ":", "="))
        if key in CONF_BLOCK_KEYS and depth < 3 and rnd.random() < 0.8:
            inner = []
            for _ in range(rnd.randrange(0, 5)):
                k = rnd.choice(CONF_BLOCK_KEYS[key])
                if k == "users":
                    v = '[{user: a, password: b}, {user: "c", password: $2a$11$W2zko751KUvVy59mUTWm' \
                        'pOdWjpEm5qhcCZRd05GjI/sSOT.xtiHyG}]'
                elif k in ("cert_file", "key_file", "ca_file"):
                    v = rnd.choice(('"./configs/certs/server-cert.pem"', '"./configs/certs/server-key.pem"',
                                    '"./configs/certs/ca.pem"', '"/nonexistent.pem"', '""'))
                else:
                    v = rnd.choice(CONF_VALUES)
                inner.append("  %s%s%s" % (k, rnd.choice((": ", " = ", " ")), v))
            lines.append("%s%s{\n%s\n}" % (key, rnd.choice((" ", ": ", " = ")), "\n".join(inner)))
        elif key == "include":
            lines.append("include %s" % rnd.choice(('"inc.conf"', "inc.conf", '"nope.conf"',
                                                     '"self.conf"', "'../x'")))
        else:
            v = rnd.choice(CONF_VALUES)
            lines.append("%s%s%s%s" % (key, sep, v, rnd.choice(("", ";", ",", " # c", " // c"))))
    return "\n".join(lines) + "\n"


def mutate_config(rnd, text):
    data = text.encode("utf-8", "surrogateescape")
    r = rnd.random()
    if r < 0.5:
        data = mutate(rnd, data)
    elif r < 0.6:
        data = b"{" * rnd.randrange(1, 400) + data
    elif r < 0.7:
        i = rnd.randrange(len(data) + 1)
        data = data[:i] + rnd.choice((b"\xef\xbb\xbf", b"\x00", b"\r\n", b"\xff", b'"', b"'", b"$",
                                      b"}", b"]", b"[", b"#", b"\\", b"${", b"include ")) + data[i:]
    elif r < 0.8:
        data = data.replace(b"\n", b"\r\n")
    elif r < 0.9:
        data = data + gen_config(rnd).encode()
    return data


def config_seeds():
    d = os.path.join(ROOT, "configs")
    out = []
    for name in sorted(os.listdir(d)):
        if name.endswith(".conf"):
            with open(os.path.join(d, name), "rb") as f:
                out.append(f.read())
    return out


_POS_RX = re.compile(r"(/[^\s:]+):(\d+):(\d+): ")


def positioned(msg, path):
    """Does an error message point at FILE:LINE:COL (of `path` or an
    included file next to it)?"""
    m = _POS_RX.search(msg)
    return bool(m) and os.path.dirname(m.group(1)) == os.path.dirname(path)


def safe_to_start(opts):
    """Starting a fuzzed config for real must not bind outside 127.0.0.1,
    dial routes, or write files outside the test folder."""
    return (not opts.cluster_port and not opts.routes and not opts.http_port
            and not opts.https_port and not opts.log_file and not opts.pid_file
            and not opts.ports_file_dir and not opts.syslog and not opts.remote_syslog
            and opts.host in ("127.0.0.1", "localhost"))


def load_config_inprocess(path, port):
    """What `gnatsd.py -c path` does before it listens, in-process:
    (options or None, error text or None, crash signature or None)."""
    try:
        cmd = cli.parse_command_line(["-c", path, "-a", "127.0.0.1", "-p", str(port)])
        opts = cli.build_options(cmd)
    except ConfigError as e:
        return None, str(e), None
    except Exception as e:
        return None, None, crash_signature(e)
    try:
        srv = Server(opts, Logger(stream=LogSink()))
        if opts.tls:
            srv.setup_tls()
        srv.reactor.close()
    except (ValueError, OSError) as e:       # main.py reports these cleanly
        return opts, "Error configuring server: %s" % e, None
    except Exception as e:
        return opts, None, crash_signature(e)
    return opts, None, None


def run_config_process(path, port, start, python=None, timeout=15.0):
    """`PYTHON gnatsd.py -c path` (with `-t` when it must not start): returns
    (exit code or None if it kept running, output)."""
    cmd = [python or util.PYTHON, util.GNATSD, "-c", path, "-a", "127.0.0.1", "-p", str(port)]
    if not start:
        cmd.append("-t")
    out_path = path + ".out"
    with open(out_path, "wb") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + timeout
    rc = None
    while time.monotonic() < deadline:
        rc = p.poll()
        if rc is not None:
            break
        with open(out_path, "rb") as f:
            if b"Server is ready" in f.read():
                break
        time.sleep(0.05)
    running = p.poll() is None
    if running:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    with open(out_path, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    return (None if running else rc), text


def fuzz_config(inputs=2000, processes=40, seed=3, python=None, rep=None, progress=False):
    """Random and mutated config files: in-process through the same code the
    entry point runs (cli + conf + options + Server), and a sample through
    real `gnatsd.py -c FILE` processes. Every failure must be a clear
    message, with FILE:LINE:COL when it is about a place in the file."""
    rep = rep or Report("fuzz-config")
    rnd = random.Random(seed)
    tmp = tempfile.mkdtemp(prefix="gnatsd-fuzzconf-")
    with open(os.path.join(tmp, "inc.conf"), "w") as f:
        f.write("max_payload: 1000\ndebug: true\n")
    seeds = config_seeds()
    os.environ.setdefault("VAR", "4222")
    ok = pos_err = plain_err = crashes_n = 0
    plain_msgs = {}
    crashes = {}
    samples = []        # (path, safe to start) for the process runs
    t0 = time.monotonic()
    for k in range(inputs):
        if rnd.random() < 0.4:
            data = mutate_config(rnd, rnd.choice(seeds).decode("utf-8", "surrogateescape"))
        else:
            text = gen_config(rnd)
            data = mutate_config(rnd, text) if rnd.random() < 0.6 else text.encode()
        path = os.path.join(tmp, "c%06d.conf" % k)
        data = data.replace(b"self.conf", os.path.basename(path).encode())     # include cycles
        with open(path, "wb") as f:
            f.write(data)
        opts, err, crash = load_config_inprocess(path, 4222)
        if crash:
            crashes_n += 1
            if crash not in crashes:
                crashes[crash] = data
                rep.fail("config %d raised %s; file %r" % (k, crash, data[:300]))
        elif err is None:
            ok += 1
        elif positioned(err, path):
            pos_err += 1
        else:
            plain_err += 1
            key = err.replace(path, "FILE")[:90]
            plain_msgs[key] = plain_msgs.get(key, 0) + 1
        start = opts is not None and safe_to_start(opts)
        # half the process runs start a server (accepted or failing late), half are -t checks
        quota = processes // 2 if start else processes - processes // 2
        if crash or (sum(1 for x in samples if x[1] == start) < quota
                     and rnd.random() < processes * 4.0 / max(1, inputs)):
            samples.append((path, start, err))
        else:
            os.unlink(path)
        if progress and k and k % 20000 == 0:
            print("  fuzz-config: %d files, %.0f s" % (k, time.monotonic() - t0), flush=True)
    rep.fig("config files (in-process)", inputs)
    rep.fig("accepted", ok)
    rep.fig("rejected with FILE:LINE:COL", pos_err)
    rep.fig("rejected with a message only", "%d %s" % (plain_err, sorted(plain_msgs.items(), key=lambda x: -x[1])[:6]))
    rep.fig("raised", "%d (%d distinct)" % (crashes_n, len(crashes)))
    # real processes, a few at a time
    started = checked = clean_errors = no_bcrypt = 0
    proc_bcrypt = subprocess.run([python or util.PYTHON, "-c", "import bcrypt"],
                                 capture_output=True).returncode == 0
    t1 = time.monotonic()
    pending = list(samples)
    while pending:
        batch, pending = pending[:4], pending[4:]
        results = [None] * len(batch)

        def run(j, item):
            path, start, err = item
            results[j] = run_config_process(path, free_port(), start, python)
        threads = [threading.Thread(target=run, args=(j, it)) for j, it in enumerate(batch)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for (path, start, err), res in zip(batch, results):
            if res is None:
                rep.fail("process for %s did not finish" % path)
                continue
            rc, text = res
            if "Traceback" in text:
                rep.fail("gnatsd.py -c %s printed a traceback: %s" % (path, text[-1500:]))
                continue
            if start:
                started += 1
                if rc is not None and not proc_bcrypt and BCRYPT_MISSING in text:
                    no_bcrypt += 1      # clean refusal: that interpreter has no bcrypt
                elif err is None:
                    rep.check(rc is None, "gnatsd.py -c %s exited %s although the config loaded "
                              "in-process: %s" % (path, rc, text[-500:]))
                else:
                    clean_errors += 1
                    detail = err.split(": ", 1)[1]
                    rep.check(rc not in (None, 0) and detail in text,
                              "gnatsd.py -c %s: expected %r and a non-zero exit, got %s: %s"
                              % (path, err, rc, text[-300:]))
            else:
                checked += 1
                if err is not None and not err.startswith("Error configuring"):
                    # -t stops after the config layer (Server-level checks are skipped)
                    clean_errors += 1
                    rep.check(rc not in (None, 0) and err in text,
                              "gnatsd.py -c %s -t: expected %r and a non-zero exit, got %s: %s"
                              % (path, err, rc, text[-300:]))
    # targeted: files and URLs the server opens itself (paths inside tmp)
    targeted = ['log_file: "%s"' % tmp, 'log_file: "%s/a\x00b"' % tmp,
                'log_file: "%s/no/such/dir.log"' % tmp, 'pid_file: "%s"' % tmp,
                'ports_file_dir: "%s/nope"' % tmp, 'remote_syslog: "udp://127.0.0.1:99999"',
                'remote_syslog: "tcp://127.0.0.1:1"', 'remote_syslog: "junk"',
                'tls { cert_file: "%s/none.pem", key_file: "%s/none.pem" }' % (tmp, tmp),
                'tls { cert_file: "./configs/certs/server-key.pem", key_file: "./configs/certs/server-cert.pem" }',
                'authorization { users: [{user: a, password: b}, {user: a, password: c}] }',
                'authorization { user: a, password: "$2a$04$short" }']
    t_ok = 0
    for j, line in enumerate(targeted):
        path = os.path.join(tmp, "t%02d.conf" % j)
        with open(path, "w") as f:
            f.write(line + "\n")
        rc, text = run_config_process(path, free_port(), True, python)
        good = "Traceback" not in text and (rc is None or (rc != 0 and text.strip()))
        t_ok += bool(good)
        rep.check(good, "targeted config %r: exit %s, output %s" % (line, rc, text[-800:]))
    rep.fig("targeted configs (log/pid/syslog/TLS/auth)", "%d of %d clean" % (t_ok, len(targeted)))
    rep.fig("processes started for real / run with -t", "%d / %d" % (started, checked))
    rep.fig("process errors, each printed cleanly", clean_errors)
    if not proc_bcrypt:
        rep.fig("bcrypt configs refused cleanly (no bcrypt in %s)" % (python or util.PYTHON), no_bcrypt)
    rep.fig("process time s", round(time.monotonic() - t1, 1))
    shutil.rmtree(tmp, ignore_errors=True)
    return rep
