"""Control requests of a transport: the shard map, status and ping of the router, a
worker slot or another endpoint of the node; the listing of an actor type's keys; a
supervisor's runtime API on the supervision tree.

They share the actor requests' table of pending requests (:class:`~.pending.PendingTable`;
a control request's entry has a timer of its own), their connections and request ids,
but not their rules: a control request is never resent, and at its deadline it fails
with the error its caller chose (:data:`~.requests.Expired`; by default
:class:`~actorsys.errors.NodeUnavailable` naming who did not answer, and why the CURVE
handshake with the router failed if it did).

A mixin of :class:`~.transport.AsyncTransport`, not a part it owns: its requests take
the transport's request ids and read the router's handshake state (``refused``,
``handshake_problem``), state the transport's map (:mod:`.maps`) and monitors share.
"""
from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Iterator

import zmq

from ..errors import ActorError, AskTimeout, NodeUnavailable, ShardUnavailable, SupervisorNotFound
from ..net.sockets import Conn
from ..protocol import wire
from ..protocol.messages import Control, ListActors, Sup, decode
from ..protocol.shardmap import ShardMap
from .requests import ROUTER, Expired, MakeRequest, Pending, no_answer

if TYPE_CHECKING:
    from .connections import Connections
    from .pending import PendingTable

_NOBLOCK = int(zmq.NOBLOCK)


