"""One stream: its config, its message store, and the publish path.

`Stream.process_publish()` is called (on the reactor thread) for each
message published to one of the stream's subjects. It applies the checks
nats-server makes before storing (sealed, size, Nats-Msg-Id de-duplication,
the Nats-Expected-* headers, Nats-Rollup, Nats-TTL, discard new), stores
through the MsgStore interface (gnats/jetstream/store.py), then rolls up,
republishes, applies the retention policy and returns the acknowledgement
body (or None when the publisher gave no reply subject or no_ack is set).

`Stream.expire()` applies max_age and TTLs when they fall due (its timer,
gnats/jetstream/expiry.py, and the housekeeping pass), and with
`subject_delete_marker_ttl` stores the marker that replaces a subject's
last message (through the publish path: consumers and republish see it).

Retention: limits is the store's job (it drops the oldest messages); an
interest stream with no consumers keeps nothing (as nats-server); workqueue
keeps messages until a consumer acknowledges them. Consumers (issue 19)
attach to `consumers` and are told of each stored message through
`on_stored`; `interest_removes` is the hook interest/workqueue retention
use to drop acknowledged messages.
"""

import json
import time
from collections import OrderedDict

from . import errors as E
from .expiry import ExpiryTimer
from .headers import build_headers, is_delete_marker, max_age_marker, parse_headers, parse_ttl, rfc3339, set_header
from .sourcing_config import SOURCE_HEADER_NOT_ALLOWED
from ..transform import SubjectTransform

MAX_HEADER = 64 * 1024
# Nats-Msg-Id entries are bounded by the window and by bytes: ids may be
# long (a header value up to 64 KiB), so a flood of distinct big ids must
# not hold gigabytes; past the bound the oldest are forgotten early.
DEDUPE_MAX_BYTES = 64 << 20
DEDUPE_ENTRY_COST = 100     # the dict slot and the (seq, ts) tuple
DEDUPE_REBUILD = 100000 # messages read back at most to rebuild them after a restart
_JSON = json.JSONEncoder(separators=(",", ":"))


def dedupe_ids(store, duplicate_window, now_ns, limit=DEDUPE_REBUILD):
    """([(Nats-Msg-Id, seq, ts), ...] oldest first, the last message's id)
    of the messages stored within the window (newest `limit` at most).
    Reads only the store: safe on another thread while nothing else uses it."""
    st = store.state()
    horizon = now_ns - duplicate_window
    found = []
    seq = st.last_seq
    while seq >= st.first_seq and seq > 0 and len(found) < limit:
        sm = store.load_msg(seq)
        seq -= 1
        if sm is None:
            continue
        if sm.ts < horizon:
            break
        found.append(sm)
    ids = []
    last = ""
    for i, sm in enumerate(reversed(found)):
        msg_id = parse_headers(sm.hdr).get("Nats-Msg-Id", "") if b"Nats-Msg-Id" in sm.hdr else ""
        if msg_id:
            ids.append((msg_id, sm.seq, sm.ts))
        if i == len(found) - 1:
            last = msg_id
    return ids, last


def dumps(obj):
    return _JSON.encode(obj).encode()


def stored_size(subject, hdr, msg):
    # nats-server's memory-store accounting (the figure discard-new compares)
    return len(subject) + len(hdr) + len(msg) + 16


