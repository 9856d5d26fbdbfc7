"""Coalescing: what one turn of the event loop sends to a worker slot leaves as one frame.

A transport running in its own event loop (the asyncio client, a worker's, the router's,
the gateway's, the supervision tree's) does not send each ask, spawn or tell at the call:
it queues the message's bytes for the slot's connection, and the first message queued
in a turn of the loop schedules one :meth:`Outbox.flush` with ``call_soon``. The flush
runs at the start of the loop's next turn, after the callbacks already due and before
that turn's I/O, and sends each connection's queue as one ``wire.BATCH`` frame (a lone
message as itself). Nothing waits on a timer: a message sent in a quiet loop leaves in
the next turn of the loop. (Tasks woken in the same turn as the flush form the next
batch.)

Rules (``actorsys/protocol/wire.py``, "Coalescing", has the frame):

* **Only to a node that reads batches**: until the node's map says ``batches`` (every
  node of this version), :attr:`Outbox.enabled` is False and every message leaves at
  the call, alone.
* **Order.** A connection's messages leave in the order queued; a batch is handled by
  the worker in that order, so per-sender order is what it was.
* **Size.** A batch holds at most :data:`BATCH_MESSAGES` messages and its frame at most
  :data:`FRAME_BYTES` (or the node's ``max_message_bytes``, if smaller); a message that
  would take a batch past either sends that batch at once and starts the next. A message
  over :data:`ALONE_BYTES` is sent at the call, alone, after the batch queued before it.
* **Overlap.** :data:`BATCH_MESSAGES` is well below the wire's
  :data:`~actorsys.protocol.wire.MAX_BATCH` on purpose: a turn of the loop that queues a
  thousand asks (a thousand tasks woken by one frame of replies) sends its first batch
  while it is still making the rest, so the worker starts on it at once instead of
  waiting for the whole turn; the client and the worker then work at the same time, not
  in turns. (Measured: pipelined asks to one actor 1.3-1.6x, ``docs/design-changes.md``.)
* **Back-pressure, at the call.** When a connection's batch starts, its socket must be
  able to take a message now (``ZMQ_EVENTS`` shows ``POLLOUT``), or the call raises
  :class:`~actorsys.errors.Overloaded`, as an unqueued send does when the send queue is
  full. A coalescing transport's slot connections queue at most
  :data:`SEND_HWM_FRAMES` frames (each at most ``BATCH_MESSAGES`` messages and
  ``FRAME_BYTES``: 256 MiB at most per connection).
* **Worker loss.** The connection's monitor is read before a batch is sent, so a drop
  it reports fails only what was sent before; asks still queued are not failed by a
  drop seen meanwhile (:meth:`Outbox.unsent`).
* **A send that fails anyway** (the socket closed under it): the batch's asks fail with
  :class:`~actorsys.errors.Overloaded` (``fail``), its tells are counted in
  :attr:`Outbox.dropped_tells` (and told to ``on_lost``: a worker counts them in
  ``dropped_replies``) and logged, rate-limited (``actorsys.client``).
* **Close.** A transport flushes before it closes its sockets, so a tell queued just
  before ``close`` leaves within the close's linger (the clients': 500 ms).

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
#: a batch holds at most this many messages (the wire allows MAX_BATCH): the first batch of
#: a long turn leaves while the turn goes on (see "Overlap" above)
BATCH_MESSAGES = 128
#: a batch's frame is at most this many bytes (or the node's max_message_bytes, if
#: smaller): the gain levels off long before, and a cluster's nodes may have smaller limits
FRAME_BYTES = 256 * 1024
#: a coalescing transport's frames queued per slot connection before a send is refused
#: (its ZeroMQ SNDHWM): with up to BATCH_MESSAGES messages a frame, the bound in messages
#: stays near the one an uncoalesced connection has (SEND_HWM messages)
SEND_HWM_FRAMES = 1000


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
    """A transport's queued messages, per connection, until the loop's next turn (see
    the module docstring). ``limit``: the node's ``max_message_bytes`` (a frame's most
    bytes is the smaller of it and :data:`FRAME_BYTES`); ``fail(rids, error)``: fail
    those pending asks."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int,
                 fail: Callable[[list[int], ActorError], None]) -> None:
        self.loop, self.limit, self.fail = loop, limit, fail
        self.queued: dict[Conn, _Queued] = {}
        self._scheduled = False
        #: False until the node says its workers read batches (its map: ``batches``);
        #: until then every message is sent alone, at the call
        self.enabled = False
        #: tells that a failed send lost (logged; and told to ``on_lost``)
        self.dropped_tells = 0
        #: frames that carried more than one message, since the transport was made
        self.batches = 0
        #: called with the number of tells a failed send lost (a worker counts them)
        self.on_lost: Callable[[int], None] | None = None
        self._log = RateLimit(log, "lost tells", burst=5, window=60.0)

    def add(self, conn: Conn, slot: int, payload: bytes, rid: int) -> None:
        """Queue ``payload`` (an ask's, spawn's or stop's with request id ``rid``; a tell's
        with 0) for ``conn``, the connection to worker slot ``slot``; raises Overloaded if
        it starts a batch on a socket that cannot take a message now."""
        q = self.queued.get(conn)
        size = len(payload) + _ITEM
        big = size > ALONE_BYTES
        if q is not None and (big or q.size + size > min(self.limit, FRAME_BYTES)
                              or len(q.payloads) >= BATCH_MESSAGES):
            self._send(q)          # full (or this one goes alone): this one starts the next
            q = None
        if q is None:
            conn.drain_monitor()   # a drop seen already concerns what was sent before it
        if big or not self.enabled:     # sent now, alone
            try:
                conn.sock.send(payload, _NOBLOCK)
            except zmq.Again:
                raise Overloaded(f"send queue to worker slot {slot} is full") from None
            finally:
                conn.pump.kick()
            return
        if q is None:
            if not cast(int, conn.sock.getsockopt(_EVENTS)) & _POLLOUT:
                conn.pump.kick()   # (reading ZMQ_EVENTS may have taken the FD's edge)
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
        for q in list(self.queued.values()):
            self._send(q)

    def unsent(self, slot: int) -> set[int]:
        """The request ids of the asks queued for worker slot ``slot``, not sent yet (a
        drop of its connection seen now does not concern them)."""
        return {rid for q in self.queued.values() if q.slot == slot for rid in q.rids if rid}

    def _send(self, q: _Queued) -> None:
        """Send ``q`` (still in :attr:`queued`: a drop its monitor reports first fails
        only what was sent before it) and forget it."""
        c = q.conn
        if not c.closed:
            c.drain_monitor()
        self.queued.pop(c, None)
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
        finally:
            c.pump.kick()

    def _lost(self, q: _Queued, reason: str) -> None:
        asks = [rid for rid in q.rids if rid]
        tells = len(q.rids) - len(asks)
        if asks:
            self.fail(asks, Overloaded(f"send to worker slot {q.slot} failed: {reason}"))
        if tells:
            self.dropped_tells += tells
            if self.on_lost is not None:
                self.on_lost(tells)
            if self._log.allow(str(q.slot)):
                log.warning("%d tell(s) to worker slot %d were lost: %s", tells, q.slot, reason)
