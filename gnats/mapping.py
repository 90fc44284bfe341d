"""Subject mappings and subject transforms, as nats-server 2.15 has them
(its subject_transform.go and Account.AddWeightedMappings/selectMappedSubject).

Pure: subjects (text) in, subjects out; nothing here knows of the server.

A `SubjectTransform(src, dest)` rewrites a literal subject matching `src`
(which may hold `*` and `>`) into `dest`, whose tokens are literals, `$N`
(the Nth `*` of the source), or a mustache function of the source's
wildcard tokens:

    {{wildcard(n)}}          the nth wildcard's token, as $n
    {{partition(p,n,...)}}   FNV-1a 32 of the named tokens (concatenated) mod p;
                             {{partition(p)}}: of the whole subject
    {{split(n,delim)}}       the token split on delim, pieces as tokens
    {{splitfromleft(n,k)}}   split in two after the kth character
    {{splitfromright(n,k)}}  split in two k characters from the end
    {{slicefromleft(n,k)}}   cut in slices of k characters from the left
    {{slicefromright(n,k)}}  the same from the right
    {{left(n,k)}}            the first k characters; {{right(n,k)}} the last k
    {{random(p)}}            a random number in [0, p)

(function names case-insensitive in their first letters, as Go's regexps).
A `>` in the source must be matched by a `>` in the destination, which takes
the tokens it covered. Errors are `MappingError`s with nats-server's texts.

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
import re
from itertools import islice

from .conf import ConfigError

ERR_BAD_SUBJECT = "invalid subject"
_ERR_DEST = "invalid mapping destination"
ERR_DEST_SUBJECT = _ERR_DEST + ": invalid transform"
ERR_NOT_ALL_WILDCARDS = _ERR_DEST + ": not using all of the token wildcard(s)"
ERR_UNKNOWN_FUNCTION = _ERR_DEST + ": unknown function"
ERR_INDEX_OUT_OF_RANGE = _ERR_DEST + ": wildcard index out of range"
ERR_NOT_ENOUGH_ARGS = _ERR_DEST + ": not enough arguments passed to the function"
ERR_INVALID_ARG = _ERR_DEST + ": function argument is invalid or in the wrong format"
ERR_TOO_MANY_ARGS = _ERR_DEST + ": too many arguments passed to the function"
ERR_NOT_FOR_IMPORT = (_ERR_DEST + ": the only mapping function allowed for import "
                      "transforms is {{Wildcard()}}")

# What a dropped message (a loss mapping) is published to: a subject that
# matches nothing (gnats.delivery.match_publish: an empty token). Go maps it
# to "", which its Sublist matches with nothing too.
DROPPED = b"."

# Bytes of the subject cache of one Mappings (subjects and results, plus
# per-entry overhead); the oldest entries go when it is full. Without a
# bound, a publisher cycling through unique subjects would grow it forever.
CACHE_BUDGET = 1 << 20
_ENTRY_COST = 200
_EVICT_CHUNK = 256


class MappingError(ValueError):
    """A transform or mapping nats-server would refuse (its text)."""


def _dest_err(token, err):
    return MappingError("%s in %s" % (err, token) if token else err)


# -- transform functions -------------------------------------------------------

(_NONE, _BAD, _PARTITION, _WILDCARD, _SPLIT_LEFT, _SPLIT_RIGHT, _SLICE_LEFT,
 _SLICE_RIGHT, _SPLIT, _LEFT, _RIGHT, _RANDOM) = range(12)

_S = r"[\t\n\f\r ]*"          # Go's RE2 \s


def _fn(name):
    pat = "".join("[%s%s]" % (c.lower(), c.upper()) if c.isupper() or i == 0 else c
                  for i, c in enumerate(name))
    return re.compile(r"{{%s%s%s\((.*)\)%s}}" % (_S, pat, _S, _S))


# In nats-server's order of trial (split after splitFromLeft/Right, whose
# names it prefixes).
_PARTITION_RE = _fn("partition")
_WILDCARD_RE = _fn("wildcard")
_INDEX_INT_FUNCS = ((_fn("splitFromLeft"), _SPLIT_LEFT), (_fn("splitFromRight"), _SPLIT_RIGHT),
                    (_fn("sliceFromLeft"), _SLICE_LEFT), (_fn("sliceFromRight"), _SLICE_RIGHT),
                    (_fn("right"), _RIGHT), (_fn("left"), _LEFT))
_SPLIT_RE = _fn("split")
_RANDOM_RE = _fn("random")
# (nats-server's main branch leaves left/right out of ValidateMapping's
# list; 2.15.1 accepts them, checked)
_KNOWN = (_PARTITION_RE, _WILDCARD_RE, _SPLIT_RE, _RANDOM_RE) + tuple(r for r, _ in _INDEX_INT_FUNCS)
_COMMA = re.compile(r",%s" % _S)
_ATOI = re.compile(r"[+-]?[0-9]+\Z")
INT32_MAX = (1 << 31) - 1
INT64_MAX = (1 << 63) - 1


def _atoi(s, limit=INT64_MAX):
    """Go's strconv.Atoi (ParseInt with a bit size: limit): None if not one."""
    if not _ATOI.match(s):
        return None
    v = int(s)
    return v if -limit - 1 <= v <= limit else None


