"""Measure the file store: write throughput, start-up (recovery) time and
purge time of a big store, and how long the calling (reactor) thread is
held while a store opens on a thread.

    python3 -m gnats.jetstream.filestore_bench [--msgs 1000000] [--dir DIR]

Figures are printed one per line; see the module docstring of filestore.py
for the numbers measured on this project's machine.
"""

import argparse
import os
import shutil
import tempfile
import threading
import time

from .filestore import FileStore


def _stall_probe(stop, gaps):
    """Stand-in for the reactor: a 1 ms tick; records the longest gap."""
    worst = 0.0
    last = time.perf_counter()
    while not stop.is_set():
        time.sleep(0.001)
        now = time.perf_counter()
        worst = max(worst, now - last)
        last = now
    gaps.append(worst)


def write_rate(directory, n, payload, **kw):
    st = FileStore(directory, **kw)
    t = time.perf_counter()
    for i in range(n):
        st.store_msg("bench.%d" % (i % 100), b"", payload)
        if i % 100 == 99:
            st.flush()          # the reactor's end-of-turn flush
    st.flush()
    dt = time.perf_counter() - t
    st.close()
    return n / dt, n * len(payload) / dt / 1e6


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--msgs", type=int, default=1_000_000)
    ap.add_argument("--always-msgs", type=int, default=5000)
    ap.add_argument("--dir", default=None)
    a = ap.parse_args(argv)
    root = tempfile.mkdtemp(prefix="fsbench-", dir=a.dir)
    payload = b"x" * 16
    try:
        d = os.path.join(root, "big")
        rate, mbs = write_rate(d, a.msgs, payload)
        print("write, sync_interval (default), 16 B: %.0f msgs/s, %.2f MB/s payload"
              % (rate, mbs))
        rate, mbs = write_rate(os.path.join(root, "always"), a.always_msgs, payload,
                               sync_always=True)
        print("write, sync_always, 16 B: %.0f msgs/s, %.2f MB/s payload" % (rate, mbs))
        rate, mbs = write_rate(os.path.join(root, "k1"), a.msgs // 10, b"x" * 1024)
        print("write, sync_interval, 1 KiB: %.0f msgs/s, %.1f MB/s payload" % (rate, mbs))

        t = time.perf_counter()
        st = FileStore(d)
        print("open after a clean close (%s) %d msgs: %.2f s"
              % (st.opened_from, st.state().msgs, time.perf_counter() - t))
        st.close()
        st = FileStore(d)
        st._closed = True       # as after kill -9: no index snapshot is left
        os.close(st._wfd)
        t = time.perf_counter()
        st = FileStore(d)
        print("open after a crash (%s) %d msgs: %.2f s"
              % (st.opened_from, st.state().msgs, time.perf_counter() - t))
        st.close()
        os.unlink(os.path.join(d, "index.snap"))

        stop, gaps, got = threading.Event(), [], []
        probe = threading.Thread(target=_stall_probe, args=(stop, gaps))
        probe.start()
        done = threading.Event()
        t = time.perf_counter()
        FileStore.open_async(d, lambda s, e: (got.append(s), done.set()))
        done.wait(600)
        dt = time.perf_counter() - t
        stop.set()
        probe.join()
        print("open_async %d msgs: %.2f s; longest stall of a 1 ms ticker meanwhile: %.1f ms"
              % (got[0].state().msgs, dt, gaps[0] * 1000))
        st = got[0]
        t = time.perf_counter()
        n = st.purge()
        print("purge of %d msgs (on the calling thread): %.3f s" % (n, time.perf_counter() - t))
        st.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
