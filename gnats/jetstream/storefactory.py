"""Which MsgStore a stream gets: MemStore for `storage: memory`, FileStore
(gnats.jetstream.filestore, the jsstore helper's) for `storage: file`.

Until FileStore is in the tree, file streams get a MemStore and a warning
at creation: their messages do not survive a restart.
"""

import importlib

from .store import StoreLimits
from .memstore import MemStore

_FILESTORE = "gnats.jetstream.filestore"


def _filestore_class():
    try:
        return importlib.import_module(_FILESTORE).FileStore
    except ImportError:
        return None


def store_limits(cfg):
    return StoreLimits(max_msgs=cfg["max_msgs"], max_bytes=cfg["max_bytes"], max_age=cfg["max_age"],
                       max_msgs_per_subject=cfg["max_msgs_per_subject"], max_msg_size=cfg["max_msg_size"])


def open_store(cfg, directory, js):
    limits = store_limits(cfg)
    if cfg["storage"] == "memory":
        return MemStore(limits)
    cls = _filestore_class()
    if cls is None:
        js.log.warn("JetStream file storage is not available in this build: stream '%s' is kept in memory"
                    % cfg["name"])
        return MemStore(limits)
    return cls(directory, limits, sync_always=js.sync_always, sync_interval=js.sync_interval)
