"""Subject permissions, as nats-server 2.x applies them to a user.

Theory of operation
-------------------
The config layer turns a `permissions { }` block into a `PermissionSpec`
(plain, comparable data: a reload can tell whether it changed). `compile_permissions`
makes the shared `Permissions` of that spec, one per user, read-only and
safe from any thread. A connection owns a `ConnectionPermissions`: the
shared rules plus its own bounded publish cache, its response grants and its
delivery deny filter, none of them thread-safe (the connection's thread
only).

The rules are nats-server's (client.go canSubscribeInternal,
pubAllowedFullCheck, responseAllowed, checkDenySub):
- publish: an allow list (when present) must match, then a deny list must
  not. An allow list present but empty allows nothing; that is what
  `allow_responses` without publish rules means (opts.go turns the blanket
  allow off).
- subscribe: the subscription's subject is matched as a literal against
  the rules, so `foo.*` allows SUB `foo.*` and SUB `foo.bar` but `foo.bar`
  does not allow SUB `foo.*`. Entries may name a queue group
  (`"foo.> workers"`): a plain entry allows any queue; for a queue
  subscription, matching queue entries decide (the queue name compared
  literally, or as a wildcard pattern); a queue entry never allows a plain
  subscription. Deny is checked only when allowed, and wins: a plain deny
  entry denies every queue, a queue deny entry only that queue.
- an empty subscribe allow list means "no allow list" (nats-server checks
  len > 0 there, unlike publish).
- allow_responses: a client that received a message with a reply subject
  may publish to that reply `max_msgs` times within `expires` seconds (1 and
  2 minutes by default; a negative value means no limit), even without
  publish permission. Denials are then not cached, since a grant can come.
- a wildcard subscription that overlaps a subscribe deny entry (or a queue
  subscription, which a queue deny entry may cover) turns on the delivery
  filter: messages on denied subjects are dropped at delivery.

Matching is a linear scan over the pre-split rules: permission lists are
short, and publish verdicts are cached per connection (bounded in entries
and bytes; nats-server keeps a 128-entry cache per client).
"""

import time
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

PUB_VIOLATION = 'Permissions Violation for Publish to %s'
SUB_VIOLATION = 'Permissions Violation for Subscription to %s'
QSUB_VIOLATION = 'Permissions Violation for Subscription to %s using queue %s'
REPLY_VIOLATION = 'Permissions Violation for Publish with Reply of %s'

DEFAULT_RESPONSE_MAX_MSGS = 1           # nats-server DEFAULT_ALLOW_RESPONSE_MAX_MSGS
DEFAULT_RESPONSE_EXPIRES = 120.0        # DEFAULT_ALLOW_RESPONSE_EXPIRATION

# Per-connection publish cache: nats-server's maxPermCacheSize entries, and
# a byte bound since a subject may be up to max_control_line long.
PUB_CACHE_ENTRIES = 128
PUB_CACHE_BYTES = 64 * 1024
# Response grants a connection may hold at once (nats-server prunes past
# 4,096 new ones but never caps them; a request flood must not grow a
# responder's memory without bound).
RESPONSE_ENTRIES = 4096
RESPONSE_BYTES = 1024 * 1024
# Delivery deny verdicts cached per connection (maxDenyPermCacheSize).
DENY_CACHE_ENTRIES = 256
DENY_CACHE_BYTES = 64 * 1024


# --- error lines -----------------------------------------------------------------

