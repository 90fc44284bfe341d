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
"""

# The nats-server protocol level this server implements (clients gate features
# on it and parse it as a semantic version).
VERSION = "2.9.0"
# This project's own release number.
RELEASE = "0.1.0"
SERVER_NAME = "gnatsd.py"
