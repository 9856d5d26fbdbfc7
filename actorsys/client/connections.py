"""The connections of a transport: one per worker slot, one to the router, one per other
endpoint of the node (a peer: the supervision tree, the gateway, another router's workers).

:class:`Connections` (the transport's ``conns``) makes each :class:`~actorsys.net.sockets.Conn`
at its first use, keeps it, and closes it: when the transport closes, when the node is
unreachable (:meth:`~Connections.drop_slots`), when a slot's endpoint leaves the map or
its node comes back with another CURVE key, when a peer refuses our key. Each
connection's replies go to the transport's reply handler, and its monitor's events to
:class:`~.monitors.Monitors`.

CURVE (tcp): a connection to a worker or peer is made with the server key the map names
for the cluster node behind its endpoint (:meth:`~Connections.keys_for`), the router's
with the transport's own keys.

Every slot connection carries the transport's ``routing_id`` (not one ZeroMQ makes up):
a follower of a replicated shard may deliver the leader's reply on whichever connection
the transport has to its worker.
"""
from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Callable

import zmq

from ..errors import NodeUnavailable
from ..net.keys import CLIENT_HANDSHAKE_EVENTS, CurveKeys, uses_curve
from ..net.members import server_keys
from ..net.sockets import SEND_HWM, Conn
from ..protocol.shardmap import ShardMap
from .outbox import SEND_HWM_FRAMES
from .reachability import WATCH_EVENTS
from .requests import PEER

if TYPE_CHECKING:
    from .monitors import Monitors
    from .transport import AsyncTransport


