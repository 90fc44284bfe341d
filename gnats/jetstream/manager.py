"""JetStream for one server: the store directory (locked against a second
server), the accounts that have JetStream, the internal subscriptions
that carry the API and the streams' subjects, and the housekeeping turns.

Threads: everything runs on the reactor thread. Buffered writes reach the
OS once per reactor turn: a store written during the turn is marked with `touch()`
and flushed by the reactor's `before_flush` hook, before the connections
flush, so the acks leave after the writes they confirm. The
fsync policy is nats-server's: every `sync_interval` (the store's flush()
queues its fsync on a background thread when due; a timer here flushes
idle file stores on the interval so they get theirs), or `sync_always`,
where the store syncs each write before it returns.

Accounts: which get JetStream, with which limits, is accounts.py's
decision (`start(account_limits)` takes it, {Account: limits or None};
`configure_accounts` applies it again on reload; operator mode's accounts
are registered from their JWTs before, and accounts.py reads their limits).
Limits are as the API shows them ({"max_memory", "max_storage",
"max_streams", "max_consumers", ...}, -1 for unlimited). An account
without JetStream gets, on this node only, API responders that answer
503 10039 "JetStream not enabled for account", as nats-server does.

Start-up does not block: streams are reopened off the reactor thread and
API requests wait for them (recovery.py).
"""

import os
import shutil
import tempfile
import time

from .. import VERSION
from . import api, errors as E, jsz
from .account import JsAccount
from .accounts import configured
from .filestore_format import lock_store_dir
from .store import StoreError

API_SUBJECTS = ("$JS.API.INFO", "$JS.API.STREAM.>") + tuple(
    "$JS.API.CONSUMER.%s.>" % op for op in ("CREATE", "DURABLE.CREATE", "INFO", "DELETE", "NAMES", "LIST", "PAUSE"))
# Under a domain these answer as nats-server's account mapping
# $JS.<domain>.API.<rest> -> $JS.API.<rest> does: republished on the plain
# subject, where one pull consumer's (or one stream's direct get)
# subscription takes them (they are not the API's own subjects above).
DOMAIN_MAPPED = ("CONSUMER.MSG.NEXT.>", "DIRECT.>")
HOUSEKEEPING = 1.0          # seconds between max_age/TTL/dedupe passes
DIRECT_QUEUE = "_sys_"
# The API subscriptions form a queue group: in a cluster each request is
# answered once, by the requester's own node when it has JetStream (local
# members are preferred), else by one node that has it.
API_QUEUE = "_js_api"


def default_store_dir():
    # nats-server: os.TempDir()/nats/jetstream
    return os.path.join(tempfile.gettempdir(), "nats")


def default_max_memory():
    # nats-server: 75% of the system's memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4 * 3
    except (ValueError, OSError, AttributeError):
        return 1 << 30


def default_max_store(path):
    # nats-server: the free space of the store's file system (1 TB if unknown)
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 1 << 40


