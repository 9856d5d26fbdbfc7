"""ZeroMQ sockets that clients and node processes share.

:func:`dealer` makes the client side of the data path (tuned for quick reconnects),
:func:`bound_router` the socket a node process serves on, and :class:`SocketPump`
drains a ZeroMQ socket from an asyncio loop (ZeroMQ's FD is edge-triggered, so every
drain reads until ``ZMQ_EVENTS`` shows nothing and every send re-arms it); a
:class:`Conn` is a DEALER with its pump and, optionally, a monitor.

On a tcp node every socket is a CURVE client (``keys``, see :mod:`actorsys.net.keys`)
or a CURVE server guarded by :mod:`actorsys.net.guard`.

A pump logs (logger ``actorsys.net``, rate-limited per exception type) and survives an
exception raised by the handler of one message: the socket keeps being read. A handler
may close the pump's own socket (its pump first): the drain stops there. One drain
handles at most ``batch`` messages and runs at most :data:`DRAIN_BUDGET` seconds (a
handler that works through one message for longer, a worker's ``BATCH`` of many, holds
the pump and goes on in later turns: :meth:`SocketPump.hold`), then lets the loop run
(its timers: a worker's heartbeat is one) before it goes on: a backlog of heavy messages
(grants of hundreds of shards, snapshot pages) once kept a worker's loop in one drain
for seconds, and its supervisor killed it as hung.
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Callable, TypeAlias, cast

import zmq

from ..config.defaults import LOG_BURST, LOG_WINDOW
from ..log import get_logger
from ..lograte import RateLimit
from .keys import CurveKeys, curve_client

if TYPE_CHECKING:
    from .guard import Guard

#: the ZeroMQ types in annotations (pyzmq makes them generic; we read frames as bytes)
Context: TypeAlias = "zmq.Context[Any]"
Socket: TypeAlias = "zmq.Socket[Any]"

_IntOption: TypeAlias = Callable[[int], int]

log = get_logger("net")

RECONNECT_IVL_MS = 10
# no back-off: a restarted worker is reached within 10 ms (a failed ipc connect is cheap)
RECONNECT_IVL_MAX_MS = 10
SEND_HWM = 100_000
#: seconds one drain of a socket may run before it yields to the loop (see above)
DRAIN_BUDGET = 0.05
#: the log of handlers that raised, per exception type: a peer repeating the message
#: that trips a bug must not flood the log
_failures = RateLimit(log, "messages whose handling failed", burst=LOG_BURST, window=LOG_WINDOW,
                      label="raising")
_EVENTS, _POLLIN, _NOBLOCK = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.NOBLOCK)


def dealer(ctx: Context, endpoint: str, keys: CurveKeys | None = None,
           connect: bool = True, routing_id: bytes | None = None,
           send_hwm: int = SEND_HWM) -> Socket:
    """A DEALER socket connected to ``endpoint`` (unless ``connect`` is false: the caller
    connects it), tuned for quick reconnects; a CURVE client with ``keys`` (tcp only);
    known to the peer ROUTER as ``routing_id`` if given (else ZeroMQ makes one up);
    ``send_hwm``: messages (frames) queued before a send is refused."""
    s: Socket = ctx.socket(zmq.DEALER)
    curve_client(s, endpoint, keys)
    if routing_id is not None:
        s.setsockopt(zmq.ROUTING_ID, routing_id)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
    s.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
    s.setsockopt(zmq.SNDHWM, send_hwm)
    s.setsockopt(zmq.RCVHWM, 0)
    if connect:
        s.connect(endpoint)
    return s


def bound_router(ctx: Context, endpoint: str, max_message_bytes: int,
                 guard: "Guard | None" = None, send_hwm: int | None = None,
                 receive_hwm: int | None = None, handover: bool = True) -> Socket:
    """The ROUTER socket a node process (router, worker, tree) serves requests on;
    ``guard`` makes it a CURVE server (see :mod:`actorsys.net.guard`); the high-water marks
    are messages queued per peer (ZeroMQ's default when not given). ``handover``: a
    connection presenting a routing id already in use takes it over (off: it is refused,
    and the first keeps it)."""
    s: Socket = ctx.socket(zmq.ROUTER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.ROUTER_MANDATORY, 1)
    # a client's slot connections carry the client's own routing id (a follower may
    # deliver a leader's reply on it: client/transport.py); one made anew takes the id
    # over from a stale connection the ROUTER has not seen close yet. Where a routing id
    # is a session of its own (the gateway's subscribers), nobody may take one over.
    s.setsockopt(zmq.ROUTER_HANDOVER, int(handover))
    if send_hwm is not None:
        s.setsockopt(zmq.SNDHWM, send_hwm)
    if receive_hwm is not None:
        s.setsockopt(zmq.RCVHWM, receive_hwm)
    # hard memory guard against raw peers; decode_frames answers the soft limit with an error
    s.setsockopt(zmq.MAXMSGSIZE, max(2 * max_message_bytes, 1 << 16))
    if guard is not None:
        guard.protect(s)
    s.bind(endpoint)
    return s


class SocketPump:
    """Calls ``on_frames(frames)`` for every multipart message arriving on ``sock``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: Socket,
                 on_frames: Callable[[list[bytes]], None], batch: int = 512,
                 after_batch: Callable[[], None] | None = None) -> None:
        self.loop, self.sock, self.on_frames, self.batch = loop, sock, on_frames, batch
        self.after_batch = after_batch
        #: the ``User-Id`` of the message being handled (a CURVE server's sockets: the
        #: sender's public key, Z85, see authz.py; None elsewhere)
        self.user: str | None = None
        self._users = bool(sock.getsockopt(zmq.CURVE_SERVER))
        self._scheduled = False
        self._draining = False
        self._closed = False
        #: True while the handler is still working through the last message (a batch of
        #: many, continued in later turns of the loop): nothing more is read until
        #: :meth:`release`
        self.held = False
        self._fd = sock.FD
        loop.add_reader(self._fd, self.drain)
        # Read ZMQ_EVENTS once now: until someone does, libzmq may queue the first message
        # without making the FD readable (a monitor socket never sends, so nothing else would).
        self.kick()

    def kick(self) -> None:
        """Re-check the socket soon (needed after every send: the FD is edge-triggered)."""
        if not self._scheduled and not self._draining:
            self._scheduled = True
            self.loop.call_soon(self.drain)

    def hold(self) -> None:
        """Read nothing more until :meth:`release` (called by the handler of a message it
        finishes in later turns of the loop: what arrives after it must wait for it)."""
        self.held = True

    def release(self) -> None:
        """Read again (see :meth:`hold`)."""
        self.held = False
        self.kick()

    def drain(self) -> None:
        self._scheduled = False
        if self._closed or self.held:   # (closed: a drain kicked before close(); held: later)
            return
        self._draining = True
        recv = self._recv_user if self._users else self.sock.recv_multipart
        events = cast(_IntOption, self.sock.getsockopt)   # ZMQ_EVENTS is an int
        n = 0
        now = time.monotonic
        until = now() + DRAIN_BUDGET
        try:
            # ZMQ_EVENTS instead of catching zmq.Again: an exception per drain costs ~10 us
            while n < self.batch and events(_EVENTS) & _POLLIN:
                frames = recv(_NOBLOCK)
                n += 1
                try:
                    self.on_frames(frames)
                except Exception as exc:  # a bug in one message's handling must not stall the socket
                    if _failures.allow(type(exc).__name__):   # (input can repeat it: rate-limited)
                        log.exception("handling a message from %s failed", self._what())
                if self._closed:
                    return         # the handler closed the socket (a lost connection's monitor)
                if self.held or now() > until:
                    break          # (the rest at the next turn of the loop: kicked below)
            if n and self.after_batch is not None:
                try:
                    self.after_batch()
                except Exception:   # nor may a bug there stop the socket being re-checked
                    log.exception("after a batch of messages from %s", self._what())
        finally:
            self._draining = False
        # Sends in after_batch may have consumed the FD's edge: look again before sleeping.
        if n and not self._closed and not self.held and (n >= self.batch or events(_EVENTS) & _POLLIN):
            self.kick()

    def _recv_user(self, flags: int) -> list[bytes]:
        """A message's frames, its first read as a zmq.Frame for the User-Id it carries."""
        sock = self.sock
        first = sock.recv(flags, copy=False)
        try:
            self.user = str(first.get("User-Id"))
        except zmq.ZMQError:
            self.user = None
        return [first.bytes, *sock.recv_multipart(flags)] if first.more else [first.bytes]

    def _what(self) -> str:
        try:
            return str(self.sock.getsockopt_string(zmq.LAST_ENDPOINT) or "a socket")
        except zmq.ZMQError:
            return "a socket"

    def close(self) -> None:
        self._closed = True
        try:
            self.loop.remove_reader(self._fd)
        except Exception:
            pass


