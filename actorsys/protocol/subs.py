"""The subscriber sub-protocol: a Python client's subscriptions, which the gateway holds
as connections of their actors, like WebSockets (the user's view is
``actorsys/client/subscriptions.py``, the gateway's ``actorsys/gateway/subscribers.py``).

One msgpack array per ZeroMQ message, between a client's DEALER and the gateway's
subscriber ROUTER (the node's ``subscribers`` endpoint, which the router's MAP reply
names). ``sid`` is a subscription id the client chooses: a positive integer, unique on
its connection. A ZeroMQ connection is one session: when it drops, its subscriptions
end (the client sees the drop; the gateway, the missed heartbeats)::

    client -> gateway
    ["sub", sid, type, key, tag, window, query]
                          open a connection to actor (type, key) (a valid key:
                          ``wire.check_key``), tagged ``tag`` (a string, or nil) from its
                          connect, its ``conn.query`` the map of strings ``query``;
                          ``window``: the frames the gateway may send ahead of the
                          consumer (1..MAX_WINDOW); :func:`check_options` on both ends
    ["ack", sid, seq]     the consumer has taken every frame up to ``seq``
    ["msg", sid, data]    to the actor's on_message (str: text, bytes: binary)
    ["bye", sid]          unsubscribe: the actor gets on_disconnect
    ["ping"]              still here (every ``heartbeat`` seconds, while subscribed)

    gateway -> client
    ["open", sid, {"id", "heartbeat", "window", "window_bytes", "max_message_bytes"}]
                          the connection exists; its on_connect is on its way
    ["ok", sid]           its on_connect committed: the actor's broadcasts reach it
    ["err", sid, error]   nothing is open under ``sid``: its ``sub`` was refused, or a
                          message naming no open subscription could not be read
                          (``error``: an error's wire map: unknown type, overloaded,
                          ...); sid 0: a message whose sid could not be read
    ["f", sid, seq, data] a frame from the actor; ``seq`` counts 1, 2, ... per subscription
    ["x", sid, code, reason]
                          closed (WebSocket close codes), after the frames before it
    ["ping"]              still here

``err`` never names an open subscription: a malformed message that names one closes it
(``x`` 1002), a ``msg`` larger than the gateway's ``max_message_bytes`` closes it with
1009, and the client takes an ``err`` as a refusal only while its ``sub`` awaits
``open`` (any other it logs). Sizes are bytes, a text's in UTF-8 (:func:`size_of`),
on both ends: the client refuses a message over ``max_message_bytes`` before sending
it. A ZeroMQ message over twice the gateway's ``max_message_bytes`` (at least 64 KiB)
is more than libzmq takes (``MAXMSGSIZE``): it drops the client's whole connection.

Flow control is by credit, in frames and bytes (:class:`Window`, the same bookkeeping on
both ends): the gateway sends a frame only while fewer than ``window`` frames and
``window_bytes`` bytes are unacknowledged (one frame always, when none is), and the rest
wait in the socket's bounded queue at the gateway, whose limits close a subscriber that
does not keep up. The client acknowledges frames as its consumer takes them; it never
holds more than a window, and refuses a gateway that sends more (a gap in ``seq`` means
frames were lost: the subscription ends, it is never silently short). The subscriptions
of one connection share its queue at the gateway: together they may have at most
:data:`CONNECTION_CREDIT` messages in flight, each counting its window plus
:data:`CONTROL`; a ``sub`` past it is refused (``overloaded``).

Liveness: each end sends ``ping`` every ``heartbeat`` seconds (the gateway's
``subscriber_heartbeat``, told in ``open``); an end that hears nothing from the other for
:data:`MISSES` heartbeats takes it as gone.
"""
from __future__ import annotations

from collections import deque
from typing import Any

from ..errors import BadRequest
from . import wire
from .ws import MAX_TAG_CHARS

SUB, ACK, MSG, BYE, PING = "sub", "ack", "msg", "bye", "ping"
OPEN, OK, ERR, FRAME, CLOSED = "open", "ok", "err", "f", "x"

#: frames a subscription may have unacknowledged by default, and at most
DEFAULT_WINDOW, MAX_WINDOW = 64, 1024
#: bytes a subscription may have unacknowledged (one frame goes whatever its size)
WINDOW_BYTES = 4 << 20
#: heartbeats without a word after which the other end is taken as gone
MISSES = 3
#: the largest ``query`` map (packed), as a URL's query would be bounded
MAX_QUERY_BYTES = 8192
MAX_SID = (1 << 63) - 1
#: the messages a subscription may have in flight besides its frames (open, ok, close)
CONTROL = 3
#: the messages the subscriptions of one connection may have in flight together: the sum
#: of their windows, each plus CONTROL (the gateway queues 10,000 per connection)
CONNECTION_CREDIT = 8192


def size_of(data: "str | bytes") -> int:
    """A frame's size as every limit counts it: bytes, a text's in UTF-8."""
    if isinstance(data, str) and not data.isascii():       # (isascii: no copy, no scan)
        return len(data.encode("utf-8", "surrogatepass"))
    return len(data)


