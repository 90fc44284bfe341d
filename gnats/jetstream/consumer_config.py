"""Consumer configuration: the `$JS.API.CONSUMER.CREATE` request in, a
validated config dict with nats-server 2.15's defaults out, in its JSON
field order; the checks an update must pass; the consumer error codes.

Durations are integer nanoseconds as on the wire. `consumer_config(raw,
stream_cfg, ephemeral)` fills the defaults (ack_wait 30 s for acked
consumers, or the first backoff; max_ack_pending and inactive_threshold
from the stream's consumer_limits, else 1000 and, for ephemerals, 5 s;
max_waiting 512 for pull; max_deliver -1) and refuses
what nats-server refuses with its error codes and texts (captured from
nats-server 2.15.1 with nats-py, see tests/test_js_consumers.py).
"""

import calendar
import random
import re
import string

from . import errors as E
from .config import API_LEVEL
from .subjects import subjects_collide
from ..sublist import is_literal, valid_subject

# nats-server's consumer errors (errors.json), as errors.py's triples
CONSUMER_NOT_FOUND = (404, 10014, "consumer not found")
CONSUMER_CREATE = (500, 10012, "{err}")
CONSUMER_EXISTS = (400, 10148, "consumer already exists")
CONSUMER_DOES_NOT_EXIST = (400, 10149, "consumer does not exist")
DURABLE_MISMATCH = (400, 10017, "consumer name in subject does not match durable name in request")
DURABLE_NOT_SET = (400, 10018, "consumer expected to be durable but a durable name was not set")
EPHEMERAL_WITH_DURABLE = (400, 10020, "consumer expected to be ephemeral but a durable name was set in request")
NAME_DURABLE_MISMATCH = (400, 10132, "Consumer Durable and Name have to be equal if both are provided")
FILTER_MISMATCH = (400, 10131, "Consumer create request did not match filtered subject from create subject")
BOTH_FILTERS = (400, 10136, "consumer cannot have both FilterSubject and FilterSubjects specified")
FILTERS_OVERLAP = (400, 10138, "consumer subject filters cannot overlap")
BAD_FILTER = (400, 10093, "consumer filter subject is not a valid subset of the interest subjects")
INVALID_POLICY = (400, 10094, "{err}")
BACKOFF_MAX_DELIVER = (400, 10116, "max deliver is required to be > length of backoff values")
FC_REQUIRES_PUSH = (400, 10089, "consumer flow control requires a push based consumer")
FC_NEEDS_HB = (400, 10108, "consumer with flow control also needs heartbeats")
HB_REQUIRES_PUSH = (400, 10088, "consumer idle heartbeat requires a push based consumer")
PUSH_MAX_WAITING = (400, 10080, "consumer in push mode can not set max waiting")
MAX_WAITING_NEGATIVE = (400, 10087, "consumer max waiting needs to be positive")
DELIVER_CYCLE = (400, 10081, "consumer deliver subject forms a cycle")
DELIVER_WILDCARDS = (400, 10079, "consumer deliver subject has wildcards")
DELIVER_INVALID = (400, 10112, "invalid push consumer deliver subject")
PULL_RATE_LIMIT = (400, 10086, "consumer in pull mode can not have rate limit set")
ACK_WAIT_NEGATIVE = (400, 10183, "consumer ack wait needs to be positive")
SMALL_HEARTBEAT = (400, 10083, "consumer idle heartbeat needs to be >= 100ms")
DESCRIPTION_TOO_LONG = (400, 10107, "consumer description is too long, maximum allowed is {max}")
NAME_TOO_LONG = (400, 10102, "consumer name is too long, maximum allowed is {max}")
MAX_CONSUMERS = (400, 10026, "maximum consumers limit reached")
WQ_REQUIRES_EXPLICIT = (400, 10098, "workqueue stream requires explicit ack")
WQ_MULTIPLE_UNFILTERED = (400, 10099, "multiple non-filtered consumers not allowed on workqueue stream")
WQ_NOT_UNIQUE = (400, 10100, "filtered consumer not unique on workqueue stream")
WQ_PULL_ACK = (400, 10084, "consumer in pull mode requires explicit ack policy on workqueue stream")
MAX_PENDING_EXCESS = (400, 10121, "consumer max ack pending exceeds system limit of {limit}")
INACTIVE_EXCESS = (400, 10153, "consumer inactive threshold exceeds system limit of {limit}")

