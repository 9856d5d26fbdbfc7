"""The actor's side of WebSockets: sockets held by the gateway, their events as turns.

In the user's words:

* A browser opens ``ws://HOST/ws/{type}/{key}``; the gateway process (``gateway.py``)
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
* ``self.connections(tag)`` lists the actor's sockets, each from its ``on_connect`` until
  its ``on_disconnect`` has committed. The gateway sends the whole
  list with a batch whenever the worker does not know it (a new activation, a new
  gateway), so in a socket event's turn it is exact; in other turns (an alarm, an ask)
  it is the list as of the last socket event this activation saw.

A turn's effects, in order, go back in its batch's reply (or, for a turn that is not a
socket event's, and for output too large for a reply, in ``wire.WS`` frames)::

    ["s", conn_id, data]              send data (str: a text frame, bytes: binary)
    ["b", tag, exclude_id, data, ids] to every socket of the actor (with the tag): ``ids``
                                      are the sockets the actor knew at that point of
                                      the turn; None when it knew none (a turn that is
                                      not a socket event's, after a restart): then the
                                      sockets whose on_connect had committed
    ["x", conn_id, code, reason]      close
    ["t", conn_id, [tag, ...]]        add tags
    ["a", conn_id, value]             keep a value with the socket (conn.attachment)
"""
from __future__ import annotations

import inspect
import json
from typing import TYPE_CHECKING, Any, Awaitable, Iterable

from . import wire
from .errors import BadRequest, MessageTooLarge

if TYPE_CHECKING:
    from .actor import Actor
    from .worker import Activation

#: the ask the gateway sends: ``$ws(gateway, batch_number, roster_or_None, events)``
METHOD = "$ws"
#: how many tags a socket may carry, and how long one may be
MAX_TAGS, MAX_TAG_CHARS = 16, 256
#: the largest attachment (msgpack bytes), as Durable Objects' serializeAttachment
MAX_ATTACHMENT_BYTES = 2048


def mark_key(prefix: bytes) -> bytes:
    """Where an actor's delivery mark ``[gateway, batch_number, effects]`` lives, beside
    its state."""
    return prefix + b"w"


class Connection:
    """One WebSocket attached to this actor, held open by the gateway.

    ``id`` is unique in the node; ``query`` holds the URL's query parameters, ``user``
    what the gateway's auth hook returned, ``remote`` the peer address, ``origin`` the
    browser's Origin header; ``tags`` and ``attachment`` are what this actor set.
    """

    __slots__ = ("id", "tags", "attachment", "user", "query", "remote", "origin", "_act", "_gen")

    def __init__(self, act: "Activation", record: list[Any]) -> None:
        cid, tags, attachment, info = record
        self.id: str = cid
        self.tags: frozenset[str] = frozenset(tags)
        self.attachment: Any = attachment
        self.user: Any = info.get("user")
        self.query: dict[str, str] = info.get("query") or {}
        self.remote: str | None = info.get("remote")
        self.origin: str | None = info.get("origin")
        self._act = act
        self._gen = act.gen     # a killed turn's connections send nothing (see _effect)

    def send(self, data: "str | bytes | Any") -> None:
        """Send ``data``: ``str`` as a text frame, ``bytes`` as a binary one, anything
        else as JSON text. It leaves when this turn commits."""
        self._emit(["s", self.id, _frame(data)])

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

    def _emit(self, effect: list) -> None:
        if self._gen == self._act.gen:   # else a killed turn's: it sends nothing
            _effect(self._act, effect)

    def __repr__(self) -> str:
        return f"<Connection {self.id} tags={sorted(self.tags)}>"