def check_options(tag: Any, window: Any, query: Any) -> None:
    """A subscription's options as ``sub`` carries them (the client checks them before
    sending, the gateway on arrival): ``TypeError`` or ``ValueError`` naming the one
    that is wrong."""
    if tag is not None and not (isinstance(tag, str) and 0 < len(tag) <= MAX_TAG_CHARS):
        raise ValueError(f"tag is a string of 1..{MAX_TAG_CHARS} characters, or None; "
                         f"got {tag!r:.80}")
    if type(window) is not int or not 0 < window <= MAX_WINDOW:
        raise ValueError(f"window is 1..{MAX_WINDOW} frames, got {window!r:.80}")
    if not (isinstance(query, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in query.items())):
        raise TypeError(f"query is a dict of strings to strings (conn.query), got {query!r:.80}")
    size = len(wire.pack(query))
    if size > MAX_QUERY_BYTES:
        raise ValueError(f"query is larger than {MAX_QUERY_BYTES} bytes packed ({size})")


def _sid(value: Any) -> int:
    if type(value) is not int or not 0 < value <= MAX_SID:
        raise BadRequest("a subscription id is a positive integer")
    return value


def check_request(msg: Any) -> tuple[str, int, list[Any]]:
    """A client's message, checked: ``(op, sid, rest)`` (sid 0 for ``ping``); BadRequest
    saying what is wrong otherwise."""
    if not isinstance(msg, list) or not msg or not isinstance(msg[0], str):
        raise BadRequest("a subscriber message is a msgpack array [op, ...]")
    op, n = msg[0], len(msg)
    if op == PING:
        if n != 1:
            raise BadRequest("ping takes no arguments")
        return op, 0, []
    if op == SUB:
        if n != 7:
            raise BadRequest("sub takes [sub, sid, type, key, tag, window, query]")
        sid, type_name, key, tag, window, query = msg[1:]
        _sid(sid)
        if not isinstance(type_name, str) or not type_name or not isinstance(key, str):
            raise BadRequest("sub: type is a non-empty string and key a string")
        wire.check_key(key)
        try:
            check_options(tag, window, query)
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"sub: {exc}") from None
        return op, sid, msg[2:]
    if op in (ACK, MSG, BYE):
        want = {ACK: 3, MSG: 3, BYE: 2}[op]
        if n != want:
            raise BadRequest({ACK: "ack takes [ack, sid, seq]", MSG: "msg takes [msg, sid, data]",
                              BYE: "bye takes [bye, sid]"}[op])
        sid = _sid(msg[1])
        if op == ACK and (type(msg[2]) is not int or msg[2] < 0):
            raise BadRequest("ack: seq is a non-negative integer")
        if op == MSG and not isinstance(msg[2], (str, bytes)):
            raise BadRequest("msg: data is a string (text) or bytes (binary)")
        return op, sid, msg[2:]
    raise BadRequest(f"unknown subscriber op {op[:20]!r} (expected one of: sub, ack, msg, bye, ping)")


def check_reply(msg: Any) -> tuple[str, int, list[Any]]:
    """A gateway's message, checked as far as the client relies on it: ``(op, sid,
    rest)``; BadRequest otherwise."""
    if not isinstance(msg, list) or not msg or not isinstance(msg[0], str):
        raise BadRequest("a gateway's message is a msgpack array [op, ...]")
    op, n = msg[0], len(msg)
    if op == PING and n == 1:
        return op, 0, []
    shapes = {OPEN: 3, OK: 2, ERR: 3, FRAME: 4, CLOSED: 4}
    if shapes.get(op) != n or type(msg[1]) is not int:
        raise BadRequest(f"a malformed gateway message ({op[:20]!r}, {n} items)")
    if op == OPEN and not isinstance(msg[2], dict):
        raise BadRequest("open carries a map")
    if op == FRAME and (type(msg[2]) is not int or not isinstance(msg[3], (str, bytes))):
        raise BadRequest("a frame is [f, sid, seq, str or bytes]")
    if op == CLOSED and (type(msg[2]) is not int or not isinstance(msg[3], str)):
        raise BadRequest("a close is [x, sid, code, reason]")
    return op, msg[1], msg[2:]


class Window:
    """A subscription's frames sent and not yet acknowledged, in count and bytes: the
    gateway asks :meth:`fits` before it sends, the client before it accepts (see the
    module docstring)."""

    __slots__ = ("frames", "nbytes", "sent", "acked", "sizes", "unacked_bytes")

    def __init__(self, frames: int, nbytes: int = WINDOW_BYTES) -> None:
        if type(frames) is not int or frames < 1 or type(nbytes) is not int or nbytes < 1:
            raise ValueError("a window is at least one frame and one byte")
        self.frames, self.nbytes = frames, nbytes
        #: the seq of the last frame sent, and of the last acknowledged
        self.sent = self.acked = 0
        #: the sizes of the unacknowledged frames, oldest first, and their sum
        self.sizes: deque[int] = deque()
        self.unacked_bytes = 0

    @property
    def unacked(self) -> int:
        return self.sent - self.acked

    def fits(self, size: int) -> bool:
        """Whether a frame of ``size`` bytes may go now."""
        n = self.sent - self.acked
        return n == 0 or (n < self.frames and self.unacked_bytes + size <= self.nbytes)

    def add(self, size: int) -> int:
        """A frame of ``size`` bytes goes (or came): its seq."""
        self.sent += 1
        self.sizes.append(size)
        self.unacked_bytes += size
        return self.sent

    def ack(self, seq: int) -> int:
        """Every frame up to ``seq`` was taken; how many this released. ValueError for a
        ``seq`` behind the last acknowledged or past the last sent."""
        if not self.acked <= seq <= self.sent:
            raise ValueError(f"acknowledged {seq}, outside {self.acked}..{self.sent}")
        released = seq - self.acked
        for _ in range(released):
            self.unacked_bytes -= self.sizes.popleft()
        self.acked = seq
        return released
