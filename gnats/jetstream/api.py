"""The JetStream API: `$JS.API.*` requests in, JSON responses out, with
nats-server 2.15's shapes, paging and errors.

`handle_api(jsa, subject, body, hdr)` returns (header block or None,
response bytes) for a request to one of the subjects in HANDLERS (None for a subject the API does not
serve: nats-server ignores those too, and the requester times out).
`handle_direct_get(stream, subject, body)` answers `$JS.API.DIRECT.GET.<stream>`
(subscribed per stream with allow_direct) with (headers, payload): the
message, or a status-only reply (404, 408) as nats-server sends.
Each handler runs on the reactor thread; `jsa` is the account's JsAccount.
"""

import base64
import json
import time
import traceback

from . import consumer_api
from . import errors as E
from .config import (decode_config, parse_request, public_config, same_config, stream_config, update_config)
from .sourcing_config import check_against
from .headers import build_headers, rfc3339, status_headers
from .stream import dumps
from .subjects import subjects_collide

PREFIX = "$JS.API."
TYPE = "io.nats.jetstream.api.v1."
NAMES_LIMIT = 1024
LIST_LIMIT = 256
SUBJECTS_LIMIT = 100000

# fields an error response carries besides "type" and "error"
ERROR_EXTRAS = {
    "stream_info_response": (("total", 0), ("offset", 0), ("limit", 0)),
    "stream_names_response": (("total", 0), ("offset", 0), ("limit", 0), ("streams", None)),
    "stream_list_response": (("total", 0), ("offset", 0), ("limit", 0), ("streams", [])),
    "stream_purge_response": (("purged", 0),),
    "consumer_names_response": (("total", 0), ("offset", 0), ("limit", 0), ("consumers", [])),
    "consumer_list_response": (("total", 0), ("offset", 0), ("limit", 0), ("consumers", [])),
}


def _now():
    return rfc3339(time.time_ns())


def _lookup(jsa, name):
    s = jsa.streams.get(name)
    if s is None:
        raise E.err(E.STREAM_NOT_FOUND)
    return s


def _empty(body):
    b = body.strip() if body else b""
    return not b or b == b"{}"


def _int_field(req, key, default=0):
    v = req.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise E.err(E.BAD_REQUEST)
    return v


# -- handlers: (jsa, name or None, body) -> response dict without "type" --------

def account_info(jsa, name, body):
    usage = {"memory": jsa.usage(True), "storage": jsa.usage(False),
             "reserved_memory": jsa.reserved(True), "reserved_storage": jsa.reserved(False),
             "streams": len(jsa.streams), "consumers": jsa.consumer_count()}
    out = dict(usage, limits=dict(jsa.limits))
    if jsa.js.domain:
        out["domain"] = jsa.js.domain       # where nats-server puts it: before "api"
    out["api"] = {"level": 5, "total": jsa.api_total, "errors": jsa.api_errors}
    if jsa.tier:
        # limits from a JWT's tiered_limits: nats-server shows the
        # account-wide ones as zeros and the tier's under "tiers"
        out["limits"] = dict((k, False if isinstance(v, bool) else 0) for k, v in jsa.limits.items())
        out["tiers"] = {jsa.tier: dict(usage, limits=dict(jsa.limits))}
    return out


def _info_body(stream, extra=None, subjects_filter=None, deleted_details=False):
    d = stream.info(subjects_filter, deleted_details)
    d.update(stream.host.sourcing.info(stream))     # sourcing: mirror/sources blocks
    if extra:
        d.update(extra)
    d["ts"] = _now()
    return d


def stream_create(jsa, name, body):
    raw = parse_request(body)
    decode_config(raw)
    if raw.get("name") != name:
        raise E.err(E.STREAM_MISMATCH)
    cfg = stream_config(raw)
    check_against(jsa.streams, cfg)     # sourcing
    existing = jsa.streams.get(name)
    if existing is not None:
        if not same_config(existing.config, cfg):
            raise E.err(E.STREAM_NAME_EXIST)
        stream = existing
    else:
        stream = jsa.add_stream(cfg)
    d = _info_body(stream)
    d["did_create"] = True
    return d


def stream_update(jsa, name, body):
    raw = parse_request(body)
    decode_config(raw)
    if raw.get("name") != name:
        raise E.err(E.STREAM_MISMATCH)
    stream = _lookup(jsa, name)
    cfg = update_config(raw, stream.config)
    check_against(jsa.streams, cfg, stream.config)      # sourcing
    _check_consumer_limits(stream, cfg)
    jsa.update_stream(stream, cfg)
    return _info_body(stream)


