"""Authority per key: what a connected CURVE key may ask of a node process.

In the user's words:

* Every ``*.key`` file in ``authorized_keys`` may carry, in its ``metadata`` section, a
  ``role``: ``client`` or ``admin``, and ``types``: the actor types it may reach
  (comma-separated; absent: every type)::

      metadata
          role = "client"
          types = "Room, Counter"
      curve
          public-key = "..."

  ``actorsys keygen DIR --name NAME --role client --types Room,Counter`` writes them.
* ``client``: asks and tells of an actor's public methods, plain ``spawn`` (activation),
  listing keys (LIST), and what every connection needs (PING, MAP). Everything else is
  ``admin``'s: the ``$`` system asks (``$destroy``, ``$rewind``, ``$history``,
  ``$inspect``, the testing asks), every request to the supervision tree (supervisor
  commands), STATUS, METRICS, TOP, CLUSTER, LEAVE, the shard commands.
* ``types`` restricts either role: a message or LIST for another type is refused; an
  admin with ``types`` may make system asks of those types' actors, but what concerns
  no one type (supervisor commands, STATUS, shard commands...) needs an admin of every
  type.
* A key file with no ``role`` keeps the power every allowed key had before roles
  existed: ``admin`` (an upgrade must not lock operators out). The node's own key and
  the keys of a cluster's other members are ``admin``, and so is everyone on an ipc
  endpoint (no CURVE there: the socket's directory, open only to its owner, is the
  check).

How a process knows who sent a message: its ZAP handler (:mod:`.guard`) answers each
CURVE handshake with the client's public key (Z85 text) as ZeroMQ's ``User-Id``;
libzmq attaches it to every message of that connection, and the socket's pump reads it
(``SocketPump.user``). :meth:`Guard.grant` maps it to a :class:`Grant`. A refused
request is answered with :class:`~actorsys.errors.Forbidden` (code ``forbidden``),
counted in the process's ``forbidden`` counter, and logged, rate-limited per key
(:class:`Refusals`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from ..errors import Forbidden
from ..lograte import RateLimit
from ..protocol import wire

#: requests any allowed key may make of any process (no actor type involved)
_ANYONE = frozenset({wire.PING, wire.MAP})
#: requests a client may make, for the types it may reach
_TYPED = frozenset({wire.ASK, wire.TELL, wire.SPAWN, wire.LIST})


@dataclass(frozen=True)
class Grant:
    """What one key may do: ``role`` (``client`` or ``admin``), ``types`` (None: every
    actor type), ``name`` (for refusals and the log: the key file's name, or a role)."""

    role: str
    types: frozenset[str] | None = None
    name: str = "admin"

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def refuse(self, op: int, type_name: str | None = None, method: str | None = None,
               options: bool = False) -> Forbidden | None:
        """Why this key may not make request ``op`` (for ``type_name``, calling ``method``;
        ``options``: a SPAWN with options, the tree's), or None: it may."""
        if self.admin and self.types is None:
            return None
        if op in _ANYONE:
            return None
        typed = op in _TYPED and not options
        system = method is not None and method.startswith("$")
        if not typed or system:
            what = f"{method:.100}" if system else wire.OPS.get(op, "?")
            if not self.admin:
                return Forbidden(f"key '{self.name}' (role client) may not make {what} requests: "
                                 f"they need role admin")
            if not typed and self.types is not None:
                return Forbidden(f"key '{self.name}' (admin of some types only) may not make {what} "
                                 f"requests: they need an admin of every type")
        return self.refuse_type(type_name) if type_name is not None else None

    def refuse_type(self, type_name: str) -> Forbidden | None:
        """Why this key may not reach actors of ``type_name`` at all (a subscription
        through the gateway: either role may hold one, for its types), or None."""
        if self.types is not None and type_name not in self.types:
            return Forbidden(f"key '{self.name}' may not reach actors of type '{type_name:.200}' "
                             f"(its types: {', '.join(sorted(self.types)) or 'none'})")
        return None


def refuse_request(grant: Grant, op: int, rest: list[object]) -> Forbidden | None:
    """:meth:`Grant.refuse` for a decoded request (``wire.decode_frames``'s ``op`` and
    ``rest``): its type, method and options where the op has them."""
    if grant.role == "admin" and grant.types is None:
        return None
    type_name = rest[0] if op in _TYPED and rest and isinstance(rest[0], str) else None
    method = rest[2] if (op == wire.ASK or op == wire.TELL) and isinstance(rest[2], str) else None
    return grant.refuse(op, type_name, method, options=op == wire.SPAWN and len(rest) == 3)


#: the grant of the node's own key, cluster members, ipc peers and role-less key files
ADMIN = Grant("admin")


class Refusals:
    """Counts refused requests (``counters["forbidden"]``) and logs them, at most
    ``burst`` lines per key per ``window`` seconds (then one line with the count)."""

    def __init__(self, logger: logging.Logger, counters: dict[str, int], *, burst: int = 5,
                 window: float = 60.0) -> None:
        self.logger, self.counters = logger, counters
        counters.setdefault("forbidden", 0)
        self.limit = RateLimit(logger, "refused requests", burst=burst, window=window, max_keys=100,
                               label="from key")

    def refused(self, grant: Grant, exc: Forbidden) -> Forbidden:
        """Count and (maybe) log one refusal; returns ``exc`` (for the sender)."""
        self.counters["forbidden"] += 1
        if self.limit.allow(grant.name):
            self.logger.warning("refused a request: %s", exc)
        return exc

    def sweep(self) -> None:
        self.limit.sweep()
