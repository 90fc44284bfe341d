"""Accounts: the unit that owns a subject index.

A NATS account is a separate subject space: a message published in one
account reaches only subscriptions of the same account. Each `Account` owns
its `Sublist`; a client belongs to one account and resolves everything it
publishes or subscribes through it (`Client.account`). Routes name the
account on every interest and message line (`RS+ $G foo`, `RMSG $G foo 5`)
and resolve that name through the server's registry (`Accounts.find_wire`).

Today there is exactly one account, the global account `$G`, where every
client lives (nats-server's default when no accounts are configured). A line
from a route naming any other account (a Go node's `$SYS`) resolves to None
and is ignored, as before accounts existed. Configured accounts, imports and
exports plug in here: register them, and give a client its account when its
credentials are accepted.
"""

from .sublist import Sublist

GLOBAL_ACCOUNT = "$G"


class Account:
    """One account: its name (text and wire bytes), its subject index, and
    its subject mappings (gnats.mapping.Mappings, or None: no cost)."""

    __slots__ = ("name", "wire", "sublist", "mappings")

    def __init__(self, name):
        self.name = name
        self.wire = name.encode("latin-1")      # as it appears in RS+/RMSG
        self.sublist = Sublist()
        self.mappings = None

    def __repr__(self):
        return "<account %s>" % self.name


class Accounts:
    """The server's registry of accounts, keyed by the name's wire bytes
    (what route lines carry)."""

    def __init__(self):
        self._by_wire = {}
        self.global_account = self.register(GLOBAL_ACCOUNT)

    def register(self, name):
        acc = Account(name)
        self._by_wire[acc.wire] = acc
        return acc

    def find_wire(self, name):
        """The account a route line names (bytes), or None: unknown."""
        return self._by_wire.get(name)
