"""The asyncio side of the data path: requests to actors and their replies.

:class:`AsyncTransport` is what clients, the router and workers use to reach actors:
it holds the shard map, one DEALER socket per worker slot, and the table of pending
asks. Each message goes straight to the slot that owns the actor (one hop). A socket
monitor on every slot connection fails the asks in flight on a slot the moment its
connection drops (:class:`~actorsys.errors.WorkerLost`), while ZeroMQ keeps queueing
new messages for the slot until its worker is back on the same endpoint.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any, Callable

import zmq
from zmq.utils.monitor import parse_monitor_message

from ..errors import (ActorError, AskTimeout, MessageTooLarge, NodeUnavailable, Overloaded,
                      WorkerLost, WrongShard, error_from_wire)
from ..net.keys import CLIENT_HANDSHAKE_EVENTS, CurveKeys, handshake_problem, uses_curve
from ..net.sockets import SocketPump, dealer
from ..protocol import wire
from ..protocol.messages import Ask, Spawn, Stop, Tell
from ..protocol.shardmap import ShardMap

_NOBLOCK = int(zmq.NOBLOCK)


class _Slot:
    __slots__ = ("sock", "pump", "monitor", "monitor_pump")


class AsyncTransport:
    """Routes requests to worker slots from an asyncio loop and matches their replies."""

    def __init__(self, ctx: zmq.Context, router_endpoint: str | None, *,
                 shard_map: ShardMap | None = None, max_message_bytes: int = 1 << 20,
                 max_pending: int = 100_000, default_timeout: float = 30.0,
                 keys: CurveKeys | None = None) -> None:
        self.ctx = ctx
        self.keys = keys            # CURVE client keys for tcp endpoints (None: none)
        #: why the last handshake with the router failed (tcp), and whether it is final
        self.handshake_problem: str | None = None
        self.refused: str | None = None
        self.loop = asyncio.get_running_loop()
        self.router_endpoint = router_endpoint
        self.map = shard_map
        self.max_message_bytes = max_message_bytes
        self.max_pending = max_pending
        self.default_timeout = default_timeout
        self._ids = itertools.count(1)
        # id -> [future, slot, timer, request tuple or None, retries]
        self._pending: dict[int, list[Any]] = {}
        self._slots: dict[int, _Slot] = {}
        self._router: zmq.Socket | None = None
        self._router_pump: SocketPump | None = None
        self._router_monitor: tuple[zmq.Socket, SocketPump] | None = None
        self._refreshing: asyncio.Future | None = None
        self._deadlines: list[tuple[float, int]] = []
        self._sweep_at: float | None = None
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._peers: dict[str, tuple[zmq.Socket, SocketPump]] = {}   # other endpoints (the tree)
        #: called with a slot number when that slot's connection drops (after failing its asks)
        self.on_slot_lost: Callable[[int], None] | None = None
        self.tree_endpoint: str | None = None      # from the router's map
        self.closed = False

    # -- map -----------------------------------------------------------------
    async def refresh_map(self, timeout: float = 10.0) -> ShardMap:
        """Fetch the shard map from the router (one request at a time)."""
        if self._refreshing is not None and not self._refreshing.done():
            return await asyncio.shield(self._refreshing)
        fut = self.loop.create_future()
        self._refreshing = fut
        try:
            raw = await self.call_router(wire.MAP, timeout=timeout)
            m = ShardMap.from_wire(raw)
            self.max_message_bytes = int(raw.get("max_message_bytes", self.max_message_bytes))
            self.tree_endpoint = raw.get("tree")
            if self.map is not None and m.endpoints != self.map.endpoints:
                self._drop_slots()
            self.map = m
            fut.set_result(m)
            return m
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved
            raise

    def _drop_slots(self) -> None:
        for s in self._slots.values():
            self._close_slot(s)
        self._slots.clear()

    # -- sockets ---------------------------------------------------------------
    def _slot(self, i: int) -> _Slot:
        s = self._slots.get(i)
        if s is None:
            assert self.map is not None
            s = _Slot()
            s.sock = dealer(self.ctx, self.map.endpoints[i], self.keys)
            s.pump = SocketPump(self.loop, s.sock, self._on_reply)
            s.monitor = s.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            s.monitor_pump = SocketPump(self.loop, s.monitor, lambda f, i=i: self._on_monitor(i, f))
            self._slots[i] = s
        return s

    def _router_sock(self) -> zmq.Socket:
        if self._router is None:
            if self.router_endpoint is None:
                raise NodeUnavailable("no router endpoint known")
            self._router = dealer(self.ctx, self.router_endpoint, self.keys)
            if uses_curve(self.router_endpoint):
                mon = self._router.get_monitor_socket(CLIENT_HANDSHAKE_EVENTS)
                self._router_monitor = (mon, SocketPump(self.loop, mon, self._on_router_event))
            self._router_pump = SocketPump(self.loop, self._router, self._on_reply)
        return self._router

    def _on_router_event(self, frames: list[bytes]) -> None:
        try:
            event = parse_monitor_message(frames)["event"]
        except Exception:
            return
        assert self.router_endpoint is not None
        final, self.handshake_problem = handshake_problem(event, self.router_endpoint, self.keys)
        if final:   # ZeroMQ does not reconnect after a refusal: fail now, not at the deadline
            self.refused = self.handshake_problem
            self.fail_slot(-1, NodeUnavailable(self.refused))

    def _on_monitor(self, slot: int, frames: list[bytes]) -> None:
        try:
            event = parse_monitor_message(frames)["event"]
        except Exception:
            return
        if event == zmq.EVENT_DISCONNECTED:
            self.fail_slot(slot, WorkerLost(
                f"worker slot {slot} went away while the request was in flight; "
                f"it may or may not have been processed"))
            if self.on_slot_lost is not None:
                self.on_slot_lost(slot)

    def connect_slot(self, slot: int) -> None:
        """Connect to a slot now (so its monitor reports the worker's death even before
        the first request)."""
        self._slot(slot)

    def fail_slot(self, slot: int, exc: ActorError) -> None:
        """Fail every pending request sent to ``slot``."""
        for rid in [rid for rid, p in self._pending.items() if p[1] == slot]:
            p = self._pending.pop(rid)
            if p[2] is not None:
                p[2].cancel()
            if not p[0].done():
                p[0].set_exception(exc)

    def _on_reply(self, frames: list[bytes]) -> None:
        try:
            msg = wire.unpack(frames[-1])
            kind, rid, body = msg[0], msg[1], msg[2]
        except Exception:
            return  # not ours to answer; a malformed reply is dropped
        p = self._pending.pop(rid, None)
        if p is None:
            return  # late reply to a request that timed out or was failed
        fut, slot, timer, request, retries = p
        if timer is not None:
            timer.cancel()
        if fut.done():
            return
        if kind == wire.OK:
            fut.set_result(body)
            return
        exc = error_from_wire(body)
        if isinstance(exc, WrongShard) and request is not None and retries < 3:
            self.loop.create_task(self._resend_after_refresh(fut, request, retries + 1))
            return
        fut.set_exception(exc)

    async def _resend_after_refresh(self, fut: asyncio.Future, request: tuple, retries: int) -> None:
        try:
            await self.refresh_map()
            inner = self._send_request(*request, retries=retries)
            fut.set_result(await inner)
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)

    # -- requests --------------------------------------------------------------
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
        while heap and heap[0][0] <= now:
            _, rid = heapq.heappop(heap)
            p = pending.pop(rid, None)
            if p is not None and not p[0].done():
                _op, type_name, key, method, _a, _k, timeout = p[3]
                p[0].set_exception(AskTimeout(
                    f"ask {type_name}/{key}.{method}: no reply within {timeout:g} s"))
        if heap:
            self._sweep_at = heap[0][0]
            self._sweep_handle = self.loop.call_at(self._sweep_at, self._sweep)

    def _check_size(self, payload: bytes) -> None:
        if len(payload) > self.max_message_bytes:
            raise MessageTooLarge(
                f"message is {len(payload)} bytes; the node's max_message_bytes is {self.max_message_bytes}")

    def _send_request(self, op: int, type_name: str, key: str, method: str, args: Any, kwargs: Any,
                      timeout: float | None, retries: int = 0) -> asyncio.Future:
        if self.closed:
            raise NodeUnavailable("client is closed")
        if self.map is None:
            raise NodeUnavailable("no shard map yet")
        if len(self._pending) >= self.max_pending:
            raise Overloaded(f"{len(self._pending)} asks already pending (max_pending_asks)")
        slot = self.map.slot_of(type_name, key)
        rid = next(self._ids)
        if op == wire.SPAWN:   # kwargs: the options of a supervised child, or None
            payload = Spawn(rid, type_name, key, kwargs).encode()
        elif op == wire.STOP:
            payload = Stop(rid, type_name, key, kwargs).encode()
        else:
            payload = Ask(rid, type_name, key, method, list(args), kwargs).encode()
        self._check_size(payload)
        s = self._slot(slot)
        # A drop that already happened concerns only asks sent before it: handle it now,
        # so this ask (queued for the restarted worker) is not failed with them.
        s.monitor_pump.drain()
        fut = self.loop.create_future()
        timeout = self.default_timeout if timeout is None else timeout
        try:
            s.sock.send(payload, _NOBLOCK)
        except zmq.Again:
            raise Overloaded(f"send queue to worker slot {slot} is full") from None
        self._pending[rid] = [fut, slot, None, (op, type_name, key, method, args, kwargs, timeout), retries]
        self._add_deadline(self.loop.time() + timeout, rid)
        s.pump.kick()
        return fut

    def ask(self, type_name: str, key: str, method: str, args: Any = (), kwargs: Any = None,
            timeout: float | None = None) -> asyncio.Future:
        """Send an ask; the returned future resolves to the result or the error."""
        return self._send_request(wire.ASK, type_name, key, method, args, kwargs or {}, timeout)

    def spawn(self, type_name: str, key: str, timeout: float | None = None) -> asyncio.Future:
        return self._send_request(wire.SPAWN, type_name, key, "", (), None, timeout)

    def control_actor(self, op: int, type_name: str, key: str, opts: dict[str, Any],
                      timeout: float) -> asyncio.Future:
        """A supervision request (SPAWN or STOP with options) to the slot owning an actor."""
        return self._send_request(op, type_name, key, wire.OPS[op], (), opts, timeout)

    def tell(self, type_name: str, key: str, method: str, args: Any = (), kwargs: Any = None) -> None:
        """Send a one-way message (at-most-once)."""
        if self.map is None:
            raise NodeUnavailable("no shard map yet")
        slot = self.map.slot_of(type_name, key)
        payload = Tell(0, type_name, key, method, list(args), kwargs or {}).encode()
        self._check_size(payload)
        s = self._slot(slot)
        try:
            s.sock.send(payload, zmq.NOBLOCK)
        except zmq.Again:
            raise Overloaded(f"send queue to worker slot {slot} is full") from None
        s.pump.kick()

    async def call_router(self, op: int, timeout: float = 10.0) -> Any:
        """A control request (MAP, STATUS, PING) to the router."""
        sock = self._router_sock()
        assert self._router_pump is not None
        return await self._control(sock, self._router_pump, -1, [op], timeout, "router")

    async def call_slot(self, slot: int, op: int, timeout: float = 10.0,
                        body: list[Any] | None = None) -> Any:
        """A control request (STATUS, PING, LIST) straight to a worker slot."""
        s = self._slot(slot)
        return await self._control(s.sock, s.pump, slot, [op, *(body or ())], timeout,
                                   f"worker slot {slot}")

    async def call_peer(self, endpoint: str, op: int, body: list[Any], timeout: float,
                        who: str, expired: type[ActorError] = NodeUnavailable) -> Any:
        """A request ``[op, id, *body]`` to another endpoint of the node (the tree)."""
        peer = self._peers.get(endpoint)
        if peer is None:
            sock = dealer(self.ctx, endpoint, self.keys)
            peer = self._peers[endpoint] = (sock, SocketPump(self.loop, sock, self._on_reply))
        return await self._control(peer[0], peer[1], -2, [op, *body], timeout, who, expired)

    async def _control(self, sock: zmq.Socket, pump: SocketPump, slot: int, msg: list[Any],
                       timeout: float, who: str,
                       expired: type[ActorError] = NodeUnavailable) -> Any:
        if self.closed:
            raise NodeUnavailable("client is closed")
        if slot == -1 and self.refused is not None:
            raise NodeUnavailable(self.refused)
        rid = next(self._ids)
        fut = self.loop.create_future()
        timer = self.loop.call_later(timeout, self._expire_control, rid, who, timeout, expired)
        self._pending[rid] = [fut, slot, timer, None, 0]
        payload = wire.pack([msg[0], rid, *msg[1:]])
        self._check_size(payload)
        try:
            sock.send(payload, zmq.NOBLOCK)
        except zmq.Again:
            pass      # no connection (a failed handshake drops it): expires at the deadline
        pump.kick()
        return await fut

    def _expire_control(self, rid: int, who: str, timeout: float,
                        expired: type[ActorError] = NodeUnavailable) -> None:
        p = self._pending.pop(rid, None)
        if p is not None and not p[0].done():
            why = f" ({self.handshake_problem})" if p[1] == -1 and self.handshake_problem else ""
            p[0].set_exception(expired(f"{who} did not answer within {timeout:g} s{why}"))

    def pending_count(self) -> int:
        return len(self._pending)

    def _close_slot(self, s: _Slot) -> None:
        s.pump.close()
        s.monitor_pump.close()
        try:
            s.sock.disable_monitor()
        except Exception:
            pass
        s.monitor.close(0)
        s.sock.close(0)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for rid, p in list(self._pending.items()):
            if p[2] is not None:
                p[2].cancel()
            if not p[0].done():
                p[0].set_exception(NodeUnavailable("client closed"))
        self._pending.clear()
        self._deadlines.clear()
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
        self._drop_slots()
        for sock, pump in self._peers.values():
            pump.close()
            sock.close(0)
        self._peers.clear()
        if self._router is not None:
            assert self._router_pump is not None
            self._router_pump.close()
            if self._router_monitor is not None:
                self._router_monitor[1].close()
                try:
                    self._router.disable_monitor()
                except zmq.ZMQError:
                    pass
                self._router_monitor[0].close(0)
                self._router_monitor = None
            self._router.close(0)
            self._router = None
