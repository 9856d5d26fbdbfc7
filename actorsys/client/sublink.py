"""A client's connection to a gateway's subscriber endpoint, shared by its subscriptions
on one event loop (:mod:`.subscriptions` is the user's side; the protocol is
:mod:`actorsys.protocol.subs`).

* :class:`Subscriber` (one per asyncio client, one on a blocking client's subscription
  thread) makes the :class:`SubscriberLink` at the first subscribe, to the endpoint the
  router's map names (a node without a gateway names none: ``BadRequest`` saying so),
  and a new one after a link is lost.
* A link is one DEALER (a CURVE client on tcp, with the keys of the router connection)
  and one ZeroMQ session at the gateway: it hands each subscription what the gateway
  sends it, and sends what they send. It is lost, and every subscription on it ends with
  :class:`~actorsys.errors.SubscriptionClosed` (1006), when its connection drops (the
  gateway restarted, stopped, or the network failed: frames may have been lost with the
  connection, so nothing is resumed), when the gateway sends nothing for
  :data:`~actorsys.protocol.subs.MISSES` heartbeats, when it refuses the client's key,
  or when it breaks the protocol.
* Heartbeats: a ``ping`` every ``heartbeat`` seconds (the gateway's, told in each
  ``open``) while the link has subscriptions.
* Acknowledgements: a subscription's consumer taking a frame schedules one flush for
  the turn of the loop (``call_soon``), which acknowledges, per subscription, all it
  has taken: one message however many frames a consumer takes in one go.
"""
from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import zmq

from ..errors import BadRequest, SubscriptionClosed, error_from_wire
from ..log import get_logger
from ..net.keys import CLIENT_HANDSHAKE_EVENTS, CurveKeys, handshake_problem
from ..net.sockets import Conn, Context
from ..protocol import subs, wire
from .monitors import event_of

if TYPE_CHECKING:
    from .subscriptions import Subscription

log = get_logger("client")


class Where(NamedTuple):
    """Where a client's subscriptions go: the gateway's subscriber endpoint (None: the
    node has no gateway), the CURVE keys to connect with, the router that named it."""

    endpoint: str | None
    keys: CurveKeys | None
    router: str


