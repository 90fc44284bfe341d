"""Log lines in nats-server's format:

    [PID] 2016/04/26 13:21:20.379640 [INF] message

Levels: INF (notice), WRN, ERR, FTL always; DBG with -D; TRC with -V.
Destinations: stdout (default), a file (-l), local syslog (-s), a remote
syslog over UDP (-r), or a `logging.Logger` (an embedded server's, see
gnats.embed: the message alone at the mapped level; the host application's
handlers decide where it goes). Callers test `log.debug_on` / `log.trace_on`
before formatting anything costly, so a quiet server pays nothing for logging.
"""

import os
import socket
import sys
import threading
import time
from urllib.parse import urlparse

# syslog priorities (facility user = 1 << 3)
_SYSLOG_PRI = {"INF": 14, "WRN": 12, "ERR": 11, "FTL": 10, "DBG": 15, "TRC": 15}
# `logging` levels (the numbers, so the command line need not import logging);
# TRC sits below DEBUG (10): protocol traces are the noisiest
TRACE = 5
_LOGGING_LEVEL = {"INF": 20, "WRN": 30, "ERR": 40, "FTL": 50, "DBG": 10, "TRC": TRACE}


class Logger:
    def __init__(self, debug=False, trace=False, logtime=True, log_file="",
                 syslog=False, remote_syslog="", stream=None, logger=None):
        self.debug_on = bool(debug)
        self.trace_on = bool(trace)
        self.logtime = logtime
        self.log_file = log_file
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._stream = stream or sys.stdout
        self._file = None
        self._syslog_sock = None
        self._syslog_addr = None
        self._logger = None
        if log_file:
            self._file = open(log_file, "a", buffering=1, encoding="utf-8")
        elif remote_syslog:
            self._open_remote_syslog(remote_syslog)
        elif syslog:
            self._open_local_syslog()
        elif logger is not None:
            self._logger = logger

    # -- destinations ---------------------------------------------------
    def _open_local_syslog(self):
        for path in ("/dev/log", "/var/run/syslog"):
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                s.connect(path)
                self._syslog_sock = s
                return
            except OSError:
                continue
        # No local syslog daemon: fall back to stdout rather than lose logs.

    def _open_remote_syslog(self, url):
        u = urlparse(url if "://" in url else "udp://" + url)
        host = u.hostname or "localhost"
        port = u.port or 514
        kind = socket.SOCK_STREAM if u.scheme == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.connect((host, port))
            self._syslog_sock = s
        except OSError:
            s.close()

    def reopen(self):
        """SIGUSR1: reopen the log file (after rotation)."""
        if not self.log_file:
            return
        with self._lock:
            old = self._file
            self._file = open(self.log_file, "a", buffering=1, encoding="utf-8")
            if old:
                old.close()

    def retarget(self, other):
        """Write where `other` (a fresh Logger) writes from now on: a reload
        that changed log_file, syslog or remote_syslog."""
        with self._lock:
            old_file, old_sock = self._file, self._syslog_sock
            self.log_file = other.log_file
            self._file, self._syslog_sock = other._file, other._syslog_sock
            other._file = other._syslog_sock = None
        if old_file:
            old_file.close()
        if old_sock:
            old_sock.close()

    def close(self):
        with self._lock:
            if self._file:
                self._file.close()
                self._file = None
            if self._syslog_sock:
                self._syslog_sock.close()
                self._syslog_sock = None

    # -- output ---------------------------------------------------------
    def _write(self, level, msg):
        if self._logger is not None:
            self._logger.log(_LOGGING_LEVEL[level], msg)
            return
        if self._syslog_sock is not None:
            data = ("<%d>gnatsd[%d]: [%s] %s" % (_SYSLOG_PRI[level], self.pid, level, msg)).encode()
            try:
                self._syslog_sock.send(data)
            except OSError:
                pass
            return
        if self.logtime:
            t = time.time()
            stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(t))
            line = "[%d] %s.%06d [%s] %s\n" % (self.pid, stamp, int((t % 1) * 1e6), level, msg)
        else:
            line = "[%d] [%s] %s\n" % (self.pid, level, msg)
        with self._lock:
            out = self._file or self._stream
            try:
                out.write(line)
                out.flush()
            except (OSError, ValueError):
                pass

    def notice(self, msg):
        self._write("INF", msg)

    def warn(self, msg):
        self._write("WRN", msg)

    def error(self, msg):
        self._write("ERR", msg)

    def fatal(self, msg):
        self._write("FTL", msg)

    def debug(self, msg):
        if self.debug_on:
            self._write("DBG", msg)

    def trace(self, msg):
        if self.trace_on:
            self._write("TRC", msg)