MAX_NAME_LEN = 255
MAX_DESCRIPTION = 4096
DEFAULT_ACK_WAIT = 30 * 10 ** 9
DEFAULT_MAX_ACK_PENDING = 1000
DEFAULT_MAX_WAITING = 512
DEFAULT_INACTIVE = 5 * 10 ** 9
NAME_BAD_CHARS = ".*>\\/"

DELIVER_POLICIES = ("all", "last", "new", "by_start_sequence", "by_start_time", "last_per_subject")
ACK_POLICIES = ("none", "all", "explicit")
REPLAY_POLICIES = ("instant", "original")
_POLICY_TEXT = {"all": "deliver all", "last": "deliver last", "new": "deliver new",
                "by_start_sequence": "deliver by start sequence", "by_start_time": "deliver by start time",
                "last_per_subject": "deliver last per subject"}

# field -> type; the order is nats-server's JSON order (omitempty unless in ALWAYS)
FIELDS = [
    ("durable_name", str), ("name", str), ("description", str), ("deliver_policy", str),
    ("opt_start_seq", int), ("opt_start_time", str), ("ack_policy", str), ("ack_wait", int),
    ("max_deliver", int), ("backoff", list), ("filter_subject", str), ("filter_subjects", list),
    ("replay_policy", str), ("rate_limit_bps", int), ("sample_freq", str), ("max_waiting", int),
    ("max_ack_pending", int), ("flow_control", bool), ("headers_only", bool), ("max_batch", int),
    ("max_expires", int), ("max_bytes", int), ("deliver_subject", str), ("deliver_group", str),
    ("idle_heartbeat", int), ("inactive_threshold", int), ("num_replicas", int), ("mem_storage", bool),
    ("direct", bool), ("sourcing", bool), ("metadata", dict), ("pause_until", str), ("priority_groups", list),
    ("priority_policy", str), ("priority_timeout", int),
]
FIELD_TYPES = dict(FIELDS)
ALWAYS = ("deliver_policy", "ack_policy", "replay_policy", "num_replicas")
ENUMS = {"deliver_policy": DELIVER_POLICIES, "ack_policy": ACK_POLICIES, "replay_policy": REPLAY_POLICIES}
_GO_TYPES = {int: "int64", bool: "bool", str: "string", list: "[]", dict: "map[string]string"}

# the fields an update may not change, with nats-server's texts
FROZEN = [("deliver_policy", "deliver policy can not be updated"),
          ("opt_start_seq", "start sequence can not be updated"),
          ("opt_start_time", "start time can not be updated"),
          ("ack_policy", "ack policy can not be updated"),
          ("replay_policy", "replay policy can not be updated"),
          ("idle_heartbeat", "heart beats can not be updated"),
          ("flow_control", "flow control can not be updated"),
          ("sourcing", "sourcing can not be updated")]


def new_name():
    """An ephemeral consumer's name: 8 random letters and digits, as
    nats-server's (a shortened NUID)."""
    return "".join(random.choice(string.ascii_letters + string.digits) for _ in range(8))


def decode_request(req):
    """Strict decode of a create request: {"stream_name", "config", "action", ...}."""
    cfg = req.get("config")
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise E.err(E.INVALID_JSON, err="json: cannot unmarshal into Go struct field "
                    "CreateConsumerRequest.config of type server.ConsumerConfig")
    for k, v in cfg.items():
        want = FIELD_TYPES.get(k)
        if want is None:
            raise E.err(E.INVALID_JSON, err='json: unknown field "%s"' % k)
        if v is None:
            continue
        ok = isinstance(v, want) and not (want is int and isinstance(v, bool))
        if want is int and isinstance(v, float) and v == int(v):
            cfg[k] = v = int(v)
            ok = True
        if not ok:
            kind = {str: "string", bool: "bool", list: "array", dict: "object"}.get(type(v), "number")
            raise E.err(E.INVALID_JSON, err="json: cannot unmarshal %s into Go struct field "
                        "ConsumerConfig.config.%s of type %s" % (kind, k, _GO_TYPES.get(want, "object")))
        if k in ENUMS and v not in ENUMS[k]:
            raise E.err(E.INVALID_JSON, err='can not unmarshal "\\"%s\\""' % v)
    for k in ("backoff",):
        for x in cfg.get(k) or ():
            if not isinstance(x, int) or isinstance(x, bool):
                raise E.err(E.INVALID_JSON, err="json: cannot unmarshal into Go struct field "
                            "ConsumerConfig.config.backoff of type time.Duration")
    for x in cfg.get("filter_subjects") or ():
        if not isinstance(x, str):
            raise E.err(E.INVALID_JSON, err="json: cannot unmarshal number into Go struct field "
                        "ConsumerConfig.config.filter_subjects of type string")
    action = req.get("action", "")
    if action not in ("", "create", "update"):
        raise E.err(E.INVALID_JSON, err='can not unmarshal "\\"%s\\""' % action)
    return cfg, action


