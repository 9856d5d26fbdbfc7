"""The shard map of a transport (:class:`~.transport.AsyncTransport` is a
:class:`MapSource`): fetching it from a router, installing it, and, for a client of a
cluster, choosing among several routers.

* :meth:`MapSource.refresh_map`: one MAP request to the router in use at a time
  (concurrent refreshes share it).
* :meth:`MapSource.connect`: the map from the first of :attr:`routers` that answers,
  each asked for ``timeout`` (every second, a node that is starting may not answer the
  first request); the one that answered is used from then on. With one router, its
  ``NodeUnavailable``; with several, one naming each. :meth:`MapSource.next_router`
  moves on after a lost router connection (see :mod:`.reachability`).
* :meth:`MapSource.set_map`: a map whose worker endpoints changed (a cluster node joined
  or left: global slots are renumbered) keeps the connections to endpoints still in it
  under their new numbers, with what is in flight on them; the others are closed, and
  what was in flight there fails with ``WorkerLost`` at once.

A mixin of the transport, not a part it owns: the map, the router in use and its
handshake state are the transport's, read by every other part of it.
"""
from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ..errors import ActorError, NodeUnavailable, ShardUnavailable, WorkerLost
from ..log import get_logger
from ..protocol import wire
from ..protocol.messages import Ask
from ..protocol.shardmap import ShardMap
from .requests import ROUTER, ActorRequest, Expired, Pending, Wording

if TYPE_CHECKING:
    from .connections import Connections
    from .pending import PendingTable
    from .outbox import Outbox
    from .reachability import NodeWatch
    from .transport import AsyncTransport

log = get_logger("client")


