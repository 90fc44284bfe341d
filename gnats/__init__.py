"""gnatsd.py: a NATS messaging server in pure Python.

Module map (one concern each), from the hot core outwards:
  reactor    the selectors event loop, its timer heap, the end-of-turn flush
  net        listening sockets, the nonblocking dial, host:port helpers
  conn       nonblocking socket I/O of every connection; the lifecycle flags
  inbound    the parse loop clients and routes share, and its declared state
  delivery   how a message reaches subscribers; the cache-entry layouts
  parser     control-line argument parsing and the -ERR texts
  sublist    the subject index (token trie with '*' and '>', match cache)
  account    accounts: subject index, exports, imports, limits; the registry
  accounts_conf  the accounts { } block; imports: stream/service imports
  internal   internal subscriptions: server-side subscribers with callbacks
  mapping    subject mappings; transform: subject transforms ($N, {{...}})
  client     one client connection: CONNECT, SUB/UNSUB, PUB/HPUB
  route      one route connection: RS+/RS-/RMSG/HMSG, INFO/CONNECT
  cluster    membership, gossip, redial, duplicates, interest across routes
  authorize  credential checks off the reactor thread, for clients and routes
  server     lifecycle: accept, registry, signals, lame duck
  reload     what each option change on reload applies or refuses
  snapshot   the monitoring snapshot: typed records, closed ring, hand-over
  endpoints  /varz /connz /routez /subsz /metrics as pure functions
  monitor    the HTTP(S) monitoring server
  procstats  process memory/CPU figures; procfiles: pid and ports files
  options    the Options object and how config values map onto it
  conf       the NATS config file format (pure: text in, dict out)
  cli        the command line; main: the entry point
  auth       credential checks (plain, bcrypt, nkeys, no_auth_user)
  authz      authorization config keys; permissions: the permission model
  nkeys      nkey decoding and Ed25519 verify; certmap: certificate -> user
  jwt        NATS JWTs and .creds; jwt_claims: typed claims
  jwt_accounts  operator mode trust and CONNECT; operator_accounts: account
             JWTs turned into accounts
  sysacct    the system account's requests and events; sysevents: their JSON
  accountz   /accountz
  websocket  RFC 6455 framing; ws_options, ws_listener, ws_client: the
             websocket { } block, listener and client transport
  leaf       one leaf connection; leafnodes: listener, remotes, interest;
             leafconf: the block; leafz: /leafz; leafcreds: .creds signing
  peer       what route and leaf connections share
  leafjs     which JetStream subjects stay on each side of a leaf connection
  jsremote   a consumer's message for a subscriber on another server
  jetstream  JetStream (a package): streams, consumers, stores, the $JS.API
  tls        ssl.SSLContext construction
  log        the log line format and destinations
  dashboard  the live page served at /
  embed      gnats.run(): a server in a background thread of this process
  testing    unittest support (NatsServerTestCase)
  pytest_plugin  the nats_server / nats_server_factory / nats_cluster fixtures

The public Python API is `gnats.run(config=None, **options)` (gnats.embed).
It is imported on first use, so `import gnats` (and the pytest plugin, loaded
in every pytest run) costs nothing until a server is wanted.
"""

# The nats-server protocol level this server implements (clients gate features
# on it and parse it as a semantic version). 2.11: what clients gate on 2.10
# and 2.11 works (consumer limits, per-message TTL, subject delete markers, KV
# limit markers, consumer pause); 2.12's atomic batch publish and message
# schedules are not implemented (streams refuse them), so not 2.12.
VERSION = "2.11.0"
# This project's own release number.
RELEASE = "0.1.0"
SERVER_NAME = "gnatsd.py"


def __getattr__(name):
    # PEP 562: gnats.run and gnats.testing load their modules on first use
    if name == "run":
        from .embed import run
        return run
    if name == "testing":
        import importlib
        return importlib.import_module(".testing", __name__)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