def _args(regex, token):
    m = regex.search(token)
    return _COMMA.split(m.group(1)) if m else None


def _mustache(token):
    return len(token) > 4 and token[:2] == "{{" and token[-2:] == "}}"


def _index_int(token, args, kind):
    if len(args) < 2:
        raise _dest_err(token, ERR_NOT_ENOUGH_ARGS)
    if len(args) > 2:
        raise _dest_err(token, ERR_TOO_MANY_ARGS)
    i = _atoi(args[0].strip(" "))
    n = _atoi(args[1].strip(" "), INT32_MAX)
    if i is None or n is None:
        raise _dest_err(token, ERR_INVALID_ARG)
    return kind, [i], n, ""


def index_placeholders(token):
    """A destination token -> (function, wildcard indexes, int arg, string
    arg), or MappingError. nats-server's indexPlaceHolders."""
    if len(token) > 1:
        if token[0] == "$":
            # the old $1 form; another $word is a literal token
            i = _atoi(token[1:])
            return (_NONE, [-1], -1, "") if i is None else (_WILDCARD, [i], -1, "")
        if _mustache(token):
            args = _args(_WILDCARD_RE, token)
            if args is not None:
                if len(args) == 1 and args[0] == "":
                    raise _dest_err(token, ERR_NOT_ENOUGH_ARGS)
                if len(args) > 1:
                    raise _dest_err(token, ERR_TOO_MANY_ARGS)
                i = _atoi(args[0].strip(" "))
                if i is None:
                    raise _dest_err(token, ERR_INVALID_ARG)
                return _WILDCARD, [i], -1, ""
            args = _args(_PARTITION_RE, token)
            if args is not None:
                n = _atoi(args[0].strip(" "))
                if n is None or n > INT32_MAX:
                    raise _dest_err(token, ERR_INVALID_ARG)
                idx = []
                for a in args[1:]:
                    i = _atoi(a.strip(" "))
                    if i is None:
                        raise _dest_err(token, ERR_INVALID_ARG)
                    idx.append(i)
                return _PARTITION, idx, n, ""
            for regex, kind in _INDEX_INT_FUNCS:
                args = _args(regex, token)
                if args is not None:
                    return _index_int(token, args, kind)
            args = _args(_SPLIT_RE, token)
            if args is not None:
                if len(args) < 2:
                    raise _dest_err(token, ERR_NOT_ENOUGH_ARGS)
                if len(args) > 2:
                    raise _dest_err(token, ERR_TOO_MANY_ARGS)
                i = _atoi(args[0].strip(" "))
                if i is None or " " in args[1] or "." in args[1]:
                    raise _dest_err(token, ERR_INVALID_ARG)
                return _SPLIT, [i], -1, args[1]
            args = _args(_RANDOM_RE, token)
            if args is not None:
                if len(args) != 1:
                    raise _dest_err(token, ERR_NOT_ENOUGH_ARGS)
                n = _atoi(args[0].strip(" "))
                if n is None or n > INT32_MAX:
                    raise _dest_err(token, ERR_INVALID_ARG)
                return _RANDOM, [], n, ""
            raise _dest_err(token, ERR_UNKNOWN_FUNCTION)
    return _NONE, [-1], -1, ""


def subject_info(subject):
    """(valid, tokens, number of '*', has '>'), as nats-server's subjectInfo
    (no check of white space: callers that need one make it)."""
    if not subject:
        return False, None, 0, False
    npwc = 0
    fwc = False
    tokens = subject.split(".")
    for t in tokens:
        if not t or fwc:
            return False, None, 0, False
        if t == ">":
            fwc = True
        elif t == "*":
            npwc += 1
    return True, tokens, npwc, fwc


def valid_subject(subject):
    """nats-server's IsValidSubject: tokens not empty, no white space, '>'
    last."""
    if not subject:
        return False
    tokens = subject.split(".")
    for i, t in enumerate(tokens):
        if not t or (t == ">" and i != len(tokens) - 1):
            return False
        if any(c in t for c in " \t\n\r\f"):
            return False
    return True


