"""The account's mirrors and sources: a `SourcingHub` per JsAccount
(JsAccount.sourcing) holds one link per mirror or source of its streams,
attaches same-account links (sourcing.Link) to their origins as streams
come and go, starts the links through an `external` API prefix
(sourcing_external.ExternalLink), keeps the sources' positions on disk
(SOURCES_FILE) and finds them again after a restart, and builds the
STREAM.INFO `mirror`/`sources` blocks. Its one-second tick is every
link's heartbeat.
"""

import json
import os
import time

from . import errors as E
from .sourcing import SOURCES_FILE, STALE, TICK, Link
from .sourcing_external import ExternalLink


class SourcingHub:
    """The Links of one account's streams (JsAccount.sourcing)."""

    def __init__(self, jsa):
        self.jsa = jsa
        self.log = jsa.js.log
        self.reactor = jsa.js.server.reactor
        self.links = {}         # stream name -> [Link]
        self._timer = None

    # -- the account's streams come and go (hooks in account.py) ---------------------
    def stream_added(self, stream):
        for links in self.links.values():
            for link in links:
                if link.name == stream.name and link.origin is None and not link.external:
                    link.attach(stream)
        self._make_links(stream, {})

    def stream_updated(self, stream, old_cfg):
        cfg = stream.config
        if cfg.get("mirror") == old_cfg.get("mirror") and cfg.get("sources") == old_cfg.get("sources"):
            return
        keep = dict((l.iname, l) for l in self.links.pop(stream.name, []))
        for l in keep.values():
            l.detach()
        self._make_links(stream, keep)

    def stream_removed(self, stream):
        for l in self.links.pop(stream.name, []):
            l.detach()
        for links in self.links.values():
            for l in links:
                if l.origin is stream:
                    l.detach()

    def close(self):
        """Shutdown: save the sources' positions, let go of the origins."""
        self._save_positions()
        for links in self.links.values():
            for l in links:
                l.detach()
        self.links = {}
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _make_links(self, stream, previous):
        cfg = stream.config
        links = []
        if cfg.get("mirror") is not None:
            links.append(_link(self, stream, cfg["mirror"], True))
        for src in cfg.get("sources") or []:
            links.append(_link(self, stream, src, False))
        if not links:
            return
        fresh = []
        for l in links:
            old = previous.get(l.iname)
            if old is not None and old.mirror == l.mirror:
                l.sseq, l.ident, l.last = old.sseq, old.ident, old.last
            else:
                fresh.append(l)
        if fresh and not links[0].mirror:
            self._load_positions(stream, fresh)
            _recover_sources(stream, fresh)
        self.links[stream.name] = links
        for l in links:
            if l.external:
                l.start()
                continue
            origin = self.jsa.streams.get(l.name)
            if origin is not None and origin is not stream:
                l.attach(origin)
        if self._timer is None:
            self._timer = self.reactor.call_later(TICK, self._tick)

    # -- STREAM.INFO (hooks in api.py) ------------------------------------------------------
    def info(self, stream):
        links = self.links.get(stream.name)
        if not links:
            return {}
        now = time.time_ns()
        if links[0].mirror:
            return {"mirror": links[0].info(now)}
        return {"sources": [l.info(now) for l in links]}

    # -- source positions on disk (file streams) ---------------------------------------
    def _positions_path(self, stream):
        if stream.config["storage"] != "file" or self.jsa.streams.get(stream.name) is not stream:
            return None
        return os.path.join(self.jsa.dir, stream.name, SOURCES_FILE)

    def _load_positions(self, stream, links):
        path = self._positions_path(stream)
        if path is None:
            return
        try:
            with open(path, "rb") as f:
                saved = json.loads(f.read())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            self.log.warn("JetStream: ignoring %s: %s" % (path, e))
            return
        if not isinstance(saved, dict):
            return
        for l in links:
            v = saved.get(l.iname)
            if isinstance(v, dict) and isinstance(v.get("seq"), int) and isinstance(v.get("ident", ""), str):
                l.sseq, l.ident = v["seq"], v.get("ident", "")
                l.saved = (l.sseq, l.ident)

    def _save_positions(self):
        for name, links in self.links.items():
            if links[0].mirror or all((l.sseq, l.ident) == l.saved for l in links):
                continue
            path = self._positions_path(links[0].stream)
            if path is None or not os.path.isdir(os.path.dirname(path)):
                continue
            body = json.dumps(dict((l.iname, {"seq": l.sseq, "ident": l.ident}) for l in links)).encode()
            try:
                with open(path + ".tmp", "wb") as f:
                    f.write(body)
                os.replace(path + ".tmp", path)
            except OSError as e:
                self.log.error("JetStream: could not write %s: %s" % (path, e))
                continue
            for l in links:
                l.saved = (l.sseq, l.ident)

    def _tick(self):
        self._timer = None
        if not self.links:
            return
        self._save_positions()
        now = time.time_ns()
        for links in self.links.values():
            for l in links:
                if l.external:
                    l.tick(now)
                elif l.origin is not None and not l.origin.closed:
                    l.last = now        # the origin is there: our heartbeat
                    if l.stalled and not l.scheduled:
                        l.schedule()
                elif l.err is None and (not l.last or now - l.last > STALE):
                    l.err = E.err(E.STREAM_NOT_FOUND)
        self._timer = self.reactor.call_later(TICK, self._tick)


def _link(hub, stream, src, mirror):
    cls = ExternalLink if src.get("external") is not None else Link
    return cls(hub, stream, src, mirror)


def _recover_sources(stream, links):
    """After a restart (or a source added): each source's last copied
    origin sequence and identity, from the newest stored message that
    carries its Nats-Stream-Source header."""
    want = dict((l.iname, l) for l in links)
    store = stream.store
    st = store.state()
    seq = st.last_seq
    while want and seq >= st.first_seq and seq > 0:
        sm = store.load_msg(seq)
        seq -= 1
        if sm is None or b"Nats-Stream-Source:" not in sm.hdr:
            continue
        for line in sm.hdr.split(b"\r\n"):
            if not line.startswith(b"Nats-Stream-Source:"):
                continue
            f = line[len(b"Nats-Stream-Source:"):].strip().decode("utf-8", "replace").split(" ")
            if len(f) >= 4:
                link = want.pop("%s %s %s" % (f[0], f[2], f[3]), None)
            elif len(f) == 2:   # pre-2.10: "<origin> <seq>"
                link = next((l for l in want.values() if l.name == f[0]), None)
                if link is not None:
                    del want[link.iname]
            else:
                link = None
            if link is not None:
                try:
                    seq = int(f[1])
                except ValueError:
                    break
                ident = f[5] if len(f) >= 6 else ""
                # the saved position wins when it is further on the same origin
                if not (link.ident == ident and link.sseq > seq):
                    link.sseq, link.ident = seq, ident
            break
