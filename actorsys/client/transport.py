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
  same endpoint. A drop that happened before a send does not concern that send.
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
  full refuses at once; both raise :class:`~actorsys.errors.Overloaded`. A message
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
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import os
from functools import partial
from typing import Any, Callable, cast

import zmq
from zmq.utils.monitor import parse_monitor_message

from .. import tracing
from ..errors import (ActorError, AskTimeout, MessageTooLarge, NodeUnavailable, Overloaded,
                      WorkerLost, WrongShard, error_from_wire)
from ..log import get_logger
from ..net.keys import CLIENT_HANDSHAKE_EVENTS, CurveKeys, handshake_problem, uses_curve
from ..net.members import server_keys
from ..net.sockets import Conn, Context, Socket
from ..protocol import wire
from ..protocol.messages import Ask, Spawn, Stop, Tell
from ..protocol.shardmap import ShardMap
from .common import ASK_TRIES, RETRY_PAUSE, RETRY_PAUSE_MAX
from .control import ControlRequests
from .maps import MapSource
from .reachability import WATCH_EVENTS, NodeWatch, Reachability
from .requests import (MAX_RESENDS, PEER, RESENDABLE, ROUTER, ActorRequest, Pending, Wording,
                       describe, resend_pause)

log = get_logger("client")
#: seconds between the map fetches that asks timing out on a cluster's map start, and
#: how many at most (until the map changes): a frozen node's lease expires and its
#: shards fail over within lease_ttl + about a second
TIMEOUT_REFRESH_S, TIMEOUT_POLLS = 0.5, 40

_NOBLOCK, _EVENTS, _POLLIN = int(zmq.NOBLOCK), int(zmq.EVENTS), int(zmq.POLLIN)


