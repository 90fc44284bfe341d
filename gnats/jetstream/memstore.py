"""MemStore: the message store for `storage: memory` streams.

Everything lives in the shared index of store.IndexedStore; an entry is
(subject, ts, size, hdr, msg). Sizes are counted as nats-server's memstore
counts them (subject + headers + payload + 16), so `bytes` in stream info
and `max_bytes` agree with it.
"""

from .store import IndexedStore, StoredMsg


class MemStore(IndexedStore):

    def _msg_size(self, subject, hdr, msg):
        return len(subject) + len(hdr) + len(msg) + 16

    def _write(self, seq, subject, hdr, msg, ts, ttl, size):
        return (subject, ts, size, bytes(hdr), bytes(msg))

    def _read(self, seq, entry):
        return StoredMsg(entry[0], seq, entry[3], entry[4], entry[1])

    def delete(self):
        self._purge_all()
        self._consumers.clear()
