"""The data path: requests to actors and their replies, from an asyncio loop.

:class:`AsyncTransport` is what every client of actors uses: the asyncio and blocking
clients, the router, workers, the gateway and the supervision tree. It holds the shard
map, one DEALER socket per worker slot, and the table of pending requests
(:class:`Pending`). Each message goes straight to the slot that owns the actor (one hop).

Rules, the same for every user of the transport:

* Deadlines: an actor request (ask, spawn, stop) fails with
  :class:`~actorsys.errors.AskTimeout` when ``timeout`` passes without a reply (one
  heap swept by one timer); a control request (map, status, ping, list, a supervisor's
  command) fails with the error its caller chose (:data:`Expired`, by default
  :class:`~actorsys.errors.NodeUnavailable` naming who did not answer). A reply that
  arrives later is dropped.
* Worker loss: a socket monitor on every slot connection fails the requests in flight
  on that slot the moment the connection drops (:class:`~actorsys.errors.WorkerLost`);
  ZeroMQ keeps queueing new messages for the slot until its worker is back on the
  same endpoint. A drop that happened before a send does not concern that send, nor
  an ask still queued in this turn's batch (:mod:`.outbox`) when the drop is seen.
* Coalescing: in its own loop (not a blocking client's lane), what one turn of the loop
  sends to a slot leaves as one ``BATCH`` frame in the loop's next turn, once the
  node's map says its workers read batches (:mod:`.outbox`); control requests (status,
  ping, list) leave at the call.
* Request ids: every ask carries a request id unique to this transport in its call
  context (``ctx["id"]``: 8 random bytes made once per transport, then the ask's
  sequence number); a worker answers a repeated id with the reply it recorded
  (``actorsys/storage/requests.py``). ``ask(..., retry=True)`` resends the ask with
  the same id after ``WorkerLost``, within its one deadline, at most
  :data:`~.common.ASK_TRIES` attempts: the turn runs once and its reply arrives once
  (not after ``NodeUnavailable``: an unreachable node fails fast, retry or not).
* Wrong shard: an actor request answered ``wrong_shard`` is resent after the map is
  fetched again, at most :data:`MAX_RESENDS` times, all within its one deadline: the
  first at once, the next after a pause (:func:`~.requests.resend_pause`, 5 ms doubling
  to 200 ms: a shard being handed off to another node is refused by its old owner until
  the move finishes). A shard whose node is down fails at once with
  :class:`~actorsys.errors.ShardUnavailable` (:mod:`actorsys.protocol.shardmap`).
* Several routers (a cluster, clients only): :meth:`AsyncTransport.connect` asks them
  for the map in order, each for its ``timeout``, and keeps the first that answers; a
  watched transport whose router connection drops moves on to the next (see
  :mod:`.reachability`).
* Overload: at most ``max_pending`` requests in flight, and a slot whose send queue is
  full refuses at once (coalescing: when a batch would start on it); both raise
  :class:`~actorsys.errors.Overloaded`. A message
  over the node's ``max_message_bytes`` is :class:`~actorsys.errors.MessageTooLarge`.
* CURVE (tcp): a monitor on the router connection records why a handshake failed; a
  refused key fails the requests to the router at once and every later one.
* Node unavailable (clients only, :meth:`AsyncTransport.watch_node`): a router
  connection gone for longer than ``connect_timeout`` fails what is pending, and every
  later ask, spawn and tell until the node is back, with
  :class:`~actorsys.errors.NodeUnavailable`; see :mod:`.reachability`.

Every request is a typed record of :mod:`actorsys.protocol.messages`, encoded by its
one encoder; what is pending, and how the transport's own errors read, is in
:mod:`.requests`.

Parts, each a module of its own: the table of pending requests and the actor requests'
deadlines (:mod:`.pending`), the map polled after asks time out (:mod:`.timeouts`), the
connections (:mod:`.connections`) and what their monitors report (:mod:`.monitors`), a
blocking caller's wait (:mod:`.waits`); the control requests (:mod:`.control`) and the
shard map (:mod:`.maps`) are the transport's mixins. What stays here is the actor
requests' path: sending them (ask, spawn, stop, tell), resending them (``retry``,
``wrong_shard``), and matching their replies.
"""
from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any, Callable

