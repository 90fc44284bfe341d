"""Exports and imports between accounts: how a message crosses accounts.

Stream imports (nats-server's shadow subscriptions): when a client of the
importing account subscribes to a subject its import shows (the import's
local subject, `prefix.subject` or `to`), a `ShadowSub` for the client goes
into the exporting account's subject index, on the exporter's subject.
A message published in the exporter matches it like any subscription, and
delivery.py writes it to the client under the local subject
(`StreamImport.to_local`). The shadow's interest crosses routes under the
exporter's name, so a publisher on another server, Go or Python, sends the
message here and this server delivers it: exactly what a Go node does,
which is why a mixed cluster agrees (each message reaches the importer
once, through the importer's own server).

Service imports: the importing account gets an internal subscription
(gnats/internal.py, not announced to routes: every server serves its own
importers) on the import's local subject. A request there is published
again in the exporting account on the exported subject, its reply subject
replaced by a private one, `_R_.<account prefix>.<random>`, remembered in
the exporter's `ResponseMap` with where the answer must go. The exporter
has one internal subscription on `_R_.<prefix>.>` (routed: the responder
may be anywhere); an answer there is published in the importer on the
original reply subject. The export's response_type says how many answers
one request may have: Singleton (the entry goes with the first), Streamed
and Chunked (until the export's response threshold, 2 minutes by
default). The map is bounded in entries and bytes; the oldest go first.
"""

import json
import os
import time
from collections import OrderedDict

from .accounts_conf import local_subject, subject_subset
from .sublist import Subscription

MAX_RESPONSES = 100000          # response map entries per exporting account
MAX_RESPONSE_BYTES = 32 << 20   # and their bytes
RESPONSE_ENTRY_COST = 200
TRANSFORM_CACHE = 4096          # literal subjects remembered per import

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _rand_token(n):
    return "".join(_ALPHABET[b % 62] for b in os.urandom(n))


class Transform:
    """A subject pattern mapped onto another: each wildcard of `src` (in
    order) fills a wildcard of `dst` (in order), or `$N` names one."""

    def __init__(self, src, dst):
        self.src = src.split(".")
        self.dst = dst.split(".")
        self.wpos = [i for i, t in enumerate(self.src) if t == "*" or t == ">"]
        self.literal = not self.wpos and src == dst

    def apply(self, tokens):
        caps = []
        for i in self.wpos:
            caps.append(".".join(tokens[i:]) if self.src[i] == ">" else tokens[i])
        out = []
        k = 0
        for t in self.dst:
            if t == "*" or t == ">":
                out.append(caps[k] if k < len(caps) else t)
                k += 1
            elif t[:1] == "$" and t[1:].isdigit() and 0 < int(t[1:]) <= len(caps):
                out.append(caps[int(t[1:]) - 1])
            else:
                out.append(t)
        return ".".join(out)


class Export:
    def __init__(self, d):
        self.kind = d["kind"]
        self.subject = d["subject"]
        self.accounts = d["accounts"]           # tuple of names, or None: public
        self.response_type = d["response_type"]
        self.threshold = d["threshold"]


class StreamImport:
    """The importer's view of an exporter's stream."""

    def __init__(self, importer, exporter, d):
        self.importer = importer
        self.exporter = exporter
        self.subject = d["subject"]             # in the exporter
        self.local = local_subject(d)           # in the importer
        self.prefix = d["prefix"]
        self.to = d["to"]
        self.fwd = Transform(self.subject, self.local)
        self.rev = Transform(self.local, self.subject)
        self._cache = {}

    def to_local(self, subject):
        """The importer's subject (bytes) for a message on `subject` (bytes)."""
        out = self._cache.get(subject)
        if out is None:
            out = self.fwd.apply(subject.decode("latin-1").split(".")).encode("latin-1")
            if len(self._cache) >= TRANSFORM_CACHE:
                self._cache.clear()
            self._cache[subject] = out
        return out

    def shadow_subject(self, subject):
        """The exporter's subject a subscription on `subject` (the importer's)
        needs, or None when the import shows nothing it matches."""
        if subject_subset(subject, self.local):
            return self.rev.apply(subject.split("."))
        if subject_subset(self.local, subject):
            return self.subject
        return None


class ShadowSub(Subscription):
    """A client's subscription as seen in an exporting account. As in
    nats-server 2.15, UNSUB <sid> <max> does not limit what arrives
    through it (a shadow has no limit of its own)."""
    __slots__ = ("im", "account")


class ServiceImport:
    def __init__(self, importer, exporter, d, export):
        self.importer = importer
        self.exporter = exporter
        self.subject = d["subject"]             # in the exporter
        self.to = d["to"]                       # in the importer
        self.share = d["share"]
        self.export = export
        self.transform = Transform(self.to, self.subject)
        self.sub = None                         # the internal subscription in the importer


