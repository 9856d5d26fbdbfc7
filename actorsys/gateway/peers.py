"""The far end of a socket: what its writer (:meth:`~.sockets.Hub.push`) sends frames to.

A :class:`~.rooms.Socket` is the same record for every kind of connection its actor
holds, so the rules of :mod:`.sockets` (the unsent limits, the send timeout, closing
once, the roster, delivery and effects) are written once; only the sending differs, and
that is a :class:`Peer`:

* :class:`WebSocketPeer`: a browser's WebSocket (aiohttp);
* :class:`~.subscribers.SubscriberPeer`: a Python client's subscription, over the
  gateway's ZeroMQ endpoint for subscribers, with credit-based flow control.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Protocol

from aiohttp import web

#: the write buffer above which a WebSocket frame's send may wait for the browser
_BUFFERED = 1 << 16


class Peer(Protocol):
    """What a socket's writer needs of the connection behind it."""

    #: what the actor's ``conn.kind`` says: ``"websocket"`` or ``"python"``
    kind: str

    @property
    def closed(self) -> bool:
        """The connection is gone, or its close was sent: nothing more can go."""

    def send(self, data: "str | bytes") -> Awaitable[None]:
        """Send one frame (str: text, bytes: binary); ``ConnectionError`` (or
        ``RuntimeError``) when it cannot go."""

    def waits(self, data: "str | bytes") -> bool:
        """Whether sending ``data`` now may wait for the client (then the writer gives it
        ``SEND_TIMEOUT``; a deadline on every frame would cost a task and a timer each)."""

    def close(self, code: int, reason: str) -> Awaitable[None]:
        """Send the close (after every frame before it)."""

    def abort(self) -> None:
        """Cut the connection off: the client does not take what it is sent."""

    def joined(self) -> None:
        """The actor's ``on_connect`` for this socket committed."""


class WebSocketPeer:
    """A browser's WebSocket, as aiohttp holds it."""

    kind = "websocket"
    __slots__ = ("ws", "transport")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None) -> None:
        self.ws = ws
        #: to see the write buffer, and to cut off a browser that does not read
        self.transport = transport

    @property
    def closed(self) -> bool:
        return self.ws.closed

    def send(self, data: "str | bytes") -> Awaitable[None]:
        return self.ws.send_str(data) if isinstance(data, str) else self.ws.send_bytes(data)

    def waits(self, data: "str | bytes") -> bool:
        t = self.transport
        return t is not None and t.get_write_buffer_size() > _BUFFERED

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, message=reason.encode())

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def joined(self) -> None:
        """(A browser is not told: its first frame from the actor is what it waits for.)"""