class JetStream:
    def __init__(self, server, config):
        self.server = server
        self.log = server.log
        self.version = VERSION
        self.store_dir = config.get("store_dir") or default_store_dir()
        self.root = os.path.join(self.store_dir, "jetstream")
        self.max_memory = config.get("max_memory_store", -1)
        self.max_store = config.get("max_file_store", -1)
        if self.max_memory is None or self.max_memory < 0:
            self.max_memory = default_max_memory()
        self.sync_interval = config.get("sync_interval") or 120.0
        self.sync_always = bool(config.get("sync_always"))
        # jetstream { domain }: the API answers on $JS.<domain>.API.> too (how
        # clients and other domains name this server's JetStream, across
        # leaf connections too: gnats/leafjs.py), and acks and INFO name it
        self.domain = config.get("domain") or ""
        self.api_subjects = API_SUBJECTS
        if self.domain:
            self.api_subjects += tuple(s.replace("$JS.API.", "$JS.%s.API." % self.domain, 1)
                                       for s in API_SUBJECTS)
        self.accounts = {}          # account name -> JsAccount
        self.off_subs = {}          # account name -> its 10039 responders
        self._dirty = set()         # stores written this reactor turn
        self.approx = {True: 0, False: 0}   # usage, as JsAccount.approx
        self._lock_file = None
        self._timer = None
        self._sync_timer = None
        self.started = time.time()

    @property
    def server_name(self):
        return self.server.server_name

    # -- lifecycle ------------------------------------------------------------
    def start(self, account_limits=None):
        """Lock the store directory, enable the global account (and the
        accounts `account_limits` names: {Account: limits dict}), bring
        back their streams. ValueError for a directory in use or unusable."""
        log = self.log
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as e:
            raise ValueError("could not create JetStream storage directory %s: %s" % (self.root, e.strerror))
        self._lock()
        if self.max_store is None or self.max_store < 0:
            self.max_store = default_max_store(self.root)
        log.notice("Starting JetStream")
        log.notice("  Max Memory:      %s" % _size(self.max_memory))
        log.notice("  Max Storage:     %s" % _size(self.max_store))
        log.notice("  Store Directory: \"%s\"" % self.store_dir)
        if self.sync_always:
            log.notice("  Sync:            always")
        else:
            log.notice("  Sync Interval:   %s" % _secs(self.sync_interval))
        if account_limits is None:
            account_limits = configured(self.server)
        self.configure_accounts(account_limits)
        self.server.reactor.before_flush = self.flush_stores
        self._timer = self.server.reactor.call_later(HOUSEKEEPING, self._housekeeping)
        if not self.sync_always:
            self._sync_timer = self.server.reactor.call_later(self.sync_interval, self._sync_turn)

    def _lock(self):
        try:
            self._lock_file = lock_store_dir(self.root)
        except StoreError as e:
            raise ValueError("JetStream %s" % e)

    def configure_accounts(self, account_limits):
        """At start and on reload: JetStream for the accounts named
        ({Account: limits or None}), their limits updated if they had it;
        every other account of the configuration ($G included) loses it
        and answers 10039."""
        registry = self.server.accounts
        for name, jsa in list(self.accounts.items()):
            if registry.find(name) is not jsa.account:
                self.disable_account(jsa.account, answer=False)    # the account went away
        for name in [n for n in self.off_subs if registry.find(n) is None]:
            self._drop_off_subs(name)
        for acc, limits in account_limits.items():
            self.enable_account(acc, limits)
        g = registry.global_account
        for acc in registry.all():
            if acc not in account_limits and (acc.spec is not None or acc is g):
                self.disable_account(acc)

    def enable_account(self, account, limits=None):
        jsa = self.accounts.get(account.name)
        if jsa is not None:
            jsa.set_limits(limits)      # a reload or a JWT update
            return jsa
        self._drop_off_subs(account.name)
        jsa = JsAccount(self, account, limits)
        self.accounts[account.name] = jsa
        srv = self.server

        domain_prefix = "$JS.%s.API." % self.domain if self.domain else None

        def on_api(sub, subject, reply, hdr, msg, client):
            if not reply:
                return      # nats-server answers requests only
            if domain_prefix is not None and subject.startswith(domain_prefix):
                subject = "$JS.API." + subject[len(domain_prefix):]
            if jsa.recovery is not None:
                jsa.recovery.hold_api(subject, reply, msg)     # answered once streams are back
                return
            self.answer_api(jsa, subject, reply, msg, hdr)

        jsa.api_subs = [srv.internal_subscribe(account, s, on_api, queue=API_QUEUE) for s in self.api_subjects]
        if domain_prefix is not None:
            def on_mapped(sub, subject, reply, hdr, msg, client):
                srv.publish_internal(account, "$JS.API." + subject[len(domain_prefix):], reply, hdr, msg)

            jsa.api_subs += [srv.internal_subscribe(account, domain_prefix + s, on_mapped, queue=API_QUEUE)
                             for s in DOMAIN_MAPPED]
        jsa.recover()
        self.refresh_usage()
        return jsa

    def answer_api(self, jsa, subject, reply, msg, hdr=None):
        resp = api.handle_api(jsa, subject, msg, hdr)
        if resp is not None:
            self.server.publish_internal(jsa.account, reply, None, resp[0], resp[1])

    def disable_account(self, account, answer=True):
        """No JetStream for `account` (its streams stop, their files stay):
        API requests from this node's clients get 10039 (with `answer`)."""
        jsa = self.accounts.pop(account.name, None)
        if jsa is not None:
            for s in jsa.streams.values():
                self.untouch(s.store)
            try:
                jsa.close()     # each store flushes and syncs as it closes
            except StoreError as e:
                self.log.error("JetStream: account '%s' not closed cleanly: %s" % (account.name, e))
        if not answer or account.name in self.off_subs:
            return
        srv = self.server

        def on_api(sub, subject, reply, hdr, msg, client):
            if reply:
                body = api.error_response(subject, E.err(E.NOT_ENABLED_FOR_ACCOUNT))
                if body is not None:
                    srv.publish_internal(account, reply, None, None, body)

        # local only, in the API's queue group: a request from a client of
        # this node is answered here, never by another node's JetStream
        self.off_subs[account.name] = [srv.internal_subscribe(account, s, on_api, queue=API_QUEUE, routed=False)
                                       for s in API_SUBJECTS]

    def _drop_off_subs(self, name):
        for sub in self.off_subs.pop(name, ()):
            self.server.internal_unsubscribe(sub)

    def shutdown(self):
        """Flush, sync and close every store; release the directory."""
        for t in (self._timer, self._sync_timer):
            if t is not None:
                t.cancel()
        self.server.reactor.before_flush = None
        for jsa in self.accounts.values():
            for s in jsa.streams.values():
                try:
                    s.store.flush()
                    s.store.sync()
                except StoreError as e:
                    self.log.error("JetStream: stream '%s > %s' not synced at shutdown: %s" % (jsa.name, s.name, e))
            jsa.close()
        for name in list(self.off_subs):
            self._drop_off_subs(name)
        self._dirty.clear()
        if self._lock_file is not None:
            self._lock_file.release()
            self._lock_file = None

    # -- subscriptions ---------------------------------------------------------
    def subscribe_stream(self, jsa, stream):
        srv = self.server

        def on_msg(sub, subject, reply, hdr, msg, client):
            self.store_publish(jsa, stream, subject, reply, hdr, msg, client is None)

        def on_direct(sub, subject, reply, hdr, msg, client):
            if stream.closed or not reply:
                return
            rh, rm = api.handle_direct_get(stream, subject, msg)
            srv.publish_internal(jsa.account, reply, None, rh, rm)

        subs = [srv.internal_subscribe(jsa.account, s, on_msg) for s in stream.config["subjects"]]
        if stream.config.get("allow_direct"):
            base = "$JS.API.DIRECT.GET." + stream.name
            subs.append(srv.internal_subscribe(jsa.account, base, on_direct, queue=DIRECT_QUEUE))
            subs.append(srv.internal_subscribe(jsa.account, base + ".>", on_direct, queue=DIRECT_QUEUE))
        stream.subs = subs

    def store_publish(self, jsa, stream, subject, reply, hdr, msg, internal):
        """A message published to the stream's subjects (`internal`: by the
        server itself): stored, and acknowledged when it has a reply."""
        if stream.closed or (internal and stream.republished_here(hdr)):
            return
        ack = stream.process_publish(subject, reply, hdr, msg)
        if ack is not None:
            self.server.publish_internal(jsa.account, reply, None, None, ack)

    def unsubscribe_stream(self, stream):
        for sub in stream.subs:
            self.server.internal_unsubscribe(sub)
        stream.subs = []

    # -- stores -------------------------------------------------------------------
    def touch(self, store):
        self._dirty.add(store)

    def untouch(self, store):
        self._dirty.discard(store)

    def flush_stores(self):
        """Reactor, before connections flush: hand buffered writes to the OS."""
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        for store in dirty:
            try:
                store.flush()
            except StoreError as e:
                self.log.error("JetStream: flush failed: %s" % e)

    def raise_limit(self, memory, n):
        """A reload raised max_memory_store / max_file_store."""
        if memory:
            self.max_memory = n
        else:
            self.max_store = n

    def over_server_limit(self, memory):
        limit = self.max_memory if memory else self.max_store
        return limit >= 0 and self.approx[memory] > limit

    def over_server_reservation(self, memory, max_bytes, replacing=None):
        """Would a stream reserving max_bytes exceed the server's limit?"""
        limit = self.max_memory if memory else self.max_store
        want = "memory" if memory else "file"
        reserved = sum(s.config["max_bytes"] for _, s in self.streams()
                       if s is not replacing and s.config["storage"] == want and s.config["max_bytes"] > 0)
        return limit >= 0 and reserved + max_bytes > limit

    def refresh_usage(self):
        total = {True: 0, False: 0}
        for jsa in self.accounts.values():
            u = jsa.refresh_usage()
            total[True] += u[True]
            total[False] += u[False]
        self.approx = total

    def monitor_info(self):
        """The plain dict the monitoring snapshot carries (jsz.py)."""
        return jsz.collect(self)

    def streams(self):
        for jsa in self.accounts.values():
            for s in jsa.streams.values():
                yield jsa, s

    def _housekeeping(self):
        now = time.time_ns()
        for jsa, s in list(self.streams()):
            if s.expire(now):
                self.touch(s.store)
            s.expire_dedupe(now)
        self.refresh_usage()
        self._timer = self.server.reactor.call_later(HOUSEKEEPING, self._housekeeping)

    def _sync_turn(self):
        # A store fsyncs on its own thread from flush() once sync_interval
        # has passed since its last sync (FileStore's policy); this turn
        # reaches the stores no write touched since, so idle data is synced
        # on the interval too, as nats-server's periodic sync does.
        self._sync_timer = self.server.reactor.call_later(self.sync_interval, self._sync_turn)
        for _, s in list(self.streams()):
            if s.config["storage"] == "file":
                self.touch(s.store)


def _size(n):
    if n is None or n < 0:
        return "unlimited"
    for unit, f in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= f:
            return "%.2f %s" % (n / f, unit)
    return "%d B" % n


def _secs(s):
    return "%gs" % s
