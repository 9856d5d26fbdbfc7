"""Coalescing: what one turn of the event loop sends to a worker slot leaves as one frame.

A transport running in its own event loop (the asyncio client, a worker's, the router's,
the gateway's, the supervision tree's) does not send each ask, spawn or tell at the call:
it queues the message's bytes for the slot's connection, and the first message queued
in a turn of the loop schedules one :meth:`Outbox.flush` with ``call_soon``. The flush
runs once the callbacks already due have run, that is when the loop would otherwise go
idle or wait for I/O, and sends each connection's queue as one ``wire.BATCH`` frame (a
lone message as itself). Nothing waits on a timer: a message sent in a quiet loop leaves
in the same turn of the loop, only after the callbacks that were due anyway.

Rules (``actorsys/protocol/wire.py``, "Coalescing", has the frame):

* **Order.** A connection's messages leave in the order queued; a batch is handled by
  the worker in that order, so per-sender order is what it was.
* **Size.** A batch holds at most :data:`~actorsys.protocol.wire.MAX_BATCH` messages and
  its frame at most the node's ``max_message_bytes``; a message that would take a batch
  past either sends that batch at once and starts the next. A message over
  :data:`ALONE_BYTES` is sent at the call, alone, after the batch queued before it.
* **Back-pressure, at the call.** When a connection's batch starts, its socket must be
  able to take a message now (``ZMQ_EVENTS`` shows ``POLLOUT``), or the call raises
  :class:`~actorsys.errors.Overloaded`, as an unqueued send does when the send queue is
  full. A batch is one frame, so a batch begun on a writable socket leaves.
* **A send that fails anyway** (the socket closed under it): the batch's asks fail with
  :class:`~actorsys.errors.Overloaded` (``fail``), its tells are counted in
  :attr:`Outbox.dropped_tells` and logged, rate-limited (``actorsys.client``).
* **Close.** A transport flushes before it closes its sockets, so a tell queued just
  before ``close`` leaves within the close's linger, as an unqueued one did.

A blocking client's lanes send at the call (their loop runs only while a caller waits):
see :mod:`.lanes`.
"""
from __future__ import annotations

import asyncio
from typing import Callable, cast

import zmq

from ..errors import ActorError, Overloaded
from ..lograte import RateLimit
from ..log import get_logger
from ..net.sockets import Conn
from ..protocol import wire

log = get_logger("client")

_EVENTS, _POLLOUT, _NOBLOCK = int(zmq.EVENTS), int(zmq.POLLOUT), int(zmq.NOBLOCK)
_ITEM, _HEAD = wire.BATCH_ITEM_OVERHEAD, wire.BATCH_OVERHEAD
#: a message larger than this leaves at once and alone (after what was queued before it):
#: copying it into a batch costs more than the frame it saves
ALONE_BYTES = 64 * 1024


class _Queued:
    """One connection's messages of this turn of the loop."""

    __slots__ = ("conn", "slot", "payloads", "rids", "size")

    def __init__(self, conn: Conn, slot: int) -> None:
        self.conn, self.slot = conn, slot
        self.payloads: list[bytes] = []
        #: the request ids of the asks among them (0 for a tell), in order
        self.rids: list[int] = []
        #: the batch frame's size so far (its header and every message's)
        self.size = _HEAD


class Outbox:
    """A transport's queued messages, per connection, until the loop's next idle moment
    (see the module docstring). ``limit``: a frame's most bytes (the node's
    ``max_message_bytes``); ``fail(rids, error)``: fail those pending asks."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int,
                 fail: Callable[[list[int], ActorError], None]) -> None:
        self.loop, self.limit, self.fail = loop, limit, fail
        self.queued: dict[Conn, _Queued] = {}
        self._scheduled = False
        #: tells that a failed send lost (logged)
        self.dropped_tells = 0
        #: frames that carried more than one message, since the transport was made
        self.batches = 0
        self._log = RateLimit(log, "lost tells", burst=5, window=60.0)

    def add(self, conn: Conn, slot: int, payload: bytes, rid: int) -> None:
        """Queue ``payload`` (an ask's, spawn's or stop's with request id ``rid``; a tell's
        with 0) for ``conn``, the connection to worker slot ``slot``; raises Overloaded if
        it starts a batch on a socket that cannot take a message now."""
        q = self.queued.get(conn)
        size = len(payload) + _ITEM
        big = size > ALONE_BYTES
        if q is not None and (big or q.size + size > self.limit or len(q.payloads) >= wire.MAX_BATCH):
            del self.queued[conn]
            self._send(q)          # full (or this one goes alone): this one starts the next
            q = None
        if q is None:
            conn.drain_monitor()   # a drop seen already concerns what was sent before it
        if big:                    # nothing to gain from company: sent now, alone
            try:
                conn.sock.send(payload, _NOBLOCK)
            except zmq.Again:
                raise Overloaded(f"send queue to worker slot {slot} is full") from None
            conn.pump.kick()
            return
        if q is None:
            if not cast(int, conn.sock.getsockopt(_EVENTS)) & _POLLOUT:
                raise Overloaded(f"send queue to worker slot {slot} is full")
            q = self.queued[conn] = _Queued(conn, slot)
            if not self._scheduled:
                self._scheduled = True
                self.loop.call_soon(self.flush)
        q.payloads.append(payload)
        q.rids.append(rid)
        q.size += size

    def flush(self) -> None:
        """Send every connection's queue now (see the module docstring)."""
        self._scheduled = False
        queued, self.queued = self.queued, {}
        for q in queued.values():
            self._send(q)

    def discard(self, conn: Conn) -> None:
        """Forget what is queued for ``conn`` (its connection is being closed; its asks
        are failed by whoever closes it)."""
        self.queued.pop(conn, None)

    def _send(self, q: _Queued) -> None:
        c = q.conn
        if c.closed:
            return self._lost(q, "its connection was closed")
        payloads = q.payloads
        if len(payloads) == 1:
            frame = payloads[0]
        else:
            frame = wire.batch(payloads)
            self.batches += 1
        try:
            c.sock.send(frame, _NOBLOCK)
        except zmq.ZMQError as exc:
            reason = "the send queue is full" if isinstance(exc, zmq.Again) else str(exc)
            return self._lost(q, reason)
        c.pump.kick()

    def _lost(self, q: _Queued, reason: str) -> None:
        asks = [rid for rid in q.rids if rid]
        tells = len(q.rids) - len(asks)
        if asks:
            self.fail(asks, Overloaded(f"send to worker slot {q.slot} failed: {reason}"))
        if tells:
            self.dropped_tells += tells
            if self._log.allow(str(q.slot)):
                log.warning("%d tell(s) to worker slot %d were lost: %s", tells, q.slot, reason)
