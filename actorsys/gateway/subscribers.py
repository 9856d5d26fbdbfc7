"""Python subscribers: ``client.subscribe(...)`` is a connection of its actor held by the
gateway, like a browser's WebSocket, so it has every guarantee a socket has (the output
gate, effects applied once across a worker's kill -9, the roster, hibernation).

* The endpoint: a ZeroMQ ROUTER at the node's ``subscribers`` endpoint (a CURVE server
  behind the gateway's guard on tcp: the node's own key, ``authorized_keys`` and, in a
  cluster, the members' keys are let in), speaking :mod:`actorsys.protocol.subs`. A
  client connection is a session; each of its subscriptions is one
  :class:`~.rooms.Socket` whose peer is a :class:`SubscriberPeer`. A connection cannot
  take over another's routing id (``ROUTER_HANDOVER`` is off here).
* Opening: a ``sub`` for a registered actor type and a valid key opens a socket with
  ``info`` ``kind = "python"`` (``conn.kind``), ``query`` as sent, no user, remote or
  origin, tagged with its tag from the start; the limits are the WebSockets'
  (``max_connections``, ``max_connections_per_actor``), and the subscriptions of one
  connection may have at most :data:`~actorsys.protocol.subs.CONNECTION_CREDIT`
  messages in flight together (its window plus
  :data:`~actorsys.protocol.subs.CONTROL` each): past it, ``Overloaded``. A key may
  subscribe to the actor types its ``authorized_keys`` file lets it reach (either role;
  ``types``, :mod:`actorsys.net.authz`): another type is refused ``forbidden``, counted
  and logged as the workers' refusals are; ``expose`` and the ``auth`` hook are for
  the web. ``open`` answers at once, ``ok`` follows when its
  ``on_connect`` has committed.
* Sending: frames go under the subscription's credit (:class:`~actorsys.protocol.subs.Window`);
  while none is left, the socket's writer waits, and its frames wait in its queue,
  whose limits close a subscriber that does not keep up (1013), as they close a slow
  browser. A writer that gives up on a subscriber drops what waited, so it closes it
  with 1013 whatever close was queued. A message that ZeroMQ cannot queue
  (``ROUTER_MANDATORY``) ends every subscription of its connection: the client is gone
  (EHOSTUNREACH: closed as 1001, nobody to tell), or :data:`SEND_QUEUE` messages wait
  for it (EAGAIN: the connection is stalled, its subscriptions are closed with 1013,
  and their closes go once it takes again, tried at each heartbeat for
  :data:`~actorsys.protocol.subs.MISSES` of them). Nothing is dropped silently.
* Receiving: a ``msg`` goes to :meth:`~.sockets.Hub.take`, as a WebSocket's frame does
  (the auto-response, or an ``on_message`` event); one larger than the gateway's
  ``max_message_bytes`` (in bytes, a text's UTF-8) closes the subscription (1009), and
  so does one sent while its actor has as many events waiting as the gateway lets wait
  (1013: the gateway cannot stop reading one client of a shared socket, as it stops
  reading a browser).
* Liveness: a ``ping`` to every session each ``subscriber_heartbeat`` seconds; a
  session silent for :data:`~actorsys.protocol.subs.MISSES` of them is gone, and its
  subscriptions are closed (their actors get ``on_disconnect``).
* Bad input, counted in ``bad_frames``: a message that cannot be taken closes the open
  subscription it names (1002; 1009 for one too large to read), and is otherwise
  answered ``["err", sid or 0, error]`` (an ``err`` never names an open subscription);
  acknowledgements, messages and byes for a subscription that has just closed are
  ignored (they crossed its close).
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

import zmq

from ..errors import (ActorError, BadRequest, Forbidden, MessageTooLarge, NodeUnavailable,
                      Overloaded, UnknownActorType)
from ..log import get_logger
from ..net.authz import Refusals
from ..net.sockets import SocketPump, bound_router
from ..protocol import subs, wire
from ..protocol.subs import Window, size_of
from .auth import Refused
from .rooms import Socket
from .sockets import Hub

if TYPE_CHECKING:
    from ..net.guard import Guard

log = get_logger("gateway")

#: messages ZeroMQ may queue for one subscriber connection (credit keeps it below:
#: subs.CONNECTION_CREDIT, plus its pings and answers)
SEND_QUEUE = 10_000
#: bytes a message may have besides a ``msg``'s data (the array, the op, the sid)
ENVELOPE = 1024
#: the close of the subscriptions of a connection that took nothing of what it was sent
STALLED = "not reading: its connection took nothing of what it was sent"
_NOBLOCK, _EAGAIN = int(zmq.NOBLOCK), zmq.EAGAIN


def bind(ctx: zmq.Context[Any], endpoint: str, max_frame: int,
         guard: Guard | None = None) -> zmq.Socket[Any]:
    """The endpoint's ROUTER, bound: :data:`SEND_QUEUE` per connection (libzmq fixes a
    listener's queues when it binds: set later, they would stay its default of 1,000)
    and no routing-id takeover."""
    return bound_router(ctx, endpoint, max_frame, guard, send_hwm=SEND_QUEUE, handover=False)


class Session:
    """One client connection (a ROUTER peer) and its open subscriptions."""

    __slots__ = ("ident", "user", "heard", "subs", "credit", "owed", "stalled")

    def __init__(self, ident: bytes, now: float, user: str | None = None) -> None:
        self.ident = ident
        #: the CURVE key (ZeroMQ's User-Id) of the connection that opened it (None: ipc);
        #: another key's frames under its routing id are refused
        self.user = user
        #: loop time of the last message from it
        self.heard = now
        self.subs: dict[int, SubscriberPeer] = {}
        #: what its subscriptions may have in flight: their windows, plus CONTROL each
        self.credit = 0
        #: None, or (stalled: ZeroMQ queued nothing more for it) the closes and refusals
        #: it is owed, sent at the next heartbeats
        self.owed: deque[list[Any]] | None = None
        #: heartbeats since it stalled
        self.stalled = 0


class SubscriberPeer:
    """A subscription as its socket's writer sees it (:class:`~.peers.Peer`)."""

    kind = "python"
    __slots__ = ("endpoint", "session", "sid", "window", "sock", "gone", "done", "credit")

    def __init__(self, endpoint: Subscribers, session: Session, sid: int, window: Window) -> None:
        self.endpoint, self.session, self.sid, self.window = endpoint, session, sid, window
        self.sock: Socket | None = None
        #: the client is gone or unsubscribed: nothing more is sent to it
        self.gone = False
        #: its close was sent (or it is gone): it left its session
        self.done = False
        #: set when an acknowledgement (or the end) comes: a send waiting for credit looks again
        self.credit = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self.gone or self.done

    def waits(self, data: "str | bytes") -> bool:
        return not self.window.fits(size_of(data))

    async def send(self, data: "str | bytes") -> None:
        size = size_of(data)
        while not self.window.fits(size):
            if self.closed:
                break
            self.credit.clear()
            await self.credit.wait()
        if self.closed:
            raise ConnectionResetError("the subscriber is gone")
        seq = self.window.add(size)
        if not self.endpoint.send(self, [subs.FRAME, self.sid, seq, data]):
            raise ConnectionResetError("the subscriber's connection is gone or not reading")

    async def close(self, code: int, reason: str) -> None:
        self.endpoint.finish(self, code, reason)

    def abort(self) -> None:
        """(Frames were dropped: whatever close was queued, the client is told 1013.)"""
        self.endpoint.finish(self, 1013, "not reading")

    def joined(self) -> None:
        if not self.closed:
            self.endpoint.send(self, [subs.OK, self.sid])

    def ack(self, seq: int) -> None:
        """The client took every frame up to ``seq`` (ValueError: never sent)."""
        self.window.ack(seq)
        self.credit.set()


