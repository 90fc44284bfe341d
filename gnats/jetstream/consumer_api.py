"""The consumer half of the JetStream API and the consumers' registry.

`route(tokens)` maps `$JS.API.CONSUMER.*` subjects (the tokens after
`$JS.API.`) to handlers with api.py's signature, (jsa, None, body) ->
response dict: CREATE.<stream>[.<consumer>[.<filter>]], DURABLE.CREATE,
INFO, DELETE, NAMES, LIST, PAUSE. MSG.NEXT is not routed here: each pull
consumer subscribes its own `$JS.API.CONSUMER.MSG.NEXT.<stream>.<name>`,
so a request for a consumer that does not exist has no responders, as on
nats-server.

Per stream with consumers, two internal subscriptions: `$JS.ACK.<stream>.>`
(acknowledgements, with an empty reply when the client asked for one) and
`$JS.FC.<stream>.>` (flow-control answers).

Durable consumers are persisted under the stream's directory,
obs/<name>.json (config and creation time, written at create/update), and
their delivery state through the stream store's consumer state
(consumer.py); `recover(jsa, stream)` brings them back after a restart.
"""

import functools
import json
import os
import time

from . import errors as E
from . import consumer_config as C
from .config import parse_request
from .consumer import Consumer
from .headers import parse_headers, rfc3339
from .sourcing_config import go_hash
from .subjects import subjects_collide

NAMES_LIMIT = 1024
# nats-server 2.15 allows a stream without max_consumers this many (its
# /varz shows it as default_max_consumers)
DEFAULT_MAX_CONSUMERS = 1000
LIST_LIMIT = 256
OBS = "obs"
IDENTITY = "Nats-Stream-Identity"
IDENTITY_MISMATCH = (400, 10225, "consumer's stream identity does not match: {msg}")


def route(toks):
    """(handler, response type) for CONSUMER.* tokens, or None."""
    n = len(toks)
    if n < 3 or toks[0] != "CONSUMER":
        return None
    op = toks[1]
    p = functools.partial
    if op == "CREATE":
        if n == 3:
            return p(create, toks[2], None, None, False), "consumer_create_response"
        if n == 4:
            return p(create, toks[2], toks[3], None, False), "consumer_create_response"
        return p(create, toks[2], toks[3], ".".join(toks[4:]), False), "consumer_create_response"
    if op == "DURABLE" and n == 5 and toks[2] == "CREATE":
        return p(create, toks[3], toks[4], None, True), "consumer_create_response"
    if n == 4 and op == "INFO":
        return p(info, toks[2], toks[3]), "consumer_info_response"
    if n == 4 and op == "DELETE":
        return p(delete, toks[2], toks[3]), "consumer_delete_response"
    if n == 4 and op == "PAUSE":
        return p(pause, toks[2], toks[3]), "consumer_pause_response"
    if n == 3 and op == "NAMES":
        return p(names, toks[2]), "consumer_names_response"
    if n == 3 and op == "LIST":
        return p(listing, toks[2]), "consumer_list_response"
    return None


def _stream(jsa, name):
    s = jsa.streams.get(name)
    if s is None:
        raise E.err(E.STREAM_NOT_FOUND)
    return s


def _consumer(stream, name):
    c = stream.consumers.get(name)
    if c is None:
        raise E.err(C.CONSUMER_NOT_FOUND)
    return c


# -- handlers: (stream name, ..., jsa, None, body) -> response dict -------------

