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

from . import consumer_api
from . import errors as E
from .config import config_json
from .recovery import AccountRecovery
from .sourcing_hub import SourcingHub
from .stream import Stream, stored_size
from .subjects import subjects_collide
from .store import StoreError
from .storefactory import open_store, store_limits

META = "meta.json"          # recovery.py reads it back
# an account's limits as $JS.API.INFO shows them (nats-server JetStreamAccountLimits)
UNLIMITED = {"max_memory": -1, "max_storage": -1, "max_streams": -1, "max_consumers": -1,
             "max_ack_pending": -1, "memory_max_stream_bytes": -1, "storage_max_stream_bytes": -1,
             "max_bytes_required": False}


class JsAccount:
    def __init__(self, js, account, limits=None):
        self.js = js
        self.account = account          # gnats.account.Account
        self.name = account.name
        self.set_limits(limits)
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
        self.recovery = None            # recovery.AccountRecovery while streams come back

    def set_limits(self, limits):
        limits = dict(limits or {})
        # limits from a JWT's tiered_limits: the tier's name (accounts.py)
        self.tier = limits.pop("_tier", None)
        self.limits = dict(UNLIMITED, **limits)

    # -- what streams call ------------------------------------------------
    def publish(self, subject, reply, hdr, msg):
        self.js.server.publish_internal(self.account, subject, reply, hdr, msg)

    def config_json(self, cfg):
        return config_json(cfg, self.js.version)

    def store_msg(self, stream, subject, hdr, msg, ttl, ts=None):
        size = stored_size(subject, hdr, msg)
        memory = stream.config["storage"] == "memory"
        limit = self.limits["max_memory" if memory else "max_storage"]
        # the account: refused when this message would take the usage over
        # its limit (nats-server wouldExceedLimits); the server: once the
        # usage is over its limit (so the last message stored may cross it)
        if limit >= 0 and self.approx[memory] + size > limit:
            raise E.err(E.ACCOUNT_RESOURCES_EXCEEDED)
        if self.js.over_server_limit(memory):
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
        return sum(s.public_consumers() for s in self.streams.values())

    # -- stream lifecycle --------------------------------------------------
    def check_resources(self, cfg, replacing=None):
        """nats-server's account checks for a stream create or update
        (jsa.checkAndAddStream, checkLimits, checkBytesLimits), in its
        order, then the server's own reservation."""
        lim = self.limits
        others = [s for s in self.streams.values() if s is not replacing]
        # 0 (absent from a JWT) or -1: no limit on the number of streams
        if replacing is None and 0 < lim["max_streams"] <= len(others):
            raise E.err(E.MAX_STREAMS)
        if cfg["max_consumers"] > 0 and lim["max_consumers"] > 0 and cfg["max_consumers"] > lim["max_consumers"]:
            raise E.err(E.MAX_CONSUMERS_LIMIT)
        memory = cfg["storage"] == "memory"
        if lim.get("max_bytes_required") and cfg["max_bytes"] <= 0:
            raise E.err(E.MAX_BYTES_REQUIRED)
        stream_max = lim.get("memory_max_stream_bytes" if memory else "storage_max_stream_bytes", -1)
        if stream_max > 0 and cfg["max_bytes"] > stream_max:
            raise E.err(E.STREAM_MAX_BYTES_EXCEEDED)
        limit = lim["max_memory" if memory else "max_storage"]
        if limit >= 0:
            # a stream without max_bytes still needs a byte: an account
            # whose limit for this storage is 0 has none of it
            want = cfg["max_bytes"] if cfg["max_bytes"] > 0 else 1
            reserved = sum(s.config["max_bytes"] for s in others
                           if s.config["storage"] == cfg["storage"] and s.config["max_bytes"] > 0)
            if reserved > limit or want > limit - reserved:
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

    def add_stream(self, cfg, created=None, persist=True, store=None):
        """A new stream (or a recovered one, with the store it opened)."""
        self.check_resources(cfg)
        self.check_overlap(cfg)
        d = os.path.join(self.dir, cfg["name"])
        if store is None:
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
        stream.store.update_limits(store_limits(cfg), expire=False)
        stream.expire(time.time_ns())
        self.js.touch(stream.store)
        self.write_meta(stream)
        if old_subjects != cfg["subjects"] or old_direct != cfg.get("allow_direct"):
            self.js.unsubscribe_stream(stream)
            self.js.subscribe_stream(self, stream)

    def delete_stream(self, stream):
        consumer_api.stop_all(self, stream)
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
        """Bring back the streams persisted for this account, file stores
        off the reactor thread (recovery.py); `recovery` is set until the
        last one is back."""
        self.recovery = AccountRecovery(self)
        self.recovery.start()

    def close(self):
        self.sourcing.close()
        if self.recovery is not None:
            self.recovery.close()
            self.recovery = None
        for sub in self.api_subs:
            self.js.server.internal_unsubscribe(sub)
        self.api_subs = []
        for s in list(self.streams.values()):
            consumer_api.stop_all(self, s)
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