class MapSource:
    """The map side of :class:`~.transport.AsyncTransport` (see the module docstring)."""

    if TYPE_CHECKING:   # what the transport provides
        loop: asyncio.AbstractEventLoop
        map: ShardMap | None
        max_message_bytes: int
        outbox: Outbox | None
        tree_endpoint: str | None
        subscribers: str | None
        router_endpoint: str | None
        routers: list[str]
        refused: str | None
        handshake_problem: str | None
        closed: bool
        watch: NodeWatch | None
        wording: Wording
        on_map: Callable[[AsyncTransport], None] | None
        _refreshing: asyncio.Future[ShardMap] | None
        pending: PendingTable
        conns: Connections

        async def call_router(self, op: int, timeout: float = 10.0,
                              expired: Expired | None = None) -> Any: ...

        def _use_server_keys(self, shard_map: ShardMap) -> None: ...

        _ids: Iterator[int]

        def send(self, request: ActorRequest, timeout: float, retries: int = 0,
                 deadline: float | None = None) -> Pending: ...

    @property
    def map_fetch(self) -> asyncio.Future[ShardMap] | None:
        """The map fetch under way (:meth:`refresh_map`; None: none)."""
        fetch = self._refreshing
        return fetch if fetch is not None and not fetch.done() else None

    async def refresh_map(self, timeout: float = 10.0) -> ShardMap:
        """Fetch the shard map from the router (one request at a time)."""
        if self._refreshing is not None and not self._refreshing.done():
            return await asyncio.shield(self._refreshing)
        fut: asyncio.Future[ShardMap] = self.loop.create_future()
        self._refreshing = fut
        try:
            raw = await self.call_router(wire.MAP, timeout=timeout)
            m = ShardMap.from_wire(raw)
            subscribers = raw.get("subscribers")
            self.set_map(m, int(raw.get("max_message_bytes", self.max_message_bytes)),
                         raw.get("tree"), subscribers if isinstance(subscribers, str) else None)
            fut.set_result(m)
            return m
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved
            raise

    async def connect(self, timeout: float) -> ShardMap:
        """The shard map from the first of :attr:`routers` that answers, each asked for
        ``timeout`` (see :meth:`connect_one`); the one that answered is used from then
        on. With one router, its ``NodeUnavailable``; with several, one naming each."""
        routers = list(self.routers) or [str(self.router_endpoint)]
        failures: list[str] = []
        for i, endpoint in enumerate(routers):
            if endpoint != self.router_endpoint:
                log.info("trying the router at %s", endpoint)
                self.use_router(endpoint, fresh=True)
            try:
                m = await self.connect_one(timeout)
            except NodeUnavailable as exc:
                if len(routers) == 1 or self.closed:
                    raise
                failures.append(str(exc))
                continue
            self.routers = routers[i:] + routers[:i]
            if self.watch is not None:
                self.watch.connected()
            return m
        raise NodeUnavailable(f"none of the {len(routers)} routers answered: " + "; ".join(failures))

    def use_router(self, endpoint: str, fresh: bool = False) -> None:
        """Send control requests to the router at ``endpoint`` from now on (another of a
        cluster's routers): the old connection is closed, failing what is pending on it.
        ``fresh``: a new connect (its grace period starts now; see :mod:`.reachability`)."""
        if self.conns.router is not None:
            old = self.router_endpoint
            self.pending.fail_where(ROUTER, lambda _p: NodeUnavailable(
                f"router at {old} went away; trying the router at {endpoint}"))
            self.conns.drop_router()
        self.router_endpoint = endpoint
        self.refused = self.handshake_problem = None
        if self.watch is not None:
            self.watch.use_router(self.conns.router_conn(), fresh)

    def next_router(self) -> None:
        """Move on to the next of :attr:`routers` (the one in use goes last)."""
        if len(self.routers) > 1:
            self.routers = self.routers[1:] + self.routers[:1]
            log.info("moving from the router at %s to %s", self.router_endpoint, self.routers[0])
            self.use_router(self.routers[0])

    async def connect_one(self, timeout: float) -> ShardMap:
        """The shard map, asked for again every second until ``timeout`` (a node that is
        starting may not answer the first request). ``NodeUnavailable`` at the deadline,
        naming a failed handshake if there was one, or at once if the node refused the key."""
        deadline = self.loop.time() + timeout
        while True:
            try:
                return await self.refresh_map(
                    timeout=max(min(1.0, deadline - self.loop.time()), 0.05))
            except NodeUnavailable:
                if self.refused is not None:
                    raise NodeUnavailable(self.refused) from None
                if self.closed or self.loop.time() >= deadline:
                    why = f" ({self.handshake_problem})" if self.handshake_problem else ""
                    raise NodeUnavailable(f"router at {self.router_endpoint} did not answer "
                                          f"within {timeout:g} s{why}") from None

    def set_map(self, shard_map: ShardMap, max_message_bytes: int,
                tree_endpoint: str | None, subscribers: str | None = None) -> None:
        """Use ``shard_map`` (and the node limits and endpoints sent with it: the
        supervision tree's, the gateway's for subscribers) from now on. When the
        worker endpoints changed (a cluster's nodes joined or left: slots are renumbered),
        the connections to endpoints still in the map are kept under their new slot
        numbers with what is in flight on them; the others are closed, failing what is in
        flight there with WorkerLost."""
        if self.map is not None and shard_map.endpoints != self.map.endpoints:
            log.debug("the worker endpoints changed (map epoch %d): reconnecting", shard_map.epoch)
            self._renumber_slots(self.map.endpoints, shard_map.endpoints)
        self.map = shard_map
        self.max_message_bytes = max_message_bytes
        if self.outbox is not None:          # (a batch's frame: at most the node's limit)
            self.outbox.limit = max_message_bytes
            self.outbox.enabled = shard_map.batches
        self.tree_endpoint = tree_endpoint
        self.subscribers = subscribers
        self._use_server_keys(shard_map)
        if self.watch is not None:
            self.watch.map_installed(shard_map)
        if self.on_map is not None:
            self.on_map(self)  # type: ignore[arg-type]   # self is the transport

    def _renumber_slots(self, old: list[str], new: list[str]) -> None:
        lost = self.wording.lost
        moved = self.conns.renumber(
            old, new, lambda i: self._resend_or_fail(i, partial(_worker_lost, lost, i)))
        if any(i != j for i, j in moved.items()):
            self.pending.renumber(moved)
        if self.watch is not None:
            self.watch.state.slots_down.clear()     # their numbers changed; a drop is seen again

    def _resend_or_fail(self, slot: int, error: Callable[[Pending], ActorError]) -> None:
        """The endpoint of ``slot`` left the map (its node left the cluster, or died).
        Its asks in flight are sent again, each with its request id, to where the new map
        puts them: a node that left moved its shards first, with the records of the asks
        it ran, so an ask it ran answers from that record and is not run again. An ask
        whose shard is now unavailable (its node died) fails with ``error`` (WorkerLost:
        it may have run); so does every other request in flight there."""
        for p in self.pending.take_where(slot, Ask):
            if not p.fut.done():
                self.loop.create_task(self._resend_moved(p, error(p)))
        self.pending.fail_where(slot, error)

    async def _resend_moved(self, p: Pending, lost: ActorError) -> None:
        await asyncio.sleep(0)         # (the new map is installed first)
        try:
            request = p.request
            assert isinstance(request, Ask)
            inner = self.send(request._replace(rid=next(self._ids)), p.timeout, p.retries,
                              deadline=p.deadline)
            result = await inner.fut
        except ShardUnavailable:
            if not p.fut.done():
                p.fut.set_exception(lost)
        except BaseException as exc:
            if not p.fut.done():
                p.fut.set_exception(exc)
        else:
            if not p.fut.done():
                p.fut.set_result(result)


def _worker_lost(lost: Callable[[Any, int], str], slot: int, p: Pending) -> WorkerLost:
    """The WorkerLost of ``p``, in flight on ``slot``, whose endpoint left the map."""
    return WorkerLost(lost(p.request, slot))