def create(sname, cname, filt, durable_api, jsa, _name, body):
    req = parse_request(body)
    raw, action = C.decode_request(req)
    if req.get("stream_name") != sname:
        raise E.err(E.STREAM_MISMATCH)
    durable = raw.get("durable_name") or ""
    if durable_api:
        if not durable:
            raise E.err(C.DURABLE_NOT_SET)
        if durable != cname:
            raise E.err(C.DURABLE_MISMATCH)
    elif cname is not None:
        if durable and durable != cname:
            raise E.err(C.DURABLE_MISMATCH)
        if filt is not None:
            fs = C.filters_of(raw)
            if fs != [filt]:
                raise E.err(C.FILTER_MISMATCH)
    elif durable:
        raise E.err(C.EPHEMERAL_WITH_DURABLE)
    if durable and raw.get("name") and raw["name"] != durable:
        raise E.err(C.NAME_DURABLE_MISMATCH)
    stream = _stream(jsa, sname)
    name = cname or durable or raw.get("name")
    if name and raw.get("direct") and raw.get("sourcing"):
        # a mirror's or source's consumer (sourcing_external.py): its
        # name is stable per sourcing stream, so nats-server makes each
        # one unique (on an interest or workqueue stream it makes a durable
        # acked by flow control instead, which this server does not have)
        name = "%s-%s" % (name, C.new_name())
    if name:
        raw["name"] = name     # an ephemeral named by the server shows no name in its config
    if raw.get("opt_start_time") and C.parse_time(raw["opt_start_time"]) is None:
        raise E.err(E.INVALID_JSON, err='parsing time "\\"%s\\"" as "\\"2006-01-02T15:04:05Z07:00\\""'
                    % raw["opt_start_time"])
    cfg = C.consumer_config(raw, stream.config)
    name = name or C.new_name()
    existing = stream.consumers.get(name)
    if existing is not None:
        if action == "create" and not C.same_config(existing.config, cfg):
            raise E.err(C.CONSUMER_EXISTS)
        if not C.same_config(existing.config, cfg):
            C.check_update(existing.config, cfg)
            existing.apply_config(cfg)
            _persist(jsa, existing)
            existing.kick()
        return existing.info()
    if action == "update":
        raise E.err(C.CONSUMER_DOES_NOT_EXIST)
    _check_stream_rules(jsa, stream, cfg)
    c = add_consumer(jsa, stream, name, cfg, time.time_ns())
    c.start_position()
    _persist(jsa, c)
    c.start()
    return c.info()


def stream_identity(jsa, subject, hdr, body):
    """For `$JS.API.CONSUMER.CREATE.<stream>...` of a direct or sourcing
    consumer (a mirror's or source's): the stream's identity (a hash of its
    creation time), which nats-server sends back in a Nats-Stream-Identity
    header and checks against the request's (10225 on a mismatch: the
    origin was recreated). None for other requests."""
    toks = subject.split(".")
    if len(toks) < 5 or toks[3] != "CREATE" or b'"direct"' not in body and b'"sourcing"' not in body:
        return None
    try:
        cfg = json.loads(body).get("config") or {}
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    stream = jsa.streams.get(toks[4])
    if not isinstance(cfg, dict) or not (cfg.get("direct") or cfg.get("sourcing")) or stream is None:
        return None
    ident = go_hash(rfc3339(stream.created))
    want = parse_headers(hdr).get(IDENTITY, "") if hdr and IDENTITY.encode() in hdr else ""
    if want and want != ident:
        raise E.err(IDENTITY_MISMATCH, msg=ident)
    return ident


def _check_stream_rules(jsa, stream, cfg):
    scfg = stream.config
    limit = scfg.get("max_consumers", -1)
    if limit <= 0:
        limit = DEFAULT_MAX_CONSUMERS
    if limit <= stream.public_consumers():
        raise E.err(C.MAX_CONSUMERS)
    alimit = jsa.limits.get("max_consumers", -1)
    if 0 <= alimit <= jsa.consumer_count():
        raise E.err(C.MAX_CONSUMERS)
    if scfg["retention"] == "workqueue" and not cfg.get("direct") and not cfg.get("sourcing"):
        if not cfg.get("deliver_subject") and cfg["ack_policy"] == "none":
            raise E.err(C.WQ_PULL_ACK)
        if cfg.get("deliver_subject") and cfg["ack_policy"] != "explicit":
            raise E.err(C.WQ_REQUIRES_EXPLICIT)
        mine = C.filters_of(cfg)
        for other in stream.consumers.values():
            if other.config.get("direct"):
                continue    # a mirror's or source's
            theirs = other.filters
            if not mine and not theirs:
                raise E.err(C.WQ_MULTIPLE_UNFILTERED)
            if not mine or not theirs or any(subjects_collide(a, b) for a in mine for b in theirs):
                raise E.err(C.WQ_NOT_UNIQUE)


