"""Stream `mirror` and `sources` configuration: strict decode of the
StreamSource objects and nats-server 2.15's checks, with its error codes
and texts (captured from /opt/ns/bin/nats-server 2.15.1).

Three entry points, called from config.py and api.py:
  - `decode_mirror(v)` / `decode_sources(v)`: the JSON values of the
    request's "mirror" and "sources" as normalised dicts (Go's field order,
    omitempty), or `invalid JSON` errors (10025) for unknown fields and
    wrong types, as Go's strict decoder words them;
  - `check_config(c)`: the checks that need only the config
    (checkStreamCfg's mirror, sources and external-prefix part);
  - `check_against(streams, cfg, old)`: the checks that need the account's
    other streams (origin max_msg_size, mirror_direct inherited from the
    origin's allow_direct, cycles, the update rule that a mirror config is
    immutable), then what this server does not implement: durable
    `consumer` sourcing (a consumer acked by flow control on the far
    side) is refused with a clear error. `external` origins are copied
    through a consumer on the far side (sourcing_external.py).

A source's index name ("iname") is nats-server's composeIName: the origin
name, then the filter(s) and destination(s) ('>' when unset, joined by a
form feed when there are several transforms). It keys a source in the
stored `Nats-Stream-Source` headers (sourcing.py).
"""

import calendar
import hashlib
import re

from . import errors as E
from .headers import rfc3339
from .subjects import subjects_collide
from ..sublist import subject_matches, valid_subject
from ..transform import MappingError, validate_destination

JS_API = "$JS.API"

MIRROR_WITH_SUBJECTS = (400, 10034, "stream mirrors can not contain subjects")
MIRROR_WITH_SOURCES = (400, 10031, "stream mirrors can not also contain other sources")
MIRROR_WITH_FIRST_SEQ = (400, 10143, "stream mirrors can not have first sequence configured")
MIRROR_NOT_UPDATABLE = (400, 10055, "stream mirror configuration can not be updated")
MIRROR_MULTIPLE_FILTERS = (400, 10150, "mirror with multiple subject transforms cannot also have a single "
                           "subject filter")
MIRROR_BAD_FILTER = (400, 10151, "mirror transform source: {err}")
MIRROR_BAD_TRANSFORM = (400, 10154, "mirror transform: {err}")
MIRROR_OVERLAP = (400, 10152, "mirror subject filters can not overlap")
MIRROR_BAD_NAME = (400, 10142, "mirrored stream name is invalid")
MIRROR_MAX_MSG_SIZE = (400, 10030, "stream mirror must have max message size >= source")
MIRROR_CONSUMER_INVALID = (400, 10213, "stream mirror consumer config is invalid")
SOURCE_BAD_NAME = (400, 10141, "sourced stream name is invalid")
SOURCE_DUPLICATE = (400, 10140, "duplicate source configuration detected")
SOURCE_MULTIPLE_FILTERS = (400, 10144, "source with multiple subject transforms cannot also have a single "
                           "subject filter")
SOURCE_BAD_FILTER = (400, 10145, "source transform source: {err}")
SOURCE_BAD_TRANSFORM = (400, 10146, "source transform: {err}")
SOURCE_OVERLAP = (400, 10147, "source filters can not overlap")
SOURCE_MAX_MSG_SIZE = (400, 10046, "stream source must have max message size >= target")
SOURCE_CONSUMER_INVALID = (400, 10215, "stream source consumer config is invalid")
SOURCE_CONSUMER_DUPLICATE = (400, 10216, "duplicate stream source consumer detected")
EXT_DELIVER_WILDCARD = (400, 10024, "stream external delivery prefix {prefix} must not contain wildcards")
EXT_DELIVER_OVERLAP = (400, 10022, "stream external delivery prefix {prefix} overlaps with stream subject {subject}")
EXT_API_OVERLAP = (400, 10021, "stream external api prefix {prefix} must not overlap with {subject}")
SOURCE_HEADER_NOT_ALLOWED = (400, 10227, "message stream source header is not allowed")

_GO = "Go struct field StreamConfigRequest."
_TIME_LAYOUT = "2006-01-02T15:04:05Z07:00"
_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _json_err(text):
    return E.err(E.INVALID_JSON, err="json: " + text)


def _kind(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(v), "null")