import zmq

from .. import tracing
from ..errors import (ActorError, AskTimeout, MessageTooLarge, NodeUnavailable, Overloaded,
                      WorkerLost, WrongShard, error_from_wire)
from ..log import get_logger
from ..net.keys import CurveKeys
from ..net.sockets import Conn, Context, Socket
from ..protocol import wire
from ..protocol.messages import Ask, Spawn, Stop, Tell
from ..protocol.shardmap import ShardMap
from .common import ASK_TRIES, RETRY_PAUSE, RETRY_PAUSE_MAX
from .connections import Connections
from .control import ControlRequests
from .maps import MapSource
from .monitors import Monitors
from .outbox import Outbox
from .pending import PendingTable
from .reachability import NodeWatch, Reachability
from .requests import MAX_RESENDS, RESENDABLE, ActorRequest, Pending, Wording, describe, resend_pause
from .timeouts import TIMEOUT_POLLS as TIMEOUT_POLLS
from .timeouts import TIMEOUT_REFRESH_S as TIMEOUT_REFRESH_S
from .timeouts import TimeoutPoll
from .waits import BlockingWait

log = get_logger("client")

_NOBLOCK = int(zmq.NOBLOCK)
_BATCH = wire.BATCH


class AsyncTransport(ControlRequests, MapSource):
    """Routes requests to worker slots from an asyncio loop and matches their replies;
    its control requests (map, status, ping, list, a supervisor's command) are
    :class:`~.control.ControlRequests`, its shard map :class:`~.maps.MapSource`.

    Made in (or, with ``loop``, for) the loop it runs on; ``wording`` words the
    transport's own errors (see :class:`Wording`). Its parts (``pending``, ``timeouts``,
    ``conns``, ``waits``) are for its mixins and helpers, not for its callers.
    """

    def __init__(self, ctx: Context, router_endpoint: str | None, *,
                 shard_map: ShardMap | None = None, max_message_bytes: int = 1 << 20,
                 max_pending: int = 100_000, default_timeout: float = 30.0,
                 keys: CurveKeys | None = None, loop: asyncio.AbstractEventLoop | None = None,
                 wording: Wording | None = None, coalesce: bool = True) -> None:
        self.ctx = ctx
        self.keys = keys            # CURVE client keys for tcp endpoints (None: none)
        #: why the last handshake with the router failed (tcp), and whether it is final
        self.handshake_problem: str | None = None
        self.refused: str | None = None
        self.loop = asyncio.get_running_loop() if loop is None else loop
        self.wording = Wording() if wording is None else wording
        self.router_endpoint = router_endpoint
        #: every router endpoint a client may ask (a cluster's), the one in use first
        self.routers: list[str] = [] if router_endpoint is None else [router_endpoint]
        self.map = shard_map
        self.max_message_bytes = max_message_bytes
        self.max_pending = max_pending
        self.default_timeout = default_timeout
        self.tree_endpoint: str | None = None      # from the router's map
        #: the gateway's endpoint for subscribers, from the router's map (None: no gateway)
        self.subscribers: str | None = None
        self._ids = itertools.count(1)
        #: the first half of this transport's ask ids (see :meth:`request_ctx`)
        self.client_id = os.urandom(8)
        #: this transport's routing id on every worker slot's ROUTER (never one ZeroMQ
        #: makes up: those begin with a zero byte): a follower of a replicated shard may
        #: deliver the leader's reply to an ask on its own slot connection (see :meth:`_via`)
        self.routing_id = b"c" + self.client_id
        self._refreshing: asyncio.Future[ShardMap] | None = None
        #: the map fetches that asks timing out start, and the asks held for them
        self.timeouts = TimeoutPoll(self)
        #: the requests awaiting their replies, and the actor requests' deadlines
        self.pending = PendingTable(self.loop, self.wording, self.timeouts.start)
        #: the connections to the worker slots, the router and other endpoints
        self.conns = Connections(self, self._on_reply, Monitors(self))
        #: a blocking caller's wait on the slot connections (:meth:`block_on`)
        self.waits = BlockingWait(self, self._on_reply)
        #: what this turn of the loop sends to each slot, sent as one frame when the loop
        #: goes idle (:mod:`.outbox`); None: each message sent at the call (``coalesce``
        #: false: a blocking client's lane, whose loop runs only while a caller waits)
        self.outbox = Outbox(self.loop, max_message_bytes, self._fail_unsent) if coalesce else None
        if self.outbox is not None and shard_map is not None:
            self.outbox.enabled = shard_map.batches
        #: called with a slot number when that slot's connection drops (after failing its asks)
        self.on_slot_lost: Callable[[int], None] | None = None
        #: called with this transport after it installed a new map (see :meth:`set_map`)
        self.on_map: Callable[[AsyncTransport], None] | None = None
        #: fail fast when the node is unreachable (None: not watched; see :meth:`watch_node`)
        self.watch: NodeWatch | None = None
        self.closed = False
        if shard_map is not None:
            self._use_server_keys(shard_map)

    def watch_node(self, grace: float, state: Reachability | None = None) -> None:
        """Watch the router's connection (opened now) and the slots': a node unreachable
        for ``grace`` seconds fails fast (see :mod:`.reachability`), ``state`` shared with
        the client's other transports if given. For clients; call it before the first
        request."""
        self.watch = NodeWatch(self, grace, state)
        self.watch.router = self.conns.router_conn()

    def drop_node(self, error: Callable[[Pending], ActorError]) -> int:
        """The node is unreachable: fail every pending request with ``error(p)`` and close
        the slots' connections with what is queued on them; how many failed."""
        n = self.pending.fail_all(error)
        self.conns.drop_slots()
        return n

    # -- connections: :class:`~.connections.Connections` ---------------------------------
    def keys_for(self, endpoint: str) -> CurveKeys | None:
        """The CURVE keys for a connection to ``endpoint``: with the server key of the
        cluster node behind it, if the map names one."""
        return self.conns.keys_for(endpoint)

    def _use_server_keys(self, shard_map: ShardMap) -> None:
        """The server keys of the map's nodes from now on; a slot connection made with
        another key (its node came back with a new key pair) is closed, its asks failed
        with WorkerLost."""
        lost = self.wording.lost
        for i in self.conns.use_server_keys(shard_map):
            self.pending.fail_where(i, lambda p: WorkerLost(lost(p.request, p.slot)))
            self.conns.close_slot(i)

    def forget_peer(self, endpoint: str) -> None:
        """Close the connection to ``endpoint`` (the next request makes a new one): a
        CURVE handshake the peer refused once (its guard did not know our key yet) is
        never retried by libzmq on that socket."""
        self.conns.forget_peer(endpoint)

    def connect_slot(self, slot: int) -> None:
        """Connect to a slot now (so its monitor reports the worker's death even before
        the first request)."""
        self.conns.slot(slot)

    def fail_slot(self, slot: int, exc: ActorError) -> None:
        """Fail every pending request sent to ``slot`` (or ROUTER, PEER) with ``exc``."""
        self.pending.fail_where(slot, lambda _p: exc)

    # -- replies -------------------------------------------------------------------------
    def _on_reply(self, frames: list[bytes]) -> None:
        try:
            msg = wire.unpack(frames[-1])
            batch = msg[2] if msg[0] == _BATCH else None
        except Exception:
            return  # not ours to answer; a malformed reply is dropped
        if batch is None:
            return self._reply(msg)
        for reply in batch:           # a worker's replies of one commit (wire: "Coalescing")
            try:
                self._reply(wire.unpack(reply))
            except Exception:         # one bad reply costs only its own ask (its deadline)
                log.warning("a malformed reply in a batch from a worker was dropped", exc_info=True)

    def _reply(self, msg: Any) -> None:
        try:
            kind, rid, body = msg[0], msg[1], msg[2]
        except Exception:
            return
        p = self.pending.entries.pop(rid, None)
        if p is None:
            return  # late reply to a request that timed out or was failed
        if p.timer is not None:
            p.timer.cancel()
        fut = p.fut
        if fut.done():
            return
        if kind == wire.OK:
            fut.set_result(body)
            if len(msg) > 3:
                self._via(msg[3])
            return
        exc = error_from_wire(body)
        request = p.request
        if isinstance(exc, WrongShard) and isinstance(request, RESENDABLE) \
                and p.retries < MAX_RESENDS:
            log.debug("%s: wrong shard (epoch %s); resending after a map refresh (%d of %d)",
                      describe(request), getattr(exc, "epoch", None), p.retries + 1, MAX_RESENDS)
            self.loop.create_task(self._resend_after_refresh(fut, request, p))
            return
        fut.set_exception(exc)

    def _via(self, endpoint: Any) -> None:
        """A leader's reply named ``endpoint``: the worker of a follower of the shard that
        could have delivered it (replicated shards, issue 16: the follower that holds a
        write sends the leader's reply on, one hop fewer than the leader waiting for its
        answer), had this transport been connected there. Connect to it (only a worker
        of the map's); a blocking wait polls every slot connection (:meth:`poll_slots`): a
        follower delivers on whichever this transport has to its worker."""
        m = self.map
        if m is None or self.closed or not isinstance(endpoint, str):
            return
        try:
            j = m.endpoints.index(endpoint)
        except ValueError:
            return
        self.conns.slot(j)

    async def _resend_after_refresh(self, fut: asyncio.Future[Any], request: ActorRequest,
                                    p: Pending) -> None:
        """Resend ``p`` after its pause and a map refresh, within its deadline."""
        try:
            pause = resend_pause(p.retries)
            left = p.deadline - self.loop.time()
            if left <= pause:        # no time for another try: fail at the deadline, as any ask
                await asyncio.sleep(max(left, 0.0))
                raise AskTimeout(self.wording.timed_out(request, p.timeout))
            if pause:
                await asyncio.sleep(pause)
            await self.refresh_map(timeout=min(10.0, max(p.deadline - self.loop.time(), 0.001)))
            inner = self.send(request._replace(rid=next(self._ids)), p.timeout, p.retries + 1,
                              deadline=p.deadline)
            fut.set_result(await inner.fut)
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)

    # -- actor requests ------------------------------------------------------------------
    def _check_size(self, payload: bytes) -> None:
        if len(payload) > self.max_message_bytes:
            raise MessageTooLarge(
                f"message is {len(payload)} bytes; the node's max_message_bytes is {self.max_message_bytes}")

    def new_id(self) -> int:
        """A fresh request id, for a request given to :meth:`send`."""
        return next(self._ids)

    def _sendable(self) -> ShardMap:
        """The map to send an actor request or tell by; NodeUnavailable if there is none,
        the client is closed, or the node is unreachable (fail fast)."""
        if self.closed:
            raise NodeUnavailable("client is closed")
        if self.map is None:
            raise NodeUnavailable("no shard map yet")
        if self.watch is not None:
            self.watch.check()
        return self.map

    def send(self, request: ActorRequest, timeout: float, retries: int = 0,
             deadline: float | None = None, hold: bool = True) -> Pending:
        """Send an actor request (an Ask, Spawn or Stop made with :meth:`new_id`) to the
        slot that owns its actor; its record's future resolves to the result or the error.
        ``deadline`` (loop time; default now + ``timeout``): a resend keeps the first's.
        ``hold``: a request to a slot whose asks just timed out waits for the map fetch
        they started (:class:`~.timeouts.TimeoutPoll`); False: sent now."""
        shard_map = self._sendable()
        if len(self.pending.entries) >= self.max_pending:
            raise Overloaded(f"{len(self.pending.entries)} asks already pending (max_pending_asks)")
        slot = shard_map.slot_of(request.type_name, request.key)
        suspects = self.timeouts.suspects
        if hold and suspects and slot in suspects:   # (see .timeouts)
            return self.timeouts.hold(request, slot, timeout, retries, deadline)
        payload = request.encode()
        self._check_size(payload)
        self._send(slot, payload, request.rid)
        if deadline is None:
            deadline = self.loop.time() + timeout
        p = Pending(self.loop.create_future(), slot, request, timeout, retries, None, deadline)
        self.pending.add(p)
        return p

    def _send(self, slot: int, payload: bytes, rid: int) -> None:
        """Send a message to a worker slot: queued for this turn's batch (:mod:`.outbox`),
        or at once; Overloaded if the slot's send queue is full."""
        c = self.conns.slot(slot)
        if self.outbox is not None:
            self.outbox.add(c, slot, payload, rid)
            return
        # A drop that already happened concerns only asks sent before it: handle it now,
        # so this ask (queued for the restarted worker) is not failed with them.
        c.drain_monitor()
        try:
            c.sock.send(payload, _NOBLOCK)
        except zmq.Again:
            raise Overloaded(f"send queue to worker slot {slot} is full") from None
        c.pump.kick()

    def _fail_unsent(self, rids: list[int], exc: ActorError) -> None:
        """Asks whose batch could not be sent (:mod:`.outbox`) fail with ``exc``."""
        for rid in rids:
            p = self.pending.entries.pop(rid, None)
            if p is None:
                continue
            if p.timer is not None:
                p.timer.cancel()
            if not p.fut.done():
                p.fut.set_exception(exc)

    def flush(self) -> None:
        """Send what this turn of the loop has queued now (:mod:`.outbox`)."""
        if self.outbox is not None:
            self.outbox.flush()

    def request_ctx(self, rid: int, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        """The call context of the ask ``rid``: ``ctx`` with this client's request id for
        it, unless ``ctx`` has one already (the one place an ask's id is made), and the
        current OpenTelemetry span's context, if a span is current and ``ctx`` names
        none (``actorsys/tracing.py``)."""
        trace = tracing.current()
        if ctx is None:
            ctx = {"id": self.client_id + rid.to_bytes(8, "big")}
        elif "id" not in ctx:
            ctx = {**ctx, "id": self.client_id + rid.to_bytes(8, "big")}
        if trace is not None and "trace" not in ctx:
            ctx = {**ctx, "trace": trace}
        return ctx

    def ask(self, type_name: str, key: str, method: str, args: Any = (), kwargs: Any = None,
            timeout: float | None = None, ctx: dict[str, Any] | None = None,
            retry: bool = False) -> asyncio.Future[Any]:
        """Send an ask (with the call context ``ctx``, see :mod:`actorsys.protocol.wire`,
        and a request id); the returned future resolves to the result or the error.
        ``retry``: resend it with the same id after WorkerLost (not NodeUnavailable), within
        the one deadline (see the module docstring)."""
        rid = next(self._ids)
        timeout = self.default_timeout if timeout is None else timeout
        request = Ask(rid, type_name, key, method, list(args), kwargs or {},
                      self.request_ctx(rid, ctx))
        if not retry:
            return self.send(request, timeout).fut
        return self.loop.create_task(self._retrying(request, self.loop.time() + timeout))

    async def _retrying(self, request: Ask, deadline: float) -> Any:
        """The outcome of an ask, sent again with the same request id while it fails with
        WorkerLost, until its deadline or its last attempt. Not after NodeUnavailable: a
        node unreachable for ``connect_timeout`` fails fast, retry or not (a node that
        comes back within it loses nothing: what is sent meanwhile waits for it)."""
        tries = 1
        while True:
            try:
                return await self.send(request, max(deadline - self.loop.time(), 0.001)).fut
            except WorkerLost as exc:
                pause = min(RETRY_PAUSE * 2 ** (tries - 1), RETRY_PAUSE_MAX)
                if self.closed or tries >= ASK_TRIES or deadline - self.loop.time() - pause <= 0:
                    raise
                log.debug("%s: %s; retrying with the same request id (attempt %d of %d)",
                          describe(request), exc, tries + 1, ASK_TRIES)
            await asyncio.sleep(pause)
            tries += 1
            request = request._replace(rid=next(self._ids))

    def spawn(self, type_name: str, key: str, timeout: float | None = None) -> asyncio.Future[Any]:
        """Activate an actor now; the future resolves when its ``on_start`` has committed."""
        return self.send(Spawn(next(self._ids), type_name, key),
                         self.default_timeout if timeout is None else timeout).fut

    def control_actor(self, op: int, type_name: str, key: str, opts: dict[str, Any],
                      timeout: float) -> asyncio.Future[Any]:
        """A supervision request (SPAWN or STOP with options) to the slot owning an actor."""
        rid = next(self._ids)
        request = Spawn(rid, type_name, key, opts) if op == wire.SPAWN else Stop(rid, type_name, key, opts)
        return self.send(request, timeout).fut

    def poll_slots(self, c: Conn, timeout_ms: int, more: Socket | None = None) -> dict[Any, int]:
        """For a caller that blocks instead of running the loop (:meth:`block_on`): wait up
        to ``timeout_ms`` for ``c``'s socket or monitor, any other slot connection's
        socket (a follower of a replicated shard delivers the leader's reply on whichever
        connection this transport has to its worker: :meth:`_via`) or ``more`` to be
        readable; the ready ones (:class:`~.waits.BlockingWait`)."""
        return self.waits.poll_slots(c, timeout_ms, more)

    def block_on(self, p: Pending, until: float) -> None:
        """For a caller that blocks its thread instead of running the loop (the blocking
        client, see :mod:`.lanes`): wait on the slot connections until ``p`` is settled
        by a reply or a drop, or until ``until`` (loop time), handling what arrives as
        the loop would. Returns early, unsettled, when ``p`` needs the loop (a resend
        after wrong_shard, a map fetch); its deadline is the loop's to enforce
        (:class:`~.waits.BlockingWait`)."""
        self.waits.block_on(p, until)

    def tell(self, type_name: str, key: str, method: str, args: Any = (), kwargs: Any = None,
             ctx: dict[str, Any] | None = None) -> None:
        """Send a one-way message (at-most-once); with no ``ctx``, the current
        OpenTelemetry span's context if a span is current."""
        slot = self._sendable().slot_of(type_name, key)
        if ctx is None:
            trace = tracing.current()
            ctx = {"trace": trace} if trace is not None else None
        payload = Tell(0, type_name, key, method, list(args), kwargs or {}, ctx).encode()
        self._check_size(payload)
        self._send(slot, payload, 0)
        if self.watch is not None:
            self.watch.sent_tell()

    def pending_count(self) -> int:
        return len(self.pending.entries)

    def close(self, linger_ms: int = 0) -> None:
        """Fail what is pending and close every socket; ``linger_ms``: how long messages
        still queued (a tell just sent) may take to leave."""
        if self.closed:
            return
        self.flush()          # (a tell queued this turn leaves within the linger)
        self.closed = True
        self.timeouts.close()
        if self.watch is not None:
            self.watch.close()
        self.pending.close()
        self.conns.close(linger_ms)
        self.waits.forget()
