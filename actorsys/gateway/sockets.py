"""The sockets of the gateway: ``GET /ws/{type}/{key}`` opens a WebSocket attached to
that actor (and :mod:`.subscribers` a Python client's subscription, the same way); its
frames become events for the actor, and what the actor sends reaches it in order
through the socket's writer, whatever its :class:`~.peers.Peer`.

* Limits: ``max_connections`` and ``max_connections_per_actor`` (then 503: sockets and
  subscriptions count together), a frame larger than ``max_message_bytes`` closes the
  socket (1009, by aiohttp); while an actor has :data:`~.rooms.MAX_WAITING_EVENTS` or
  :data:`~.rooms.MAX_WAITING_BYTES` waiting, the gateway stops reading its WebSockets
  (a subscriber that sends meanwhile is closed: see :mod:`.subscribers`).
* A slow client: one that leaves more than :data:`MAX_UNSENT_FRAMES` frames or
  :data:`MAX_UNSENT_BYTES` unsent is closed with 1013; one that takes no frame within
  :data:`SEND_TIMEOUT` while its peer says a send may wait for it (a browser's write
  buffer above 64 KiB, a subscriber's window full) is cut off.
* Closing a socket (by the client, the actor or the gateway) is done once: the frames
  queued before it go first, then the close frame; its actor gets ``on_disconnect`` and
  counts it in its roster until that has committed.
* Auto-response (``auto_response = { request, response }``, config/gateway.py): a text
  frame equal to the type's ``request`` is answered with ``response`` here, as Durable
  Objects' ``setWebSocketAutoResponse``: no event, no batch, no turn, so a passivated
  actor stays so, and a busy one is not waited for while its room's queue has space.
  Once that is full (back-pressure, above), a socket's reader holding an ordinary frame
  waits with it and reads nothing more, pings included, until the actor catches up: a
  page's keep-alive must allow for that (examples/chat's reconnects only after three
  pings in a row brought nothing back). The answer goes through the socket's writer,
  after the frames queued before it and under the same unsent limits; the socket's
  ``auto_response_at`` is set and reaches the actor with a later batch (:mod:`.batches`).
  A binary frame is never answered so.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any, Mapping, Protocol

from aiohttp import WSMsgType, web

from ..protocol.subs import size_of
from .admission import Admission, error_response
from .auth import Refused
from .peers import Peer, WebSocketPeer
from .rooms import (CONNECT, DISCONNECT, MAX_WAITING_BYTES, MAX_WAITING_EVENTS, MESSAGE, CloseFrame,
                    Room, Socket, SocketState)

#: a socket whose browser does not read this much of what it is sent is closed
MAX_UNSENT_FRAMES, MAX_UNSENT_BYTES = 10_000, 8 << 20
#: seconds a closing socket waits for the browser's close frame, and for one frame to be
#: taken by a client (past it, the connection is dropped)
CLOSE_TIMEOUT, SEND_TIMEOUT = 2.0, 10.0
_CLOSED = SocketState.CLOSED
#: the counters of each kind of socket: (opened, closed, refused)
COUNTED = {"websocket": ("ws_opened", "ws_closed", "ws_refused"),
           "python": ("subscribers_opened", "subscribers_closed", "subscribers_refused")}


class EventSink(Protocol):
    """Where socket events go (the gateway's :class:`~.batches.Delivery`)."""

    def enqueue(self, room: Room, event: list[Any], size: int) -> None: ...


class Hub:
    """Every open socket and every room of this gateway (the module docstring's rules)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, gateway: dict[str, Any], incarnation: str,
                 admission: Admission, counters: dict[str, int],
                 auto_responses: Mapping[str, tuple[str, str]] | None = None) -> None:
        self.loop, self.admission, self.counters = loop, admission, counters
        #: type name -> (request, response) the gateway answers itself (config/gateway.py)
        self.auto_responses = dict(auto_responses or {})
        self.max_connections: int = gateway["max_connections"]
        self.max_per_actor: int = gateway["max_connections_per_actor"]
        self.max_frame: int = gateway["max_message_bytes"]
        self.rooms: dict[tuple[str, str], Room] = {}
        self.sockets: dict[str, Socket] = {}
        self._prefix = incarnation[:8]
        self._ids = itertools.count(1)
        self.events: EventSink | None = None    # set by connect() before any socket opens
        #: set at shutdown: new sockets are refused
        self.stopping = False

    def connect(self, events: EventSink) -> None:
        """Send socket events to ``events``."""
        self.events = events

    async def serve(self, request: web.Request) -> web.StreamResponse:
        """``GET /ws/{type}/{key}``: admit, open, and read the socket until it closes."""
        type_name, key = request.match_info["type"], request.match_info["key"]
        try:
            user = await self.admission.admit(request, None)
            self.check(type_name, key)
        except Refused as r:
            self.counters["ws_refused"] += 1
            return error_response(r.status, r.code, str(r))
        ws = web.WebSocketResponse(max_msg_size=self.max_frame, heartbeat=30.0, timeout=CLOSE_TIMEOUT)
        await ws.prepare(request)
        info = {"user": user, "query": dict(request.query), "remote": request.remote,
                "origin": request.headers.get("Origin")}
        sock = self.attach(type_name, key, WebSocketPeer(ws, request.transport), info)
        room = sock.room
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    while not self.take(sock, msg.data):
                        room.space.clear()
                        await room.space.wait()      # back-pressure: stop reading this room's sockets
        finally:
            self.close(sock, 1000, "")
        return ws

    def check(self, type_name: str, key: str) -> None:
        """Refused (503) if a new socket of actor ``(type_name, key)`` may not open now: the
        gateway is stopping, or holds max_connections, or the actor has
        max_connections_per_actor."""
        if self.stopping:
            raise Refused(503, "unavailable", "the gateway is stopping")
        if len(self.sockets) >= self.max_connections:
            raise Refused(503, "overloaded", f"the gateway holds max_connections "
                                             f"({self.max_connections}) sockets")
        room = self.rooms.get((type_name, key))
        if room is not None and len(room.sockets) >= self.max_per_actor:
            raise Refused(503, "overloaded", f"{type_name}/{key:.100} has max_connections_per_actor "
                                             f"({self.max_per_actor}) sockets")

    def attach(self, type_name: str, key: str, peer: Peer, info: dict[str, Any],
               tags: "set[str] | None" = None) -> Socket:
        """Open a socket of actor ``(type_name, key)`` behind ``peer`` (its room made if it
        has none; the limits are :meth:`check`'s) and queue its connect; it carries
        ``tags`` from its connect on."""
        # (looked up now: the room may have come or gone while a handshake awaited)
        room = self.rooms.get((type_name, key))
        if room is None:
            room = self.rooms[(type_name, key)] = Room(type_name, key)
        sock = Socket(f"{self._prefix}.{next(self._ids)}", peer, room, info, tags=set(tags or ()))
        self.sockets[sock.id] = sock
        room.sockets[sock.id] = sock
        self.counters[COUNTED[peer.kind][0]] += 1
        assert self.events is not None
        self.events.enqueue(room, [CONNECT, sock.record()], 64)
        return sock

    @staticmethod
    def full(room: Room) -> bool:
        """Whether the actor has as many events waiting as the gateway lets wait."""
        return room.waiting_bytes > MAX_WAITING_BYTES or len(room.waiting) > MAX_WAITING_EVENTS

    def take(self, sock: Socket, data: "str | bytes") -> bool:
        """A frame from the socket's client (a WebSocket's or a subscriber's): a text equal
        to its type's auto-response request is answered here, anything else queued for
        its actor's on_message; nothing once the socket is closed. False, with nothing
        done, while the actor has as many events waiting as the gateway lets wait (the
        caller waits for ``room.space``, or closes the socket)."""
        if sock.state is _CLOSED:
            return True
        pair = self.auto_responses.get(sock.room.type_name)
        if pair is not None and isinstance(data, str) and data == pair[0]:
            self.auto_respond(sock, pair[1])
            return True
        if self.full(sock.room):
            return False
        assert self.events is not None
        self.events.enqueue(sock.room, [MESSAGE, sock.id, data], size_of(data))
        return True

    def unsent(self) -> tuple[int, int]:
        """The frames and bytes waiting in every socket's queue (open or leaving)."""
        frames = size = 0
        for room in self.rooms.values():
            for d in (room.sockets, room.leaving):
                for s in d.values():
                    frames += len(s.unsent)
                    size += s.unsent_bytes
        return frames, size

    def auto_respond(self, sock: Socket, response: str) -> None:
        """Answer a frame equal to the type's auto-response request (the module docstring)."""
        self.counters["auto_responses"] += 1
        sock.auto_response_at = sock.room.auto_responded[sock.id] = time.time()
        self.push(sock, response)

    def close(self, sock: Socket, code: int, reason: str) -> None:
        """Close a socket (once): what it was sent before goes first, then the close
        frame (by its writer); its actor gets on_disconnect, and counts it in its
        roster until that has committed."""
        if sock.state is _CLOSED:
            return
        sock.state = _CLOSED
        self.counters[COUNTED[sock.peer.kind][1]] += 1
        self.sockets.pop(sock.id, None)
        room = sock.room
        room.sockets.pop(sock.id, None)
        room.leaving[sock.id] = sock
        # (a socket whose on_connect never committed is unknown to the actor: it skips this)
        assert self.events is not None
        self.events.enqueue(room, [DISCONNECT, sock.id], 16)
        sock.closing = CloseFrame(code, reason)
        if sock.writer is None:
            sock.writer = self.loop.create_task(self._write(sock))

    def close_all(self, code: int, reason: str) -> None:
        """Stop: refuse new sockets and close every open one."""
        self.stopping = True
        for s in list(self.sockets.values()):
            self.close(s, code, reason)

    def leaving_writers(self) -> list[asyncio.Task[None]]:
        """The writers still sending to closed sockets (a stop waits for them)."""
        return [s.writer for r in self.rooms.values() for s in r.leaving.values() if s.writer]

    def forget_if_empty(self, room: Room) -> None:
        """Drop a room with no sockets left (nothing waits for it either)."""
        if not room.sockets and not room.leaving and self.rooms.get(room.address) is room:
            del self.rooms[room.address]

    def push(self, s: Socket, data: "str | bytes") -> None:
        """Queue a frame for a socket (its writer sends it; none after its close); a socket
        over its unsent limits is closed with 1013."""
        if not isinstance(data, (str, bytes)):
            raise TypeError("socket data is str or bytes")
        if s.state is _CLOSED:
            return                   # (its close is queued: nothing goes after it)
        s.unsent.append(data)
        s.unsent_bytes += size_of(data)
        if len(s.unsent) > MAX_UNSENT_FRAMES or s.unsent_bytes > MAX_UNSENT_BYTES:
            self.counters["slow_closed"] += 1
            s.unsent.clear()
            s.unsent_bytes = 0
            self.close(s, 1013, "not reading fast enough")
            return
        if s.writer is None:
            s.writer = self.loop.create_task(self._write(s))

    async def _write(self, s: Socket) -> None:
        """A socket's writer: its frames in order, then its close frame if it is closing.
        A client that takes none of them within SEND_TIMEOUT is cut off."""
        peer = s.peer
        try:
            while s.unsent:
                data = s.unsent.popleft()
                s.unsent_bytes -= size_of(data)
                if peer.waits(data):
                    await asyncio.wait_for(peer.send(data), SEND_TIMEOUT)   # it may wait for the client
                else:
                    await peer.send(data)   # (no wait_for per frame: a task each, a third of the rate)
            if s.closing is not None and not peer.closed:
                code, reason = s.closing
                await asyncio.wait_for(peer.close(code, reason), CLOSE_TIMEOUT)
        except (ConnectionError, RuntimeError, asyncio.TimeoutError):
            s.unsent.clear()
            s.unsent_bytes = 0
            peer.abort()                     # it does not read: drop the connection
            if s.state is not _CLOSED:
                self.close(s, 1013, "not reading")
        finally:
            s.writer = None
            if s.unsent and s.state is not _CLOSED:
                s.writer = self.loop.create_task(self._write(s))
