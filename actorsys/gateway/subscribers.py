"""Python subscribers: ``client.subscribe(...)`` is a connection of its actor held by the
gateway, like a browser's WebSocket, so it has every guarantee a socket has (the output
gate, effects applied once across a worker's kill -9, the roster, hibernation).

* The endpoint: a ZeroMQ ROUTER at the node's ``subscribers`` endpoint (a CURVE server
  behind the gateway's guard on tcp: the node's own key, ``authorized_keys`` and, in a
  cluster, the members' keys are let in), speaking :mod:`actorsys.protocol.subs`. A
  client connection is a session; each of its subscriptions is one
  :class:`~.rooms.Socket` whose peer is a :class:`SubscriberPeer`.
* Opening: a ``sub`` for a registered actor type opens a socket with ``info`` ``kind =
  "python"`` (``conn.kind``), ``query`` as sent, no user, remote or origin, tagged with
  its tag from the start; the limits are the WebSockets' (``max_connections``,
  ``max_connections_per_actor``). A client that may reach the node's router may
  subscribe to any of its types: ``expose`` and the ``auth`` hook are for the web.
  ``open`` answers at once, ``ok`` follows when its ``on_connect`` has committed.
* Sending: frames go under the subscription's credit (:class:`~actorsys.protocol.subs.Window`);
  while none is left, the socket's writer waits, and its frames wait in its queue,
  whose limits close a subscriber that does not keep up (1013), as they close a slow
  browser. A message that ZeroMQ cannot queue (``ROUTER_MANDATORY``: the client is
  gone, or :data:`SEND_QUEUE` messages wait for it) closes every subscription of its
  connection, whose heartbeats then stop; nothing is dropped silently.
* Receiving: a ``msg`` becomes an ``on_message`` event (or, equal to the type's
  ``auto_response`` request, is answered here, as a WebSocket's); one larger than the gateway's
  ``max_message_bytes`` closes the subscription (1009), and so does one sent while its
  actor has as many events waiting as the gateway lets wait (1013: the gateway cannot
  stop reading one client of a shared socket, as it stops reading a browser).
* Liveness: a ``ping`` to every session each ``subscriber_heartbeat`` seconds; a
  session silent for :data:`~actorsys.protocol.subs.MISSES` of them is gone, and its
  subscriptions are closed (their actors get ``on_disconnect``).
* Bad input: a message that cannot be read is answered ``["err", sid or 0, error]`` and
  counted in ``bad_frames``; acknowledgements, messages and byes for a subscription
  that has just closed are ignored (they crossed its close).
"""
from __future__ import annotations

import asyncio
from typing import Any

import zmq

from ..errors import (ActorError, BadRequest, MessageTooLarge, NodeUnavailable, Overloaded,
                      UnknownActorType)
from ..log import get_logger
from ..net.sockets import SocketPump
from ..protocol import subs, wire
from ..protocol.subs import Window
from .auth import Refused
from .rooms import Socket
from .sockets import Hub

log = get_logger("gateway")

#: messages ZeroMQ may queue for one subscriber connection (credit keeps it far below)
SEND_QUEUE = 10_000
_NOBLOCK = int(zmq.NOBLOCK)


class Session:
    """One client connection (a ROUTER peer) and its open subscriptions."""

    __slots__ = ("ident", "heard", "subs")

    def __init__(self, ident: bytes, now: float) -> None:
        self.ident = ident
        #: loop time of the last message from it
        self.heard = now
        self.subs: dict[int, SubscriberPeer] = {}


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
        return not self.window.fits(len(data))

    async def send(self, data: "str | bytes") -> None:
        size = len(data)
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
        closing = self.sock.closing if self.sock is not None else None
        code, reason = closing or (1013, "not reading")
        self.endpoint.finish(self, code, reason)

    def joined(self) -> None:
        if not self.closed:
            self.endpoint.send(self, [subs.OK, self.sid])

    def ack(self, seq: int) -> None:
        """The client took every frame up to ``seq`` (ValueError: never sent)."""
        self.window.ack(seq)
        self.credit.set()