def broadcast(act: "Activation", data: Any, tag: str | None, exclude: Connection | None) -> None:
    """``Actor.broadcast``: to every socket of the actor, or those with ``tag``."""
    if tag is not None and not isinstance(tag, str):
        raise TypeError(f"a tag is a string, got {type(tag).__name__}")
    if exclude is not None and not isinstance(exclude, Connection):
        raise TypeError("exclude is a Connection (or None)")
    ids = None
    if act.ws is not None:     # so a socket the actor does not know yet gets nothing
        ids = [c.id for c in act.ws.values()
               if (tag is None or tag in c.tags) and c is not exclude]
    _effect(act, ["b", tag, exclude.id if exclude else None, _frame(data), ids])


def connections(act: "Activation", tag: str | None) -> list[Connection]:
    """``Actor.connections``: the actor's open sockets (with ``tag``), oldest first."""
    conns = act.ws or {}
    return [c for c in conns.values() if tag is None or tag in c.tags]


def run_batch(inst: "Actor", gateway: str, number: int, roster: "list | dict | None",
              events: list) -> Any:
    """The ``$ws`` turn: deliver a batch of socket events to the actor's handlers.

    ``roster`` is the actor's sockets as the gateway knows them (None: the worker's copy
    will do), or one part of them (``{"n", "i", "records"}``) when they do not fit in one
    message: the parts before the last come alone and are answered ``{"more": True}``.
    Answers ``{"dup": True, "effects"}`` for a batch already committed (with the effects
    it had), ``{"need": "roster"}`` when the worker does not know the actor's sockets,
    or ``{"ok": True, "effects"}`` (after an ``async`` handler: an awaitable of it). The
    effects travel in the reply, so the gateway gets a batch's outcome and its effects
    together or not at all; ``effects`` is None when they were too large for a reply
    and went to the gateway in parts instead.
    """
    act = inst._act
    _check(gateway, number, roster, events)
    raw = inst.storage._raw(mark_key(act.prefix))
    if raw is not None:
        seen_gateway, seen, effects = wire.unpack_stored(raw)
        if seen_gateway == gateway and number <= seen:
            return {"dup": True, "effects": effects if number == seen else []}
    if isinstance(roster, dict):
        if roster["i"] == 0:
            act.ws_parts = [0, []]                  # [the next part's index, records so far]
        elif act.ws_parts is None or roster["i"] != act.ws_parts[0]:
            return {"need": "roster"}
        act.ws_parts[0] = roster["i"] + 1
        act.ws_parts[1].extend(roster["records"])
        if roster["i"] < roster["n"] - 1:
            return {"more": True}
        roster, act.ws_parts = act.ws_parts[1], None
    if roster is not None:
        act.ws = {r[0]: Connection(act, r) for r in roster}
        act.ws_gateway = gateway
    elif act.ws is None or act.ws_gateway != gateway:
        return {"need": "roster"}
    act.ws_batch = [gateway, number]
    return _deliver(inst, act.ws, iter(events), gateway, number)


def _deliver(inst: "Actor", conns: dict[str, Connection], events: Iterable[list],
             gateway: str, number: int) -> Any:
    for ev in events:
        pending = _one(inst, conns, ev)
        if pending is not None:
            return _deliver_async(inst, conns, pending, events, gateway, number)
    return _done(inst, gateway, number)


async def _deliver_async(inst: "Actor", conns: dict[str, Connection], pending: Awaitable[Any],
                         events: Iterable[list], gateway: str, number: int) -> dict:
    await pending
    for ev in events:
        more = _one(inst, conns, ev)
        if more is not None:
            await more
    return _done(inst, gateway, number)


