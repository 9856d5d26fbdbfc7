"""The actor's side of WebSockets: sockets held by the gateway, their events as turns.

In the user's words:

* A browser opens ``ws://HOST/ws/{type}/{key}``; the gateway process (``actorsys/gateway/``)
  holds the socket and attaches it to that actor. The actor sees ``on_connect(conn)``,
  then ``on_message(conn, data)`` for every frame (a text frame as ``str``, a binary
  one as ``bytes``), then ``on_disconnect(conn)``, in the order they happened.
* Events are turns. The gateway hands an actor its waiting events in batches; one
  batch is one turn, so its state and storage changes commit together.
* ``conn.send(data)``, ``conn.close()``, ``conn.tag()``, ``conn.attach()`` and
  ``self.broadcast(data, tag)`` are *effects*: like tells, they leave the worker only
  after the turn has committed (the output gate), so no client ever sees a change that
  a crash could take back. A turn that raises sends nothing.
* Sockets outlive the actor's activation and its worker. An actor can be passivated
  with sockets open (hibernation): their next event activates it again. After a worker
  crash (kill -9) the gateway delivers the batch again; a delivery mark (``P + b"w"``:
  the gateway's incarnation, the batch's number and the batch's effects) commits with
  every batch, so a batch that had committed before the crash is not applied twice, and
  its effects, which the crash may have kept from leaving, are sent again. A batch's
  effects travel in its reply, and the gateway applies them once (it remembers the last
  batch number it applied); only a turn's effects too large for a reply go separately.
* Auto-response: with ``auto_response = { request, response }`` in the config, a text
  frame equal to ``request`` is answered by the gateway and never reaches the actor (a
  passivated actor is not woken). ``conn.auto_response_at`` is when that last happened
  (epoch seconds, None: never), as Durable Objects' ``getWebSocketAutoResponseTimestamp``.
  It rides with the batches and the roster: in a socket event's turn it is exact as of
  its batch's start for the sockets whose ``on_connect`` committed in an earlier batch,
  unless more sockets were answered since the last batch than a quarter of a batch
  holds (some 5,000 at the default sizes), whose times then follow with the next
  batches; in other turns it is as of the last batch this activation took.
* ``self.connections(tag)`` lists the actor's sockets, each from its ``on_connect`` until
  its ``on_disconnect`` has committed. The gateway sends the whole
  list with a batch whenever the worker does not know it (a new activation, a new
  gateway), so in a socket event's turn it is exact; in other turns (an alarm, an ask)
  it is the list as of the last socket event this activation saw.

* A Python program's subscription (``client.subscribe(ref, tag=...)``, see
  ``actorsys/client/subscriptions.py``) is a connection too, held by the gateway the
  same way: ``conn.kind`` is ``"python"`` (a browser's is ``"websocket"``), it carries
  its ``tag`` from its ``on_connect`` on, ``conn.query`` is the map the subscriber
  passed, and ``user``, ``remote`` and ``origin`` are None. Everything above holds for
  it: ``conn.send``, ``self.broadcast``, ``conn.close`` reach it as frames, its
  ``send()`` arrives as ``on_message``, and its end as ``on_disconnect``.

The sub-protocol with the gateway is in :mod:`actorsys.protocol.ws`; the ``$ws`` turn
that runs a batch is in :mod:`actorsys.runtime.ws_turns`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import MessageTooLarge
from ..protocol import wire
from ..protocol.ws import MAX_ATTACHMENT_BYTES, MAX_TAG_CHARS, MAX_TAGS, frame_of

if TYPE_CHECKING:
    from .host import ActorHost

class Connection:
    """One connection attached to this actor, held open by the gateway: a WebSocket, or
    a Python program's subscription.

    ``id`` is unique in the node; ``kind`` is ``"websocket"`` or ``"python"``; ``query``
    holds the URL's query parameters (a subscriber's ``query=``), ``user`` what the
    gateway's auth hook returned, ``remote`` the peer address, ``origin`` the browser's
    Origin header (the three None for a subscriber); ``tags`` and ``attachment`` are
    what this actor set (and a subscriber's ``tag=``); ``auto_response_at`` is when the
    gateway last answered one of its frames itself (``auto_response``; epoch seconds,
    None: never).
    """

    __slots__ = ("id", "kind", "tags", "attachment", "user", "query", "remote", "origin",
                 "auto_response_at", "_host", "_gen")

    def __init__(self, host: "ActorHost", record: list[Any]) -> None:
        cid, tags, attachment, info = record
        self.id: str = cid
        self.kind: str = info.get("kind") or "websocket"
        self.tags: frozenset[str] = frozenset(tags)
        self.attachment: Any = attachment
        self.user: Any = info.get("user")
        self.query: dict[str, str] = info.get("query") or {}
        self.remote: str | None = info.get("remote")
        self.origin: str | None = info.get("origin")
        at = info.get("auto_response_at")
        self.auto_response_at: float | None = float(at) if type(at) in (int, float) else None
        self._host = host
        self._gen = host.generation     # a killed turn's connections send nothing (see _emit)

    def send(self, data: "str | bytes | Any") -> None:
        """Send ``data``: ``str`` as a text frame, ``bytes`` as a binary one, anything
        else as JSON text. It leaves when this turn commits."""
        self._emit(["s", self.id, frame_of(data, "a WebSocket")])

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close this socket (after this turn commits); ``on_disconnect`` follows."""
        if type(code) is not int or not (code == 1000 or 3000 <= code <= 4999):
            raise ValueError(f"a close code is 1000 or 3000..4999, got {code!r:.50}")
        if not isinstance(reason, str) or len(reason.encode()) > 123:
            raise ValueError("a close reason is a string of at most 123 bytes")
        self._emit(["x", self.id, code, reason])

    def tag(self, *tags: str) -> None:
        """Add tags to this socket, for ``self.broadcast(data, tag=...)`` and
        ``self.connections(tag)``; kept by the gateway for the socket's life."""
        for t in tags:
            if not isinstance(t, str) or not 0 < len(t) <= MAX_TAG_CHARS:
                raise ValueError(f"a tag is a string of 1..{MAX_TAG_CHARS} characters")
        new = self.tags | frozenset(tags)
        if len(new) > MAX_TAGS:
            raise ValueError(f"a socket carries at most {MAX_TAGS} tags")
        self.tags = new
        self._emit(["t", self.id, sorted(tags)])

    def attach(self, value: Any) -> None:
        """Keep ``value`` (msgpack-able, small) with this socket: it comes back as
        ``conn.attachment`` in later turns, across passivation and worker crashes."""
        size = len(_pack(value, "attach"))
        if size > MAX_ATTACHMENT_BYTES:
            raise MessageTooLarge(f"an attachment is at most {MAX_ATTACHMENT_BYTES} bytes "
                                  f"packed, got {size}")
        self.attachment = value
        self._emit(["a", self.id, value])

    def _emit(self, effect: list[Any]) -> None:
        if self._gen == self._host.generation:   # else an older generation's: it sends nothing
            _effect(self._host, effect)

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.kind} tags={sorted(self.tags)}>"