def go_quote(s: str) -> str:
    """s as Go's %q writes it (strconv.Quote), for nats-server's exact lines."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif 0x20 <= o < 0x7F or (o > 0x7F and ch.isprintable()):
            out.append(ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif o < 0x80 or 0xD800 <= o < 0xE000:   # control byte, or a byte
            out.append("\\x%02x" % (o & 0xFF))     # surrogate-escaped by decode
        elif o < 0x10000:
            out.append("\\u%04x" % o)
        else:
            out.append("\\U%08x" % o)
    out.append('"')
    return "".join(out)


def publish_violation(subject: str) -> str:
    """The -ERR text (2.9.10 and 2.15.1 send the same)."""
    return PUB_VIOLATION % go_quote(subject)


def subscribe_violation(subject: str, queue: Optional[str] = None) -> str:
    if queue:
        return QSUB_VIOLATION % (go_quote(subject), go_quote(queue))
    return SUB_VIOLATION % go_quote(subject)


# The error log lines, after the connection's prefix (2.15 puts the account
# and user in that prefix, `"$G/user:alice" - `; 2.9 put `User "alice", `
# after the dash).
def publish_violation_log(subject: str) -> str:
    return "Publish Violation - Subject %s" % go_quote(subject)


def subscribe_violation_log(subject: str, queue: Optional[str], sid: str) -> str:
    if queue:
        return "Subscription Violation - Subject %s, Queue: %s, SID %s" % (
            go_quote(subject), go_quote(queue), sid)
    return "Subscription Violation - Subject %s, SID %s" % (go_quote(subject), sid)


# --- the configured rules ----------------------------------------------------

@dataclass(frozen=True)
class SubjectRule:
    """allow/deny lists of one direction; None means "no such list"."""
    allow: Optional[Tuple[str, ...]] = None
    deny: Optional[Tuple[str, ...]] = None


@dataclass(frozen=True)
class ResponseRule:
    max_msgs: int = DEFAULT_RESPONSE_MAX_MSGS   # <= 0 after config: unlimited
    expires: float = DEFAULT_RESPONSE_EXPIRES   # seconds; <= 0: never


@dataclass(frozen=True)
class PermissionSpec:
    """A permissions block. For a cluster: publish is import, subscribe export."""
    publish: Optional[SubjectRule] = None
    subscribe: Optional[SubjectRule] = None
    response: Optional[ResponseRule] = None


def split_queue_entry(entry: str):
    """'foo.> workers' -> ('foo.>', 'workers'); 'foo' -> ('foo', None)."""
    parts = entry.split()
    if len(parts) == 2:
        return parts[0], parts[1]
    return entry, None


def _matches(pt, st) -> bool:
    """Pattern tokens against subject tokens; the subject's own '*'/'>' are
    literal tokens here, as nats-server's Sublist.Match treats them."""
    n = len(pt)
    if n > len(st):
        return False
    for i in range(n):
        t = pt[i]
        if t == ">":
            return True
        if t != "*" and t != st[i]:
            return False
    return n == len(st)


def _queue_matches(queue: str, qnames) -> bool:
    """nats-server queueMatches: the literal name, or a wildcard queue entry."""
    qt = queue.split(".")
    for name, tokens in qnames:
        if queue == name or (_has_wildcard(tokens) and _matches(tokens, qt)):
            return True
    return False


def _has_wildcard(tokens) -> bool:
    return "*" in tokens or ">" in tokens


def subjects_collide(a: str, b: str) -> bool:
    """Can some literal subject match both patterns (nats-server SubjectsCollide)?"""
    at, bt = a.split("."), b.split(".")
    for i in range(min(len(at), len(bt))):
        x, y = at[i], bt[i]
        if x == ">" or y == ">":
            return True
        if x != y and x != "*" and y != "*":
            return False
    return len(at) == len(bt)


class _Rules:
    """One compiled list: plain patterns and (pattern, queue) entries."""

    __slots__ = ("plain", "queued")

    def __init__(self, entries):
        self.plain = []
        self.queued = []
        for e in entries:
            subject, queue = split_queue_entry(e)
            if queue is None:
                self.plain.append(subject.split("."))
            else:
                self.queued.append((subject.split("."), queue, queue.split(".")))

    def any_plain(self, st) -> bool:
        for pt in self.plain:
            if _matches(pt, st):
                return True
        return False

    def queues(self, st):
        return [(q, qt) for pt, q, qt in self.queued if _matches(pt, st)]


