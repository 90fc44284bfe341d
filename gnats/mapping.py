"""Subject mappings, as nats-server 2.15 has them (Account.AddWeightedMappings
and selectMappedSubject, and the config's `mappings { }`). Pure: nothing
here knows of the server; the transforms are gnats.transform's.

`Mappings` is an account's `mappings { }` block: each source subject maps to
one destination, or to weighted destinations (`weight` in percent, per
optional `cluster`). Weights under 100 in total give the rest to the source
itself, unless the source is listed, in which case the rest is dropped (a
"loss" mapping, for chaos tests). `Mappings.map(subject)` picks one.

The publish path calls `Mappings.select(subject_bytes)`: one dict lookup
for a subject seen before (bounded cache, CACHE_BUDGET bytes), and whether
the answer is the same every time (so that the caller may cache what the
mapped subject resolves to).
"""

import random
from itertools import islice

from .conf import ConfigError
# MappingError and SubjectTransform are also this module's API (accounts
# import them from here with parse_mappings)
from .transform import (ERR_BAD_SUBJECT, MappingError, SubjectTransform, go_atoi,  # noqa: F401
                        subset_match, transform_tokenize, utf8, valid_subject,
                        validate_destination)

# What a dropped message (a loss mapping) is published to: a subject that
# matches nothing (gnats.delivery.match_publish: an empty token). Go maps it
# to "", which its Sublist matches with nothing too.
DROPPED = b"."

# Bytes of the subject cache of one Mappings (subjects and results, plus
# per-entry overhead); the oldest entries go when it is full. Without a
# bound, a publisher cycling through unique subjects would grow it forever.
# The mapped subjects count too (a destination may repeat a wildcard: one
# short subject can map to megabytes), and an entry over 1/16 of the
# budget is not kept.
CACHE_BUDGET = 1 << 20
_ENTRY_COST = 200
_EVICT_CHUNK = 256
_rand = random.random


# -- an account's mappings -------------------------------------------------------

class _Choice:
    """A subject's weighted destinations: cumulative weights (percent) and
    what each gives (bytes, or a transform with random draws and the
    tokens). A draw over the last weight drops the message."""

    __slots__ = ("cums", "outs")

    def __init__(self, cums, outs):
        self.cums = cums
        self.outs = outs

    def pick(self):
        w = int(_rand() * 100)      # 4x faster than randrange(100)
        for cum, out in zip(self.cums, self.outs):
            if w < cum:
                if out.__class__ is bytes:
                    return out
                tr, tokens = out
                return utf8(tr.transform_tokens(tokens))
        return DROPPED


class _Mapping:
    __slots__ = ("src", "wc", "stoks", "dests", "cdests")

    def __init__(self, src):
        self.src = src
        self.stoks = src.split(".")
        self.wc = any(t in ("*", ">") for t in self.stoks)
        self.dests = []         # [(transform, cumulative weight)], by weight
        self.cdests = {}        # cluster name -> the same