def _check_consumer_limits(stream, cfg):
    """New consumer_limits must hold for the consumers there are (nats-server
    names those over them, in creation order; mirrors' and sources'
    consumers are the server's own)."""
    lim = cfg.get("consumer_limits") or {}
    pending, inactive = lim.get("max_ack_pending", 0), lim.get("inactive_threshold", 0)
    over = [name for name, c in stream.consumers.items() if not c.config.get("direct") and (
            (pending > 0 and c.config.get("max_ack_pending", 0) > pending)
            or (inactive > 0 and c.config.get("inactive_threshold", 0) > inactive))]
    if over:
        raise E.err(E.STREAM_UPDATE, err="change to limits violates consumers: " + ", ".join(over))


def stream_info(jsa, name, body):
    req = parse_request(body)
    stream = _lookup(jsa, name)
    filt = req.get("subjects_filter") or None
    if filt is not None and not isinstance(filt, str):
        raise E.err(E.BAD_REQUEST)
    offset = _int_field(req, "offset")
    d = stream.info(None, bool(req.get("deleted_details")))
    total, limit = 0, 0
    if filt:
        subs = stream.store.subjects_state(filt)
        total, limit = len(subs), SUBJECTS_LIMIT
        page = sorted(subs)[offset:offset + SUBJECTS_LIMIT]
        if page:
            d["state"] = _with_subjects(d["state"], dict((s, subs[s]) for s in page))
    out = {"total": total, "offset": offset, "limit": limit}
    out.update(d)
    out["cluster"] = {"leader": jsa.js.server_name}
    out.update(jsa.sourcing.info(stream))       # sourcing: mirror/sources blocks
    out["ts"] = _now()
    return out


def _with_subjects(state, subjects):
    # keep nats-server's field order: subjects right after num_subjects
    out = {}
    for k, v in state.items():
        out[k] = v
        if k == "num_subjects":
            out["subjects"] = subjects
    return out


def stream_delete(jsa, name, body):
    if not _empty(body):
        raise E.err(E.NOT_EMPTY_REQUEST)
    jsa.delete_stream(_lookup(jsa, name))
    return {"success": True}


def stream_purge(jsa, name, body):
    req = parse_request(body)
    stream = _lookup(jsa, name)
    n = stream.purge(req)
    jsa.js.touch(stream.store)
    return {"success": True, "purged": n}


def _filtered_names(jsa, req):
    subject = req.get("subject") or ""
    if not isinstance(subject, str):
        raise E.err(E.BAD_REQUEST)
    names = sorted(jsa.streams)
    if subject:
        names = [n for n in names if any(subjects_collide(subject, s) for s in jsa.streams[n].config["subjects"])]
    return names


def stream_names(jsa, name, body):
    req = parse_request(body)
    offset = _int_field(req, "offset")
    names = _filtered_names(jsa, req)
    page = names[offset:offset + NAMES_LIMIT]
    return {"total": len(names), "offset": offset, "limit": NAMES_LIMIT, "streams": page or None}


def stream_list(jsa, name, body):
    req = parse_request(body)
    offset = _int_field(req, "offset")
    names = _filtered_names(jsa, req)
    page = []
    for n in names[offset:offset + LIST_LIMIT]:
        s = jsa.streams[n]
        # the list shows the stored config (nats-server leaves out the
        # server's level and version there)
        item = {"config": public_config(s.config), "created": rfc3339(s.created), "state": s.state_json()}
        item.update(jsa.sourcing.info(s))       # sourcing
        item["ts"] = _now()
        page.append(item)
    return {"total": len(names), "offset": offset, "limit": LIST_LIMIT, "streams": page}


def msg_json(sm):
    m = {"subject": sm.subject, "seq": sm.seq}
    if sm.hdr:
        m["hdrs"] = base64.b64encode(sm.hdr).decode()
    if sm.msg:
        m["data"] = base64.b64encode(sm.msg).decode()
    m["time"] = rfc3339(sm.ts)
    return m


def msg_get(jsa, name, body):
    req = parse_request(body)
    stream = _lookup(jsa, name)
    return {"message": msg_json(stream.get_msg(req))}


def msg_delete(jsa, name, body):
    req = parse_request(body)
    stream = _lookup(jsa, name)
    stream.delete_msg(req.get("seq"), bool(req.get("no_erase")))
    jsa.js.touch(stream.store)
    return {"success": True}


