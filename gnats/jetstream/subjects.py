"""Subject helpers JetStream needs beyond the subject index: overlap of two
wildcard subjects and a minimal subject transform for streams'
`subject_transform` and `republish` (positional `*`/`>` and
`{{wildcard(N)}}` / `$N` references only: the mapping functions of
nats-server's transforms, partition() and split(), are not here).
"""

import re

from ..sublist import valid_subject, subject_matches


def subjects_collide(a, b):
    """Can one literal subject match both patterns? (nats-server's
    SubjectsCollide)."""
    ta, tb = a.split("."), b.split(".")
    for x, y in zip(ta, tb):
        if x == ">" or y == ">":
            return True
        if x != y and x != "*" and y != "*":
            return False
    # all shared tokens agree: only subjects of equal length collide
    return len(ta) == len(tb)


_REF = re.compile(r"\{\{\s*wildcard\s*\(\s*(\d+)\s*\)\s*\}\}|\$(\d+)")


class TransformError(ValueError):
    pass


class SubjectTransform:
    """src (a pattern) -> dest, where dest may reference src's `*` tokens
    by position ({{wildcard(1)}} or $1) and ends with `>` only if src does."""

    def __init__(self, src, dest):
        src = src or ">"
        if not valid_subject(src):
            raise TransformError("invalid mapping source: %s" % src)
        if not valid_subject(dest):
            raise TransformError("invalid mapping destination: %s" % dest)
        self.src = src
        self.src_tokens = src.split(".")
        stars = [i for i, t in enumerate(self.src_tokens) if t == "*"]
        self.stars = stars
        parts = []
        implicit = 0
        for t in dest.split("."):
            refs = _REF.findall(t)
            if t == "*":
                # a bare '*' in dest takes the next '*' of src, in order
                implicit += 1
                if implicit > len(stars):
                    raise TransformError("invalid mapping destination: not enough wildcards in %s" % dest)
                parts.append(("w", implicit))
            elif t == ">":
                if self.src_tokens[-1] != ">":
                    raise TransformError("invalid mapping destination: %s" % dest)
                parts.append((">", 0))
            elif refs:
                for a, b in refs:
                    n = int(a or b)
                    if n < 1 or n > len(stars):
                        raise TransformError("invalid mapping destination: wildcard index out of range in %s: [%d]"
                                             % (t, n))
                parts.append(("t", t))
            else:
                parts.append(("l", t))
        self.parts = parts

    def apply(self, subject):
        """The destination for a subject the source matches (else None)."""
        if not subject_matches(self.src, subject):
            return None
        toks = subject.split(".")
        stars = self.stars
        out = []
        for kind, v in self.parts:
            if kind == "l":
                out.append(v)
            elif kind == "w":
                out.append(toks[stars[v - 1]])
            elif kind == ">":
                out.append(".".join(toks[len(self.src_tokens) - 1:]))
            else:
                out.append(_REF.sub(lambda m: toks[stars[int(m.group(1) or m.group(2)) - 1]], v))
        return ".".join(out)
