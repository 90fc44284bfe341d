"""Bringing an account's streams back at start (or when an account gets
JetStream) without blocking the reactor.

Each stream's meta.json is read at once (small), memory streams come back
at once (nothing on disk), and file streams are opened one after the other
by `FileStore.open_async` on a thread: a million-message store rebuilt
after a crash takes seconds, during which the server accepts clients,
answers PINGs and routes ordinary messages.

While any stream of the account is still being opened, the account's API
requests and the messages published to a recovering stream's subjects are
held, in arrival order, and handled once the last stream is back (as if
they had arrived then): a client sees a slower answer, never "stream not
found" nor a lost message. nats-server instead restores every stream
before it opens its client port; we chose to wait in the API so the port
and core NATS stay available. What is held is bounded (MAX_HELD_BYTES per
account); past it a request gets 503 10008 "JetStream system temporarily
unavailable" and a publish with a reply subject the same error as its
ack. Direct gets (`$JS.API.DIRECT.GET.<stream>`) of a recovering stream
find no responder until it is back.

After each open the store's figures (how it opened, messages, torn bytes,
time) and its `warnings` (records recovery dropped) are logged.
"""

import json
import os
import time
from collections import deque

from . import consumer_api
from . import errors as E
from .api import error_response
from .config import stream_config
from .filestore import FileStore
from .store import StoreError
from .storefactory import store_limits
from .stream import dedupe_ids

META = "meta.json"
MAX_HELD_BYTES = 32 << 20
HELD_OVERHEAD = 64      # bytes counted per held item besides its data