class Subscribers:
    """The subscriber endpoint of the gateway (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, hub: Hub, sock: zmq.Socket[Any],
                 actors: set[str], heartbeat: float, max_frame: int,
                 counters: dict[str, int]) -> None:
        self.loop, self.hub, self.sock, self.actors = loop, hub, sock, actors
        self.heartbeat, self.max_frame, self.counters = heartbeat, max_frame, counters
        sock.setsockopt(zmq.SNDHWM, SEND_QUEUE)
        self.sessions: dict[bytes, Session] = {}
        self.pump = SocketPump(loop, sock, self.on_frames)
        self._timer: asyncio.TimerHandle | None = loop.call_later(heartbeat, self._beat)

    # -- sending -------------------------------------------------------------------------
    def _send(self, ident: bytes, msg: list[Any]) -> bool:
        try:
            self.sock.send_multipart([ident, wire.pack(msg)], _NOBLOCK)
        except zmq.ZMQError:        # EHOSTUNREACH: gone; EAGAIN: SEND_QUEUE full
            return False
        finally:
            self.pump.kick()
        return True

    def send(self, peer: SubscriberPeer, msg: list[Any]) -> bool:
        """One message of ``peer``'s; False if it cannot go, and then every subscription of
        its connection is closed: the client is gone, or reads nothing of what it is sent
        (nothing more could tell it why; it sees its heartbeats stop)."""
        if self._send(peer.session.ident, msg):
            return True
        if self.sessions.get(peer.session.ident) is peer.session:
            self._lose(peer.session, "its connection is gone, or it reads nothing")
        return False

    def finish(self, peer: SubscriberPeer, code: int, reason: str) -> None:
        """``peer``'s subscription is over: its close goes (unless the client is gone) and
        it leaves its session (which goes when it has none left)."""
        if peer.done:
            return
        peer.done = True
        if not peer.gone:
            self._send(peer.session.ident, [subs.CLOSED, peer.sid, code, reason])
        session = peer.session
        if session.subs.get(peer.sid) is peer:
            del session.subs[peer.sid]
            if not session.subs and self.sessions.get(session.ident) is session:
                del self.sessions[session.ident]
        peer.credit.set()

    def _drop(self, peer: SubscriberPeer, code: int, reason: str) -> None:
        """The client will read nothing more of ``peer``: close its socket (its actor gets
        on_disconnect) and forget it."""
        peer.gone = True
        if peer.sock is not None:
            self.hub.close(peer.sock, code, reason)
        self.finish(peer, code, reason)

    # -- receiving -----------------------------------------------------------------------
    def on_frames(self, frames: list[bytes]) -> None:
        if len(frames) != 2:
            self.counters["bad_frames"] += 1
            if frames:
                self._send(frames[0], [subs.ERR, 0, BadRequest(
                    f"expected one payload frame, got {len(frames) - 1}").to_wire()])
            return
        ident, payload = frames
        session = self.sessions.get(ident)
        if session is not None:
            session.heard = self.loop.time()
        sid = 0
        try:
            if len(payload) > self.max_frame + 1024:
                raise MessageTooLarge(f"message is {len(payload)} bytes; the gateway's "
                                      f"max_message_bytes is {self.max_frame}")
            msg = wire.unpack(payload)
            if isinstance(msg, list) and len(msg) > 1 and type(msg[1]) is int:
                sid = msg[1]
            op, sid, rest = subs.check_request(msg)
        except ActorError as exc:
            self.counters["bad_frames"] += 1
            self._send(ident, [subs.ERR, sid, exc.to_wire()])
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
                self.counters["bad_frames"] += 1
                self._close(peer, 1002, f"protocol error: {exc}")
        elif op == subs.MSG:
            self._message(peer, rest[0])
        elif op == subs.BYE:
            self._drop(peer, 1000, "")

    def _message(self, peer: SubscriberPeer, data: "str | bytes") -> None:
        sock = peer.sock
        assert sock is not None
        pair = self.hub.auto_responses.get(sock.room.type_name)
        if pair is not None and data == pair[0]:
            self.hub.auto_respond(sock, pair[1])        # (as for a WebSocket's text frame)
        elif len(data) > self.max_frame:
            self._close(peer, 1009, f"a message is at most {self.max_frame} bytes "
                                    f"(the gateway's max_message_bytes)")
        elif self.hub.full(sock.room):
            self._close(peer, 1013, "sending faster than the actor takes its events")
        else:
            self.hub.receive(sock, data)

    def _close(self, peer: SubscriberPeer, code: int, reason: str) -> None:
        """Close ``peer``'s socket from the gateway's side: what was queued goes first."""
        if peer.sock is not None:
            self.hub.close(peer.sock, code, reason)

    def _open(self, ident: bytes, session: Session | None, sid: int, rest: list[Any]) -> None:
        type_name, key, tag, window, query = rest
        try:
            if session is not None and sid in session.subs:
                raise BadRequest(f"subscription id {sid} is in use on this connection")
            if type_name not in self.actors:
                raise UnknownActorType(f"unknown actor type {type_name!r:.100} (not in the "
                                       f"node's [actors])")
            try:
                self.hub.check(type_name, key)
            except Refused as r:
                self.counters["subscribers_refused"] += 1
                raise (Overloaded if r.code == "overloaded" else NodeUnavailable)(str(r)) from None
        except ActorError as exc:
            self._send(ident, [subs.ERR, sid, exc.to_wire()])
            return
        if session is None:
            session = self.sessions[ident] = Session(ident, self.loop.time())
        peer = SubscriberPeer(self, session, sid, Window(window))
        session.subs[sid] = peer
        info = {"kind": "python", "user": None, "query": query, "remote": None, "origin": None}
        sock = peer.sock = self.hub.attach(type_name, key, peer, info, {tag} if tag else None)
        self.send(peer, [subs.OPEN, sid, {"id": sock.id, "heartbeat": self.heartbeat,
                                          "window": window, "window_bytes": peer.window.nbytes,
                                          "max_message_bytes": self.max_frame}])

    # -- liveness ------------------------------------------------------------------------
    def _beat(self) -> None:
        """Every heartbeat: sessions silent too long are gone; the others get a ping."""
        now = self.loop.time()
        deadline = subs.MISSES * self.heartbeat
        for session in list(self.sessions.values()):
            silent = now - session.heard
            if silent > deadline:
                self._lose(session, f"the subscriber was silent for {silent:.1f} s")
            elif not self._send(session.ident, [subs.PING]):
                self._lose(session, "the subscriber's connection is gone")
        self._timer = self.loop.call_later(self.heartbeat, self._beat)

    def _lose(self, session: Session, why: str) -> None:
        peers = list(session.subs.values())
        self.counters["subscribers_lost"] += len(peers)
        log.info("closing %d subscription(s) of a client: %s", len(peers), why)
        for peer in peers:
            self._drop(peer, 1001, why)
        self.sessions.pop(session.ident, None)

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