def subset_match(tokens, test):
    """Is the subject `tokens` a subset of the pattern `test` (tokens)?
    nats-server's isSubsetMatchTokenized: an empty token or a '>' in the
    subject never matches; a '*' in it only a '*' or '>'."""
    n = len(tokens)
    for i, t2 in enumerate(test):
        if i >= n or not t2:
            return False
        if t2 == ">":
            return True
        t1 = tokens[i]
        if not t1 or t1 == ">":
            return False
        if t1 == "*":
            if t2 != "*":
                return False
            continue
        if t2 != "*" and t1 != t2:
            return False
    return n == len(test)


def fnv1a32(data):
    """FNV-1a, 32 bits (Go's hash/fnv New32a), of bytes."""
    h = 0x811c9dc5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def _utf8(s):
    return s.encode("utf-8", "surrogateescape")


def validate_destination(src, dest):
    """nats-server's ValidateMapping: the destination's tokens, then the
    transform itself. Raises MappingError."""
    if not dest:
        return
    fwc = False
    for t in dest.split("."):
        if not t or fwc:
            raise _dest_err(t, ERR_DEST_SUBJECT)
        if _mustache(t):
            if not any(r.search(t) for r in _KNOWN):
                raise _dest_err(t, ERR_UNKNOWN_FUNCTION)
            continue
        if t == ">":
            fwc = True
        elif any(c in t for c in "\t\n\f\r "):
            raise MappingError(ERR_DEST_SUBJECT)
    SubjectTransform(src, dest)


class SubjectTransform:
    """One source -> destination rewrite (nats-server's subjectTransform).
    strict: an import's transform, which must be reversible (only $N /
    {{wildcard(N)}}, every source wildcard used)."""

    __slots__ = ("src", "dest", "stoks", "dtoks", "funcs", "random")

    def __init__(self, src, dest, strict=False):
        if not dest:
            raise MappingError(ERR_BAD_SUBJECT)
        if not src:
            src = ">"
        sv, stoks, npwc, fwc = subject_info(src)
        dv, dtoks, dnpwc, dfwc = subject_info(dest)
        if not sv or not dv or dnpwc > 0 or fwc != dfwc:
            raise MappingError(ERR_BAD_SUBJECT)
        funcs = []
        if npwc or fwc:
            # which source token each wildcard number names (1-based); an
            # index 0 or below names token 0, as Go's map lookup gives
            wild = {}
            for i, t in enumerate(stoks):
                if t == "*":
                    wild[len(wild) + 1] = i
            used = 0
            for token in dtoks:
                kind, idx, n, s = index_placeholders(token)
                if strict and kind not in (_NONE, _WILDCARD):
                    raise _dest_err(token, ERR_NOT_FOR_IMPORT)
                if kind in (_NONE, _RANDOM):
                    funcs.append((kind, (), n, s))
                    continue
                used += len(idx)
                for w in idx:
                    if w > npwc:
                        raise _dest_err("%s: [%d]" % (token, w), ERR_INDEX_OUT_OF_RANGE)
                funcs.append((kind, tuple(wild.get(w, 0) for w in idx), n, s))
            if strict and used < npwc:
                raise _dest_err(dest, ERR_NOT_ALL_WILDCARDS)
        else:
            # no wildcards in the source: only functions without arguments
            for token in dtoks:
                kind, _, n, s = index_placeholders(token)
                if kind not in (_NONE, _RANDOM, _PARTITION):
                    raise _dest_err(token, ERR_INDEX_OUT_OF_RANGE)
                funcs.append((kind, (), n, s))
        self.src, self.dest, self.stoks, self.dtoks = src, dest, stoks, dtoks
        self.funcs = funcs
        # random draws: the result differs from one call to the next
        self.random = any(f[0] == _RANDOM for f in funcs)

    def __repr__(self):
        return "SubjectTransform(%r, %r)" % (self.src, self.dest)

    def match(self, subject):
        """The transformed subject, or None when `subject` (literal) does
        not match the source (Go's Match, whose errors are None here)."""
        if self.src == ">" and self.dest == ">":
            return subject
        tokens = subject.split(".")
        for t in tokens:
            if not t or t == "*" or t == ">":
                return None
        if self.src != ">" and not subset_match(tokens, self.stoks):
            return None
        return self.transform_tokens(tokens)

    def transform(self, subject):
        """Rewrite a subject known to match the source."""
        return self.transform_tokens(subject.split("."))

    def transform_tokens(self, tokens):
        out = []
        put = out.append
        dtoks = self.dtoks
        last = len(self.funcs) - 1
        for i, (kind, idx, n, s) in enumerate(self.funcs):
            if kind == _NONE:
                if dtoks[i] == ">":
                    break
                put(dtoks[i])
            elif kind == _WILDCARD:
                if idx and idx[0] < len(tokens):
                    put(tokens[idx[0]])
            elif kind == _PARTITION:
                if idx:
                    key = _utf8("".join(tokens[j] for j in idx))
                else:
                    key = _utf8(".".join(tokens))
                # Go: h.Sum32() % uint32(n)
                put(str(fnv1a32(key) % (n & 0xFFFFFFFF)) if n else "0")
            elif kind == _RANDOM:
                # Go: int(rand.Int31()) % n, never negative
                put(str(random.getrandbits(31) % abs(n)) if n else "0")
            else:
                put(_token_function(kind, tokens[idx[0]], n, s))
            if i < last:
                put(".")
        if dtoks[-1] == ">":
            put(".".join(tokens[len(self.stoks) - 1:]))
        return "".join(out)

    def reverse(self):
        """The transform back (for import replies), or None (Go's reverse)."""
        if not any(f[1] for f in self.funcs):
            try:
                return SubjectTransform(self.dest, self.src, strict=True)
            except MappingError:
                return None
        nsrc, holders = [], []
        for t in self.dest.split("."):
            wa = _args(_WILDCARD_RE, t)
            if (len(t) > 1 and t[0] == "$" and "1" <= t[1] <= "9") or \
                    (wa is not None and len(wa) == 1 and wa[0] != ""):
                holders.append(t)
                nsrc.append("*")
            else:
                nsrc.append(t)
        ndest = []
        for t in self.stoks:
            if t == "*":
                if not holders:
                    return None
                ndest.append(holders.pop(0))
            else:
                ndest.append(t)
        try:
            return SubjectTransform(".".join(nsrc), ".".join(ndest), strict=True)
        except MappingError:
            return None