class Conn:
    """One outgoing connection, read from an asyncio loop: a DEALER socket (from
    :func:`dealer`) connected to ``endpoint``, its pump, and optionally a monitor of the
    socket reporting ``monitor_events`` to ``on_event`` (a worker slot's drops; the
    router's failed CURVE handshakes). The monitor is attached before the socket
    connects, so no early event (a handshake refused at once) is missed. With
    ``heartbeat_ms``, libzmq pings the peer that often (ZMTP heartbeats, answered by the
    peer's libzmq) and drops a connection that has been silent for ``heartbeat_timeout_ms``
    (a peer frozen or its host gone without closing the connection)."""

    __slots__ = ("sock", "pump", "monitor", "monitor_pump", "closed")

    def __init__(self, loop: asyncio.AbstractEventLoop, ctx: Context, endpoint: str,
                 keys: CurveKeys | None, on_reply: Callable[[list[bytes]], None],
                 monitor_events: int = 0,
                 on_event: Callable[[list[bytes]], None] | None = None,
                 heartbeat_ms: int = 0, heartbeat_timeout_ms: int = 0,
                 routing_id: bytes | None = None, send_hwm: int = SEND_HWM) -> None:
        self.sock = sock = dealer(ctx, endpoint, keys, connect=False, routing_id=routing_id,
                                  send_hwm=send_hwm)
        self.closed = False
        if heartbeat_ms > 0:      # options of a connection are fixed when it connects
            sock.setsockopt(zmq.HEARTBEAT_IVL, heartbeat_ms)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, heartbeat_timeout_ms or heartbeat_ms)
        self.pump = SocketPump(loop, sock, on_reply)
        self.monitor: Socket | None = None
        self.monitor_pump: SocketPump | None = None
        if on_event is not None:
            self.monitor = sock.get_monitor_socket(monitor_events)
            self.monitor_pump = SocketPump(loop, self.monitor, on_event)
        sock.connect(endpoint)

    def drain_monitor(self) -> None:
        """Handle the monitor's events now (a drop already seen concerns earlier sends)."""
        if self.monitor_pump is not None:
            self.monitor_pump.drain()

    def close(self, linger_ms: int = 0) -> None:
        self.closed = True
        self.pump.close()
        if self.monitor is not None and self.monitor_pump is not None:
            self.monitor_pump.close()
            try:
                self.sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self.monitor.close(0)
        self.sock.close(linger_ms)
