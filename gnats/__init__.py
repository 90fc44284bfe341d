"""gnatsd.py: a NATS messaging server in pure Python.

Module map (one concern each):
  reactor   the selectors event loop and its timer heap
  client    one client connection: read, parse, deliver, flush
  parser    control-line parsing helpers shared by clients and routes
  sublist   the subject index (token trie with '*' and '>', match cache)
  server    lifecycle: listeners, accept, connection registry, stats snapshot
  route     cluster routes (RS+/RS-/RMSG), discovery
  monitor   the HTTP(S) monitoring thread (/varz, /connz, ...)
  options   the Options object and how config values map onto it
  conf      the NATS config file format (pure: text in, dict out)
  cli       the command line
  auth      credential checks (plain and bcrypt)
  tls       ssl.SSLContext construction
  log       the log line format and destinations
  embed     gnats.run(): a server in a background thread of this process
  testing   unittest support (NatsServerTestCase)
  pytest_plugin  the nats_server / nats_server_factory / nats_cluster fixtures

The public Python API is `gnats.run(config=None, **options)` (gnats.embed).
It is imported on first use, so `import gnats` (and the pytest plugin, loaded
in every pytest run) costs nothing until a server is wanted.
"""

# The nats-server protocol level this server implements (clients gate features
# on it and parse it as a semantic version).
VERSION = "2.9.0"
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
