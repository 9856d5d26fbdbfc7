"""The socket a node process serves on: a ROUTER, behind the ZAP guard on a tcp node.

Every node process that others send requests to (the router, each worker, the tree, the
gateway's node side) opens one :class:`Listener`. On a tcp node the guard is up before
the bind, so no connection is ever accepted without a CURVE check; on ipc there is no
guard (the socket's directory is private). Closing goes in the one safe order: the
socket first, then the guard that protects it (libzmq may still ask the guard about a
handshake in progress until the socket is gone).
"""
from __future__ import annotations

import asyncio
from typing import Any

import zmq

from .guard import Guard
from .keys import NodeKeys
from .sockets import bound_router


class Listener:
    """A bound ROUTER socket (``sock``) and its guard (``guard``: None on ipc)."""

    __slots__ = ("sock", "guard")

    def __init__(self, ctx: zmq.Context[Any], loop: asyncio.AbstractEventLoop,
                 keys: NodeKeys | None, counters: dict[str, int], endpoint: str,
                 max_message_bytes: int, *, send_hwm: int | None = None,
                 receive_hwm: int | None = None) -> None:
        self.guard = Guard(ctx, loop, keys, counters) if keys else None
        try:
            self.sock = bound_router(ctx, endpoint, max_message_bytes, self.guard,
                                     send_hwm=send_hwm, receive_hwm=receive_hwm)
        except BaseException:          # the bind failed: the guard has nothing to guard
            if self.guard is not None:
                self.guard.close()
            raise

    def close(self, linger_ms: int = 0) -> None:
        """Close the socket (``linger_ms``: time for replies already queued to leave),
        then its guard."""
        self.sock.close(linger_ms)
        if self.guard is not None:
            self.guard.close()