def _done(inst: "Actor", gateway: str, number: int) -> dict:
    """End a batch's turn: write its delivery mark (with its effects, when they fit in
    a stored value) and put the effects in the reply (when they fit in one)."""
    act = inst._act
    effects = act.ws_out
    cfg = inst._worker.cfg
    mark = wire.pack([gateway, number, effects])
    size = len(mark)
    if size > min(inst.storage._store.max_value_bytes, cfg.max_message_bytes // 2):
        mark = wire.pack([gateway, number, None])   # too large to keep: sent once, at most
    inst.storage._write(mark_key(act.prefix), mark)
    if size > cfg.max_message_bytes // 2:
        return {"ok": True, "effects": None}        # they go in parts, after the commit
    act.ws_out = []
    return {"ok": True, "effects": effects}


def _one(inst: "Actor", conns: dict[str, Connection], ev: list) -> Awaitable[Any] | None:
    kind = ev[0]
    if kind == "c":
        conn = conns[ev[1][0]] = Connection(inst._act, ev[1])
        r = inst.on_connect(conn)
    elif kind == "m":
        conn = conns.get(ev[1])
        if conn is None:
            return None          # closed before its message's turn (it was in the roster sent)
        r = inst.on_message(conn, ev[2])
    else:
        conn = conns.pop(ev[1], None)
        if conn is None:
            return None
        r = inst.on_disconnect(conn)
    return r if inspect.isawaitable(r) else None


def _check(gateway: Any, number: Any, roster: Any, events: Any) -> None:
    if not isinstance(gateway, str) or type(number) is not int or not isinstance(events, list):
        raise BadRequest("$ws takes (gateway, batch_number, roster, events)")
    if isinstance(roster, dict):
        if not (type(roster.get("n")) is int and type(roster.get("i")) is int
                and 0 <= roster["i"] < roster["n"] and isinstance(roster.get("records"), list)):
            raise BadRequest("a roster part is {n, i, records}")
        records = roster["records"]
    elif roster is None or isinstance(roster, list):
        records = roster or ()
    else:
        raise BadRequest("a roster is a list of socket records, a part of one, or nil")
    for r in records:
        _check_record(r)
    for ev in events:
        if not isinstance(ev, list) or not ev or ev[0] not in ("c", "m", "d"):
            raise BadRequest("a socket event is ['c', record], ['m', id, data] or ['d', id]")
        if ev[0] == "c" and len(ev) == 2:
            _check_record(ev[1])
        elif not ((ev[0] == "m" and len(ev) == 3 and isinstance(ev[1], str)
                   and isinstance(ev[2], (str, bytes)))
                  or (ev[0] == "d" and len(ev) == 2 and isinstance(ev[1], str))):
            raise BadRequest("a socket event is ['c', record], ['m', id, data] or ['d', id]")


def _check_record(r: Any) -> None:
    if not (isinstance(r, list) and len(r) == 4 and isinstance(r[0], str)
            and isinstance(r[1], list) and all(isinstance(t, str) for t in r[1])
            and isinstance(r[3], dict)):
        raise BadRequest("a socket record is [id, tags, attachment, info]")


def split(items: list[Any], limit: int) -> list[list[Any]]:
    """Items (effects, roster records) in order, in parts whose encoding stays within
    about ``limit`` bytes (at least one part; an item larger than ``limit`` is a part of
    its own: each effect alone fits in a message, see _effect)."""
    parts: list[list[Any]] = [[]]
    size = 0
    for item in items:
        n = len(wire.pack(item)) + 16
        if parts[-1] and size + n > limit:
            parts.append([])
            size = 0
        parts[-1].append(item)
        size += n
    return parts


def _frame(data: Any) -> "str | bytes":
    if not isinstance(data, (str, bytes)):
        try:
            data = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"WebSocket data is str, bytes or JSON-able, got "
                            f"{type(data).__name__}: {exc}") from None
    return data


def _pack(value: Any, what: str) -> bytes:
    try:
        return wire.pack(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"{what}: value is not msgpack-able: {exc}") from None


def _effect(act: "Activation", effect: list) -> None:
    worker = act.instance._worker if act.instance is not None else None
    limit = (worker.cfg.max_message_bytes if worker is not None else 1 << 20) - 4096
    size = len(_pack(effect, "a WebSocket effect"))
    if size > limit:
        raise MessageTooLarge(f"WebSocket message of {size} bytes; the largest is {limit} "
                              f"(max_message_bytes less 4 KiB)")
    act.ws_out.append(effect)