class ControlRequests:
    """The control requests of :class:`~.transport.AsyncTransport` (see the module
    docstring)."""

    if TYPE_CHECKING:   # what the transport provides
        loop: asyncio.AbstractEventLoop
        map: ShardMap | None
        closed: bool
        refused: str | None
        handshake_problem: str | None
        tree_endpoint: str | None
        _ids: Iterator[int]
        pending: PendingTable
        conns: Connections

        def _check_size(self, payload: bytes) -> None: ...

    async def call_router(self, op: int, timeout: float = 10.0,
                          expired: Expired | None = None) -> Any:
        """A control request (MAP, STATUS, PING) to the router."""
        if self.closed:
            raise NodeUnavailable("client is closed")
        if self.refused is not None:
            raise NodeUnavailable(self.refused)
        return await self._send_control(
            self.conns.router_conn(), ROUTER, partial(Control, op), timeout,
            no_answer("router", timeout) if expired is None else expired)

    async def request_router(self, make: MakeRequest, timeout: float = 10.0) -> Any:
        """A control request ``make(request id)`` with a body to the router (TOP)."""
        if self.closed:
            raise NodeUnavailable("client is closed")
        if self.refused is not None:
            raise NodeUnavailable(self.refused)
        return await self._send_control(self.conns.router_conn(), ROUTER, make, timeout,
                                        no_answer("router", timeout))

    async def call_slot(self, slot: int, op: int, timeout: float = 10.0,
                        expired: Expired | None = None) -> Any:
        """A control request (STATUS, PING) straight to a worker slot."""
        return await self.request_slot(slot, partial(Control, op), timeout, expired)

    async def request_slot(self, slot: int, make: MakeRequest, timeout: float,
                           expired: Expired | None = None) -> Any:
        """A control request ``make(request id)`` to a worker slot (failed at once if the
        slot's connection drops while it is in flight)."""
        return await self._slot_request(slot, make, timeout, expired)

    def _slot_request(self, slot: int, make: MakeRequest, timeout: float,
                      expired: Expired | None) -> asyncio.Future[Any]:
        if self.closed:
            raise NodeUnavailable("client is closed")
        c = self.conns.slot(slot)
        c.drain_monitor()      # an earlier drop does not concern this request
        return self._send_control(c, slot, make, timeout,
                                  no_answer(f"worker slot {slot}", timeout) if expired is None else expired)

    async def call_peer(self, endpoint: str, op: int, body: list[Any], timeout: float,
                        who: str, expired: type[ActorError] = NodeUnavailable) -> Any:
        """A request ``[op, id, *body]`` (typed by :func:`~actorsys.protocol.messages.decode`)
        to another endpoint of the node: STATUS of the tree or the gateway."""
        return await self.request_peer(endpoint, lambda rid: decode(op, rid, body), timeout,
                                       no_answer(who, timeout, expired))

    async def request_peer(self, endpoint: str, make: MakeRequest, timeout: float,
                           expired: Expired) -> Any:
        """A control request ``make(request id)`` to another endpoint of the node (failed
        at once, with WorkerLost, if the connection to it drops while it is in flight: a
        process killed with the request need not cost its whole timeout)."""
        if self.closed:
            raise NodeUnavailable("client is closed")
        conn = self.conns.peer(endpoint)
        return await self._send_control(conn, self.conns.peer_tag(endpoint), make, timeout, expired)

    async def list_keys(self, type_name: str, start_after: str | None, limit: int,
                        timeout: float, expired: Expired | None = None) -> list[str]:
        """Keys of the actors of ``type_name`` with persisted data, after ``start_after``,
        at most ``limit``, in the byte order of their UTF-8 (LevelDB's): every slot is
        asked at once and the pages merged."""
        if not isinstance(type_name, str) or not (start_after is None or isinstance(start_after, str)):
            raise TypeError("list_actors takes a type name and start_after as strings")
        if type(limit) is not int or not 0 <= limit <= wire.MAX_LIST_LIMIT:
            raise ValueError(f"list_actors' limit is 0..{wire.MAX_LIST_LIMIT}, got {limit!r}")
        if self.map is None:
            raise NodeUnavailable("no shard map yet")
        down = self.map.down_nodes()
        if down:     # a listing without their shards would be silently incomplete
            raise ShardUnavailable(
                f"cannot list {type_name!r} actors: the shards of node(s) "
                f"{', '.join(f'{n} ({c} shards)' for n, c in down.items())} are unavailable "
                f"(down, or not claimed yet); list again when they are back")
        make = partial(_list_request, type_name, start_after, limit)
        # futures, not tasks: a page still pending when another slot failed is simply
        # answered (or failed) later, with nothing left to run
        pages = await asyncio.gather(*[self._slot_request(slot, make, timeout, expired)
                                       for slot in range(len(self.map.endpoints))])
        keys = [k for page in pages for k in page]
        keys.sort(key=lambda k: k.encode("utf-8"))
        return keys[:limit]

    async def supervise(self, supervisor: str, command: str, arg: Any, timeout: float) -> Any:
        """One command of a supervisor's runtime API, to the supervision tree: not carried
        out once ``timeout`` has passed, and not resent (start_child is not idempotent);
        ``AskTimeout`` if the tree does not answer in time."""
        if self.closed:
            raise NodeUnavailable("client is closed")
        if self.tree_endpoint is None:
            raise SupervisorNotFound("this node's config declares no supervisors")
        deadline = time.time() + timeout
        return await self.request_peer(
            self.tree_endpoint, lambda rid: Sup(rid, supervisor, command, arg, deadline),
            timeout, no_answer("the supervision tree", timeout, AskTimeout))

    def _send_control(self, conn: Conn, slot: int, make: MakeRequest, timeout: float,
                      expired: Expired) -> asyncio.Future[Any]:
        rid = next(self._ids)
        request = make(rid)
        payload = request.encode()
        self._check_size(payload)
        fut = self.loop.create_future()
        timer = self.loop.call_later(timeout, self._expire_control, rid, expired)
        self.pending.add_timed(Pending(fut, slot, request, timeout, 0, timer))
        try:
            conn.sock.send(payload, _NOBLOCK)
        except zmq.Again:
            pass      # no connection (a failed handshake drops it): expires at the deadline
        conn.pump.kick()
        return fut

    def _expire_control(self, rid: int, expired: Expired) -> None:
        p = self.pending.entries.pop(rid, None)
        if p is not None and not p.fut.done():
            why = f" ({self.handshake_problem})" if p.slot == ROUTER and self.handshake_problem else ""
            p.fut.set_exception(expired(why))


def _list_request(type_name: str, start_after: str | None, limit: int, rid: int) -> ListActors:
    return ListActors(rid, type_name, start_after, limit)