class AsyncTransport(ControlRequests, MapSource):
    """Routes requests to worker slots from an asyncio loop and matches their replies;
    its control requests (map, status, ping, list, a supervisor's command) are
    :class:`~.control.ControlRequests`.

    Made in (or, with ``loop``, for) the loop it runs on; ``wording`` words the
    transport's own errors (see :class:`Wording`).
    """

    def __init__(self, ctx: Context, router_endpoint: str | None, *,
                 shard_map: ShardMap | None = None, max_message_bytes: int = 1 << 20,
                 max_pending: int = 100_000, default_timeout: float = 30.0,
                 keys: CurveKeys | None = None, loop: asyncio.AbstractEventLoop | None = None,
                 wording: Wording | None = None) -> None:
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
        #: endpoint -> the CURVE server key of the cluster node behind it (net/members.py)
        self.server_keys: dict[str, bytes] = {}
        self.max_message_bytes = max_message_bytes
        self.max_pending = max_pending
        self.default_timeout = default_timeout
        self.tree_endpoint: str | None = None      # from the router's map
        self._ids = itertools.count(1)
        #: the first half of this transport's ask ids (see :meth:`request_ctx`)
        self.client_id = os.urandom(8)
        #: this transport's routing id on every worker slot's ROUTER (never one ZeroMQ
        #: makes up: those begin with a zero byte): a follower of a replicated shard may
        #: deliver the leader's reply to an ask on its own slot connection (see :meth:`_via`)
        self.routing_id = b"c" + self.client_id
        self._pending: dict[int, Pending] = {}
        self._slots: dict[int, Conn] = {}
        #: a blocking wait's poller (:meth:`poll_slots`): the connections and the other
        #: socket it was made for, and the poller
        self._wait_poller: tuple[tuple[Conn, ...], Socket | None, zmq.Poller] | None = None
        self._router: Conn | None = None
        self._peers: dict[str, Conn] = {}          # other endpoints (the tree, the gateway)
        #: each other endpoint's ``slot`` number in the pending table (PEER and below)
        self._peer_tags: dict[str, int] = {}
        self._refreshing: asyncio.Future[ShardMap] | None = None
        self._deadlines: list[tuple[float, int]] = []
        self._sweep_at: float | None = None
        self._sweep_handle: asyncio.TimerHandle | None = None
        #: the map fetches that asks timing out started (see _refresh_after_timeout)
        self._timeout_poll: asyncio.Task[None] | None = None
        #: slots whose asks timed out while that fetch runs: new asks to them wait for it
        self._suspects: set[int] = set()
        #: called with a slot number when that slot's connection drops (after failing its asks)
        self.on_slot_lost: Callable[[int], None] | None = None
        #: called with this transport after it installed a new map (see :meth:`set_map`)
        self.on_map: Callable[[AsyncTransport], None] | None = None
        #: fail fast when the node is unreachable (None: not watched; see :meth:`watch_node`)
        self.watch: NodeWatch | None = None
        self.closed = False
        if shard_map is not None:
            self._use_server_keys(shard_map)

    # -- map: :class:`~.maps.MapSource` ------------------------------------------

    def watch_node(self, grace: float, state: Reachability | None = None) -> None:
        """Watch the router's connection (opened now) and the slots': a node unreachable
        for ``grace`` seconds fails fast (see :mod:`.reachability`), ``state`` shared with
        the client's other transports if given. For clients; call it before the first
        request."""
        self.watch = NodeWatch(self, grace, state)
        self.watch.router = self._router_conn()

    def drop_node(self, error: Callable[[Pending], ActorError]) -> int:
        """The node is unreachable: fail every pending request with ``error(p)`` and close
        the slots' connections with what is queued on them; how many failed."""
        n = 0
        for slot in {p.slot for p in self._pending.values()}:
            n += self._fail_where(slot, error)
        self._drop_slots()
        return n

    # -- sockets ---------------------------------------------------------------
    def _slot(self, i: int) -> Conn:
        c = self._slots.get(i)
        if c is None:
            if self.closed:
                raise NodeUnavailable("client is closed")
            if self.map is None:
                raise NodeUnavailable("no shard map yet")
            endpoint = self.map.endpoints[i]
            c = Conn(self.loop, self.ctx, endpoint, self.keys_for(endpoint), self._on_reply,
                     WATCH_EVENTS if self.watch else zmq.EVENT_DISCONNECTED,
                     partial(self._on_monitor, i), routing_id=self.routing_id)
            self._slots[i] = c
        return c

    def keys_for(self, endpoint: str) -> CurveKeys | None:
        """The CURVE keys for a connection to ``endpoint``: with the server key of the
        cluster node behind it, if the map names one."""
        return self.keys.for_server(self.server_keys.get(endpoint)) if self.keys else None

    def _use_server_keys(self, shard_map: ShardMap) -> None:
        """The server keys of the map's nodes from now on; a slot connection made with
        another key (its node came back with a new key pair) is closed, its asks failed
        with WorkerLost."""
        keys = server_keys(getattr(shard_map, "nodes", None), shard_map.endpoints)
        if keys == self.server_keys:
            return
        old, self.server_keys = self.server_keys, keys
        if self.keys is None:
            return
        lost = self.wording.lost
        for i in [i for i in self._slots if i < len(shard_map.endpoints)]:
            ep = shard_map.endpoints[i]
            if old.get(ep) != keys.get(ep):
                self._fail_where(i, lambda p: WorkerLost(lost(p.request, p.slot)))
                self._slots.pop(i).close()

    def _router_conn(self) -> Conn:
        if self._router is None:
            if self.router_endpoint is None:
                raise NodeUnavailable("no router endpoint known")
            curve = uses_curve(self.router_endpoint)
            watched = self.watch is not None
            self._router = Conn(self.loop, self.ctx, self.router_endpoint, self.keys,
                                 self._on_reply,
                                 (CLIENT_HANDSHAKE_EVENTS if curve else 0)
                                 | (WATCH_EVENTS if watched else 0),
                                 self._on_router_event if curve or watched else None,
                                 *(self.watch.heartbeat() if self.watch is not None else ()))
        return self._router

    def forget_peer(self, endpoint: str) -> None:
        """Close the connection to ``endpoint`` (the next request makes a new one): a
        CURVE handshake the peer refused once (its guard did not know our key yet) is
        never retried by libzmq on that socket."""
        c = self._peers.pop(endpoint, None)
        if c is not None:
            c.close()

    def _peer(self, endpoint: str) -> Conn:
        c = self._peers.get(endpoint)
        if c is None:
            keys = self.keys_for(endpoint)
            c = self._peers[endpoint] = Conn(
                self.loop, self.ctx, endpoint, keys, self._on_reply,
                zmq.EVENT_DISCONNECTED
                | (zmq.EVENT_HANDSHAKE_FAILED_AUTH if keys is not None else 0),
                partial(self._on_peer_event, endpoint))
        return c

    def _peer_tag(self, endpoint: str) -> int:
        tag = self._peer_tags.get(endpoint)
        if tag is None:
            tag = self._peer_tags[endpoint] = PEER - len(self._peer_tags)
        return tag

    def _on_peer_event(self, endpoint: str, frames: list[bytes]) -> None:
        """The connection to a peer dropped (its process died, say): what is in flight
        there fails now with WorkerLost. A peer refused our CURVE key: ZeroMQ does not
        connect again, so the connection is dropped and the next request makes a new one
        (another node of a cluster lets our key in once its router has told its workers
        the members' keys)."""
        try:
            event = parse_monitor_message(frames)["event"]
        except Exception:
            return
        if event == zmq.EVENT_DISCONNECTED:
            tag = self._peer_tags.get(endpoint)
            if tag is not None:
                n = self._fail_where(tag, lambda _p: WorkerLost(
                    f"the connection to {endpoint} dropped with the request in flight (its "
                    f"process died?): it may or may not have been carried out"))
                if n:
                    log.info("the connection to %s dropped: %d request(s) in flight failed",
                             endpoint, n)
            return
        c = self._peers.get(endpoint)
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH and c is not None:
            log.info("%s refused this process's CURVE key; connecting again at the next request",
                     endpoint)
            del self._peers[endpoint]
            self.loop.call_soon(c.close)      # not from within its own monitor's callback

    def _on_router_event(self, frames: list[bytes]) -> None:
        try:
            event = parse_monitor_message(frames)["event"]
        except Exception:
            return
        if self.watch is not None and event & WATCH_EVENTS:
            self.watch.on_router_event(event)
            return
        assert self.router_endpoint is not None
        final, self.handshake_problem = handshake_problem(event, self.router_endpoint, self.keys)
        if final:   # ZeroMQ does not reconnect after a refusal: fail now, not at the deadline
            self.refused = self.handshake_problem
            self.fail_slot(ROUTER, NodeUnavailable(self.refused))

    def _on_monitor(self, slot: int, frames: list[bytes]) -> None:
        try:
            event = parse_monitor_message(frames)["event"]
        except Exception:
            return
        if self.watch is not None:
            self.watch.on_slot_event(slot, event)
        if event == zmq.EVENT_DISCONNECTED:
            lost = self.wording.lost
            n = self._fail_where(slot, lambda p: WorkerLost(lost(p.request, slot)))
            log.debug("worker slot %d went away; %d request(s) in flight failed", slot, n)
            if self.on_slot_lost is not None:
                self.on_slot_lost(slot)

    def connect_slot(self, slot: int) -> None:
        """Connect to a slot now (so its monitor reports the worker's death even before
        the first request)."""
        self._slot(slot)

    def fail_slot(self, slot: int, exc: ActorError) -> None:
        """Fail every pending request sent to ``slot`` (or ROUTER, PEER) with ``exc``."""
        self._fail_where(slot, lambda _p: exc)

    def _fail_where(self, slot: int, error: Callable[[Pending], ActorError]) -> int:
        rids = [rid for rid, p in self._pending.items() if p.slot == slot]
        for rid in rids:
            p = self._pending.pop(rid)
            if p.timer is not None:
                p.timer.cancel()
            if not p.fut.done():
                p.fut.set_exception(error(p))
        return len(rids)

    def _on_reply(self, frames: list[bytes]) -> None:
        try:
            msg = wire.unpack(frames[-1])
            kind, rid, body = msg[0], msg[1], msg[2]
        except Exception:
            return  # not ours to answer; a malformed reply is dropped
        p = self._pending.pop(rid, None)
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
        self._slot(j)

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

    # -- actor requests ----------------------------------------------------------
    def _add_deadline(self, deadline: float, rid: int) -> None:
        """Track an ask's deadline in one heap swept by one timer (a timer per ask cost
        about a quarter of a pipelining client's CPU)."""
        heap = self._deadlines
        if len(heap) > 2 * len(self._pending) + 1024:   # answered asks leave stale entries
            self._deadlines = heap = [e for e in heap if e[1] in self._pending]
            heapq.heapify(heap)
        heapq.heappush(heap, (deadline, rid))
        if self._sweep_at is None or deadline < self._sweep_at:
            if self._sweep_handle is not None:
                self._sweep_handle.cancel()
            self._sweep_at = deadline
            self._sweep_handle = self.loop.call_at(deadline, self._sweep)

    def _sweep(self) -> None:
        self._sweep_at = self._sweep_handle = None
        now = self.loop.time()
        heap, pending = self._deadlines, self._pending
        expired: set[int] = set()
        while heap and heap[0][0] <= now:
            _, rid = heapq.heappop(heap)
            p = pending.pop(rid, None)
            if p is not None and not p.fut.done():
                p.fut.set_exception(AskTimeout(self.wording.timed_out(p.request, p.timeout)))
                expired.add(p.slot)
        if expired:
            self._refresh_after_timeout(now, expired)
        if heap:
            self._sweep_at = heap[0][0]
            self._sweep_handle = self.loop.call_at(self._sweep_at, self._sweep)

    def _refresh_after_timeout(self, now: float, slots: set[int]) -> None:
        """Asks to ``slots`` timed out on a cluster's map: the node they went to may be
        paused or cut off, its connections still up (nothing tells the client), and its
        lease about to expire and (replicated) its shards to fail over. Fetch the map
        again, and again every :data:`TIMEOUT_REFRESH_S` until it changes (at most
        :data:`TIMEOUT_POLLS` times): the new map sends the next asks to the new leaders,
        and fails the asks still in flight on a node that left it with ``WorkerLost`` at
        once rather than at their deadline. Until the first fetch is in, new asks to those
        slots wait for it (:meth:`send`) rather than go to the node that did not answer."""
        m = self.map
        if m is None or m.nodes is None or self.closed:
            return
        if self._timeout_poll is not None:         # polling already: hold their asks too
            if self._refreshing is not None and not self._refreshing.done():
                self._suspects |= slots
            return
        self._suspects |= slots
        epoch = m.epoch

        async def poll() -> None:
            try:
                for _ in range(TIMEOUT_POLLS):
                    got = None
                    try:
                        got = await self.refresh_map(timeout=TIMEOUT_REFRESH_S * 4)
                    except Exception as exc:     # (a router down: the reachability watch says so)
                        log.debug("fetching the map after asks timed out failed: %s", exc)
                    finally:
                        self._suspects.clear()
                    if self.closed or (got is not None and got.epoch != epoch):
                        return
                    await asyncio.sleep(TIMEOUT_REFRESH_S)
            finally:
                self._timeout_poll = None
        self._timeout_poll = self.loop.create_task(poll())

    async def _send_after_refresh(self, fut: asyncio.Future[Any], request: ActorRequest,
                                  p: Pending) -> None:
        """An ask held by :meth:`send` while the map is fetched again: sent then, on the
        new map, within its one deadline. A fetch that failed (the router did not answer
        in time) sends it on the map there is; a close fails it with NodeUnavailable."""
        try:
            left = p.deadline - self.loop.time()
            refreshing = self._refreshing
            if refreshing is not None and not refreshing.done():
                # Waited for, not awaited: the fetch's error is not the ask's. (Awaited, a
                # fetch that gave up failed the ask with the router's NodeUnavailable before
                # its own deadline, and close() with CancelledError, the poll's.)
                await asyncio.wait((refreshing,), timeout=max(left, 0.001))
                if not refreshing.done():
                    raise AskTimeout(self.wording.timed_out(request, p.timeout))
            inner = self.send(request, p.timeout, p.retries, deadline=p.deadline, hold=False)
            fut.set_result(await inner.fut)
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)

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
        they started (:meth:`_refresh_after_timeout`); False: sent now."""
        shard_map = self._sendable()
        if len(self._pending) >= self.max_pending:
            raise Overloaded(f"{len(self._pending)} asks already pending (max_pending_asks)")
        slot = shard_map.slot_of(request.type_name, request.key)
        if hold and self._suspects and slot in self._suspects:   # (see _refresh_after_timeout)
            held = Pending(self.loop.create_future(), slot, request, timeout, retries, None,
                           self.loop.time() + timeout if deadline is None else deadline)
            self.loop.create_task(self._send_after_refresh(held.fut, request, held))
            return held
        payload = request.encode()
        self._check_size(payload)
        c = self._slot(slot)
        # A drop that already happened concerns only asks sent before it: handle it now,
        # so this ask (queued for the restarted worker) is not failed with them.
        c.drain_monitor()
        fut = self.loop.create_future()
        try:
            c.sock.send(payload, _NOBLOCK)
        except zmq.Again:
            raise Overloaded(f"send queue to worker slot {slot} is full") from None
        if deadline is None:
            deadline = self.loop.time() + timeout
        p = self._pending[request.rid] = Pending(fut, slot, request, timeout, retries, None, deadline)
        self._add_deadline(deadline, request.rid)
        c.pump.kick()
        return p

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
        readable; the ready ones. The poller is made again only when they change."""
        conns = (c, *self._slots.values())       # (c is one of them: its monitor too)
        made = self._wait_poller
        if made is None or made[0] != conns or made[1] is not more:
            poller = zmq.Poller()
            for s in (c.monitor, more, *(x.sock for x in conns[1:])):
                if s is not None:
                    poller.register(s, zmq.POLLIN)
            made = self._wait_poller = (conns, more, poller)
        return dict(made[2].poll(timeout_ms))

    def block_on(self, p: Pending, until: float) -> None:
        """For a caller that blocks its thread instead of running the loop (the blocking
        client, see :mod:`.lanes`): wait on the slot connections (:meth:`poll_slots`: ``p``'s
        socket and monitor, the other slots' sockets) until ``p`` is settled by a reply or
        a drop, or until ``until`` (loop time), handling what arrives as the loop would.
        Returns early, unsettled, when ``p`` needs the loop (a resend after wrong_shard);
        its deadline is the loop's to enforce. While asks that timed out have the map
        polled (:meth:`_refresh_after_timeout`), it returns at once: the poll runs on the
        loop."""
        c = self._slots.get(p.slot)
        if c is None or self._timeout_poll is not None:     # (that poll needs the loop)
            return
        fut, rid, pending = p.fut, p.request.rid, self._pending
        on_reply, time = self._on_reply, self.loop.time
        poll = partial(self.poll_slots, c) if self.watch is None else partial(self.watch.poll, c)
        while not fut.done() and rid in pending:
            ms = math.ceil((until - time()) * 1000)
            if ms <= 0:
                return
            ready = poll(ms)
            if not ready and self.watch is not None and self.watch.fetching:
                return               # a cluster's map is being fetched: that needs the loop
            # replies first (a drop after the reply is not its loss), on c's socket or on
            # another slot's (a follower delivering the leader's reply); a reply may make
            # a connection (a follower named: _via), hence the tuple
            for conn in tuple(self._slots.values()):
                sock = conn.sock
                if sock not in ready:
                    continue
                while cast(int, sock.getsockopt(_EVENTS)) & _POLLIN:
                    on_reply(sock.recv_multipart(_NOBLOCK))
                    if fut.done() or rid not in pending:
                        break        # what is left is read at the next wait or loop run
                conn.pump.kick()     # (its FD's edge was taken here: the loop looks again)
                if fut.done() or rid not in pending:
                    return
            if c.monitor is not None and c.monitor in ready:
                c.drain_monitor()

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
        c = self._slot(slot)
        try:
            c.sock.send(payload, _NOBLOCK)
        except zmq.Again:
            raise Overloaded(f"send queue to worker slot {slot} is full") from None
        if self.watch is not None:
            self.watch.sent_tell()
        c.pump.kick()

    def pending_count(self) -> int:
        return len(self._pending)

    def close(self, linger_ms: int = 0) -> None:
        """Fail what is pending and close every socket; ``linger_ms``: how long messages
        still queued (a tell just sent) may take to leave."""
        if self.closed:
            return
        self.closed = True
        if self._timeout_poll is not None:
            self._timeout_poll.cancel()
        if self.watch is not None:
            self.watch.close()
        for p in self._pending.values():
            if p.timer is not None:
                p.timer.cancel()
            if not p.fut.done():
                p.fut.set_exception(NodeUnavailable("client closed"))
                p.fut.exception()     # retrieved: a future nobody awaits any more is no error
        self._pending.clear()
        self._deadlines.clear()
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
        for c in self._slots.values():
            c.close(linger_ms)
        self._slots.clear()
        self._wait_poller = None
        for c in self._peers.values():
            c.close()
        self._peers.clear()
        if self._router is not None:
            self._router.close()
            self._router = None