def broadcast(host: "ActorHost", data: Any, tag: str | None, exclude: Connection | None) -> None:
    """``Actor.broadcast``: to every socket of the actor, or those with ``tag``."""
    if tag is not None and not isinstance(tag, str):
        raise TypeError(f"a tag is a string, got {type(tag).__name__}")
    if exclude is not None and not isinstance(exclude, Connection):
        raise TypeError("exclude is a Connection (or None)")
    conns = host.sockets()
    effect: list[Any] = ["b", tag, exclude.id if exclude else None, frame_of(data, "a WebSocket"), None]
    if conns is not None:     # so a socket the actor does not know yet gets nothing
        effect[4] = [c.id for c in conns.values()
                     if (tag is None or tag in c.tags) and c is not exclude]
        # (the gateways whose sockets those are: another gateway's are not known here,
        # e.g. a fresh activation that had a batch from one gateway only; they go to it
        # as if the actor knew none: its joined sockets with the tag)
        effect.append(host.socket_gateways())
    _effect(host, effect)


def connections(host: "ActorHost", tag: str | None) -> list[Connection]:
    """``Actor.connections``: the actor's open sockets (with ``tag``), oldest first."""
    conns = host.sockets() or {}
    return [c for c in conns.values() if tag is None or tag in c.tags]


def _pack(value: Any, what: str) -> bytes:
    try:
        return wire.pack(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"{what}: value is not msgpack-able: {exc}") from None


def _effect(host: "ActorHost", effect: list[Any]) -> None:
    limit = host.max_effect_bytes
    size = len(_pack(effect, "a WebSocket effect"))
    if size > limit:
        raise MessageTooLarge(f"WebSocket message of {size} bytes; the largest is {limit} "
                              f"(max_message_bytes less 4 KiB)")
    host.emit(effect)
