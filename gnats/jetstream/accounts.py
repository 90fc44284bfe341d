"""Which accounts have JetStream, and with which limits, as nats-server
2.15 decides it (enableJetStreamAccounts, configJetStream,
updateAccountClaimsWithRefresh).

- No accounts configured besides the system account: the global account
  ($G) gets JetStream, unlimited.
- Accounts configured: only those whose block says `jetstream: enabled` or
  gives `jetstream { max_mem, max_file, max_streams, max_consumers, ... }`
  (accounts_conf.py reads it); $G and the others answer every API request
  with 503 10039 "JetStream not enabled for account".
- Operator mode: an account whose JWT `limits` give memory or disk storage
  (`mem_storage` / `disk_storage` not 0, or so in one of the
  `tiered_limits`) gets JetStream when it is registered, with those limits
  (`streams`, `consumer`, `mem_max_stream_bytes`, `disk_max_stream_bytes`,
  `max_bytes_required`, `max_ack_pending`); the others answer 10039.

Limits are dicts keyed as $JS.API.INFO shows them (account.UNLIMITED);
only single-replica streams exist here, so of tiered limits the R1 tier
applies (an account with tiers but no R1 gets the first tier's limits).
"""

# JWT claim -> API name (nats-server jwt.JetStreamLimits)
_CLAIMS = (("mem_storage", "max_memory"), ("disk_storage", "max_storage"), ("streams", "max_streams"),
           ("consumer", "max_consumers"))
# these are "unlimited" unless positive (nats-server toUnlimited)
_POSITIVE = (("mem_max_stream_bytes", "memory_max_stream_bytes"),
             ("disk_max_stream_bytes", "storage_max_stream_bytes"), ("max_ack_pending", "max_ack_pending"))


def configured(server):
    """{Account: limits dict or None (unlimited)} of the accounts the
    configuration gives JetStream at start or reload."""
    o = server.opts
    accs = server.accounts
    specs = [s for s in (o.accounts or []) if s.name != o.system_account]
    if not specs and not o.operators:
        return {accs.global_account: None}
    out = {}
    for spec in specs:
        acc = accs.find(spec.name)
        if spec.jetstream is not None and acc is not None:
            out[acc] = spec.jetstream
    return out


def _int(d, key):
    v = d.get(key, 0)
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _tier_limits(d):
    lim = {}
    for claim, name in _CLAIMS:
        lim[name] = _int(d, claim)
    for claim, name in _POSITIVE:
        v = _int(d, claim)
        lim[name] = v if v > 0 else -1
    lim["max_bytes_required"] = d.get("max_bytes_required") is True
    return lim


def limits_from_claims(raw):
    """The JetStream limits an account JWT's `limits` claim (a dict) gives,
    or None when it does not enable JetStream."""
    if not isinstance(raw, dict):
        return None
    if _int(raw, "mem_storage") != 0 or _int(raw, "disk_storage") != 0:
        return _tier_limits(raw)
    tiers = raw.get("tiered_limits")
    if not isinstance(tiers, dict):
        return None
    enabled = [(k, v) for k, v in sorted(tiers.items()) if isinstance(v, dict)
               and (_int(v, "mem_storage") != 0 or _int(v, "disk_storage") != 0)]
    if not enabled:
        return None
    name, tier = ("R1", tiers["R1"]) if isinstance(tiers.get("R1"), dict) else enabled[0]
    lim = _tier_limits(tier)
    lim["_tier"] = name     # $JS.API.INFO shows tiered limits under "tiers"
    return lim


def jwt_account_registered(server, account, claims):
    """The hook operator mode calls once it registered `account` from its
    JWT claims (jwt_accounts.py): JetStream for it, or the 10039 answer."""
    js = server.jetstream
    if js is None:
        return
    limits = limits_from_claims(claims.limits.raw)
    if limits is not None:
        js.enable_account(account, limits)
    else:
        js.disable_account(account)
