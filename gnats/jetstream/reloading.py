"""What a configuration reload may change of `jetstream { }`, as nats-server
2.15's diffOptions decides it, with its texts:

- `jetstream` on or off: allowed (JetStream starts, or stops and its
  streams close; the files stay).
- `max_memory_store` / `max_file_store`: may grow ("Reloaded: JetStream
  max_mem_store = 1.86 GB"); shrinking is refused ("decreasing"), so is
  giving a limit where there was none ("dynamic"), and dropping one unless
  JetStream is being turned off.
- `store_dir`: refused unless JetStream is being turned off.
- `sync_interval`, `sync_always`: refused, with Go's field names.

`plan(running, old, new)` is pure: it returns the refusal text (or None)
and the limits to raise; reload.py's JetStream concern applies them.
"""

UNSET = -1
_LIMITS = (("jetstream_max_memory", "max_mem_store"), ("jetstream_max_store", "max_file_store"))


def plan(running, old, new, go_duration):
    """(refusal text or None, {"jetstream_max_memory": n, ...} to raise).
    `running`: JetStream runs now. `go_duration` formats seconds as Go."""
    disabling = not new.jetstream
    raise_to = {}
    limits_dropped = dir_dropped = False
    if running:
        for field, _ in _LIMITS:
            o, n = getattr(old, field), getattr(new, field)
            if o == n:
                continue
            if o != UNSET and n != UNSET and n > o:
                raise_to[field] = n
            elif o != UNSET and n == UNSET:
                limits_dropped = True       # an error unless JetStream goes off
            elif o == UNSET:
                return "config reload not supported for jetstream dynamic max memory and store", {}
            else:
                return "config reload not supported for decreasing jetstream max memory and store", {}
        if old.store_dir != new.store_dir:
            if new.store_dir:
                return "config reload not supported for jetstream storage directory", {}
            dir_dropped = True
    o, n = old.jetstream_sync_interval or 120.0, new.jetstream_sync_interval or 120.0
    if o != n:
        return ("config reload not supported for SyncInterval: old=%s, new=%s"
                % (go_duration(o), go_duration(n))), {}
    if old.jetstream_sync_always != new.jetstream_sync_always:
        return ("config reload not supported for SyncAlways: old=%s, new=%s"
                % (_bool(old.jetstream_sync_always), _bool(new.jetstream_sync_always))), {}
    if running and old.jetstream_domain != new.jetstream_domain:
        return ("config reload not supported for JetStreamDomain: old=%s, new=%s"
                % (old.jetstream_domain, new.jetstream_domain)), {}
    if not disabling:
        if limits_dropped:
            return "config reload not supported for jetstream max memory and max store", {}
        if dir_dropped:
            return "config reload not supported for jetstream storage dir", {}
    return None, raise_to


def _bool(v):
    return "true" if v else "false"


def log_name(field):
    return dict(_LIMITS)[field]


def friendly(n):
    """Bytes as nats-server's friendlyBytes prints them: 1.86 GB."""
    if n < 1024:
        return "%d B" % n
    for i, unit in enumerate("KMGTPE"):
        f = float(1024 ** (i + 2))
        if n < f or unit == "E":
            return "%.2f %sB" % (n / (f / 1024), unit)