class AccountRecovery:
    """One account's streams coming back; `jsa.recovery` while it runs."""

    def __init__(self, jsa):
        self.jsa = jsa
        self.js = jsa.js
        self.log = jsa.js.log
        self.todo = deque()         # (cfg, created) of file streams to open
        self.holding = {}           # stream name -> its holding subscriptions
        self.held = deque()         # ("api", subject, reply, msg) / ("pub", name, subject, reply, hdr, msg, client)
        self.held_bytes = 0
        self.closed = False

    # -- start -----------------------------------------------------------
    def start(self):
        for cfg, created in self._read_metas():
            if cfg["storage"] == "memory":
                self._restore(cfg, created, None)
            else:
                self.todo.append((cfg, created))
                self._hold_subjects(cfg)
        self._next()

    def _read_metas(self):
        """(config, created) of each persisted stream; a damaged meta.json
        is logged and skipped, never fatal."""
        jsa = self.jsa
        try:
            names = sorted(os.listdir(jsa.dir))
        except OSError:
            return []
        out = []
        for name in names:
            path = os.path.join(jsa.dir, name, META)
            try:
                with open(path, "rb") as f:
                    meta = json.loads(f.read())
                cfg = stream_config(meta["config"])
                cfg["sealed"] = bool(meta["config"].get("sealed"))
                created = int(meta["created"])
            except (OSError, ValueError, KeyError, TypeError, E.ApiError) as e:
                self.log.error("JetStream could not recover stream '%s > %s' from %s: %s"
                               % (jsa.name, name, path, e))
                continue
            out.append((cfg, created))
        return out

    def _hold_subjects(self, cfg):
        srv = self.js.server
        name = cfg["name"]

        def on_msg(sub, subject, reply, hdr, msg, client):
            self._hold(("pub", name, subject, reply, hdr, msg, client is None),
                       len(subject) + len(msg) + len(hdr or b""), reply, name)

        self.holding[name] = [srv.internal_subscribe(self.jsa.account, s, on_msg)
                              for s in cfg["subjects"]]

    def _unhold_subjects(self, name):
        for sub in self.holding.pop(name, ()):
            self.js.server.internal_unsubscribe(sub)

    # -- opening, one file stream at a time --------------------------------
    def _next(self):
        if self.closed:
            return
        if not self.todo:
            self._finish()
            return
        cfg, created = self.todo[0]
        js = self.js
        directory = os.path.join(self.jsa.dir, cfg["name"], "msgs")
        reactor = js.server.reactor
        t0 = time.monotonic()

        def done(store, err):       # on the opening thread
            secs = time.monotonic() - t0
            dedupe = None
            if store is not None:
                # the Nats-Msg-Id window is read back here too (up to 100k
                # messages: a second on the reactor thread)
                try:
                    dedupe = dedupe_ids(store, cfg["duplicate_window"], time.time_ns())
                except StoreError as e:
                    store.close()
                    store, err = None, e
            reactor.call_soon_threadsafe(self._opened, cfg, created, store, err, secs, dedupe)

        FileStore.open_async(directory, done, limits=store_limits(cfg), sync_always=js.sync_always,
                             sync_interval=js.sync_interval)

    def _opened(self, cfg, created, store, err, secs, dedupe):
        self.todo.popleft()
        name = cfg["name"]
        self._unhold_subjects(name)
        if self.closed:
            if store is not None:
                store.close()
            return
        if err is not None:
            self.log.error("JetStream could not recover stream '%s > %s': %s" % (self.jsa.name, name, err))
        else:
            self._log_open(name, store, secs)
            self._restore(cfg, created, store, dedupe)
        self._next()

    def _log_open(self, name, store, secs):
        st = store.state()
        where = "'%s > %s'" % (self.jsa.name, name)
        self.log.notice("  Opened stream %s from %s in %.3fs: %d messages%s"
                        % (where, store.opened_from, secs, st.msgs,
                           ", %d torn bytes cut off" % store.torn_bytes if store.torn_bytes else ""))
        if store.torn_bytes:
            # only a crash of the machine (or a store damaged by hand) leaves
            # one: the operator should hear of it, not only in a count
            self.log.warn("JetStream stream %s: the last block ended in %d bytes of an incomplete "
                          "record (a torn write), cut off; every whole record before it is kept"
                          % (where, store.torn_bytes))
        for w in store.warnings:
            self.log.warn("JetStream stream %s: %s" % (where, w))

    def _restore(self, cfg, created, store, dedupe=None):
        jsa = self.jsa
        try:
            stream = jsa.add_stream(cfg, created, persist=False, store=store)
        except E.ApiError as e:
            if store is not None:
                store.close()
            self.log.error("JetStream could not recover stream '%s > %s': %s"
                           % (jsa.name, cfg["name"], e.description))
            return
        stream.rebuild_dedupe(time.time_ns(), found=dedupe)
        consumer_api.recover(jsa, stream)       # its durable consumers, with their saved state
        self.log.notice("  Restored %d messages for stream '%s > %s'"
                        % (stream.store.state().msgs, jsa.name, cfg["name"]))

    def _finish(self):
        """Every stream is back: handle what was held, in order."""
        jsa = self.jsa
        jsa.recovery = None
        self.js.refresh_usage()
        held, self.held = self.held, deque()
        self.held_bytes = 0
        for item in held:
            if item[0] == "api":
                self.js.answer_api(jsa, item[1], item[2], item[3])
            else:
                _, name, subject, reply, hdr, msg, internal = item
                stream = jsa.streams.get(name)
                if stream is not None:
                    self.js.store_publish(jsa, stream, subject, reply, hdr, msg, internal)

    # -- holding -------------------------------------------------------------
    def hold_api(self, subject, reply, msg):
        """An API request while streams recover: held (or refused when the
        account holds too much already)."""
        self._hold(("api", subject, reply, msg), len(subject) + len(reply) + len(msg), reply, None)

    def _hold(self, item, size, reply, stream_name):
        size += HELD_OVERHEAD
        if self.held_bytes + size <= MAX_HELD_BYTES:
            self.held.append(item)
            self.held_bytes += size
            return
        if not reply:
            return
        if stream_name is None:
            body = error_response(item[1], E.err(E.UNAVAILABLE))
        else:
            body = json.dumps({"error": E.err(E.UNAVAILABLE).body(), "stream": stream_name, "seq": 0},
                              separators=(",", ":")).encode()
        if body is not None:
            self.js.server.publish_internal(self.jsa.account, reply, None, None, body)

    def close(self):
        """The account loses JetStream or the server stops: a store still
        opening is closed when it arrives; held items are dropped."""
        self.closed = True
        for name in list(self.holding):
            self._unhold_subjects(name)
        self.held.clear()
        self.held_bytes = 0