def _policy(text):
    return E.err(INVALID_POLICY, err=text)


def check_name(name):
    if any(c in NAME_BAD_CHARS for c in name) or any(c.isspace() for c in name):
        raise E.err(E.INVALID_CONFIG, err="consumer name can not contain '.', '*', '>', '\\', '/'")
    if len(name) > MAX_NAME_LEN:
        raise E.err(NAME_TOO_LONG, max=MAX_NAME_LEN)


def consumer_config(raw, stream_cfg):
    """The validated config with defaults (a new dict in nats-server's order)."""
    c = dict((k, v) for k, v in raw.items() if v is not None)
    push = bool(c.get("deliver_subject"))
    if c.get("num_replicas", 0) > 1:
        raise E.err(E.REPLICAS_NOT_SUPPORTED)
    if c.get("num_replicas", 0) < 0:
        raise E.err(E.REPLICAS_NEGATIVE)
    if len(c.get("description") or "") > MAX_DESCRIPTION:
        raise E.err(DESCRIPTION_TOO_LONG, max=MAX_DESCRIPTION)
    if c.get("ack_wait", 0) < 0:
        raise E.err(ACK_WAIT_NEGATIVE)
    if push:
        ds = c["deliver_subject"]
        if not valid_subject(ds):
            raise E.err(DELIVER_INVALID)
        if not is_literal(ds):
            raise E.err(DELIVER_WILDCARDS)
        if any(subjects_collide(ds, s) for s in stream_cfg.get("subjects") or ()):
            raise E.err(DELIVER_CYCLE)
        if c.get("max_waiting"):
            raise E.err(PUSH_MAX_WAITING)
        if 0 < c.get("idle_heartbeat", 0) < 100 * 10 ** 6:
            raise E.err(SMALL_HEARTBEAT)
    else:
        if c.get("rate_limit_bps"):
            raise E.err(PULL_RATE_LIMIT)
        if c.get("max_waiting", 0) < 0:
            raise E.err(MAX_WAITING_NEGATIVE)
        if c.get("idle_heartbeat"):
            raise E.err(HB_REQUIRES_PUSH)
        if c.get("flow_control"):
            raise E.err(FC_REQUIRES_PUSH)
    if c.get("flow_control") and not c.get("idle_heartbeat"):
        raise E.err(FC_NEEDS_HB)
    dp = c.get("deliver_policy", "all")
    seq = c.get("opt_start_seq", 0)
    start = c.get("opt_start_time")
    text = _POLICY_TEXT[dp]
    if dp == "by_start_sequence":
        if not seq:
            raise _policy("consumer delivery policy is %s, but optional start sequence is not set" % text)
        if start:
            raise _policy("consumer delivery policy is %s, but optional start time is also set" % text)
    elif dp == "by_start_time":
        if not start:
            raise _policy("consumer delivery policy is %s, but optional start time is not set" % text)
        if seq:
            raise _policy("consumer delivery policy is %s, but optional start sequence is also set" % text)
    else:
        if seq:
            raise _policy("consumer delivery policy is %s, but optional start sequence is also set" % text)
        if start:
            raise _policy("consumer delivery policy is %s, but optional start time is also set" % text)
    if c.get("filter_subject") and c.get("filter_subjects"):
        raise E.err(BOTH_FILTERS)
    filters = filters_of(c)
    for f in filters:
        if not valid_subject(f):
            raise E.err(BAD_FILTER)
    for i, a in enumerate(filters):
        for b in filters[i + 1:]:
            if subjects_collide(a, b):
                raise E.err(FILTERS_OVERLAP)
    if dp == "last_per_subject" and not filters:
        raise _policy("consumer delivery policy is %s, but optional filter subject is not set" % text)
    backoff = c.get("backoff") or []
    md = c.get("max_deliver", 0)
    if backoff and md not in (0, -1) and md <= len(backoff):
        raise E.err(BACKOFF_MAX_DELIVER)
    if any(b <= 0 for b in backoff):
        raise E.err(E.INVALID_CONFIG, err="backoff values must be positive")
    if c.get("name"):
        check_name(c["name"])
    # defaults (nats-server's setConsumerConfigDefaults)
    c["deliver_policy"] = dp
    c.setdefault("ack_policy", "none")
    c.setdefault("replay_policy", "instant")
    c.setdefault("num_replicas", 0)
    if md == 0:
        c["max_deliver"] = -1
    if backoff:
        c["ack_wait"] = backoff[0]
    acked = c["ack_policy"] != "none"
    if acked and not c.get("ack_wait"):
        c["ack_wait"] = DEFAULT_ACK_WAIT
    # the stream's consumer_limits are the defaults (for any ack policy,
    # durables included, as nats-server applies them) and the bounds; not
    # for a mirror's or source's consumer, which the server itself makes
    lim = {} if c.get("direct") else stream_cfg.get("consumer_limits") or {}
    lim_pending, lim_inactive = lim.get("max_ack_pending", 0), lim.get("inactive_threshold", 0)
    if not c.get("max_ack_pending") and lim_pending > 0:
        c["max_ack_pending"] = lim_pending
    if not c.get("inactive_threshold") and lim_inactive > 0:
        c["inactive_threshold"] = lim_inactive
    if acked and not c.get("max_ack_pending"):
        c["max_ack_pending"] = DEFAULT_MAX_ACK_PENDING
    if not push and not c.get("max_waiting"):
        c["max_waiting"] = DEFAULT_MAX_WAITING
    if not c.get("durable_name") and not c.get("inactive_threshold"):
        c["inactive_threshold"] = DEFAULT_INACTIVE
    if lim_pending > 0 and c.get("max_ack_pending", 0) > lim_pending:
        raise E.err(MAX_PENDING_EXCESS, limit=lim_pending)
    if lim_inactive > 0 and c.get("inactive_threshold", 0) > lim_inactive:
        # imported here: the monitor module imports JetStream's
        from ..endpoints import go_duration_ns
        raise E.err(INACTIVE_EXCESS, limit=go_duration_ns(lim_inactive))
    if c.get("max_batch", 0) < 0:
        c["max_batch"] = 0
    meta = dict((k, v) for k, v in (c.get("metadata") or {}).items() if not k.startswith("_nats."))
    meta["_nats.req.level"] = "1" if c.get("pause_until") or c.get("priority_groups") else "0"
    c["metadata"] = meta
    out = {}
    for k, _ in FIELDS:
        v = c.get(k)
        if k in ALWAYS or v:
            out[k] = v
    return out


