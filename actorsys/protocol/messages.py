"""One typed record per message that crosses a node's sockets, and its one encoder.

Every sender builds the record and calls ``encode()``; every receiver gets the same
record back from :func:`decode` after :func:`actorsys.protocol.wire.decode_frames` has
checked the shape. The bytes are those of :mod:`.wire`'s table (a msgpack array
``[op, request_id, ...]``): the records name its fields, they do not change it.

A record's fields are in wire order after the op, so ``[OP, *record]`` is the message.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Union

from . import wire
from .wire import (ASK, CLUSTER, EXIT, LEAVE, LIST, MAP, METRICS, PING, SHARDS, SPAWN, STATUS, STOP, SUP,
                   TELL, TOP, WS)

_pack = wire.pack


class Call(NamedTuple):
    """The fields of a call on an actor, shared by :class:`Ask` and :class:`Tell`.
    ``ctx``: the call's context (request id, call chain; see :mod:`.wire`), or None."""
    rid: int
    type_name: str
    key: str
    method: str
    args: list[Any]
    kwargs: dict[str, Any]
    ctx: dict[str, Any] | None = None


class Ask(Call):
    """Call ``method(*args, **kwargs)`` on an actor; one reply (:class:`Ok` or :class:`Err`)."""
    __slots__ = ()

    def encode(self) -> bytes:
        if self.ctx:
            return _pack([ASK, *self])
        return _pack([ASK, *self[:6]])


class Tell(Call):
    """Call ``method`` on an actor and want no reply (``rid`` is 0)."""
    __slots__ = ()

    def encode(self) -> bytes:
        if self.ctx:
            return _pack([TELL, *self])
        return _pack([TELL, *self[:6]])


class Spawn(NamedTuple):
    """Activate an actor now; with ``opts`` (from the tree) start a supervised child."""
    rid: int
    type_name: str
    key: str
    opts: dict[str, Any] | None = None

    def encode(self) -> bytes:
        if self.opts is None:
            return _pack([SPAWN, self.rid, self.type_name, self.key])
        return _pack([SPAWN, *self])


class Stop(NamedTuple):
    """The tree stops (or forgets) a supervised child."""
    rid: int
    type_name: str
    key: str
    opts: dict[str, Any]

    def encode(self) -> bytes:
        return _pack([STOP, *self])


class Exit(NamedTuple):
    """A worker tells the tree that a supervised child exited (no reply)."""
    rid: int
    sup: str
    child: str
    type_name: str
    key: str
    inc: int
    reason: str
    detail: Any

    def encode(self) -> bytes:
        return _pack([EXIT, *self])


class Sup(NamedTuple):
    """A supervisor's runtime API on the tree; not carried out after ``deadline``."""
    rid: int
    supervisor: str
    command: str
    arg: Any
    deadline: float | None = None

    def encode(self) -> bytes:
        if self.deadline is None:
            return _pack([SUP, self.rid, self.supervisor, self.command, self.arg])
        return _pack([SUP, *self])


class ListActors(NamedTuple):
    """A worker's keys of actors of ``type_name`` with persisted data, after ``start_after``."""
    rid: int
    type_name: str
    start_after: str | None
    limit: int

    def encode(self) -> bytes:
        return _pack([LIST, *self])


class Top(NamedTuple):
    """The ``n`` busiest actors of about the last minute, ordered ``by`` (a worker's, or
    the router's merge of its workers')."""
    rid: int
    n: int
    by: str

    def encode(self) -> bytes:
        return _pack([TOP, *self])


class Shards(NamedTuple):
    """A cluster node's router to its worker: ``cmd`` ("grant", "export", "import",
    "drop") with its arguments (``actorsys/runtime/grants.py``)."""
    rid: int
    cmd: str
    args: dict[str, Any]

    def encode(self) -> bytes:
        return _pack([SHARDS, *self])


class WsEffects(NamedTuple):
    """A worker hands the gateway what one actor's committed turn did to its WebSockets
    (part ``part`` of them; ``batch`` is ``[gateway, number]`` of the batch it ran)."""
    rid: int
    type_name: str
    key: str
    effects: list[Any]
    batch: list[Any] | None
    part: int

    def encode(self) -> bytes:
        return _pack([WS, *self])


class Control(NamedTuple):
    """A request with no body: ``MAP`` (the shard map), ``STATUS``, ``PING``, ``CLUSTER``,
    ``LEAVE`` or ``METRICS``."""
    op: int
    rid: int

    def encode(self) -> bytes:
        return _pack([self.op, self.rid])


class Ok(NamedTuple):
    """A reply: the result (encoded by :func:`.wire.ok`, which hot paths call directly)."""
    rid: int
    result: Any

    def encode(self) -> bytes:
        return wire.ok(self.rid, self.result)


class Err(NamedTuple):
    """A reply: an error ``{"code", "type", "message", ...}`` (encoded by :func:`.wire.err`)."""
    rid: int
    error: dict[str, Any]

    def encode(self) -> bytes:
        return wire.err(self.rid, self.error)


Request = Union[Ask, Tell, Spawn, Stop, Exit, Sup, ListActors, Shards, WsEffects, Top, Control]

_BY_OP: dict[int, Any] = {ASK: Ask, TELL: Tell, SPAWN: Spawn, STOP: Stop, EXIT: Exit,
                          SUP: Sup, LIST: ListActors, WS: WsEffects, SHARDS: Shards,
                          TOP: Top}


def decode(op: int, rid: int, rest: list[Any]) -> Request:
    """The typed record of a request that :func:`.wire.decode_frames` has checked."""
    if op in (MAP, STATUS, PING, CLUSTER, LEAVE, METRICS):
        return Control(op, rid)
    return _BY_OP[op](rid, *rest)  # type: ignore[no-any-return]
