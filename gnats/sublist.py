"""The subject index: which subscriptions match a subject.

Theory of operation
-------------------
Subscriptions live in a trie of subject tokens. Each level maps a literal
token to its node and keeps two extra children: `pwc` for `*` (one token)
and `fwc` for `>` (one or more tokens, last position only). A node holds
the plain subscriptions and the queue subscriptions (grouped by queue name)
whose subject ends there.

`match(subject)` walks the trie once and returns a `MatchResult`; results
are cached per literal subject (bounded). Any insert or removal drops the
cache entries it could affect and bumps `gen`, the generation number that
per-connection caches compare against to know they are stale.
"""

# Bound on cached match results: enough for the working set of subjects
# of most deployments; beyond it we evict in insertion order.
CACHE_MAX = 4096
# Longer subjects are matched but not cached, so the cache stays within
# CACHE_MAX x 4 KiB of keys. A subject mapping can make a subject of any
# length from a short one (`a.*` -> `$1.$1...`): 400 publishes of 20 kB
# tokens through 100 copies of $1 held 2 MB keys, +840 MiB RSS.
CACHE_SUBJECT_MAX = 4096


class Subscription:
    """One subscription. `client` is the owning connection (a client or a
    route); `queue` is None for plain interest. `max_msgs` is the
    auto-unsubscribe limit (0: none), `delivered` counts deliveries."""

    __slots__ = ("client", "subject", "queue", "sid", "max_msgs", "delivered",
                 "weight", "closed")

    def __init__(self, client, subject, queue, sid, weight=1):
        self.client = client
        self.subject = subject      # str
        self.queue = queue          # str or None
        self.sid = sid              # bytes (client sid) or None
        self.max_msgs = 0
        self.delivered = 0
        self.weight = weight        # route queue interest: members on that server
        self.closed = False

    def __repr__(self):
        return "<sub %s %s %s>" % (self.subject, self.queue or "", self.sid)


class MatchResult:
    __slots__ = ("plain", "queues")

    def __init__(self, plain, queues):
        self.plain = plain          # list of Subscription
        self.queues = queues        # list of lists of Subscription (one list per group)


EMPTY = MatchResult([], [])


class _Node:
    __slots__ = ("next", "plain", "queues")

    def __init__(self):
        self.next = None            # _Level or None
        # Insertion-ordered dicts used as sets: removal is O(1) however
        # many subscriptions share a subject (a list made 100k SUBs to one
        # subject quadratic to remove).
        self.plain = {}             # plain subs ending here -> None
        self.queues = {}            # queue name -> {sub: None}

    def is_empty(self):
        return not self.plain and not self.queues and (self.next is None or self.next.is_empty())


class _Level:
    __slots__ = ("nodes", "pwc", "fwc")

    def __init__(self):
        self.nodes = {}
        self.pwc = None
        self.fwc = None

    def is_empty(self):
        return not self.nodes and self.pwc is None and self.fwc is None


def valid_subject(subject, wildcards=True):
    """A subject is non-empty tokens separated by '.', without whitespace.
    With wildcards allowed, '*' is a whole token and '>' a whole last token."""
    if not subject:
        return False
    tokens = subject.split(".")
    last = len(tokens) - 1
    for i, t in enumerate(tokens):
        if not t:
            return False
        if " " in t or "\t" in t or "\r" in t or "\n" in t:
            return False
        if ("*" in t or ">" in t):
            if not wildcards:
                return False
            if len(t) > 1:
                # Go's server accepts tokens like 'foo*' as literals; only a
                # whole-token wildcard is special. Keep that leniency.
                continue
            if t == ">" and i != last:
                return False
    return True


def is_literal(subject):
    if "*" not in subject and ">" not in subject:
        return True
    for t in subject.split("."):
        if t == "*" or t == ">":
            return False
    return True


def subject_matches(pattern, subject):
    """Does the (possibly wildcard) pattern match the literal subject?"""
    pt = pattern.split(".")
    st = subject.split(".")
    n = len(pt)
    for i, t in enumerate(pt):
        if t == ">":
            return len(st) > i
        if i >= len(st):
            return False
        if t != "*" and t != st[i]:
            return False
    return n == len(st)


