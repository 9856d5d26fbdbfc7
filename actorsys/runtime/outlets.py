"""Where a worker's committed output leaves (the group commit's
:class:`~.commit.Output`): :class:`Sockets`, and the gateway's part of it,
:class:`GatewayLink`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import zmq

from ..net.sockets import dealer
from ..protocol.ws import split as split_parts

if TYPE_CHECKING:
    from ..client.transport import AsyncTransport
    from ..net.keys import CurveKeys
    from ..protocol.messages import Exit, Tell, WsEffects
    from .activation import Envelope
    from .replies import ReplyBatches
    from .ws_routes import GatewayRoutes

_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)


class GatewayLink:
    """Hands the gateway committed WebSocket effects, in parts that fit in a message.

    Without a gateway, or past its queue, they are dropped and counted (a socket-event
    batch's effects are sent again if the batch is redelivered). The socket is made on
    first use.
    """

    def __init__(self, ctx: zmq.Context[Any], endpoint: str | None, keys: CurveKeys | None,
                 max_message_bytes: int, counters: dict[str, int]) -> None:
        self.ctx, self.endpoint, self.keys = ctx, endpoint, keys
        self.limit = max_message_bytes - 1024
        self.counters = counters
        self.sock: zmq.Socket[Any] | None = None

    def send(self, msg: WsEffects) -> None:
        sock = self.sock
        if sock is None:
            if self.endpoint is None:
                self.counters["dropped_ws"] += 1
                return
            sock = self.sock = dealer(self.ctx, self.endpoint, self.keys)
        limit = self.limit
        payload = msg.encode()
        parts = [payload] if len(payload) <= limit else [
            msg._replace(effects=part, part=i).encode()
            for i, part in enumerate(split_parts(msg.effects, limit - len(msg.type_name) - len(msg.key)))]
        try:
            for p in parts:
                sock.send(p, _NOBLOCK)
        except zmq.ZMQError:
            self.counters["dropped_ws"] += 1

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(500)


class Sockets:
    """Where a worker's committed output leaves (:class:`~.commit.Output`): replies on
    its ROUTER socket (coalesced per peer: ``replies.py``), tells through its client
    transport, WebSocket effects to the gateway, EXITs to the supervision tree. What
    cannot leave is counted, never raised."""

    def __init__(self, sock: zmq.Socket[Any], transport: AsyncTransport,
                 gateway: GatewayLink | GatewayRoutes,
                 tree_sock: zmq.Socket[Any] | None, kick: Callable[[], None],
                 counters: dict[str, int], replies: ReplyBatches) -> None:
        self.sock, self.transport, self.gateway, self.tree_sock = sock, transport, gateway, tree_sock
        self._kick = kick
        self.counters = counters
        #: replies coalesced per peer until the next flush (``replies.py``)
        self.replies = replies

    def send(self, to: Envelope, payload: bytes) -> None:
        self.replies.send(to, payload)

    def batch_peer(self, to: Envelope) -> None:
        self.replies.batch_peer(to)

    def kick(self) -> None:
        """The end of a release: the tells queued by the transport leave, then the
        replies (so a turn's tells leave no later than its reply, as when each left at
        once), and the socket is re-checked."""
        self.transport.flush()
        self.replies.flush()
        self._kick()

    def forward(self, to: bytes, payload: bytes) -> bool:
        try:
            self.sock.send(to, _SNDMORE_NOBLOCK)     # (ROUTER_MANDATORY: raises if unknown)
            self.sock.send(payload, _NOBLOCK)
        except zmq.ZMQError:
            return False
        return True

    def tell(self, msg: Tell) -> None:
        self.transport.tell(msg.type_name, msg.key, msg.method, msg.args, msg.kwargs, msg.ctx)

    def effects(self, msg: WsEffects) -> None:
        self.gateway.send(msg)

    def exit(self, msg: Exit) -> None:
        if self.tree_sock is None:
            return
        try:
            self.tree_sock.send(msg.encode(), _NOBLOCK)
        except zmq.ZMQError:
            self.counters["dropped_replies"] += 1