class Mappings:
    """One account's subject mappings, in the order given (nats-server keeps
    a Go map's order, which is random: overlapping sources are better
    avoided). `cluster` is this server's cluster name, for the destinations
    scoped to one (set_cluster)."""

    def __init__(self, cluster=""):
        self.entries = []
        self.spec = []          # what was added, for comparison on reload
        self.cluster = cluster
        self._cache = {}
        self._used = 0

    def __eq__(self, other):
        return isinstance(other, Mappings) and self.spec == other.spec

    def __ne__(self, other):
        return not self == other

    __hash__ = None

    def __deepcopy__(self, memo):
        return self             # never changed once built (Options.copy)

    def __len__(self):
        return len(self.entries)

    def __repr__(self):
        return "Mappings(%r)" % (self.spec,)

    def add(self, src, dests):
        """A source and its [(destination, weight percent, cluster)]:
        nats-server's AddWeightedMappings, its checks and texts
        (MappingError). The same source again replaces the first."""
        if not valid_subject(src):
            raise MappingError(ERR_BAD_SUBJECT)
        m = _Mapping(src)
        seen = set()
        totals = {}
        plain, scoped = [], {}
        for subject, weight, cluster in dests:
            if subject in seen:
                raise MappingError('duplicate entry for "%s"' % subject)
            seen.add(subject)
            if weight > 100:
                raise MappingError("individual weights need to be <= 100")
            totals[cluster] = totals.get(cluster, 0) + weight
            if totals[cluster] > 100:
                raise MappingError("total weight needs to be <= 100")
            validate_destination(src, subject)
            d = (SubjectTransform(src, subject), weight)
            (scoped.setdefault(cluster, []) if cluster else plain).append(d)

        def cumulate(ds):
            total = sum(w for _, w in ds)
            if total != 100 and src not in seen:
                # the rest goes to the source itself (not when it is listed:
                # then the rest is lost)
                own = transform_tokenize(src) if m.wc else src
                ds.append((SubjectTransform(src, own), 100 - total if ds else 100))
            ds.sort(key=lambda d: d[1])
            out, cum = [], 0
            for tr, w in ds:
                cum += w
                out.append((tr, cum))
            return out

        m.dests = cumulate(plain)
        m.cdests = {c: cumulate(ds) for c, ds in scoped.items()}
        entry = (src, tuple(dests))
        for i, e in enumerate(self.entries):
            if e.src == src:
                self.entries[i] = m
                self.spec[i] = entry
                break
        else:
            self.entries.append(m)
            self.spec.append(entry)
        self._clear()

    def set_cluster(self, name):
        if name != self.cluster:
            self.cluster = name
            self._clear()

    def _clear(self):
        self._cache.clear()
        self._used = 0

    def map(self, subject):
        """The subject `subject` maps to (one draw for weighted mappings),
        "" when the draw drops it, or None when no mapping applies."""
        b = utf8(subject)
        r = self._cache.get(b)
        if r is None:
            r = self._resolve(b)
        if r.__class__ is tuple:
            if len(r) == 3:
                return None
            out = r[0]
        else:
            out = r.pick()
        return "" if out is DROPPED else out.decode("utf-8", "surrogateescape")

    def select(self, subject):
        """Publish path: (mapped subject bytes, fixed) for subject bytes;
        the subject itself when nothing maps it. `fixed` is False when the
        answer is drawn per message (weights, {{random}}): the caller must
        not cache what it resolved to. DROPPED when the draw drops it."""
        r = self._cache.get(subject)
        if r is None:
            r = self._resolve(subject)
        if r.__class__ is tuple:
            return r[0], True
        return r.pick(), False

    def _resolve(self, subject):
        s = subject.decode("utf-8", "surrogateescape")
        tokens = None
        found = None
        for m in self.entries:
            if not m.wc:
                if m.src == s:
                    found = m
                    break
                continue
            if tokens is None:
                tokens = s.split(".")
            if subset_match(tokens, m.stoks):
                found = m
                break
        if found is None:
            r = (subject, None, None)           # a 3-tuple: no mapping applies
        else:
            if tokens is None:
                tokens = s.split(".")
            dests = found.cdests.get(self.cluster, found.dests) if found.cdests else found.dests
            cums, outs = [], []
            for tr, cum in dests:
                cums.append(cum)
                outs.append((tr, tokens) if tr.random else utf8(tr.transform_tokens(tokens)))
            if len(outs) == 1 and cums[0] == 100 and outs[0].__class__ is bytes:
                r = (outs[0], None)
            else:
                r = _Choice(cums, outs)
        cost = _cost(subject, r)
        if cost > CACHE_BUDGET >> 4:
            return r
        if self._used + cost > CACHE_BUDGET:
            room = CACHE_BUDGET - (CACHE_BUDGET >> 4)
            cache = self._cache
            while cache and self._used + cost > room:
                for k in list(islice(cache, _EVICT_CHUNK)):
                    self._used -= _cost(k, cache.pop(k))
            if not cache:
                self._used = 0
        self._cache[subject] = r
        self._used += cost
        return r