def info(sname, cname, jsa, _name, body):
    stream = _stream(jsa, sname)
    return _consumer(stream, cname).info()


def delete(sname, cname, jsa, _name, body):
    stream = _stream(jsa, sname)
    delete_consumer(jsa, _consumer(stream, cname))
    return {"success": True}


def _page(jsa, sname, body, limit):
    req = parse_request(body)
    offset = req.get("offset") or 0
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise E.err(E.BAD_REQUEST)
    stream = _stream(jsa, sname)
    all_names = sorted(n for n, c in stream.consumers.items() if not c.config.get("direct"))
    return stream, all_names, offset, all_names[offset:offset + limit]


def names(sname, jsa, _name, body):
    _, all_names, offset, page = _page(jsa, sname, body, NAMES_LIMIT)
    return {"total": len(all_names), "offset": offset, "limit": NAMES_LIMIT, "consumers": page}


def listing(sname, jsa, _name, body):
    stream, all_names, offset, page = _page(jsa, sname, body, LIST_LIMIT)
    return {"total": len(all_names), "offset": offset, "limit": LIST_LIMIT,
            "consumers": [stream.consumers[n].info(stored=True) for n in page]}


def pause(sname, cname, jsa, _name, body):
    req = parse_request(body)
    stream = _stream(jsa, sname)
    c = _consumer(stream, cname)
    until = req.get("pause_until") or ""
    t = C.parse_time(until) if until else 0
    if t is None:
        raise E.err(E.BAD_REQUEST)
    now = time.time_ns()
    cfg = dict(c.config)
    if t and t > now:
        cfg["pause_until"] = rfc3339(t)
        c.paused_until = t
        c.reactor.call_later((t - now) / 1e9, c.kick)
    else:
        cfg.pop("pause_until", None)
        c.paused_until = 0
    c.apply_config(cfg)
    _persist(jsa, c)
    c.kick()
    out = {"paused": bool(c.paused_until), "pause_until": rfc3339(c.paused_until)}
    if c.paused_until:
        out["pause_remaining"] = c.paused_until - now
    return out


# -- the registry ------------------------------------------------------------------

def add_consumer(jsa, stream, name, cfg, created):
    js = jsa.js
    srv = js.server
    c = Consumer(jsa, stream, name, cfg, created)
    c.on_inactive = functools.partial(delete_consumer, jsa)
    if not stream.consumers:
        _subscribe_stream(jsa, stream)
    stream.consumers[c.name] = c
    stream.on_stored.append(c.on_stored)
    if not c.push:
        def on_next(sub, subject, reply, hdr, msg, client):
            if not c.closed:        # a request queued before a delete
                c.pulls.request(reply, msg)
        c.sub_next = srv.internal_subscribe(jsa.account, "$JS.API.CONSUMER.MSG.NEXT.%s.%s" % (stream.name, c.name),
                                            on_next)
    if cfg.get("pause_until"):
        t = C.parse_time(cfg["pause_until"]) or 0
        if t > time.time_ns():
            c.paused_until = t
            c.reactor.call_later((t - time.time_ns()) / 1e9, c.kick)
    return c