class Stream:
    def __init__(self, host, config, store, created_ns):
        self.host = host            # the JsAccount: publish(), server_name, version
        self.config = config
        self.name = config["name"]
        # the ack's fixed part, encoded once (its JSON is built per message)
        domain = host.js.domain if getattr(host, "js", None) is not None else ""
        self._ack_head = b'{"stream":' + json.dumps(self.name).encode() + (
            b',"domain":' + json.dumps(domain).encode() if domain else b"") + b',"seq":'
        # the header line this stream's republish adds (loop detection)
        self._own_mark = ("\r\nNats-Stream: %s\r\n" % self.name).encode()
        self.store = store
        self.created = created_ns
        self.consumers = {}         # name -> consumer (issue 19)
        self.on_stored = []         # callables (seq, subject) after each store
        self.dedupe = OrderedDict() # Nats-Msg-Id -> (seq, ts ns), oldest first
        self.dedupe_bytes = 0
        self.last_msg_id = ""
        self.subs = []              # the internal subscriptions the account holds for it
        self.closed = False
        js = getattr(host, "js", None)
        self.expiry = ExpiryTimer(self, js.server.reactor if js is not None else None)
        self.apply_config(config)

    def apply_config(self, config):
        self.config = config
        st = config.get("subject_transform")
        self.transform = SubjectTransform(st.get("src") or ">", st["dest"]) if st and st.get("dest") else None
        rp = config.get("republish")
        self.republish = None
        if rp and rp.get("dest"):
            self.republish = (SubjectTransform(rp.get("src") or ">", rp["dest"]), bool(rp.get("headers_only")))

    # -- publishing ------------------------------------------------------
    def process_publish(self, subject, reply, hdr, msg):
        """Store one published message; the ack body to send, or None."""
        cfg = self.config
        try:
            seq, dup = self._store(subject, hdr or b"", msg)
        except E.ApiError as e:
            if not reply or cfg.get("no_ack"):
                return None
            return dumps({"error": e.body(), "stream": self.name, "seq": 0})
        if not reply or cfg.get("no_ack"):
            return None
        if dup:
            return b"%s%d,\"duplicate\":true}" % (self._ack_head, seq)
        return b"%s%d}" % (self._ack_head, seq)

    def process_sourced(self, subject, hdr, msg):
        """sourcing.py: store a message copied from a source (the subject as
        the source made it, its Nats-Stream-Source header allowed); raises
        ApiError."""
        return self._store(subject, hdr, msg, sourced=True)

    def _store(self, subject, hdr, msg, sourced=False):
        cfg = self.config
        if cfg.get("sealed"):
            raise E.err(E.SEALED)
        if len(hdr) > MAX_HEADER:
            raise E.err(E.HEADER_TOO_BIG)
        mms = cfg["max_msg_size"]
        if mms > 0 and len(hdr) + len(msg) > mms:
            raise E.err(E.MESSAGE_TOO_BIG)
        store = self.store
        now = time.time_ns()
        msg_id = ""
        ttl = 0
        rollup = None
        if hdr and b"Nats-" in hdr:
            h = parse_headers(hdr)
            if not sourced and "Nats-Stream-Source" in h:   # sourcing: only copies carry it
                raise E.err(SOURCE_HEADER_NOT_ALLOWED)
            msg_id = h.get("Nats-Msg-Id", "")
            if msg_id:
                self.expire_dedupe(now)
                seen = self.dedupe.get(msg_id)
                if seen is not None:
                    return seen[0], True
            exp = h.get("Nats-Expected-Stream")
            if exp is not None and exp != self.name:
                raise E.err(E.EXPECTED_STREAM)
            ttl_value = h.get("Nats-TTL")
            if ttl_value is not None:
                secs = parse_ttl(ttl_value)
                # nats-server: refused as disabled only when it parses to a
                # TTL; as invalid (below) when it does not parse, allowed or not
                if secs and not sourced and not cfg.get("allow_msg_ttl"):
                    raise E.err(E.TTL_DISABLED)
            last = store.state().last_seq
            v = h.get("Nats-Expected-Last-Sequence")
            if v is not None and _seq(v) != last:
                raise E.err(E.WRONG_LAST_SEQUENCE, seq=last)
            v = h.get("Nats-Expected-Last-Msg-Id")
            if v is not None and v != self.last_msg_id:
                raise E.err(E.WRONG_LAST_MSG_ID, id=self.last_msg_id)
            v = h.get("Nats-Expected-Last-Subject-Sequence")
            if v is not None:
                filt = h.get("Nats-Expected-Last-Subject-Sequence-Subject") or self._stored_subject(subject)
                sm = store.load_last(filt)
                have = sm.seq if sm is not None else 0
                if _seq(v) != have:
                    raise E.err(E.WRONG_LAST_SEQUENCE, seq=have)
            rollup = h.get("Nats-Rollup")
            if rollup is not None:
                if not cfg.get("allow_rollup_hdrs"):
                    raise E.err(E.ROLLUP_FAILED, err="rollup not permitted")
                if rollup not in ("sub", "all"):
                    raise E.err(E.ROLLUP_FAILED, err='rollup value invalid: "%s"' % rollup)
            if ttl_value is not None:
                if secs is None:
                    raise E.err(E.TTL_INVALID)
                hdr, ttl = self._message_ttl(hdr, secs)
        stored_subject = subject if sourced else self._stored_subject(subject)
        if cfg["discard"] == "new":
            self._check_discard_new(stored_subject, hdr, msg)
        seq, ts = self.host.store_msg(self, stored_subject, hdr, msg, ttl)
        if ttl > 0:
            self.expiry.due(ts + ttl)
        if cfg["max_age"] > 0:
            self.expiry.due(ts + cfg["max_age"])
        if msg_id:
            self._remember(msg_id, seq, ts)
        self.last_msg_id = msg_id
        if rollup == "sub":
            store.purge(stored_subject, 0, 1)
        elif rollup == "all":
            store.purge(None, 0, 1)
        if self.republish is not None:
            self._republish(stored_subject, seq, ts, hdr, msg)
        for fn in self.on_stored:
            fn(seq, stored_subject)
        if cfg["retention"] == "interest" and not self.consumers:
            # nobody to deliver to: nats-server keeps nothing
            store.remove_msg(seq)
        return seq, False

    def _message_ttl(self, hdr, secs):
        """(hdr, ttl in ns for the store: -1 for "never") of a message whose
        Nats-TTL is `secs` (> 0 or -1). With subject delete markers a TTL
        is at least the markers' own (else a marker could be missed; one
        message per subject is the exception), and the header says so, as
        nats-server does."""
        if secs < 0:
            return hdr, -1      # spared by max_age (nats-server reads the header, allowed or not)
        cfg = self.config
        if not cfg.get("allow_msg_ttl"):
            return hdr, 0       # a sourced copy: nats-server's store keeps no TTLs then
        low = (cfg.get("subject_delete_marker_ttl") or 0) // 10 ** 9
        if 0 < secs < low and cfg["max_msgs_per_subject"] != 1:
            secs = low
            hdr = set_header(hdr, "Nats-TTL", str(low))
        return hdr, secs * 10 ** 9

    def expire(self, now_ns):
        """Housekeeping and the expiry timer: remove what max_age and TTLs
        expired; with `subject_delete_marker_ttl` a subject's last message
        is replaced by a marker instead. Then the timer is set for the next
        expiry. Returns whether the store changed."""
        sdm = self.config.get("subject_delete_marker_ttl") or 0
        changed = self.store.expire(now_ns, self._marker_writer(sdm) if sdm > 0 else None)
        t = self.store.next_expiry()
        if t > now_ns:
            self.expiry.due(t)
        return changed

    def _marker_writer(self, sdm):
        marker = max_age_marker(sdm)

        def on_last(seq, subject):
            # nats-server proposes the marker as a message of the stream
            # (stored, delivered, republished), its roll-up removing `seq`;
            # an expiring marker or KV purge just goes
            sm = self.store.load_msg(seq)
            if sm is None or is_delete_marker(sm.hdr):
                return
            try:
                self._store(subject, marker, b"", sourced=True)
            except E.ApiError:
                pass        # not stored (limits, sealed): the store removes `seq` plainly
        return on_last

    def republished_here(self, hdr):
        """Has a server-published message been through this stream's
        republish already (any of its Nats-Stream lines names us)? Storing
        it would loop forever: A republishes into B, B back into A..."""
        return bool(hdr) and self._own_mark in hdr

    def _stored_subject(self, subject):
        t = self.transform
        if t is not None:
            d = t.match(subject)
            if d is not None:
                return d
        return subject

    def _check_discard_new(self, subject, hdr, msg):
        cfg = self.config
        st = self.store.state()
        if cfg["max_msgs"] > 0 and st.msgs >= cfg["max_msgs"]:
            raise E.err(E.STORE_FAILED, err="maximum messages exceeded")
        if cfg["max_bytes"] > 0 and st.bytes + stored_size(subject, hdr, msg) > cfg["max_bytes"]:
            raise E.err(E.STORE_FAILED, err="maximum bytes exceeded")
        if (cfg.get("discard_new_per_subject") and cfg["max_msgs_per_subject"] > 0
                and self.store.subject_count(subject) >= cfg["max_msgs_per_subject"]):
            raise E.err(E.STORE_FAILED, err="maximum messages per subject exceeded")

    def _remember(self, msg_id, seq, ts):
        d = self.dedupe
        if msg_id not in d:
            self.dedupe_bytes += len(msg_id) + DEDUPE_ENTRY_COST
        d[msg_id] = (seq, ts)
        while self.dedupe_bytes > DEDUPE_MAX_BYTES:
            k, _ = d.popitem(last=False)
            self.dedupe_bytes -= len(k) + DEDUPE_ENTRY_COST

    def expire_dedupe(self, now_ns):
        d = self.dedupe
        horizon = now_ns - self.config["duplicate_window"]
        while d:
            k, (seq, ts) = next(iter(d.items()))
            if ts >= horizon:
                break
            del d[k]
            self.dedupe_bytes -= len(k) + DEDUPE_ENTRY_COST

    def _republish(self, subject, seq, ts, hdr, msg):
        transform, headers_only = self.republish
        dest = transform.match(subject)
        if dest is None:
            return
        fields = [("Nats-Stream", self.name), ("Nats-Subject", subject), ("Nats-Sequence", str(seq)),
                  ("Nats-Time-Stamp", rfc3339(ts)), ("Nats-Last-Sequence", str(seq - 1))]
        if headers_only:
            fields.append(("Nats-Msg-Size", str(len(msg))))
            msg = b""
        self.host.publish(dest, None, build_headers(fields, hdr), msg)

    def rebuild_dedupe(self, now_ns, limit=DEDUPE_REBUILD, found=None):
        """After a restart: the Nats-Msg-Id of the messages stored within
        the duplicate window (newest `limit` at most), as nats-server
        rebuilds its dedupe map, and the last message's id. `found`:
        dedupe_ids() computed already (recovery.py, off the reactor)."""
        if found is None:
            found = dedupe_ids(self.store, self.config["duplicate_window"], now_ns, limit)
        ids, self.last_msg_id = found
        for msg_id, seq, ts in ids:
            self._remember(msg_id, seq, ts)

    # -- state -------------------------------------------------------------
    def state_json(self, subjects_filter=None, deleted_details=False):
        st = self.store.state()
        d = {"messages": st.msgs, "bytes": st.bytes, "first_seq": st.first_seq, "first_ts": rfc3339(st.first_ts),
             "last_seq": st.last_seq, "last_ts": rfc3339(st.last_ts)}
        if st.num_subjects:
            d["num_subjects"] = st.num_subjects
        if subjects_filter:
            subs = self.store.subjects_state(subjects_filter)
            if subs:
                d["subjects"] = subs
        if st.num_deleted:
            d["num_deleted"] = st.num_deleted
            if deleted_details:
                d["deleted"] = self.store.deleted_seqs()
        d["consumer_count"] = self.public_consumers()
        return d

    def public_consumers(self):
        """How many consumers clients see: nats-server keeps a mirror's or
        source's `direct` consumer out of counts and listings."""
        return sum(1 for c in self.consumers.values() if not c.config.get("direct"))

    def info(self, subjects_filter=None, deleted_details=False):
        return {"config": self.host.config_json(self.config), "created": rfc3339(self.created),
                "state": self.state_json(subjects_filter, deleted_details)}

    # -- message access ------------------------------------------------------
    def get_msg(self, req):
        """STREAM.MSG.GET / DIRECT.GET: the StoredMsg a request names, or raises."""
        seq = req.get("seq")
        last = req.get("last_by_subj")
        nxt = req.get("next_by_subj")
        if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
            raise E.err(E.BAD_REQUEST)
        for v in (last, nxt):
            if v is not None and not isinstance(v, str):
                raise E.err(E.BAD_REQUEST)
        if last:
            if seq or nxt:
                raise E.err(E.BAD_REQUEST)
            sm = self.store.load_last(last)
        elif nxt:
            sm = self.store.load_next(nxt, seq or 0)
        elif seq:
            sm = self.store.load_msg(seq)
        else:
            raise E.err(E.BAD_REQUEST)
        if sm is None:
            raise E.err(E.NO_MESSAGE_FOUND)
        return sm

    def delete_msg(self, seq, no_erase=False):
        cfg = self.config
        if cfg.get("sealed"):
            raise E.err(E.SEALED)
        if cfg.get("deny_delete"):
            raise E.err(E.MSG_DELETE_FAILED, err="message delete not permitted")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq <= 0:
            raise E.err(E.BAD_REQUEST)
        if seq > self.store.state().last_seq:
            raise E.err(E.MSG_DELETE_FAILED, err="stream store EOF")
        if not self.store.remove_msg(seq, erase=not no_erase):
            raise E.err(E.SEQUENCE_NOT_FOUND, seq=seq)

    def purge(self, req):
        cfg = self.config
        if cfg.get("sealed"):
            raise E.err(E.SEALED)
        if cfg.get("deny_purge"):
            raise E.err(E.PURGE_FAILED, err="stream purge not permitted")
        filt = req.get("filter") or None
        seq = req.get("seq") or 0
        keep = req.get("keep") or 0
        if (filt is not None and not isinstance(filt, str)) or not _uint(seq) or not _uint(keep) or (seq and keep):
            raise E.err(E.BAD_REQUEST)
        if filt == ">":
            filt = None
        return self.store.purge(filt, seq, keep)

    def close(self):
        self.closed = True
        self.expiry.cancel()
        self.store.close()


def _seq(v):
    try:
        return int(v)
    except ValueError:
        return -1


def _uint(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0
