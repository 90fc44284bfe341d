"""Stream configuration: JSON in, a validated dict with nats-server's
defaults out, in nats-server 2.15's field order.

`parse_request(body)` decodes a request body as nats-server does (strict:
unknown fields and wrong types are `invalid JSON` errors, err_code 10025);
`stream_config(raw, ...)` fills the defaults and refuses what nats-server
refuses, with its texts (err_code 10052 and friends). Durations are integer
nanoseconds, as on the wire. `mirror` and `sources` are decoded and checked
by sourcing_config.py (hooks marked "sourcing").
"""

import json

from . import errors as E
from . import sourcing_config
from .subjects import subjects_collide
from ..transform import MappingError, SubjectTransform
from ..sublist import valid_subject

MAX_NAME_LEN = 255
DEFAULT_DUPLICATE_WINDOW = 120 * 10 ** 9
API_LEVEL = 5

# Go's type names for the "cannot unmarshal" texts
_GO_TYPES = {int: "int64", bool: "bool", str: "string", list: "[]string", dict: "map[string]string"}

# field -> (python type, default); the order is nats-server's JSON order.
# Fields with default None are omitted from the output when unset (Go's
# omitempty); the rest are always present.
FIELDS = [
    ("name", str, ""),
    ("description", str, None),
    ("subjects", list, None),
    ("retention", str, "limits"),
    ("max_consumers", int, -1),
    ("max_msgs", int, -1),
    ("max_bytes", int, -1),
    ("max_age", int, 0),
    ("max_msgs_per_subject", int, -1),
    ("max_msg_size", int, -1),
    ("discard", str, "old"),
    ("storage", str, "file"),
    ("num_replicas", int, 1),
    ("no_ack", bool, None),
    ("template_owner", str, None),
    ("duplicate_window", int, DEFAULT_DUPLICATE_WINDOW),
    ("placement", dict, None),
    ("mirror", dict, None),
    ("sources", list, None),
    ("compression", str, "none"),
    ("first_seq", int, None),
    ("subject_transform", dict, None),
    ("republish", dict, None),
    ("allow_direct", bool, False),
    ("mirror_direct", bool, False),
    ("discard_new_per_subject", bool, None),
    ("sealed", bool, False),
    ("deny_delete", bool, False),
    ("deny_purge", bool, False),
    ("allow_rollup_hdrs", bool, False),
    ("consumer_limits", dict, {}),
    ("allow_msg_ttl", bool, False),
    ("subject_delete_marker_ttl", int, None),
    ("allow_msg_counter", bool, None),
    ("allow_atomic", bool, None),
    ("allow_msg_schedules", bool, None),
    ("allow_batched", bool, None),
    ("persist_mode", str, None),
    ("metadata", dict, None),
]
FIELD_TYPES = dict((f, t) for f, t, _ in FIELDS)
ENUMS = {
    "retention": ("limits", "interest", "workqueue"),
    "discard": ("old", "new"),
    "storage": ("file", "memory"),
    "compression": ("none", "s2"),
    "persist_mode": ("default", "async"),
}
# not implemented: a request setting them to something other than off is refused
UNSUPPORTED = ("allow_msg_counter", "allow_atomic", "allow_msg_schedules",
               "allow_batched")


def json_error(e):
    # Python's decoder text, in Go's "invalid JSON: ..." envelope
    return E.err(E.INVALID_JSON, err=str(e))


def parse_request(body, empty_ok=True):
    """A request body as a dict ({} for an empty body when allowed)."""
    if not body or not body.strip():
        if empty_ok:
            return {}
        raise E.err(E.BAD_REQUEST)
    try:
        req = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise json_error(e)
    if not isinstance(req, dict):
        raise E.err(E.INVALID_JSON, err="json: cannot unmarshal %s into Go value of type object"
                    % type(req).__name__)
    return req


def _type_error(field, value, want):
    """want: a Python type of FIELDS, or a Go type name."""
    kind = {str: "string", bool: "bool", list: "array", dict: "object"}.get(type(value), "number")
    go_type = want if isinstance(want, str) else _GO_TYPES.get(want, "object")
    if isinstance(value, float) and go_type in ("int", "int64", "time.Duration"):
        kind = "number %s" % json.dumps(value)     # Go names the fraction it cannot hold
    return E.err(E.INVALID_JSON, err="json: cannot unmarshal %s into Go struct field StreamConfigRequest.%s of type %s"
                 % (kind, field, go_type))


# consumer_limits: field -> Go type, in nats-server's JSON order (zero omitted)
_CONSUMER_LIMITS = (("inactive_threshold", "time.Duration"), ("max_ack_pending", "int"))