# (tokens after $JS.API., with None standing for the stream name) -> (handler, response type)
HANDLERS = {
    ("INFO",): (account_info, "account_info_response"),
    ("STREAM", "CREATE", None): (stream_create, "stream_create_response"),
    ("STREAM", "UPDATE", None): (stream_update, "stream_update_response"),
    ("STREAM", "INFO", None): (stream_info, "stream_info_response"),
    ("STREAM", "DELETE", None): (stream_delete, "stream_delete_response"),
    ("STREAM", "PURGE", None): (stream_purge, "stream_purge_response"),
    ("STREAM", "NAMES"): (stream_names, "stream_names_response"),
    ("STREAM", "LIST"): (stream_list, "stream_list_response"),
    ("STREAM", "MSG", "GET", None): (msg_get, "stream_msg_get_response"),
    ("STREAM", "MSG", "DELETE", None): (msg_delete, "stream_msg_delete_response"),
}


def route(subject):
    """(handler, type, stream name) for an API subject, or None."""
    if not subject.startswith(PREFIX):
        return None
    toks = subject[len(PREFIX):].split(".")
    if toks[0] == "CONSUMER":
        h = consumer_api.route(toks)
        return (h[0], h[1], None) if h is not None else None
    h = HANDLERS.get(tuple(toks))
    if h is not None:
        return h[0], h[1], None
    if len(toks) >= 2:
        h = HANDLERS.get(tuple(toks[:-1]) + (None,))
        if h is not None:
            return h[0], h[1], toks[-1]
    return None


def handle_api(jsa, subject, body, hdr=None):
    """(response header block or None, response bytes) for one API request
    (`hdr`: its header block), or None (not an API subject). A bug in a
    handler is logged and answered with a 500 body, so the requester learns
    of it instead of timing out."""
    r = route(subject)
    if r is None:
        return None
    handler, rtype, name = r
    resp = {"type": TYPE + rtype}
    rhdr = None
    try:
        if rtype == "consumer_create_response":
            ident = consumer_api.stream_identity(jsa, subject, hdr, body)
            if ident is not None:
                rhdr = build_headers([(consumer_api.IDENTITY, ident)])
        resp.update(handler(jsa, name, body))
    except Exception as e:
        if not isinstance(e, E.ApiError):
            jsa.js.log.error("JetStream API %s failed: %s\n%s" % (subject, e, traceback.format_exc()))
            e = E.err(E.STREAM_GENERAL, err="internal error: %s" % type(e).__name__)
        jsa.api_errors += 1
        resp["error"] = e.body()
        for k, v in ERROR_EXTRAS.get(rtype, ()):
            resp[k] = v
    # counted after the handler: $JS.API.INFO shows the requests before it
    jsa.api_total += 1
    return rhdr, dumps(resp)


def error_response(subject, error):
    """The response bytes carrying `error` (an ApiError) for a request to
    an API subject, or None (not an API subject: left unanswered, as
    nats-server does). For accounts without JetStream (10039) and requests
    refused while streams recover."""
    r = route(subject)
    if r is None:
        return None
    resp = {"type": TYPE + r[1], "error": error.body()}
    for k, v in ERROR_EXTRAS.get(r[1], ()):
        resp[k] = v
    return dumps(resp)


def handle_direct_get(stream, subject, body):
    """(hdr, payload) answering a DIRECT.GET request."""
    prefix = PREFIX + "DIRECT.GET." + stream.name
    last_subject = subject[len(prefix) + 1:] if len(subject) > len(prefix) else ""
    if last_subject:
        req = {"last_by_subj": last_subject}
    else:
        if _empty(body):
            return status_headers(408, "Empty Request"), b""
        try:
            req = json.loads(body)
            if not isinstance(req, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            return status_headers(408, "Malformed Request"), b""
    try:
        sm = stream.get_msg(req)
    except E.ApiError as e:
        if e.err_code == E.NO_MESSAGE_FOUND[1]:
            return status_headers(404, "Message Not Found"), b""
        return status_headers(408, "Bad Request"), b""
    hdr = build_headers([("Nats-Stream", stream.name), ("Nats-Subject", sm.subject), ("Nats-Sequence", str(sm.seq)),
                         ("Nats-Time-Stamp", rfc3339(sm.ts))], sm.hdr)
    return hdr, sm.msg