def _unmarshal_err(v, path, gotype):
    kind = _kind(v)
    if kind == "number":
        kind = "number %s" % v     # Go names the number it could not fit
    return _json_err("cannot unmarshal %s into %s%s of type %s" % (kind, _GO, path, gotype))


def _obj(v, path, gotype, fields):
    """A JSON object with only `fields` ({name: decoder}); None stays None."""
    if v is None:
        return None
    if not isinstance(v, dict):
        raise _unmarshal_err(v, path, gotype)
    out = {}
    for k, x in v.items():
        dec = fields.get(k)
        if dec is None:
            raise _json_err('unknown field "%s"' % k)
        if x is not None:
            out[k] = dec(x, path + "." + k)
    return out


def _str(v, path):
    if not isinstance(v, str):
        raise _unmarshal_err(v, path, "string")
    return v


def _uint(v, path):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or v < 0:
        raise _unmarshal_err(v, path, "uint64")
    return int(v)


def parse_time(text):
    """RFC 3339 text -> (ns since the epoch, Go's re-marshalled text);
    None if Go's time.Parse would refuse it."""
    m = _RFC3339.match(text)
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    frac, zone = m.group(7) or "", m.group(8)
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 60):
        return None
    secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    offset = 0
    if zone != "Z":
        offset = (int(zone[1:3]) * 60 + int(zone[4:6])) * 60 * (1 if zone[0] == "+" else -1)
    ns = (secs - offset) * 10 ** 9 + (int((frac[1:] + "000000000")[:9]) if frac else 0)
    if offset == 0:
        return ns, rfc3339(ns)
    text = text[:19] + (frac.rstrip("0") if frac.rstrip("0") != "." else "") + zone
    return ns, text


def _time(v, path):
    if not isinstance(v, str):
        raise _unmarshal_err(v, path, "time.Time")
    parsed = parse_time(v)
    if parsed is None:
        raise E.err(E.INVALID_JSON, err='parsing time "%s" as "%s": cannot parse "%s" as "2006"'
                    % (v, _TIME_LAYOUT, v))
    return parsed[1]


def _transforms(v, path):
    if not isinstance(v, list):
        raise _unmarshal_err(v, path, "[]server.SubjectTransformConfig")
    out = []
    for i, t in enumerate(v):
        t = _obj(t, "%s.%d" % (path, i), "server.SubjectTransformConfig", {"src": _str, "dest": _str}) or {}
        out.append({"src": t.get("src", ""), "dest": t.get("dest", "")})
    return out


def _external(v, path):
    e = _obj(v, path, "server.ExternalStream", {"api": _str, "deliver": _str})
    return {"api": e.get("api", ""), "deliver": e.get("deliver", "")}


def _consumer(v, path):
    c = _obj(v, path, "server.StreamConsumerSource", {"name": _str, "deliver_subject": _str})
    return dict((k, c[k]) for k in ("name", "deliver_subject") if c.get(k))


# Go's field order and omitempty: a value that is empty is left out
_SOURCE_FIELDS = [("name", _str), ("opt_start_seq", _uint), ("opt_start_time", _time),
                  ("filter_subject", _str), ("subject_transforms", _transforms), ("external", _external),
                  ("consumer", _consumer)]


def _source(v, path):
    s = _obj(v, path, "server.StreamSource", dict(_SOURCE_FIELDS))
    if s is None:
        return None
    out = {"name": s.get("name", "")}
    for k, _ in _SOURCE_FIELDS[1:]:
        x = s.get(k)
        if x or (k == "external" and x is not None):
            out[k] = x
    return out


def decode_mirror(v):
    return _source(v, "mirror")


def decode_sources(v):
    if not isinstance(v, list):
        raise _unmarshal_err(v, "sources", "[]*server.StreamSource")
    # an empty list is no sources (omitted from the config, as Go's omitempty)
    return [_source(x, "sources.%d" % i) for i, x in enumerate(v)] or None


# -- checks that need only the config ------------------------------------------

_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def go_hash(text):
    """nats-server's getHash: 8 base-62 characters of the SHA-256."""
    return "".join(_DIGITS[b % 62] for b in hashlib.sha256(text.encode()).digest()[:8])


def valid_asset_name(name):
    return bool(name) and not any(c in name for c in ".*>\\/ \t\r\n")