class Sublist:
    def __init__(self):
        self.root = _Level()
        self.count = 0
        self.gen = 0
        # an account.Generation bumped with `gen` (the routes' caches
        # follow every account's index through it), or None
        self.watch = None
        self.cache = {}
        self.inserts = 0
        self.removes = 0
        self.matches = 0
        self.cache_hits = 0

    # -- changes --------------------------------------------------------
    def insert(self, sub):
        level = self.root
        node = None
        for t in sub.subject.split("."):
            if t == "*":
                node = level.pwc
                if node is None:
                    node = level.pwc = _Node()
            elif t == ">":
                node = level.fwc
                if node is None:
                    node = level.fwc = _Node()
            else:
                node = level.nodes.get(t)
                if node is None:
                    node = level.nodes[t] = _Node()
            if node.next is None:
                node.next = _Level()
            level = node.next
        if sub.queue is None:
            node.plain[sub] = None
        else:
            node.queues.setdefault(sub.queue, {})[sub] = None
        self.count += 1
        self.inserts += 1
        self._changed(sub.subject)

    def remove(self, sub):
        """Remove a subscription; returns False if it was not present."""
        if not self._remove(sub):
            return False
        self._changed(sub.subject)
        return True

    def remove_many(self, subs):
        """Remove many subscriptions (a closing connection's): the trie is
        updated per subscription, the match cache dropped once."""
        n = 0
        for sub in subs:
            if self._remove(sub):
                n += 1
        if n:
            self.bump()
            self.cache.clear()
        return n

    def _remove(self, sub):
        path = []
        level = self.root
        for t in sub.subject.split("."):
            if t == "*":
                node = level.pwc
            elif t == ">":
                node = level.fwc
            else:
                node = level.nodes.get(t)
            if node is None:
                return False
            path.append((level, t, node))
            level = node.next
        node = path[-1][2]
        try:
            if sub.queue is None:
                del node.plain[sub]
            else:
                group = node.queues[sub.queue]
                del group[sub]
                if not group:
                    del node.queues[sub.queue]
        except KeyError:
            return False
        # prune empty nodes bottom-up so churn does not leak memory
        for level, t, node in reversed(path):
            if node.plain or node.queues or (node.next is not None and not node.next.is_empty()):
                break
            if t == "*":
                level.pwc = None
            elif t == ">":
                level.fwc = None
            else:
                del level.nodes[t]
        self.count -= 1
        self.removes += 1
        return True

    def bump(self):
        """Make every cache resolved against this index stale."""
        self.gen += 1
        if self.watch is not None:
            self.watch.gen += 1

    def _changed(self, subject):
        self.bump()
        cache = self.cache
        if not cache:
            return
        if is_literal(subject):
            cache.pop(subject, None)
        else:
            for key in [k for k in cache if subject_matches(subject, k)]:
                del cache[key]

    # -- lookups --------------------------------------------------------
    def match(self, subject):
        self.matches += 1
        r = self.cache.get(subject)
        if r is not None:
            self.cache_hits += 1
            return r
        plain = []
        qmap = {}
        tokens = subject.split(".")
        self._match_level(self.root, tokens, 0, plain, qmap)
        r = MatchResult(plain, list(qmap.values())) if (plain or qmap) else EMPTY
        if len(subject) > CACHE_SUBJECT_MAX:
            return r
        cache = self.cache
        if len(cache) >= CACHE_MAX:
            # evict the oldest entry (dicts keep insertion order)
            del cache[next(iter(cache))]
        cache[subject] = r
        return r

    def _match_level(self, level, tokens, i, plain, qmap):
        # An explicit stack, not recursion: a subject may have ~2,000 tokens
        # (max_control_line) and a `*.*.*...` subscription would otherwise
        # recurse once per token, past Python's recursion limit. The order
        # of results is the recursive one: a `*` subtree before the literal.
        n = len(tokens)
        stack = [(level, i, False)]
        while stack:
            level, i, resume = stack.pop()
            while level is not None:
                if not resume:
                    if level.fwc is not None:
                        self._collect(level.fwc, plain, qmap)
                    if i == n:
                        break
                    if level.pwc is not None:
                        if i == n - 1:
                            self._collect(level.pwc, plain, qmap)
                        elif level.pwc.next is not None:
                            stack.append((level, i, True))
                            stack.append((level.pwc.next, i + 1, False))
                            break
                resume = False
                node = level.nodes.get(tokens[i])
                if node is None:
                    break
                i += 1
                if i == n:
                    self._collect(node, plain, qmap)
                    # a '>' directly below needs at least one more token: none left
                    break
                level = node.next

    @staticmethod
    def _collect(node, plain, qmap):
        if node.plain:
            plain.extend(node.plain)
        for q, subs in node.queues.items():
            group = qmap.get(q)
            if group is None:
                qmap[q] = list(subs)
            else:
                group.extend(subs)

    # -- statistics -----------------------------------------------------
    def stats(self):
        fanouts = [len(r.plain) + len(r.queues) for r in self.cache.values()]
        return {
            "num_subscriptions": self.count,
            "num_cache": len(self.cache),
            "num_inserts": self.inserts,
            "num_removes": self.removes,
            "num_matches": self.matches,
            "cache_hit_rate": (self.cache_hits / self.matches) if self.matches else 0.0,
            "max_fanout": max(fanouts) if fanouts else 0,
            "avg_fanout": (sum(fanouts) / len(fanouts)) if fanouts else 0.0,
        }