class Permissions:
    """The compiled, shared rules of one PermissionSpec. Thread-safe."""

    def __init__(self, spec: PermissionSpec):
        self.spec = spec
        pub, sub = spec.publish, spec.subscribe
        # publish: an allow list present (even empty) is in force
        self.pub_allow = _Rules(pub.allow) if pub and pub.allow is not None else None
        self.pub_deny = _Rules(pub.deny) if pub and pub.deny else None
        self.sub_allow = _Rules(sub.allow) if sub and sub.allow else None
        self.sub_deny = _Rules(sub.deny) if sub and sub.deny else None
        self.deny_entries = [split_queue_entry(e) for e in sub.deny] if sub and sub.deny else []
        self.response = spec.response
        self.checks_publish = self.pub_allow is not None or self.pub_deny is not None

    def can_publish(self, subject: str) -> bool:
        """The static verdict (no cache, no response grants)."""
        if not self.checks_publish:
            return True
        st = subject.split(".")
        if self.pub_allow is not None and not self.pub_allow.any_plain(st):
            return False
        return self.pub_deny is None or not self.pub_deny.any_plain(st)

    def can_subscribe(self, subject: str, queue: Optional[str] = None) -> bool:
        st = subject.split(".")
        allowed = True
        if self.sub_allow is not None:
            allowed = self.sub_allow.any_plain(st)
            if queue:
                qs = self.sub_allow.queues(st)
                if qs:
                    allowed = _queue_matches(queue, qs)
        if allowed and self.sub_deny is not None:
            allowed = not self.sub_deny.any_plain(st)
            if allowed and queue:
                qs = self.sub_deny.queues(st)
                if qs:
                    allowed = not _queue_matches(queue, qs)
        return allowed

    def needs_delivery_filter(self, subject: str, queue: Optional[str] = None) -> bool:
        """Does an allowed subscription overlap a deny entry, so that deliveries
        to it must be filtered (nats-server loadMsgDenyFilterIfNeeded)?"""
        if not self.deny_entries or not (queue or _has_wildcard(subject.split("."))):
            return False
        return any(subjects_collide(d, subject) for d, _ in self.deny_entries)

    def delivery_denied(self, subject: str, queue: Optional[str] = None) -> bool:
        """nats-server checkDenySub: a message on subject, for a subscription in
        queue, falls under a subscribe deny entry."""
        st = subject.split(".")
        if self.sub_deny is None:
            return False
        if self.sub_deny.any_plain(st):
            return True
        if queue:
            qs = self.sub_deny.queues(st)
            return bool(qs) and _queue_matches(queue, qs)
        return False


def compile_permissions(spec: Optional[PermissionSpec]) -> Optional[Permissions]:
    return None if spec is None else Permissions(spec)


# --- per-connection state ----------------------------------------------------

class _BoundedMap:
    """An insertion-ordered str -> value map bounded in entries and key bytes;
    the oldest entries go first."""

    __slots__ = ("data", "bytes", "max_entries", "max_bytes")

    def __init__(self, max_entries: int, max_bytes: int):
        self.data = {}
        self.bytes = 0
        self.max_entries = max_entries
        self.max_bytes = max_bytes

    def __len__(self):
        return len(self.data)

    def get(self, key):
        return self.data.get(key)

    def put(self, key: str, value) -> None:
        size = len(key)
        if size > self.max_bytes:
            return                  # never worth caching, never evict for it
        if key in self.data:
            self.pop(key)
        data = self.data
        while data and (len(data) >= self.max_entries or self.bytes + size > self.max_bytes):
            self.pop(next(iter(data)))
        data[key] = value
        self.bytes += size

    def pop(self, key) -> None:
        if self.data.pop(key, None) is not None:
            self.bytes -= len(key)

    def items(self):
        return list(self.data.items())


class PublishCache(_BoundedMap):
    """subject -> bool publish verdicts of one connection."""

    def __init__(self, max_entries: int = PUB_CACHE_ENTRIES, max_bytes: int = PUB_CACHE_BYTES):
        super().__init__(max_entries, max_bytes)