def iname(src):
    """nats-server's composeIName: "<name>[:<api hash>] <filters> <dests>"."""
    name = src["name"]
    ext = src.get("external")
    if ext is not None:
        name += ":" + go_hash(ext["api"])
    trs = src.get("subject_transforms")
    if not trs:
        return "%s %s >" % (name, src.get("filter_subject") or ">")
    return "%s %s %s" % (name, "\f".join(t["src"] or ">" for t in trs), "\f".join(t["dest"] or ">" for t in trs))


def validate_mapping(src, dest):
    """nats-server's ValidateMapping: the error text, or None. An empty
    destination means "keep the subject"."""
    try:
        validate_destination(src, dest)
    except MappingError as e:
        return str(e)
    return None


def _check_transforms(trs, bad_filter, bad_transform, overlap, collide):
    for i, t in enumerate(trs):
        if t["src"] and not valid_subject(t["src"]):
            raise E.err(bad_filter, err="invalid subject " + t["src"])
        text = validate_mapping(t["src"], t["dest"])
        if text is not None:
            raise E.err(bad_transform, err=text)
    for i, t in enumerate(trs):
        for j, u in enumerate(trs):
            if i != j and collide(t["src"] or ">", u["src"] or ">"):
                raise E.err(overlap)


def _check_consumer(src, kind):
    c = src.get("consumer")
    if c is None:
        return
    ds = c.get("deliver_subject", "")
    if (not valid_asset_name(c.get("name", "")) or not valid_subject(ds) or "*" in ds.split(".")
            or ">" in ds.split(".") or src.get("opt_start_seq") or src.get("opt_start_time")
            or src.get("filter_subject")):
        raise E.err(kind)


def _subset(a, b):
    # nats-server's subjectIsSubsetMatch(a, b): is every subject of a matched by b?
    return subject_matches(b, a)


def check_config(c):
    """checkStreamCfg's mirror/sources part, on the decoded request `c`."""
    m = c.get("mirror")
    prefixes = []           # (kind, prefix) of the external origins
    if m is not None:
        if c.get("first_seq"):
            raise E.err(MIRROR_WITH_FIRST_SEQ)
        if c.get("subjects"):
            raise E.err(MIRROR_WITH_SUBJECTS)
        if c.get("sources"):
            raise E.err(MIRROR_WITH_SOURCES)
        _check_consumer(m, MIRROR_CONSUMER_INVALID)
        if m.get("filter_subject") and m.get("subject_transforms"):
            raise E.err(MIRROR_MULTIPLE_FILTERS)
        if c.get("subject_delete_marker_ttl", 0) > 0:
            raise E.err(E.INVALID_CONFIG, err="subject delete markers forbidden on mirrors")
        _check_transforms(m.get("subject_transforms") or [], MIRROR_BAD_FILTER, MIRROR_BAD_TRANSFORM,
                          MIRROR_OVERLAP, subjects_collide)
        ext = m.get("external")
        if ext is None:
            if not valid_asset_name(m["name"]):
                raise E.err(MIRROR_BAD_NAME)
        else:
            prefixes.append(ext)
    seen, consumers = set(), set()
    for src in c.get("sources") or []:
        if src is None or not valid_asset_name(src["name"]):
            raise E.err(SOURCE_BAD_NAME)
        key = iname(src)
        if key in seen:
            raise E.err(SOURCE_DUPLICATE)
        seen.add(key)
        if src.get("filter_subject") and src.get("subject_transforms"):
            raise E.err(SOURCE_MULTIPLE_FILTERS)
        _check_transforms(src.get("subject_transforms") or [], SOURCE_BAD_FILTER, SOURCE_BAD_TRANSFORM,
                          SOURCE_OVERLAP, _subset)
        _check_consumer(src, SOURCE_CONSUMER_INVALID)
        if src.get("consumer") is not None:
            ckey = (src["name"], (src.get("external") or {}).get("api"), src["consumer"].get("name"))
            if ckey in consumers:
                raise E.err(SOURCE_CONSUMER_DUPLICATE)
            consumers.add(ckey)
        if src.get("external") is not None:
            prefixes.append(src["external"])
    for ext in prefixes:
        pfx = ext["deliver"]
        if pfx and not _publishable(pfx):
            raise E.err(EXT_DELIVER_WILDCARD, prefix=pfx)
    for ext in prefixes:
        pfx = ext["api"]
        if pfx and not _publishable(pfx):
            raise E.err(E.INVALID_CONFIG, err='stream external api prefix "%s" must be a valid subject '
                        'without wildcards' % pfx)
        if pfx and subjects_collide(pfx, JS_API):
            raise E.err(EXT_API_OVERLAP, prefix=pfx, subject=JS_API)