class ResponseMap:
    """Private reply subject -> (importer, its reply, response type, expiry)."""

    def __init__(self, server, account):
        self.server = server
        self.account = account
        self.prefix = "_R_.%s." % _rand_token(6)
        self.entries = OrderedDict()
        self.bytes = 0
        self.sub = server.internal_subscribe(account, self.prefix + ">", self.on_response)

    def new_reply(self, importer, reply, export):
        now = time.monotonic()
        self._expire(now)
        while self.entries and (len(self.entries) >= MAX_RESPONSES or self.bytes > MAX_RESPONSE_BYTES):
            self._pop_oldest()
        nr = self.prefix + _rand_token(6)
        self.entries[nr] = (importer, reply, export.response_type, now + export.threshold)
        self.bytes += len(reply) + RESPONSE_ENTRY_COST
        return nr

    def _pop_oldest(self):
        _, ent = self.entries.popitem(last=False)
        self.bytes -= len(ent[1]) + RESPONSE_ENTRY_COST

    def _expire(self, now):
        entries = self.entries
        while entries:
            ent = next(iter(entries.values()))
            if ent[3] > now:
                break
            self._pop_oldest()

    def on_response(self, sub, subject, reply, hdr, msg, client):
        ent = self.entries.get(subject)
        if ent is None:
            return
        importer, orig, rtype, expires = ent
        if expires <= time.monotonic():
            self.entries.pop(subject, None)
            self.bytes -= len(orig) + RESPONSE_ENTRY_COST
            return
        if rtype == "Singleton":
            self.entries.pop(subject, None)
            self.bytes -= len(orig) + RESPONSE_ENTRY_COST
        self.server.publish_internal(importer, orig, None, hdr, msg)

    def close(self):
        self.server.internal_unsubscribe(self.sub)
        self.entries.clear()
        self.bytes = 0


# -- wiring accounts from their specs ------------------------------------------

def link(server, accounts):
    """(Re)build every account's exports and imports from its spec: the
    service imports' internal subscriptions, and the shadows of every
    client's subscriptions. Called at start and on reload."""
    for acc in accounts:
        for si in acc.service_imports:
            if si.sub is not None:
                server.internal_unsubscribe(si.sub)
        acc.service_imports = []
        acc.stream_imports = []
        spec = acc.spec
        acc.exports = [Export(e) for e in spec.exports] if spec is not None else []
    by_name = {acc.name: acc for acc in accounts}
    for acc in accounts:
        if acc.spec is None:
            continue
        for d in acc.spec.imports:
            exporter = by_name.get(d["account"])
            if exporter is None:
                continue
            export = find_export(exporter, d["kind"], d["subject"], acc.name)
            if export is None:
                continue
            if d["kind"] == "stream":
                acc.stream_imports.append(StreamImport(acc, exporter, d))
            else:
                si = ServiceImport(acc, exporter, d, export)
                si.sub = server.internal_subscribe(acc, si.to, _service_handler(server, si),
                                                   None, False)
                acc.service_imports.append(si)
                if exporter.responses is None:
                    exporter.responses = ResponseMap(server, exporter)


def find_export(exporter, kind, subject, importer_name):
    for e in exporter.exports:
        if e.kind == kind and subject_subset(subject, e.subject) \
                and (e.accounts is None or importer_name in e.accounts):
            return e
    return None


def _service_handler(server, si):
    def on_request(sub, subject, reply, hdr, msg, client):
        if client is not None and client.kind == "route":
            return      # the requester's own server served it (and routed it here only by a wildcard)
        target = si.transform.apply(subject.split(".")) if si.transform.wpos else si.subject
        if hdr is not None and client is not None:
            hdr = request_info(hdr, si, client)
        nr = None
        if reply:
            nr = si.exporter.responses.new_reply(si.importer, reply, si.export)
        server.publish_internal(si.exporter, target, nr, hdr, msg)
    return on_request


def request_info(hdr, si, client):
    """The request's header block with nats-server's Nats-Request-Info
    (the requester's account and RTT; its identity too when the import
    shares it), which Go adds to a request with headers."""
    info = {}
    if si.share:
        info.update(host=client.ip, id=client.cid)
    info["acc"] = si.importer.name
    if si.share:
        for key, val in (("user", client.user), ("name", client.name),
                         ("lang", client.lang), ("ver", client.version)):
            if val:
                info[key] = val
    info["rtt"] = int(client.rtt * 1e9)
    line = b"Nats-Request-Info: " + json.dumps(info, separators=(",", ":")).encode() + b"\r\n"
    if hdr.endswith(b"\r\n\r\n"):
        return hdr[:-2] + line + b"\r\n"
    return hdr


# -- shadow subscriptions of one client ----------------------------------------

def add_shadows(server, client, sub):
    """The ShadowSubs a client's new subscription needs (none when its
    account imports no stream)."""
    out = []
    for im in client.account.stream_imports:
        subj = im.shadow_subject(sub.subject)
        if subj is None:
            continue
        sh = ShadowSub(client, subj, sub.queue, sub.sid)
        sh.im = im
        sh.account = im.exporter
        server.add_sub(sh)
        out.append(sh)
    if out:
        if client.shadows is None:
            client.shadows = {}
        client.shadows[sub] = out
    return out


def remove_shadows(server, client, sub):
    shadows = client.shadows.pop(sub, None) if client.shadows else None
    for sh in shadows or ():
        sh.closed = True
        server.remove_sub(sh)


def relink_client(server, client):
    """A reload changed the account's stream imports: redo the shadows."""
    if client.shadows:
        for sub in list(client.shadows):
            remove_shadows(server, client, sub)
    if client.account.stream_imports:
        for sub in list(client.subs.values()):
            add_shadows(server, client, sub)
