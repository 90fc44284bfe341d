"""Process figures for /varz: resident memory, CPU use and core counts,
read from /proc (with portable fallbacks). Kept apart from the endpoint
builders: this is operating-system I/O with sampling state that lives as
long as the monitor, while the builders only format a snapshot."""

import os
import threading
import time

CPU_WINDOW = 0.5            # min seconds between two CPU samples


def process_rss():
    """Resident set size in bytes (VmRSS), 0 when unknown."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except (ImportError, OSError):
        return 0


def _cpu_seconds():
    t = os.times()
    return t.user + t.system


class ProcStats:
    """CPU percent of this process between samples, like nats-server's
    periodic /proc/self/stat reading (100 = one core busy). A sample is
    taken at most every CPU_WINDOW seconds so back-to-back requests do not
    divide by a tiny interval."""

    def __init__(self):
        self._lock = threading.Lock()
        self._last = (time.monotonic(), _cpu_seconds())
        self._pct = 0.0

    def cpu(self):
        with self._lock:
            now, used = time.monotonic(), _cpu_seconds()
            last_t, last_used = self._last
            if now - last_t >= CPU_WINDOW:
                self._pct = round(100.0 * (used - last_used) / (now - last_t), 1)
                self._last = (now, used)
            return self._pct


def cpu_count():
    return os.cpu_count() or 1


def usable_cpus():
    """Go's default GOMAXPROCS: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return cpu_count()