def _token_function(kind, tok, n, s):
    """One source token through a one-token function (Go's cases, whose
    out-of-range sizes leave the token whole)."""
    ln = len(tok)
    if kind == _SPLIT:
        parts = tok.split(s) if s else list(tok)
        out = []
        for j, p in enumerate(parts):
            if p:
                out.append(p)
            if j < len(parts) - 1 and parts[j + 1] and not (j == 0 and not p):
                out.append(".")
        return "".join(out)
    if not 0 < n < ln:
        return tok
    if kind == _SPLIT_LEFT:
        return tok[:n] + "." + tok[n:]
    if kind == _SPLIT_RIGHT:
        return tok[:ln - n] + "." + tok[ln - n:]
    if kind == _LEFT:
        return tok[:n]
    if kind == _RIGHT:
        return tok[ln - n:]
    if kind == _SLICE_LEFT:
        out = [tok[i:i + n] for i in range(0, ln, n)]
        return ".".join(out)
    # _SLICE_RIGHT
    rem = ln % n
    out = [tok[:rem]] if rem else []
    out.extend(tok[i:i + n] for i in range(rem, ln, n))
    return ".".join(out)


def transform_tokenize(subject):
    """`foo.*.*` -> `foo.$1.$2`: a wildcard source as its own destination."""
    out, i = [], 1
    for t in subject.split("."):
        if t == "*":
            out.append("$%d" % i)
            i += 1
        else:
            out.append(t)
    return ".".join(out)


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
        w = random.randrange(100)
        for cum, out in zip(self.cums, self.outs):
            if w < cum:
                if out.__class__ is bytes:
                    return out
                tr, tokens = out
                return _utf8(tr.transform_tokens(tokens))
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
        b = _utf8(subject)
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
                outs.append((tr, tokens) if tr.random else _utf8(tr.transform_tokens(tokens)))
            if len(outs) == 1 and cums[0] == 100 and outs[0].__class__ is bytes:
                r = (outs[0], None)
            else:
                r = _Choice(cums, outs)
        cost = 2 * len(subject) + _ENTRY_COST
        if self._used + cost > CACHE_BUDGET:
            room = CACHE_BUDGET - (CACHE_BUDGET >> 4)
            cache = self._cache
            while cache and self._used + cost > room:
                for k in list(islice(cache, _EVICT_CHUNK)):
                    del cache[k]
                    self._used -= 2 * len(k) + _ENTRY_COST
            if not cache:
                self._used = 0
        self._cache[subject] = r
        self._used += cost
        return r


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
                weight = _atoi(ws)
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
