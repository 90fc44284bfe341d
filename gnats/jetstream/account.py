"""JetStream in one account: its streams, limits, API counters, and the
internal subscriptions that feed the streams.

A JsAccount is the `host` its streams call: `store_msg` (account limits,
then the store), `publish` (acks, republish), `config_json`. Stream configs
are persisted under <store_dir>/jetstream/<account>/streams/<name>/meta.json
(written to a temporary file, fsynced, renamed), so streams come back after
a restart; the messages live in the store's own directory beside it
(msgs/), or nowhere for memory storage.
"""

import json
import os
import time

from . import errors as E
from .config import config_json, stream_config
from .sourcing import SourcingHub
from .stream import Stream, stored_size
from .subjects import subjects_collide
from .store import StoreError
from .storefactory import open_store, store_limits

META = "meta.json"
UNLIMITED = {"max_memory": -1, "max_storage": -1, "max_streams": -1, "max_consumers": -1}


class JsAccount:
    def __init__(self, js, account, limits=None):
        self.js = js
        self.account = account          # gnats.account.Account
        self.name = account.name
        self.limits = dict(UNLIMITED, **(limits or {}))
        self.streams = {}               # name -> Stream
        self.api_total = 0
        self.api_errors = 0
        self.api_subs = []              # the $JS.API subscriptions (manager.py)
        # bytes used per storage kind (True: memory) as of the last
        # refresh (every housekeeping second) plus what was stored since:
        # the limit check per publish must not sum every stream
        self.approx = {True: 0, False: 0}
        self.dir = os.path.join(js.root, self.name, "streams")
        self.sourcing = SourcingHub(self)   # mirrors and sources (sourcing.py)

    # -- what streams call ------------------------------------------------
    def publish(self, subject, reply, hdr, msg):
        self.js.server.publish_internal(self.account, subject, reply, hdr, msg)

    def config_json(self, cfg):
        return config_json(cfg, self.js.version)

    def store_msg(self, stream, subject, hdr, msg, ttl, ts=None):
        size = stored_size(subject, hdr, msg)
        memory = stream.config["storage"] == "memory"
        limit = self.limits["max_memory" if memory else "max_storage"]
        # nats-server refuses once the usage is over a limit (so the last
        # message stored may cross it)
        if (limit >= 0 and self.approx[memory] > limit) or self.js.over_server_limit(memory):
            raise E.err(E.INSUFFICIENT_RESOURCES)
        try:
            seq, ts = stream.store.store_msg(subject, hdr, msg, ts=ts, ttl=ttl)    # ts: a mirror keeps the origin's
        except StoreError as e:
            self.js.log.error("JetStream failed to store a msg on stream '%s > %s': %s" % (self.name, stream.name, e))
            raise E.err(E.STORE_FAILED, err=str(e))
        self.js.touch(stream.store)
        self.approx[memory] += size
        self.js.approx[memory] += size
        return seq, ts

    # -- usage -------------------------------------------------------------
    def usage(self, memory):
        want = "memory" if memory else "file"
        return sum(s.store.state().bytes for s in self.streams.values() if s.config["storage"] == want)

    def refresh_usage(self):
        self.approx = {True: self.usage(True), False: self.usage(False)}
        return self.approx

    def reserved(self, memory):
        want = "memory" if memory else "file"
        return sum(s.config["max_bytes"] for s in self.streams.values()
                   if s.config["storage"] == want and s.config["max_bytes"] > 0)

    def consumer_count(self):
        return sum(len(s.consumers) for s in self.streams.values())

    # -- stream lifecycle --------------------------------------------------
    def check_resources(self, cfg, replacing=None):
        others = [s for s in self.streams.values() if s is not replacing]
        if replacing is None and 0 <= self.limits["max_streams"] <= len(others):
            raise E.err(E.MAX_STREAMS)
        memory = cfg["storage"] == "memory"
        limit = self.limits["max_memory" if memory else "max_storage"]
        if limit >= 0 and cfg["max_bytes"] > 0:
            reserved = sum(s.config["max_bytes"] for s in others
                           if s.config["storage"] == cfg["storage"] and s.config["max_bytes"] > 0)
            if reserved + cfg["max_bytes"] > limit:
                raise E.err(E.MEMORY_EXCEEDED if memory else E.STORAGE_EXCEEDED)
        if cfg["max_bytes"] > 0 and self.js.over_server_reservation(memory, cfg["max_bytes"], replacing):
            raise E.err(E.MEMORY_EXCEEDED if memory else E.STORAGE_EXCEEDED)

    def check_overlap(self, cfg, replacing=None):
        for s in self.streams.values():
            if s is replacing:
                continue
            for a in s.config["subjects"]:
                for b in cfg["subjects"]:
                    if subjects_collide(a, b):
                        raise E.err(E.SUBJECT_OVERLAP)

    def add_stream(self, cfg, created=None, persist=True):
        self.check_resources(cfg)
        self.check_overlap(cfg)
        d = os.path.join(self.dir, cfg["name"])
        try:
            store = open_store(cfg, os.path.join(d, "msgs"), self.js)
        except (StoreError, OSError) as e:
            raise E.err(E.STREAM_CREATE, err=str(e))
        first = cfg.get("first_seq") or 0
        if first > 1 and store.state().last_seq == 0:
            store.compact(first)    # a new (or memory) stream starts at first_seq
        stream = Stream(self, cfg, store, created or time.time_ns())
        if persist:
            try:
                self.write_meta(stream)
            except OSError as e:
                store.close()
                raise E.err(E.STREAM_CREATE, err="could not write stream metadata: %s" % e)
        self.streams[cfg["name"]] = stream
        self.js.subscribe_stream(self, stream)
        self.sourcing.stream_added(stream)      # sourcing
        return stream

    def update_stream(self, stream, cfg):
        self.check_resources(cfg, replacing=stream)
        self.check_overlap(cfg, replacing=stream)
        old_subjects = stream.config["subjects"]
        old_direct = stream.config.get("allow_direct")
        old_cfg = stream.config
        stream.apply_config(cfg)
        self.sourcing.stream_updated(stream, old_cfg)   # sourcing
        stream.store.update_limits(store_limits(cfg))
        self.js.touch(stream.store)
        self.write_meta(stream)
        if old_subjects != cfg["subjects"] or old_direct != cfg.get("allow_direct"):
            self.js.unsubscribe_stream(stream)
            self.js.subscribe_stream(self, stream)

    def delete_stream(self, stream):
        self.sourcing.stream_removed(stream)    # sourcing
        self.js.unsubscribe_stream(stream)
        del self.streams[stream.name]
        stream.closed = True
        self.js.untouch(stream.store)
        stream.store.delete()
        d = os.path.join(self.dir, stream.name)
        _remove_tree(d)

    def write_meta(self, stream):
        d = os.path.join(self.dir, stream.name)
        os.makedirs(d, exist_ok=True)
        body = json.dumps({"config": stream.config, "created": stream.created}).encode()
        tmp = os.path.join(d, META + ".tmp")
        with open(tmp, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(d, META))

    def recover(self):
        """Bring back the streams persisted for this account; a damaged
        meta.json is logged and skipped, never fatal."""
        try:
            names = sorted(os.listdir(self.dir))
        except OSError:
            return
        for name in names:
            path = os.path.join(self.dir, name, META)
            try:
                with open(path, "rb") as f:
                    meta = json.loads(f.read())
                cfg = stream_config(meta["config"])
                cfg["sealed"] = bool(meta["config"].get("sealed"))
                created = int(meta["created"])
            except (OSError, ValueError, KeyError, TypeError, E.ApiError) as e:
                self.js.log.error("JetStream could not recover stream '%s > %s' from %s: %s"
                                  % (self.name, name, path, e))
                continue
            try:
                self.add_stream(cfg, created, persist=False)
            except E.ApiError as e:
                self.js.log.error("JetStream could not recover stream '%s > %s': %s"
                                  % (self.name, name, e.description))
                continue
            stream = self.streams[cfg["name"]]
            stream.rebuild_dedupe(time.time_ns())
            st = stream.store.state()
            self.js.log.notice("  Restored %d messages for stream '%s > %s'" % (st.msgs, self.name, name))

    def close(self):
        self.sourcing.close()
        for sub in self.api_subs:
            self.js.server.internal_unsubscribe(sub)
        self.api_subs = []
        for s in list(self.streams.values()):
            self.js.unsubscribe_stream(s)
            s.close()


def _remove_tree(d):
    for root, dirs, files in os.walk(d, topdown=False):
        for f in files:
            try:
                os.unlink(os.path.join(root, f))
            except OSError:
                pass
        for x in dirs:
            try:
                os.rmdir(os.path.join(root, x))
            except OSError:
                pass
    try:
        os.rmdir(d)
    except OSError:
        pass