class SubscriberLink:
    """One connection to a gateway's subscriber endpoint (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ctx: Context, endpoint: str,
                 keys: CurveKeys | None) -> None:
        self.loop, self.endpoint, self.keys = loop, endpoint, keys
        self.subs: dict[int, Subscription[Any]] = {}
        self._sids = itertools.count(1)
        #: seconds between heartbeats (the gateway's, from the first ``open``)
        self.heartbeat: float | None = None
        self.heard = loop.time()
        self._timer: asyncio.TimerHandle | None = None
        #: why the link is lost (None: it is not)
        self.lost: SubscriptionClosed | None = None
        #: the last failed handshake, named in an open that times out
        self.problem: str | None = None
        self._acking: dict[int, Subscription[Any]] = {}
        self._flushing = False
        self.conn = Conn(loop, ctx, endpoint, keys, self._on_frames,
                         zmq.EVENT_DISCONNECTED | CLIENT_HANDSHAKE_EVENTS, self._on_event)

    # -- the subscriptions' side -----------------------------------------------------------
    def start(self, sub: Subscription[Any], msg: Callable[[int], list[Any]]) -> int:
        """Add ``sub`` and send its ``sub`` request (``msg(sid)``); its sid."""
        if self.lost is not None:
            raise self.lost
        sid = next(self._sids)
        if not self.subs:
            self.heard = self.loop.time()     # (silent while it had none: not a missed beat)
        self.subs[sid] = sub
        self.send(msg(sid))
        if self._timer is None and self.heartbeat is not None:
            self._timer = self.loop.call_later(self.heartbeat, self._beat)
        return sid

    def send(self, msg: list[Any]) -> None:
        """One message to the gateway (ZeroMQ queues it while the connection is made)."""
        if self.lost is not None:
            raise self.lost
        try:
            self.conn.sock.send(wire.pack(msg), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            raise self.fail(f"a message to the gateway at {self.endpoint} could not be queued "
                            f"({exc})") from None
        self.conn.pump.kick()

    def forget(self, sid: int) -> None:
        """``sid`` ended: nothing more of the gateway's is for it."""
        self.subs.pop(sid, None)
        self._acking.pop(sid, None)

    def ack_soon(self, sid: int, sub: Subscription[Any]) -> None:
        """``sub`` took a frame: acknowledge what it took at the end of this loop turn."""
        self._acking[sid] = sub
        if not self._flushing:
            self._flushing = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        acking, self._acking = self._acking, {}
        if self.lost is not None:
            return
        for sid, sub in acking.items():
            seq = sub.acknowledge()
            if seq is not None:
                try:
                    self.send([subs.ACK, sid, seq])
                except SubscriptionClosed:
                    return

    # -- the gateway's side ------------------------------------------------------------------
    def _on_frames(self, frames: list[bytes]) -> None:
        self.heard = self.loop.time()
        try:
            if len(frames) != 1:
                raise BadRequest(f"expected one frame, got {len(frames)}")
            op, sid, rest = subs.check_reply(wire.unpack(frames[0]))
        except BadRequest as exc:
            self.fail(f"the gateway at {self.endpoint} sent what this client cannot read "
                      f"({exc})", code=1002)
            return
        if op == subs.PING:
            return
        sub = self.subs.get(sid)
        if sub is None:
            if op == subs.ERR and sid == 0:
                log.warning("the gateway at %s refused a message of this client: %s",
                            self.endpoint, rest[0])
            return                      # (for a subscription that ended here meanwhile)
        if op == subs.FRAME:
            sub.on_frame(rest[0], rest[1])
        elif op == subs.OPEN:
            beat = rest[0].get("heartbeat")
            if self.heartbeat is None and type(beat) in (int, float) and beat > 0:
                self.heartbeat = float(beat)
                self._timer = self.loop.call_later(self.heartbeat, self._beat)
            sub.on_open(rest[0])
        elif op == subs.OK:
            sub.on_ok()
        elif op == subs.ERR:
            if sub.awaiting_open:           # (an err refuses a sub; it never names an open one)
                self.forget(sid)
                sub.on_end(error_from_wire(rest[0]))
            else:
                log.warning("the gateway at %s answered an error naming open subscription %d, "
                            "which stays open (the protocol closes open ones with x): %s",
                            self.endpoint, sid, rest[0])
        elif op == subs.CLOSED:
            self.forget(sid)
            sub.on_closed(rest[0], rest[1])

    def _on_event(self, frames: list[bytes]) -> None:
        event = event_of(frames)
        if event is None:
            return
        if event == zmq.EVENT_DISCONNECTED:
            self.fail(f"the connection to the gateway at {self.endpoint} was lost (the gateway "
                      f"restarted or stopped, or the network failed)")
            return
        final, self.problem = handshake_problem(event, self.endpoint, self.keys)
        if final:
            self.fail(self.problem)

    def _beat(self) -> None:
        self._timer = None
        if self.lost is not None or not self.subs or self.heartbeat is None:
            return
        self.conn.pump.drain()       # (what waits in the socket counts: a busy loop is not a silent gateway)
        if self.lost is not None:
            return
        silent = self.loop.time() - self.heard
        if silent > subs.MISSES * self.heartbeat:
            self.fail(f"the gateway at {self.endpoint} sent nothing for {silent:.1f} s "
                      f"({subs.MISSES} heartbeats of {self.heartbeat:g} s)")
            return
        try:
            self.send([subs.PING])
        except SubscriptionClosed:
            return
        self._timer = self.loop.call_later(self.heartbeat, self._beat)

    # -- the end ---------------------------------------------------------------------------
    def fail(self, why: str, code: int = 1006) -> SubscriptionClosed:
        """The link is lost: every subscription on it ends with ``why``; the loss."""
        if self.lost is not None:
            return self.lost
        self.lost = lost = SubscriptionClosed(why, close_code=code, reason=why)
        log.info("%s; %d subscription(s) end", why, len(self.subs))
        ended, self.subs = list(self.subs.values()), {}
        for sub in ended:
            sub.on_end(SubscriptionClosed(f"{sub.describe()}: {why}", close_code=code, reason=why))
        self.close()
        return lost

    def close(self) -> None:
        """Close the connection (what is queued on it is dropped)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.lost is None:
            self.lost = SubscriptionClosed("the client is closed", close_code=1000,
                                           reason="the client is closed")
        if not self.conn.closed:
            self.conn.close()


class Subscriber:
    """A client's subscriptions on one event loop: their link, made at the first
    subscribe and again after it is lost (see the module docstring)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._link: SubscriberLink | None = None
        self.closed = False

    def link(self, where: Callable[[], Where]) -> SubscriberLink:
        """The link for a new subscription (made now if there is none, or it was lost, to
        the gateway ``where()`` names as the client's map has it)."""
        if self.closed:
            raise SubscriptionClosed("the client is closed", close_code=1000,
                                     reason="the client is closed")
        link = self._link
        if link is not None and link.lost is None:
            return link
        w = where()
        if w.endpoint is None:
            raise BadRequest(f"the node at {w.router} has no gateway, so nothing can be "
                             f"subscribed to: add a [gateway] table to its config")
        self._link = SubscriberLink(asyncio.get_running_loop(), self.ctx, w.endpoint, w.keys)
        return self._link

    def close(self) -> None:
        """End every subscription (as closed by this client) and close the link."""
        self.closed = True
        link, self._link = self._link, None
        if link is not None:
            for sub in list(link.subs.values()):
                sub.end_here("the client is closed")
            link.close()