class ResponseGrants:
    """Reply subjects a responder may publish to (allow_responses): recorded
    when it receives a message with a reply, used up by max_msgs publishes or
    by time. Bounded: past the limits, expired and used grants go first,
    then the oldest."""

    def __init__(self, rule: ResponseRule, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = RESPONSE_ENTRIES, max_bytes: int = RESPONSE_BYTES):
        self.rule = rule
        self.clock = clock
        self.grants = _BoundedMap(max_entries, max_bytes)

    def __len__(self):
        return len(self.grants)

    def record(self, reply: str) -> None:
        """A message with this reply subject was delivered to the connection."""
        g = self.grants
        if reply not in g.data and (len(g) >= g.max_entries
                                    or g.bytes + len(reply) > g.max_bytes):
            self.prune()
        g.put(reply, [self.clock(), 0])

    def use(self, subject: str) -> bool:
        """May the connection publish to subject now? Counts the publish."""
        grant = self.grants.get(subject)
        if grant is None:
            return False
        grant[1] += 1
        rule = self.rule
        if (rule.max_msgs > 0 and grant[1] > rule.max_msgs) or self._expired(grant):
            self.grants.pop(subject)
            return False
        return True

    def _expired(self, grant) -> bool:
        return self.rule.expires > 0 and self.clock() - grant[0] > self.rule.expires

    def prune(self) -> None:
        """Drop used-up and expired grants (nats-server pruneReplyPerms)."""
        mm = self.rule.max_msgs
        for key, grant in self.grants.items():
            if (mm > 0 and grant[1] >= mm) or self._expired(grant):
                self.grants.pop(key)


class ConnectionPermissions:
    """What one connection owns: the shared rules and its own caches.

    can_publish / can_subscribe give the verdicts; on_delivery(subject,
    queue, reply) is called for each message about to be delivered to the
    connection, answers False when the delivery filter drops it, and records
    a response grant for its reply.
    """

    def __init__(self, perms: Permissions, clock: Callable[[], float] = time.monotonic):
        self.perms = perms
        self.pub_cache = PublishCache()
        self._verdicts = self.pub_cache.data     # the hot path reads it directly
        self.responses = ResponseGrants(perms.response, clock) if perms.response else None
        self.deny_filter = None         # _BoundedMap once a subscription needs it

    def can_publish(self, subject: str) -> bool:
        """Per PUB: a cache hit is one dict lookup (~60 ns on CPython)."""
        cached = self._verdicts.get(subject)
        if cached is not None:
            return cached
        perms = self.perms
        if not perms.checks_publish:
            return True
        allowed = perms.can_publish(subject)
        if not allowed and self.responses is not None:
            return self.responses.use(subject)   # never cache: grants come and go
        self.pub_cache.put(subject, allowed)
        return allowed

    def cacheable(self, subject: str) -> bool:
        """After can_publish allowed subject: was that the static verdict (a
        caller may cache it), not a one-off response grant?"""
        return not self.perms.checks_publish or self._verdicts.get(subject) is True

    def can_subscribe(self, subject: str, queue: Optional[str] = None) -> bool:
        if not self.perms.can_subscribe(subject, queue):
            return False
        if self.deny_filter is None and self.perms.needs_delivery_filter(subject, queue):
            self.deny_filter = _BoundedMap(DENY_CACHE_ENTRIES, DENY_CACHE_BYTES)
        return True

    def on_delivery(self, subject: str, queue: Optional[str] = None,
                    reply: Optional[str] = None) -> bool:
        if self.deny_filter is not None:
            key = subject if not queue else subject + " " + queue
            denied = self.deny_filter.get(key)
            if denied is None:
                denied = self.perms.delivery_denied(subject, queue)
                self.deny_filter.put(key, denied)
            if denied:
                return False
        if reply and self.responses is not None:
            allowed = self.pub_cache.get(reply)
            if allowed is None:
                allowed = self.perms.can_publish(reply)
            # nats-server asks its full publish check here, which uses up
            # one response of a live grant for this reply (and then does
            # not renew it): a reused reply subject alternates.
            if not allowed and not self.responses.use(reply):
                self.responses.record(reply)
        return True
