"""Which MsgStore a stream gets: MemStore for `storage: memory`, FileStore
for `storage: file` (in the stream's msgs/ directory, with the server's
sync policy), and the StoreLimits a stream config gives its store."""

from .filestore import FileStore
from .memstore import MemStore
from .store import StoreLimits


def store_limits(cfg):
    return StoreLimits(max_msgs=cfg["max_msgs"], max_bytes=cfg["max_bytes"], max_age=cfg["max_age"],
                       max_msgs_per_subject=cfg["max_msgs_per_subject"], max_msg_size=cfg["max_msg_size"])


def open_store(cfg, directory, js):
    limits = store_limits(cfg)
    if cfg["storage"] == "memory":
        return MemStore(limits)
    return FileStore(directory, limits, sync_always=js.sync_always, sync_interval=js.sync_interval)