class Connections:
    """A transport's connections, made on demand (see the module docstring).

    Uses of the transport: its ``loop``, ``ctx``, ``keys``, ``routing_id``, ``closed``,
    ``map`` (a slot's endpoint), ``watch`` (what a watched connection's monitor reports,
    and the router's heartbeats) and ``router_endpoint``.

    Invariants: :attr:`slots` holds the connections to the current map's endpoints
    under their slot numbers (renumbered, never left stale, when the map's endpoints
    change: :meth:`renumber`); :attr:`router` is the connection to the transport's
    ``router_endpoint`` or None; :attr:`peer_tags` only grows (a peer keeps its tag,
    ``PEER`` and below, in the pending table after its connection is closed);
    :attr:`server_keys` are those of the map last installed.
    """

    __slots__ = ("transport", "on_reply", "events", "slots", "router", "peers", "peer_tags",
                 "server_keys")

    def __init__(self, transport: AsyncTransport, on_reply: Callable[[list[bytes]], None],
                 events: Monitors) -> None:
        self.transport = transport
        self.on_reply = on_reply     # every connection's replies
        self.events = events         # every connection's monitor events
        self.slots: dict[int, Conn] = {}
        self.router: Conn | None = None
        self.peers: dict[str, Conn] = {}           # other endpoints (the tree, the gateway)
        #: each other endpoint's ``slot`` number in the pending table (PEER and below)
        self.peer_tags: dict[str, int] = {}
        #: endpoint -> the CURVE server key of the cluster node behind it (net/members.py)
        self.server_keys: dict[str, bytes] = {}

    # -- worker slots --------------------------------------------------------------------
    def slot(self, i: int) -> Conn:
        """The connection to worker slot ``i`` of the map (made now if there is none);
        NodeUnavailable if the transport is closed or has no map."""
        c = self.slots.get(i)
        if c is None:
            t = self.transport
            if t.closed:
                raise NodeUnavailable("client is closed")
            if t.map is None:
                raise NodeUnavailable("no shard map yet")
            endpoint = t.map.endpoints[i]
            # (a coalescing transport's frames carry up to BATCH_MESSAGES messages: see outbox.py)
            hwm = SEND_HWM_FRAMES if t.outbox is not None and t.outbox.enabled else SEND_HWM
            c = Conn(t.loop, t.ctx, endpoint, self.keys_for(endpoint), self.on_reply,
                     WATCH_EVENTS if t.watch else zmq.EVENT_DISCONNECTED,
                     partial(self.events.on_slot, i), routing_id=t.routing_id, send_hwm=hwm)
            self.slots[i] = c
        return c

    def drop_slots(self) -> None:
        """Close every slot connection, with what is queued on it."""
        for c in self.slots.values():
            c.close()
        self.slots.clear()

    def renumber(self, old: list[str], new: list[str], gone: Callable[[int], None]) -> dict[int, int]:
        """The map's worker endpoints changed from ``old`` to ``new``: the connections to
        endpoints still in it are kept under their new numbers (returned: old -> new);
        the others are closed, each after ``gone(slot)``."""
        at = {endpoint: j for j, endpoint in enumerate(new)}
        kept: dict[int, Conn] = {}
        moved: dict[int, int] = {}
        for i, c in self.slots.items():
            j = at.get(old[i]) if i < len(old) else None
            if j is None:
                gone(i)
                c.close()
                continue
            kept[j], moved[i] = c, j
            if c.monitor_pump is not None:
                c.monitor_pump.on_frames = partial(self.events.on_slot, j)
        self.slots = kept
        return moved

    # -- CURVE keys ----------------------------------------------------------------------
    def keys_for(self, endpoint: str) -> CurveKeys | None:
        """The CURVE keys for a connection to ``endpoint``: with the server key of the
        cluster node behind it, if the map names one."""
        keys = self.transport.keys
        return keys.for_server(self.server_keys.get(endpoint)) if keys else None

    def use_server_keys(self, shard_map: ShardMap) -> list[int]:
        """The server keys of the map's nodes from now on; the slots whose connection was
        made with another key (its node came back with a new key pair), to be closed."""
        keys = server_keys(getattr(shard_map, "nodes", None), shard_map.endpoints)
        if keys == self.server_keys:
            return []
        old, self.server_keys = self.server_keys, keys
        if self.transport.keys is None:
            return []
        endpoints = shard_map.endpoints
        return [i for i in self.slots
                if i < len(endpoints) and old.get(endpoints[i]) != keys.get(endpoints[i])]

    def close_slot(self, i: int) -> None:
        """Close the connection to slot ``i`` (there is one)."""
        self.slots.pop(i).close()

    # -- the router ----------------------------------------------------------------------
    def router_conn(self) -> Conn:
        """The connection to the router (made now if there is none)."""
        if self.router is None:
            t = self.transport
            if t.router_endpoint is None:
                raise NodeUnavailable("no router endpoint known")
            curve = uses_curve(t.router_endpoint)
            watched = t.watch is not None
            self.router = Conn(t.loop, t.ctx, t.router_endpoint, t.keys, self.on_reply,
                               (CLIENT_HANDSHAKE_EVENTS if curve else 0)
                               | (WATCH_EVENTS if watched else 0),
                               self.events.on_router if curve or watched else None,
                               *(t.watch.heartbeat() if t.watch is not None else ()))
        return self.router

    def drop_router(self) -> None:
        """Close the connection to the router (there is one)."""
        assert self.router is not None
        self.router.close()
        self.router = None

    # -- other endpoints -----------------------------------------------------------------
    def peer(self, endpoint: str) -> Conn:
        """The connection to another endpoint of the node (made now if there is none)."""
        c = self.peers.get(endpoint)
        if c is None:
            t = self.transport
            keys = self.keys_for(endpoint)
            c = self.peers[endpoint] = Conn(
                t.loop, t.ctx, endpoint, keys, self.on_reply,
                zmq.EVENT_DISCONNECTED
                | (zmq.EVENT_HANDSHAKE_FAILED_AUTH if keys is not None else 0),
                partial(self.events.on_peer, endpoint))
        return c

    def peer_tag(self, endpoint: str) -> int:
        """The ``slot`` of the requests to ``endpoint`` in the pending table."""
        tag = self.peer_tags.get(endpoint)
        if tag is None:
            tag = self.peer_tags[endpoint] = PEER - len(self.peer_tags)
        return tag

    def forget_peer(self, endpoint: str, soon: bool = False) -> bool:
        """Close the connection to ``endpoint`` if there is one (the next request makes a
        new one): at once, or ``soon`` (from the loop: not from within its own monitor's
        callback). Whether there was one."""
        c = self.peers.pop(endpoint, None)
        if c is None:
            return False
        if soon:
            self.transport.loop.call_soon(c.close)
        else:
            c.close()
        return True

    def close(self, linger_ms: int) -> None:
        """Close every connection; the slots' with ``linger_ms`` for what is queued."""
        for c in self.slots.values():
            c.close(linger_ms)
        self.slots.clear()
        for c in self.peers.values():
            c.close()
        self.peers.clear()
        if self.router is not None:
            self.router.close()
            self.router = None