class Subscribers:
    """The subscriber endpoint of the gateway (see the module docstring), on ``sock``
    (:func:`bind`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, hub: Hub, sock: zmq.Socket[Any],
                 actors: set[str], heartbeat: float, max_frame: int,
                 counters: dict[str, int], guard: Guard | None = None) -> None:
        self.loop, self.hub, self.sock, self.actors = loop, hub, sock, actors
        self.heartbeat, self.max_frame, self.counters = heartbeat, max_frame, counters
        #: the CURVE guard (None: ipc, everyone may subscribe to every type)
        self.guard = guard
        self.refusals = Refusals(log, counters)
        self.sessions: dict[bytes, Session] = {}
        self.pump = SocketPump(loop, sock, self.on_frames)
        self._timer: asyncio.TimerHandle | None = loop.call_later(heartbeat, self._beat)

    # -- sending -------------------------------------------------------------------------
    def _put(self, ident: bytes, msg: list[Any]) -> int:
        """Queue one message for connection ``ident``: 0, or ZeroMQ's errno (EAGAIN:
        SEND_QUEUE messages wait for it; EHOSTUNREACH: it is gone)."""
        try:
            self.sock.send_multipart([ident, wire.pack(msg)], _NOBLOCK)
        except zmq.ZMQError as exc:
            return exc.errno or -1
        finally:
            self.pump.kick()
        return 0

    def _send(self, ident: bytes, msg: list[Any], owed: bool = False) -> bool:
        """One message to connection ``ident``; False if it cannot go, and then its
        session ends (see the module docstring: gone, or stalled). ``owed``: a close or
        a refusal, which a stalled session is sent once it takes again."""
        session = self.sessions.get(ident)
        if session is None or session.owed is None:
            errno = self._put(ident, msg)
            if errno == 0:
                return True
            if session is None:
                log.debug("an answer to a subscriber's connection could not be queued (%s)",
                          zmq.strerror(errno))       # (to a raw client that reads nothing)
                return False
            if errno != _EAGAIN:
                self._lose(session, f"its connection is gone ({zmq.strerror(errno)})")
                return False
            self._stall(session)
        if owed and session.owed is not None:
            if len(session.owed) >= SEND_QUEUE:
                self._lose(session, "it takes nothing of what it is sent")
            else:
                session.owed.append(msg)
        return False

    def send(self, peer: SubscriberPeer, msg: list[Any]) -> bool:
        """One message of ``peer``'s (False: it cannot go, and its session has ended)."""
        return self._send(peer.session.ident, msg)

    def finish(self, peer: SubscriberPeer, code: int, reason: str) -> None:
        """``peer``'s subscription is over: its close goes (unless the client is gone) and
        it leaves its session (which goes when it has none left, and is owed nothing)."""
        if peer.done:
            return
        peer.done = True
        session = peer.session
        if not peer.gone:
            self._send(session.ident, [subs.CLOSED, peer.sid, code, reason], owed=True)
        if session.subs.get(peer.sid) is peer:
            del session.subs[peer.sid]
            session.credit -= peer.window.frames + subs.CONTROL
        self._forget_if_done(session)
        peer.credit.set()

    def _forget_if_done(self, session: Session) -> None:
        if not session.subs and not session.owed and self.sessions.get(session.ident) is session:
            del self.sessions[session.ident]

    def _drop(self, peer: SubscriberPeer, code: int, reason: str) -> None:
        """The client will read nothing more of ``peer``: close its socket (its actor gets
        on_disconnect) and forget it."""
        peer.gone = True
        if peer.sock is not None:
            self.hub.close(peer.sock, code, reason)
        self.finish(peer, code, reason)

    def _stall(self, session: Session) -> None:
        """ZeroMQ queues nothing more for ``session``: close its subscriptions (1013), their
        closes owed to it."""
        session.owed, session.stalled = deque(), 0
        peers = list(session.subs.values())
        self.counters["subscribers_lost"] += len(peers)
        log.warning("a subscriber's connection takes nothing of what it is sent (%d messages "
                    "wait for it): closing its %d subscription(s) (1013)", SEND_QUEUE, len(peers))
        for peer in peers:
            if peer.sock is not None:
                self.hub.close(peer.sock, 1013, STALLED)
            self.finish(peer, 1013, STALLED)

    def _repay(self, session: Session) -> None:
        """A heartbeat of a stalled session: what it is owed goes, as far as it takes it;
        then it is forgotten (or lost, after MISSES heartbeats)."""
        owed = session.owed
        assert owed is not None
        session.stalled += 1
        while owed:
            errno = self._put(session.ident, owed[0])
            if errno == _EAGAIN:
                break
            if errno:
                owed.clear()                    # (gone: nobody to tell)
                break
            owed.popleft()
        if not owed:
            session.owed = None
            self._forget_if_done(session)
        elif session.stalled > subs.MISSES:
            self._lose(session, f"it took nothing for {subs.MISSES} heartbeats; {len(owed)} "
                                f"closes were never sent")

    # -- receiving -----------------------------------------------------------------------
    def on_frames(self, frames: list[bytes]) -> None:
        if len(frames) != 2:
            self.counters["bad_frames"] += 1
            if frames:
                self._send(frames[0], [subs.ERR, 0, BadRequest(
                    f"expected one payload frame, got {len(frames) - 1}").to_wire()], owed=True)
            return
        ident, payload = frames
        session = self.sessions.get(ident)
        if session is not None and session.user != self.pump.user:
            # (a connection of another key reusing a dropped one's routing id: not its session)
            grant = self.guard.grant(self.pump.user) if self.guard is not None else None
            exc = Forbidden("this connection's routing id is another key's subscription session")
            if grant is not None:
                self.refusals.refused(grant, exc)
            self._send(ident, [subs.ERR, 0, exc.to_wire()], owed=True)
            return
        if session is not None:
            session.heard = self.loop.time()
        sid = 0
        try:
            if len(payload) > self.max_frame + ENVELOPE:
                sid = wire.peek_id(payload)
                raise MessageTooLarge(f"a message is at most {self.max_frame} bytes (the gateway's "
                                      f"max_message_bytes); got {len(payload)}")
            msg = wire.unpack(payload)
            if isinstance(msg, list) and len(msg) > 1 and type(msg[1]) is int:
                sid = msg[1]
            op, sid, rest = subs.check_request(msg)
        except ActorError as exc:
            self._bad(ident, session, sid, exc)
            return
        if op == subs.SUB:
            self._open(ident, session, sid, rest)
            return
        peer = session.subs.get(sid) if session is not None else None
        if peer is None or peer.closed:
            return               # (it crossed the subscription's close)
        if op == subs.ACK:
            try:
                peer.ack(rest[0])
            except ValueError as exc:
                self._bad(ident, session, sid, BadRequest(str(exc)))
        elif op == subs.MSG:
            self._message(peer, rest[0])
        elif op == subs.BYE:
            self._drop(peer, 1000, "")

    def _bad(self, ident: bytes, session: Session | None, sid: int, error: ActorError) -> None:
        """A message that cannot be taken: it closes the open subscription it names (1009
        for one too large, else 1002), or is answered ``err`` (see the module docstring)."""
        self.counters["bad_frames"] += 1
        peer = session.subs.get(sid) if session is not None else None
        if peer is None:
            self._send(ident, [subs.ERR, sid, error.to_wire()], owed=True)
        elif isinstance(error, MessageTooLarge):
            self._close(peer, 1009, str(error))
        else:
            self._close(peer, 1002, f"protocol error: {error}")

    def _message(self, peer: SubscriberPeer, data: "str | bytes") -> None:
        sock = peer.sock
        assert sock is not None
        if size_of(data) > self.max_frame:
            self._close(peer, 1009, f"a message is at most {self.max_frame} bytes "
                                    f"(the gateway's max_message_bytes)")
        elif not self.hub.take(sock, data):
            self._close(peer, 1013, "sending faster than the actor takes its events")

    def _close(self, peer: SubscriberPeer, code: int, reason: str) -> None:
        """Close ``peer``'s socket from the gateway's side: what was queued goes first."""
        if peer.sock is not None:
            self.hub.close(peer.sock, code, reason)

    def _open(self, ident: bytes, session: Session | None, sid: int, rest: list[Any]) -> None:
        type_name, key, tag, window, query = rest
        if session is not None and sid in session.subs:
            self._bad(ident, session, sid, BadRequest(f"subscription id {sid} is in use on this "
                                                      f"connection"))
            return
        try:
            if type_name not in self.actors:
                raise UnknownActorType(f"unknown actor type {type_name!r:.100} (not in the "
                                       f"node's [actors])")
            if self.guard is not None:
                grant = self.guard.grant(self.pump.user)
                if (no := grant.refuse_type(type_name)) is not None:
                    raise self.refusals.refused(grant, no)
            self._check_credit(session, window)
            try:
                self.hub.check(type_name, key)
            except Refused as r:
                self.counters["subscribers_refused"] += 1
                raise (Overloaded if r.code == "overloaded" else NodeUnavailable)(str(r)) from None
        except ActorError as exc:
            self._send(ident, [subs.ERR, sid, exc.to_wire()], owed=True)
            return
        if session is None:
            session = self.sessions[ident] = Session(ident, self.loop.time(), self.pump.user)
        peer = SubscriberPeer(self, session, sid, Window(window))
        session.subs[sid] = peer
        session.credit += window + subs.CONTROL
        info = {"kind": "python", "user": None, "query": query, "remote": None, "origin": None}
        sock = peer.sock = self.hub.attach(type_name, key, peer, info, {tag} if tag else None)
        self.send(peer, [subs.OPEN, sid, {"id": sock.id, "heartbeat": self.heartbeat,
                                          "window": window, "window_bytes": peer.window.nbytes,
                                          "max_message_bytes": self.max_frame}])

    def _check_credit(self, session: Session | None, window: int) -> None:
        """Overloaded if a subscription with ``window`` may not open on ``session`` (see
        the module docstring)."""
        if session is None:
            return
        if session.owed is not None:
            raise Overloaded(f"this connection takes nothing of what it is sent: its "
                             f"subscriptions were closed ({STALLED})")
        if session.credit + window + subs.CONTROL > subs.CONNECTION_CREDIT:
            self.counters["subscribers_refused"] += 1
            raise Overloaded(f"the subscriptions of one connection may have at most "
                             f"{subs.CONNECTION_CREDIT} messages in flight (each its window + "
                             f"{subs.CONTROL}); this one's have {session.credit}: subscribe with "
                             f"a smaller window, or from another client")

    # -- liveness ------------------------------------------------------------------------
    def _beat(self) -> None:
        """Every heartbeat: sessions silent too long are gone; a stalled one is sent what
        it is owed; the others get a ping. Rescheduled whatever happens."""
        try:
            now = self.loop.time()
            deadline = subs.MISSES * self.heartbeat
            for session in list(self.sessions.values()):
                silent = now - session.heard
                if silent > deadline:
                    self._lose(session, f"the subscriber was silent for {silent:.1f} s")
                elif session.owed is not None:
                    self._repay(session)
                else:
                    self._send(session.ident, [subs.PING])
        except Exception:
            log.exception("the subscribers' heartbeat failed (the next one goes on)")
        finally:
            if self._timer is not None:               # (None: closed)
                self._timer = self.loop.call_later(self.heartbeat, self._beat)

    def _lose(self, session: Session, why: str) -> None:
        """``session``'s client reads nothing more: its subscriptions end (their actors get
        on_disconnect); nothing more is sent to it."""
        peers = list(session.subs.values())
        self.counters["subscribers_lost"] += len(peers)
        log.info("closing %d subscription(s) of a client: %s", len(peers), why)
        session.owed = None
        for peer in peers:
            self._drop(peer, 1001, why)
        if self.sessions.get(session.ident) is session:
            del self.sessions[session.ident]

    def count(self) -> int:
        """Subscriptions open now."""
        return sum(len(s.subs) for s in self.sessions.values())

    def close(self) -> None:
        """Stop (the gateway's stop has closed every socket, and their closes went)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.pump.close()
        self.sock.close(500)      # (time for the last closes to leave)