def decode_consumer_limits(v):
    """The stream's limits for its consumers, decoded strictly (its values
    become consumer defaults and bounds, see consumer_config.py)."""
    if not isinstance(v, dict):
        raise _type_error("consumer_limits", v, "server.StreamConsumerLimits")
    known = dict(_CONSUMER_LIMITS)
    for k, x in v.items():
        if k not in known:
            raise E.err(E.INVALID_JSON, err='json: unknown field "%s"' % k)
        if x is not None and (isinstance(x, bool) or not isinstance(x, int)):
            raise _type_error("consumer_limits." + k, x, known[k])
    return dict((k, v[k]) for k, _ in _CONSUMER_LIMITS if v.get(k))


def decode_config(raw):
    """Strict decode of a StreamConfig object: known fields, right types."""
    if not isinstance(raw, dict):
        raise E.err(E.INVALID_JSON, err="json: cannot unmarshal into Go value of type server.StreamConfig")
    cfg = {}
    for k, v in raw.items():
        want = FIELD_TYPES.get(k)
        if want is None:
            raise E.err(E.INVALID_JSON, err='json: unknown field "%s"' % k)
        if v is None:
            continue
        if k in _SOURCING_DECODERS:    # sourcing: nested StreamSource objects
            cfg[k] = _SOURCING_DECODERS[k](v)
            continue
        if k == "consumer_limits":
            cfg[k] = decode_consumer_limits(v)
            continue
        if want is int:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
                raise _type_error(k, v, want)
            v = int(v)
        elif not isinstance(v, want) or (want is not bool and isinstance(v, bool)):
            raise _type_error(k, v, want)
        if k in ENUMS and v not in ENUMS[k]:
            raise E.err(E.INVALID_JSON, err='can not unmarshal "\\"%s\\""' % v)
        if k in ("subjects",) and not all(isinstance(s, str) for s in v):
            raise _type_error(k, v, want)
        if k == "metadata" and not all(isinstance(x, str) for x in v.values()):
            raise _type_error(k, v, want)
        cfg[k] = v
    return cfg


_SOURCING_DECODERS = {"mirror": sourcing_config.decode_mirror, "sources": sourcing_config.decode_sources}


def check_name(name):
    if not name or any(c in name for c in ".*>\\/ \t\r\n"):
        raise E.err(E.INVALID_CONFIG, err="stream name is required and can not contain '.', '*', '>', '\\', '/'")
    if len(name) > MAX_NAME_LEN:
        raise E.err(E.INVALID_CONFIG, err="stream name is too long, maximum allowed is %d" % MAX_NAME_LEN)


def _invalid(text):
    return E.err(E.INVALID_CONFIG, err=text)


def stream_config(raw, clustered=False):
    """The validated config with defaults, from a decoded request."""
    c = decode_config(raw)
    name = c.get("name", "")
    check_name(name)
    for k in UNSUPPORTED:
        if c.get(k):
            raise _invalid("%s is not supported by this server" % k)
    if c.get("num_replicas", 1) < 0:
        raise E.err(E.REPLICAS_NEGATIVE)
    if c.get("num_replicas", 1) > 1:
        raise E.err(E.REPLICAS_NOT_SUPPORTED)
    if c.get("max_age", 0) < 0:
        raise _invalid("max age can not be negative")
    if c.get("duplicate_window", 0) < 0:
        raise _invalid("duplicates window can not be negative")
    if c.get("sealed"):
        raise _invalid("stream configuration for create can not be sealed")
    if c.get("mirror_direct") and not c.get("mirror"):
        raise _invalid("stream has no mirror but does have mirror direct")
    sourcing_config.check_config(c)     # sourcing
    sourced = c.get("mirror") is not None or bool(c.get("sources"))
    out = {}
    for f, _, default in FIELDS:
        v = c.get(f)
        if v is None:
            if default is not None:
                out[f] = dict(default) if isinstance(default, dict) else default
            continue
        out[f] = v
    # nats-server: zero or negative limits mean "unlimited" (-1)
    for f in ("max_msgs", "max_bytes", "max_msgs_per_subject", "max_msg_size", "max_consumers"):
        if out[f] <= 0:
            out[f] = -1
    if out["num_replicas"] == 0:
        out["num_replicas"] = 1
    max_age = out["max_age"]
    if not c.get("duplicate_window"):
        out["duplicate_window"] = 0 if sourced else DEFAULT_DUPLICATE_WINDOW    # sourcing: none by default
        if 0 < max_age < DEFAULT_DUPLICATE_WINDOW and not sourced:
            out["duplicate_window"] = max_age
    elif max_age and out["duplicate_window"] > max_age:
        raise _invalid("duplicates window can not be larger then max age")
    subjects = out.get("subjects") or ([] if sourced else [name])    # sourcing: none by default
    out["subjects"] = subjects
    for i, s in enumerate(subjects):
        if not valid_subject(s):
            raise _invalid("invalid subject")
        for other in subjects[i + 1:]:
            if subjects_collide(s, other):
                raise _invalid('subject "%s" overlaps with "%s"' % (s, other))
        if not out.get("no_ack") and subjects_collide(s, "$JS.API.>"):
            raise _invalid("subjects that overlap with jetstream api require no-ack to be true")
    if out.get("discard_new_per_subject"):
        if out["discard"] != "new":
            raise _invalid("discard new per subject requires discard new policy to be set")
        if out["max_msgs_per_subject"] <= 0:
            raise _invalid("discard new per subject requires max msgs per subject > 0")
    else:
        out.pop("discard_new_per_subject", None)
    sdm = out.get("subject_delete_marker_ttl") or 0
    if sdm > 0:
        if sdm < 10 ** 9:
            raise _invalid("subject delete marker TTL must be at least 1 second")
        # markers carry a TTL and roll up their subject: nats-server switches
        # both on (and purges back on) unless the request is pedantic
        out["allow_msg_ttl"] = True
        if not out["allow_rollup_hdrs"]:
            out["allow_rollup_hdrs"], out["deny_purge"] = True, False
    elif sdm < 0:
        raise _invalid("subject delete marker TTL must not be negative")
    if out["allow_rollup_hdrs"] and out["deny_purge"]:
        raise _invalid("roll-ups require the purge permission")
    st = out.get("subject_transform")
    if st is not None:
        src, dest = st.get("src") or ">", st.get("dest") or ""
        if not isinstance(src, str) or not isinstance(dest, str):
            raise E.err(E.TRANSFORM_INVALID, err="invalid subject")
        try:
            SubjectTransform(src, dest)
        except MappingError as e:
            raise E.err(E.TRANSFORM_INVALID, err=str(e))
    rp = out.get("republish")
    if rp is not None:
        check_republish(rp, subjects)
    meta = dict((k, v) for k, v in (out.get("metadata") or {}).items() if not k.startswith("_nats."))
    meta["_nats.req.level"] = "1" if out["allow_msg_ttl"] else "0"
    out["metadata"] = dict(sorted(meta.items()))
    return out