def _cost(subject, r):
    """What a cache entry holds: the subject (and its tokens, for draws),
    the mapped subjects, the entry itself."""
    if r.__class__ is tuple:
        out = len(r[0]) if len(r) == 2 else 0
    else:
        out = sum(len(o) for o in r.outs if o.__class__ is bytes)
    return 2 * len(subject) + out + _ENTRY_COST


# -- the config block -------------------------------------------------------------

def _go_type(v):
    """The Go type nats-server's config parser gives a value (its texts)."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int64"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "map[string]interface {}"
    return "[]interface {}"


def _pos(block, key, which="key_pos"):
    return getattr(block, which, {}).get(key)


def parse_mappings(value, cluster="", pos=None):
    """A `mappings { }` block as gnats.conf gives it (a ConfMap) ->
    Mappings. Raises ConfigError (FILE:LINE:COL: nats-server's text) at
    the entry at fault; `pos` is where the block stood, for a value that is
    not a block."""
    if not isinstance(value, dict):
        raise ConfigError("interface conversion: interface {} is %s, not map[string]interface {}"
                          % _go_type(value), pos)
    ms = Mappings(cluster)
    for subj, v in value.items():
        at = _pos(value, subj) or pos
        if not valid_subject(subj):
            raise ConfigError('Subject "%s" is not a valid subject' % subj, at)
        if isinstance(v, str):
            try:
                ms.add(subj, [(v, 100, "")])
            except MappingError as e:
                raise ConfigError('Error adding mapping for "%s" to "%s" : %s' % (subj, v, e), at) from None
            continue
        if isinstance(v, list):
            dests = [_parse_dest(d, _list_pos(v, i, at)) for i, d in enumerate(v)]
        elif isinstance(v, dict):
            dests = [_parse_dest(v, _pos(value, subj, "value_pos") or at)]
        else:
            raise ConfigError("Expected an entry for the mapping destination", at)
        try:
            ms.add(subj, dests)
        except MappingError as e:
            raise ConfigError('Error adding mapping for "%s" : %s' % (subj, e), at) from None
    return ms


def _list_pos(lst, i, default):
    p = getattr(lst, "pos", None)
    return p[i] if p and i < len(p) else default


def _parse_dest(d, at):
    """One {destination, weight, cluster} entry -> (subject, weight, cluster)
    (nats-server's parseAccountMapDest)."""
    if not isinstance(d, dict):
        raise ConfigError("Expected an entry for the mapping destination", at)
    subject, weight, cluster = "", None, ""
    for k, v in d.items():
        kat = _pos(d, k) or at

        def need_str():
            if not isinstance(v, str):
                raise ConfigError("interface conversion: interface {} is %s, not string"
                                  % _go_type(v), _pos(d, k, "value_pos") or kat)
            return v

        low = k.lower()
        if low in ("dest", "destination"):
            subject = need_str()
        elif low == "weight":
            if isinstance(v, str):
                ws = v[:-1] if v.endswith("%") else v
                weight = go_atoi(ws)
                if weight is None:
                    raise ConfigError('Invalid weight "%s" for mapping destination' % ws, kat)
            elif isinstance(v, int) and not isinstance(v, bool):
                weight = int(v)
            else:
                raise ConfigError("Unknown entry type for weight of %s"
                                  % (str(v).lower() if isinstance(v, bool) else v), kat)
            if weight > 100 or weight < 0:
                raise ConfigError("Invalid weight %d for mapping destination" % weight, kat)
        elif low == "cluster":
            cluster = need_str()
        else:
            raise ConfigError('Unknown field "%s" for mapping destination' % k, kat)
    if weight is None:
        raise ConfigError('Missing weight for mapping destination "%s"' % subject, at)
    return subject, weight, cluster
