"""A watched client of a cluster fetches the map again while a node of it may be down.

A node of a cluster that goes away takes its worker slots with it while the router in
use stays up, and the map changes only when the cluster has noticed (see
:mod:`.reachability`). So a watched transport whose map is a cluster's
(:attr:`ShardMap.nodes` set) and has a worker endpoint disconnected fetches the map
again every :data:`CLUSTER_REFRESH_S` until that endpoint is back or gone from the map,
and so does one whose map has a node down (its shards ``ShardUnavailable``), until the
map has it back. :class:`ClusterRefresh` keeps that schedule for its
:class:`~.reachability.NodeWatch`: from the loop (a timer) and, for the blocking
client, at its calls and while a call waits for its reply (:meth:`ClusterRefresh.due`,
:meth:`ClusterRefresh.tick`).
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Callable

import zmq

if TYPE_CHECKING:
    from ..protocol.shardmap import ShardMap
    from .transport import AsyncTransport

#: a client of a cluster with a worker endpoint disconnected fetches the map this often
CLUSTER_REFRESH_S = 0.5
_DISCONNECTED, _UP = int(zmq.EVENT_DISCONNECTED), int(zmq.EVENT_HANDSHAKE_SUCCEEDED)


class ClusterRefresh:
    """When a watched transport fetches a cluster's map again (see the module docstring);
    ``fetch`` starts a map fetch unless one is under way (its watch's).

    Uses of the transport: its ``loop`` and ``map``.

    Invariants: :attr:`refresh_at` is the loop time of the next fetch while
    :attr:`watching`; ``_tick`` is the one timer armed for it (None: none), never
    re-armed once nothing is waiting; ``_down_endpoints`` holds only endpoints of the
    map after each look (:meth:`due`, :meth:`tick`).
    """

    __slots__ = ("transport", "loop", "fetch", "refresh_at", "_down_endpoints", "_tick",
                 "_node_down")

    def __init__(self, transport: AsyncTransport, fetch: Callable[[], None]) -> None:
        self.transport = transport
        self.loop = transport.loop
        self.fetch = fetch
        #: a cluster's worker endpoints whose connection is down, and the next map fetch
        self._down_endpoints: set[str] = set()
        self.refresh_at = 0.0
        self._tick: asyncio.TimerHandle | None = None
        #: the map has a node down (its shards ShardUnavailable): fetched again until it is back
        self._node_down = False

    @property
    def watching(self) -> bool:
        """A worker endpoint was seen disconnected, or the map has a node down."""
        return bool(self._down_endpoints or self._node_down)

    def slot_event(self, slot: int, event: int) -> None:
        """An event of slot ``slot``'s connection: a cluster's worker gone (its node may be
        down) starts the fetches; one back is no longer waited for."""
        m = self.transport.map
        if m is None or m.nodes is None or not 0 <= slot < len(m.endpoints):
            return
        if event == _DISCONNECTED:
            self._down_endpoints.add(m.endpoints[slot])
            if self._tick is None:
                self.refresh_at = self.loop.time() + CLUSTER_REFRESH_S
                self._tick = self.loop.call_at(self.refresh_at, self.tick)
        elif event == _UP:
            self._down_endpoints.discard(m.endpoints[slot])

    def map_installed(self, m: ShardMap) -> None:
        """A new map is in use: if a node of it is down, fetch it again every
        :data:`CLUSTER_REFRESH_S` until the node is back."""
        self._node_down = m.nodes is not None and any(not n.get("alive") for n in m.nodes)
        if self._node_down and self._tick is None and self.loop.is_running():
            self.refresh_at = self.loop.time() + CLUSTER_REFRESH_S
            self._tick = self.loop.call_at(self.refresh_at, self.tick)

    def _waiting(self) -> bool:
        """A worker endpoint of the (cluster's) map is disconnected, or a node is down."""
        m = self.transport.map
        if not (self._down_endpoints or self._node_down) or m is None or m.nodes is None:
            return False
        self._down_endpoints &= set(m.endpoints)
        return bool(self._down_endpoints) or self._node_down

    def due(self) -> bool:
        """The map is to be fetched now; the next time is set."""
        now = self.loop.time()
        if now < self.refresh_at or not self._waiting():
            return False
        self.refresh_at = now + CLUSTER_REFRESH_S
        return True

    def tick(self) -> None:
        """Fetch the map if it is due, and look again at :attr:`refresh_at` while waiting."""
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        if self.due():
            self.fetch()
        if self._waiting():
            self._tick = self.loop.call_at(self.refresh_at, self.tick)

    def close(self) -> None:
        """The transport is closing."""
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