def check_republish(rp, subjects):
    # nats-server's order: the cycle first, then the transform
    src, dest = rp.get("src") or ">", rp.get("dest") or ""
    if not isinstance(src, str) or not isinstance(dest, str) or not valid_subject(dest):
        raise _invalid("stream configuration for republish destination is not a valid subject")
    for s in subjects:
        if subjects_collide(dest, s):
            raise _invalid("stream configuration for republish destination forms a cycle")
    try:
        SubjectTransform(src, dest)
    except MappingError:
        raise _invalid("stream configuration for republish with transform from '%s' to '%s' not valid"
                       % (src, dest))


def check_update(old, new):
    """What an update may not change (nats-server's texts)."""
    if old.get("sealed") and not new.get("sealed"):
        raise _invalid("stream configuration update can not unseal a sealed stream")
    if new["storage"] != old["storage"]:
        raise _invalid("stream configuration update can not change storage type")
    r_old, r_new = old["retention"], new["retention"]
    if r_old != r_new and "workqueue" in (r_old, r_new):
        raise _invalid("stream configuration update can not change retention policy to/from workqueue")
    if old.get("deny_delete") and not new.get("deny_delete"):
        raise _invalid("stream configuration update can not cancel deny message deletes")
    if old.get("deny_purge") and not new.get("deny_purge"):
        raise _invalid("stream configuration update can not cancel deny purge")
    if old.get("template_owner") != new.get("template_owner"):
        raise _invalid("stream configuration update can not change template ownership")
    if old.get("allow_msg_ttl") and not new.get("allow_msg_ttl"):
        raise _invalid("message TTL status can not be disabled")


def update_config(raw, old):
    """An update request: validated like a create (sealing allowed), then
    checked against the running config."""
    sealing = bool(isinstance(raw, dict) and raw.get("sealed"))
    if sealing:
        raw = dict(raw)
        raw.pop("sealed")
    new = stream_config(raw)
    if sealing:
        # a sealed stream refuses deletes and purges too
        new["sealed"] = True
        new["deny_delete"] = True
        new["deny_purge"] = True
        new["discard"] = "new"
        if new.get("allow_rollup_hdrs"):
            new["allow_rollup_hdrs"] = False
    check_update(old, new)
    return new


def same_config(a, b):
    """Create of an existing stream: equal apart from the server's metadata."""
    def strip(c):
        c = dict(c)
        c["metadata"] = dict((k, v) for k, v in (c.get("metadata") or {}).items() if not k.startswith("_nats."))
        return c
    return strip(a) == strip(b)


def public_config(cfg):
    """The stored config as nats-server shows it: a mirror's or sourcing
    stream's empty subjects and zero duplicate window are left out (Go's
    omitempty; a plain stream always has both)."""
    out = dict(cfg)
    for k in ("subjects", "duplicate_window"):
        if not out.get(k):
            out.pop(k, None)
    return out


def config_json(cfg, version):
    """The config as API responses show it (metadata with the server's level
    and version; the stored form keeps only the request level)."""
    out = public_config(cfg)
    meta = dict(cfg.get("metadata") or {})
    meta["_nats.level"] = str(API_LEVEL)
    meta["_nats.ver"] = version
    out["metadata"] = dict(sorted(meta.items()))
    return out
