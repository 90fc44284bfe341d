"""Raw-socket load workers over WebSocket (issue 21), the same contract as
load.py's publisher and subscriber (same signatures, results and checks),
for the `ws` scenarios.

The publisher sends one prebuilt, masked binary frame holding about 64 KiB
of PUBs again and again (a browser client batches its writes the same way:
one frame per flush), then a frame with PING. The subscriber walks the
server's frame headers and hands only the payload bytes to load.py's
StreamCounter, so a header byte that happens to be an "M" is never counted
as a message.
"""

import base64
import os
import socket
import struct
import time

from . import load
from .load import CHUNK_TARGET, CONNECT, POLL, LoadError, StreamCounter, pub_frame

MASK_KEY = b"\x5a\xa5\x3c\xc3"


def masked_frame(payload, opcode=2):
    """A client frame: FIN, opcode, mask bit and key, masked payload."""
    n = len(payload)
    if n <= 125:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    k = (MASK_KEY * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")
    return head + MASK_KEY + body


class FrameWalker:
    """Server frames to payload bytes, across reads."""

    def __init__(self):
        self.head = b""
        self.rem = 0

    def payloads(self, data):
        """[(start, end)] payload regions of data (a bytes-like); raises on a
        close frame (the server gave up on us)."""
        out = []
        if self.head:
            data = self.head + bytes(data)
            self.head = b""
            base_copy = True
        else:
            base_copy = False
        pos, n = 0, len(data)
        while pos < n:
            if self.rem:
                take = min(self.rem, n - pos)
                out.append((pos, pos + take))
                pos += take
                self.rem -= take
                continue
            if n - pos < 2:
                self.head = bytes(data[pos:])
                break
            b0, b1 = data[pos], data[pos + 1] & 0x7F
            need = 2 + (2 if b1 == 126 else 8 if b1 == 127 else 0)
            if n - pos < need:
                self.head = bytes(data[pos:])
                break
            if b1 == 126:
                b1 = struct.unpack("!H", bytes(data[pos + 2:pos + 4]))[0]
            elif b1 == 127:
                b1 = struct.unpack("!Q", bytes(data[pos + 2:pos + 10]))[0]
            if b0 & 0x0F == 8:
                raise LoadError("server sent a close frame: %r" % bytes(data[pos:pos + 40]))
            pos += need
            self.rem = b1
        return out, (data if base_copy else None)


def ws_connect(port, ops=b"", timeout=20.0, host="127.0.0.1", auth=None):
    """Upgrade, CONNECT, ops, PING; wait for the PONG. Returns (socket,
    walker)."""
    deadline = time.monotonic() + timeout
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                 % (host.encode(), port, key))
    sock.settimeout(POLL)
    head, rest = load._read_until(sock, b"", b"\r\n\r\n", deadline)
    if not head.startswith(b"HTTP/1.1 101"):
        raise LoadError("websocket upgrade refused: %r" % head[:80])
    hello = CONNECT
    if auth:
        hello = hello.replace(b'"name"', b'"user":"%s","pass":"%s","name"' % auth)
    sock.sendall(masked_frame(hello + ops + b"PING\r\n"))
    walker = FrameWalker()
    seen = b""
    while b"PONG\r\n" not in seen:
        if time.monotonic() > deadline:
            raise LoadError("timed out waiting for the setup PONG")
        if rest:
            data, rest = rest, b""
        else:
            try:
                data = sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise LoadError("server closed the connection")
        regions, base = walker.payloads(data)
        base = data if base is None else base
        for a, b in regions:
            seen += bytes(base[a:b])
        if b"-ERR" in seen:
            raise LoadError("server said %r" % seen[seen.index(b"-ERR"):][:80])
    if seen.index(b"PONG\r\n") + 6 != len(seen):
        raise LoadError("unexpected data after the setup PONG")
    return sock, walker


def publisher(ctl, name, port, tls, plan, cycles, auth=None):
    sock, walker = ws_connect(port, auth=auth)
    cycle = b"".join(pub_frame(s, n) for s, n in plan)
    per_chunk = max(1, CHUNK_TARGET // len(cycle))
    chunk = masked_frame(cycle * per_chunk)
    full, rem = divmod(cycles, per_chunk)
    load._wait_start(ctl, name)
    c0 = time.process_time()
    sock.settimeout(ctl.timeout)
    sendall = sock.sendall
    abort = ctl.abort
    for i in range(full):
        sendall(chunk)
        if i & 31 == 31 and abort.is_set():
            sock.close()
            return {"error": "aborted after %d of %d msgs" % ((i + 1) * per_chunk * len(plan),
                                                             cycles * len(plan))}
    if rem:
        sendall(masked_frame(cycle * rem))
    sendall(masked_frame(b"PING\r\n"))
    sock.settimeout(POLL)
    deadline = time.monotonic() + ctl.timeout
    seen = b""
    while b"PONG\r\n" not in seen:
        if time.monotonic() > deadline:
            raise LoadError("timed out waiting for the final PONG")
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        if not data:
            raise LoadError("server closed the connection")
        regions, base = walker.payloads(data)
        base = data if base is None else base
        for a, b in regions:
            seen += bytes(base[a:b])
    t_done = time.monotonic()
    ctl.pub_done.set()
    sock.close()
    return {"sent": cycles * len(plan), "t_done": t_done, "cpu_s": time.process_time() - c0}


def subscriber(ctl, name, port, tls, ops, slot, group_slots, target, auth=None):
    sock, walker = ws_connect(port, ops, auth=auth)
    counts = ctl.counts
    sc = StreamCounter()
    view = sc.view
    rbuf = bytearray(load.RECV_SIZE)
    rview = memoryview(rbuf)
    load._wait_start(ctl, name)
    c0 = time.process_time()
    deadline = time.monotonic() + ctl.timeout
    closed = timed_out = False
    t_done = None
    pinged = False
    while True:
        if not pinged and sum(counts[i] for i in group_slots) >= target and (
                target or ctl.pub_done.is_set()):
            t_done = time.monotonic()
            sock.sendall(masked_frame(b"PING\r\n"))
            pinged = True
            deadline = time.monotonic() + 10.0
        if pinged and sc.pongs:
            break
        if ctl.abort.is_set() or time.monotonic() > deadline:
            timed_out = True
            break
        try:
            n = sock.recv_into(rview)
        except socket.timeout:
            continue
        except OSError:
            closed = True
            break
        if n == 0:
            closed = True
            break
        try:
            regions, base = walker.payloads(rview[:n])
        except LoadError:
            closed = True
            break
        src = rview if base is None else memoryview(base)
        for a, b in regions:
            m = b - a
            view[:m] = src[a:b]
            p = sc.feed(m)
            if p:
                sock.sendall(masked_frame(b"PONG\r\n" * p))
        counts[slot] = sc.msgs
    sock.close()
    return {"msgs": sc.msgs, "bytes": sc.message_bytes(), "t_done": t_done,
            "timed_out": timed_out, "closed": closed, "errors": sc.errs, "err_text": sc.err_text,
            "cpu_s": time.process_time() - c0}