def _publishable(s):
    return valid_subject(s) and not any(t in ("*", ">") for t in s.split("."))


def check_filters(cfg):
    """addStream's filter checks (500 10049, after checkStreamCfg)."""
    m = cfg.get("mirror")
    if m is not None and not m.get("subject_transforms"):
        f = m.get("filter_subject")
        if f and not valid_subject(f):
            raise E.err(E.STREAM_CREATE, err="subject filter '%s' for the mirror invalid subject" % f)
    for src in cfg.get("sources") or []:
        if not src.get("subject_transforms"):
            f = src.get("filter_subject")
            if f and not valid_subject(f):
                raise E.err(E.STREAM_CREATE, err="subject filter '%s' for the source: invalid subject" % f)


# -- checks against the account's streams ----------------------------------------

def check_against(streams, cfg, old=None):
    """The checks that look at the account's other streams ({name: Stream}),
    the update rule (`old`: the running config), then the parts this
    server refuses. May set cfg["mirror_direct"] (inherited)."""
    m = cfg.get("mirror")
    if old is not None and m is not None and m != old.get("mirror"):
        raise E.err(MIRROR_NOT_UPDATABLE)
    mms = cfg["max_msg_size"]
    if m is not None and m.get("external") is None:
        origin = streams.get(m["name"])
        if origin is not None:
            omms = origin.config["max_msg_size"]
            if mms > 0 and omms > 0 and mms < omms:
                raise E.err(MIRROR_MAX_MSG_SIZE)
            cfg["mirror_direct"] = bool(origin.config.get("allow_direct"))
    local_subjects = []
    for src in cfg.get("sources") or []:
        if src.get("external") is None:
            origin = streams.get(src["name"])
            if origin is not None:
                local_subjects.extend(origin.config.get("subjects") or [])
                omms = origin.config["max_msg_size"]
                if mms > 0 and omms > 0 and mms < omms:
                    raise E.err(SOURCE_MAX_MSG_SIZE)
    if m is not None and m.get("external") is None and m["name"] in streams:
        local_subjects.extend(streams[m["name"]].config.get("subjects") or [])
    for src in ([m] if m else []) + list(cfg.get("sources") or []):
        pfx = (src.get("external") or {}).get("deliver")
        for s in local_subjects if pfx else ():
            if subjects_collide(s, "%s.%s" % (pfx, s)):
                raise E.err(EXT_DELIVER_OVERLAP, prefix=pfx, subject=s)
    _check_cycle(streams, cfg)
    check_filters(cfg)
    for src in ([m] if m else []) + list(cfg.get("sources") or []):
        if src.get("consumer") is not None:
            raise E.err(E.INVALID_CONFIG, err="stream %s with a durable 'consumer' is not supported by this "
                        "server yet" % ("mirror" if src is m else "source"))


def _check_cycle(streams, cfg):
    # nats-server's walk: from this config through the local origins; a
    # source seen twice whose filter overlaps the subjects, or a mirror
    # seen twice, is a cycle
    to_visit = [cfg]
    visited = set()
    while to_visit:
        c = to_visit.pop(0)
        visited.add(c["name"])
        for src in c.get("sources") or []:
            if src.get("external") is not None:
                continue
            if src["name"] in visited:
                f = src.get("filter_subject")
                if not f or any(subjects_collide(s, f) for s in c.get("subjects") or []):
                    raise E.err(E.INVALID_CONFIG, err="detected cycle")
            elif src["name"] in streams:
                to_visit.append(_current(streams, cfg, src["name"]))
        mm = c.get("mirror")
        if mm is not None and mm.get("external") is None:
            if mm["name"] in visited:
                raise E.err(E.INVALID_CONFIG, err="detected cycle")
            if mm["name"] in streams:
                to_visit.append(_current(streams, cfg, mm["name"]))


def _current(streams, cfg, name):
    # the stream being updated is seen with its new config
    return cfg if name == cfg["name"] else streams[name].config