def _subscribe_stream(jsa, stream):
    srv = jsa.js.server
    prefix = len("$JS.ACK.")

    def on_ack(sub, subject, reply, hdr, msg, client):
        toks = subject[prefix:].split(".")
        if len(toks) == 7:
            cname, sseq, dseq = toks[1], toks[3], toks[4]
        elif len(toks) >= 9:
            cname, sseq, dseq = toks[3], toks[5], toks[6]
        else:
            return
        c = stream.consumers.get(cname)
        if c is None:
            return
        try:
            sseq, dseq = int(sseq), int(dseq)
        except ValueError:
            return
        # +NXT's reply is a pull request; any other reply asks for a confirmation
        nxt = msg.startswith(b"+NXT")
        c.process_ack(sseq, dseq, msg.strip(), reply if nxt else None)
        if reply and not nxt:
            c.sync_state()
            srv.publish_internal(jsa.account, reply, None, None, b"")

    def on_fc(sub, subject, reply, hdr, msg, client):
        toks = subject.split(".")
        if len(toks) >= 5:
            c = stream.consumers.get(toks[3])
            if c is not None:
                c.flow_answer(subject)

    stream.consumer_subs = [srv.internal_subscribe(jsa.account, "$JS.ACK.%s.>" % stream.name, on_ack),
                            srv.internal_subscribe(jsa.account, "$JS.FC.%s.>" % stream.name, on_fc)]


def delete_consumer(jsa, c, remove_state=True):
    stream = c.stream
    if stream.consumers.get(c.name) is not c:
        return
    del stream.consumers[c.name]
    try:
        stream.on_stored.remove(c.on_stored)
    except ValueError:
        pass
    c.stop(deleted=remove_state)
    if c.sub_next is not None:
        jsa.js.server.internal_unsubscribe(c.sub_next)
    # Break the consumer's cycles (its MSG.NEXT callback's closure, its pull
    # queue's back reference) so it is freed now, not at the collector's
    # rare full pass: 10,000 churned consumers held +24 MiB until then
    c.sub_next = None
    c.pulls.c = None
    if not stream.consumers:
        for sub in getattr(stream, "consumer_subs", ()):
            jsa.js.server.internal_unsubscribe(sub)
        stream.consumer_subs = []
    if remove_state and c.durable:
        stream.store.remove_consumer_state(c.name)
        try:
            os.unlink(_meta_path(jsa, stream, c.name))
        except OSError:
            pass


def stop_all(jsa, stream):
    """The stream is going away (deleted or shut down): stop its consumers
    without touching what is persisted (a deleted stream's directory goes
    with it)."""
    for c in list(stream.consumers.values()):
        c.flush()
        delete_consumer(jsa, c, remove_state=False)


def _meta_path(jsa, stream, name):
    return os.path.join(jsa.dir, stream.name, OBS, name + ".json")


def _persist(jsa, c):
    if not c.durable:
        return
    path = _meta_path(jsa, c.stream, c.name)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(json.dumps({"name": c.name, "config": c.config, "created": c.created}).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise E.err(C.CONSUMER_CREATE, err="could not write consumer metadata: %s" % e)
    c.dirty = True
    c.flush()


def recover(jsa, stream):
    """Bring back the stream's durable consumers; damaged files are logged
    and skipped."""
    d = os.path.join(jsa.dir, stream.name, OBS)
    try:
        files = sorted(f for f in os.listdir(d) if f.endswith(".json"))
    except OSError:
        return
    log = jsa.js.log
    for f in files:
        path = os.path.join(d, f)
        try:
            with open(path, "rb") as fh:
                meta = json.loads(fh.read())
            name, cfg, created = meta["name"], meta["config"], int(meta["created"])
            raw = stream.store.read_consumer_state(name)
            state = json.loads(raw) if raw else None
            c = add_consumer(jsa, stream, name, cfg, created)
            if state is not None:
                c.restore(state)
            else:
                c.start_position()
            c.start()
        except (OSError, ValueError, KeyError, TypeError, IndexError, E.ApiError) as e:
            log.error("JetStream could not recover consumer '%s > %s > %s' from %s: %s"
                      % (jsa.name, stream.name, f[:-5], path, e))
