"""Accounts: the unit that owns a subject index.

A NATS account is a separate subject space: a message published in one
account reaches only subscriptions of the same account. Each `Account` owns
its `Sublist`; a client belongs to one account and resolves everything it
publishes or subscribes through it (`Client.account`). Routes name the
account on every interest and message line (`RS+ A foo`, `RMSG A foo 5`)
and resolve that name through the server's registry (`Accounts.find_wire`).

Without an `accounts { }` block there is one account, the global account
`$G`, where every client lives (nats-server's default). Configured
accounts (gnats/accounts_conf.py parses them) are registered by
`Accounts.configure`, at start and on reload, which keeps an Account
object (and its subject index, so its clients' subscriptions) for a name
that stays. A user names its account (auth.UserEntry.account); a client
joins it when its credentials are accepted (`Accounts.join`). A line from
a route naming an account we do not have (a Go node's `$SYS`) resolves to
None and is ignored.

Exports and imports connect accounts (gnats/imports.py does the work):
a stream import shows the exporter's messages to the importer's
subscribers (shadow subscriptions in the exporter's index); a service
import forwards requests from the importer into the exporter and maps the
replies back.

Every account's subject index reports its changes to one shared
`Generation` (the routes' parse caches follow it: a route delivers for
every account).
"""

from .sublist import Sublist

GLOBAL_ACCOUNT = "$G"
SYSTEM_ACCOUNT = "$SYS"
# nats-server's texts (accounts.go ErrTooManyAccountConnections)
ERR_ACCOUNT_CONNECTIONS = "maximum account active connections exceeded"


class Generation:
    """A counter bumped by every account's subject index on any change."""
    __slots__ = ("gen",)

    def __init__(self):
        self.gen = 0


class Account:
    """One account: its name (text and wire bytes), its subject index, its
    exports and imports, limits, and the clients in it."""

    def __init__(self, name, generation=None):
        self.name = name
        self.wire = name.encode("latin-1")      # as it appears in RS+/RMSG
        self.sublist = Sublist()
        self.sublist.watch = generation
        self.clients = set()
        self.spec = None            # the accounts_conf.AccountSpec in force
        self.exports = []           # imports.Export
        self.stream_imports = []    # imports.StreamImport (this account imports)
        self.service_imports = []   # imports.ServiceImport
        self.max_connections = 0    # 0: no account limit
        self.max_subscriptions = 0
        self.max_payload = 0
        self.mappings = None        # gnats.mapping.Mappings, or None: no cost
        self.responses = None       # imports.ResponseMap, once a service is imported
        self.update_time = 0.0

    def __repr__(self):
        return "<account %s>" % self.name


class Accounts:
    """The server's registry of accounts, keyed by the name's wire bytes
    (what route lines carry)."""

    def __init__(self):
        self._by_wire = {}
        self.generation = Generation()
        self.global_account = self.register(GLOBAL_ACCOUNT)

    def register(self, name):
        acc = self._by_wire.get(name.encode("latin-1"))
        if acc is None:
            acc = Account(name, self.generation)
            self._by_wire[acc.wire] = acc
        return acc

    def find_wire(self, name):
        """The account a route line names (bytes), or None: unknown."""
        return self._by_wire.get(name)

    def find(self, name):
        return self._by_wire.get(name.encode("latin-1"))

    def all(self):
        return list(self._by_wire.values())

    def remove(self, acc):
        self._by_wire.pop(acc.wire, None)

    def configured(self):
        """Are there accounts besides $G (configured ones)?"""
        return len(self._by_wire) > 1

    def for_user(self, user):
        """The account a UserEntry (auth.py) belongs to: its own, else $G."""
        name = getattr(user, "account", "") or ""
        if name:
            acc = self.find(name)
            if acc is not None:
                return acc
        return self.global_account