def filters_of(cfg):
    """The consumer's filter subjects as a list ([] for the whole stream)."""
    if cfg.get("filter_subjects"):
        return list(cfg["filter_subjects"])
    f = cfg.get("filter_subject")
    return [f] if f else []


def check_update(old, new):
    """Refuse what an update may not change (nats-server's texts, 10012)."""
    if bool(old.get("deliver_subject")) != bool(new.get("deliver_subject")):
        raise E.err(CONSUMER_CREATE, err="can not update push consumer to pull based" if old.get("deliver_subject")
                    else "can not update pull consumer to push based")
    for k, text in FROZEN:
        if old.get(k) != new.get(k):
            raise E.err(CONSUMER_CREATE, err=text)


def same_config(a, b):
    def strip(c):
        c = dict(c)
        c["metadata"] = dict((k, v) for k, v in (c.get("metadata") or {}).items() if not k.startswith("_nats."))
        return c
    return strip(a) == strip(b)


def config_json(cfg, version):
    """The config as API responses show it (server level and version added)."""
    out = dict(cfg)
    meta = dict(cfg.get("metadata") or {})
    meta["_nats.level"] = str(API_LEVEL)
    meta["_nats.ver"] = version
    out["metadata"] = dict(sorted(meta.items()))
    return out


def parse_time(text):
    """An RFC 3339 time (Go's time.Time JSON) in ns since the epoch; None if malformed."""
    m = re.match(r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)$", text or "")
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    try:
        secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    frac = m.group(7)
    ns = int((frac[1:] + "000000000")[:9]) if frac else 0
    tz = m.group(8)
    if tz not in ("Z", "z"):
        off = int(tz[1:3]) * 3600 + int(tz[4:6]) * 60
        secs -= off if tz[0] == "+" else -off
    return secs * 10 ** 9 + ns
