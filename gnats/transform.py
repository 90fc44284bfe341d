"""Subject transforms, as nats-server 2.15 has them (subject_transform.go):
what subject mappings, and later JetStream's subject_transform and
republish, rewrite subjects with. Pure: text in, text out.

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
"""

import random
import re

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


class MappingError(ValueError):
    """A transform or mapping nats-server would refuse (its text)."""


def _dest_err(token, err):
    return MappingError("%s in %s" % (err, token) if token else err)


# -- transform functions -------------------------------------------------------

(_NONE, _PARTITION, _WILDCARD, _SPLIT_LEFT, _SPLIT_RIGHT, _SLICE_LEFT,
 _SLICE_RIGHT, _SPLIT, _LEFT, _RIGHT, _RANDOM) = range(11)

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


def go_atoi(s, limit=INT64_MAX):
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
    i = go_atoi(args[0].strip(" "))
    n = go_atoi(args[1].strip(" "), INT32_MAX)
    if i is None or n is None:
        raise _dest_err(token, ERR_INVALID_ARG)
    return kind, [i], n, ""


def index_placeholders(token):
    """A destination token -> (function, wildcard indexes, int arg, string
    arg), or MappingError. nats-server's indexPlaceHolders."""
    if len(token) > 1:
        if token[0] == "$":
            # the old $1 form; another $word is a literal token
            i = go_atoi(token[1:])
            return (_NONE, [-1], -1, "") if i is None else (_WILDCARD, [i], -1, "")
        if _mustache(token):
            args = _args(_WILDCARD_RE, token)
            if args is not None:
                if len(args) == 1 and args[0] == "":
                    raise _dest_err(token, ERR_NOT_ENOUGH_ARGS)
                if len(args) > 1:
                    raise _dest_err(token, ERR_TOO_MANY_ARGS)
                i = go_atoi(args[0].strip(" "))
                if i is None:
                    raise _dest_err(token, ERR_INVALID_ARG)
                return _WILDCARD, [i], -1, ""
            args = _args(_PARTITION_RE, token)
            if args is not None:
                n = go_atoi(args[0].strip(" "))
                if n is None or n > INT32_MAX:
                    raise _dest_err(token, ERR_INVALID_ARG)
                idx = []
                for a in args[1:]:
                    i = go_atoi(a.strip(" "))
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
                i = go_atoi(args[0].strip(" "))
                if i is None or " " in args[1] or "." in args[1]:
                    raise _dest_err(token, ERR_INVALID_ARG)
                return _SPLIT, [i], -1, args[1]
            args = _args(_RANDOM_RE, token)
            if args is not None:
                if len(args) != 1:
                    raise _dest_err(token, ERR_NOT_ENOUGH_ARGS)
                n = go_atoi(args[0].strip(" "))
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


def utf8(s):
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
                    key = utf8("".join(tokens[j] for j in idx))
                else:
                    key = utf8(".".join(tokens))
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
