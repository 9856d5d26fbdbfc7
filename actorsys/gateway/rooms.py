"""The gateway's records: a :class:`Socket` (a browser's WebSocket or a Python client's
subscription: its :class:`~.peers.Peer` says which), and the :class:`Room` of one actor
(its sockets and the events waiting for it).

A socket event travels to its actor as the ``$ws`` sub-protocol spells it
(:mod:`actorsys.protocol.ws`): ``[CONNECT, record]``, ``[MESSAGE, id, data]``,
``[DISCONNECT, id]``; the event lists are built once, when the event happens, and sent
as they are. ``[AUTO_RESPONDED, [[id, time], ...]]`` is no event of its own: the times
of the sockets' last auto-responses (``auto_response``), put at the head of the next
batch that goes anyway (:mod:`.batches`), so the actor's ``conn.auto_response_at``
catches up without a turn of its own.
"""
from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .peers import Peer

#: socket events (see the module docstring)
CONNECT, MESSAGE, DISCONNECT, AUTO_RESPONDED = "c", "m", "d", "r"
#: what the actor's handler of each event is called (in the log)
HANDLER_OF = {CONNECT: "on_connect", MESSAGE: "on_message", DISCONNECT: "on_disconnect",
              AUTO_RESPONDED: "conn.auto_response_at"}

#: a room stops reading its sockets while its actor has this much waiting
MAX_WAITING_EVENTS, MAX_WAITING_BYTES = 10_000, 8 << 20

#: an event waiting for its actor, and its size in bytes (what the batches count). A
#: plain tuple: one is made per WebSocket message.
Waiting = tuple[list[Any], int]


class SocketState(Enum):
    OPEN = "open"
    #: closed by the browser, the actor or the gateway; its disconnect is queued once
    CLOSED = "closed"


class CloseFrame(NamedTuple):
    """The close a socket's writer sends after the frames queued before it."""

    code: int
    reason: str


class Mark(NamedTuple):
    """Where a room's effects are: the last ``(batch number, part)`` applied. Effects at
    or below it are duplicates (a batch delivered again after a crash)."""

    batch: int
    part: int


@dataclass(eq=False, slots=True)
class Socket:
    """A connection attached to one actor: a browser's WebSocket or a Python subscriber."""

    id: str
    #: the connection behind it, which its writer sends to
    peer: "Peer"
    room: "Room"
    #: what the actor's Connection is made of: user (the auth hook's value), query, remote,
    #: origin; ``kind`` for a Python subscriber (``"python"``; absent: a WebSocket)
    info: dict[str, Any]
    tags: set[str] = field(default_factory=set)
    attachment: Any = None
    state: SocketState = SocketState.OPEN
    #: its on_connect committed and its on_disconnect has not: the actor counts it in
    joined: bool = False
    #: frames waiting for the writer (str: text, bytes: binary), and their bytes
    unsent: deque[str | bytes] = field(default_factory=deque)
    unsent_bytes: int = 0
    #: the task sending ``unsent`` (None when there is nothing to send)
    writer: asyncio.Task[None] | None = None
    #: set when closed: sent by the writer once ``unsent`` is out
    closing: CloseFrame | None = None
    #: when the gateway last answered one of its frames itself (epoch seconds; None: never)
    auto_response_at: float | None = None

    def record(self) -> list[Any]:
        """The socket as the actor's roster holds it: ``[id, tags, attachment, info]``
        (``info`` with ``auto_response_at`` once the gateway has answered a frame)."""
        info = self.info if self.auto_response_at is None else {
            **self.info, "auto_response_at": self.auto_response_at}
        return [self.id, sorted(self.tags), self.attachment, info]


@dataclass(eq=False, slots=True)
class Room:
    """One actor's sockets and the events waiting for it."""

    type_name: str
    key: str
    sockets: dict[str, Socket] = field(default_factory=dict)
    #: closed sockets whose on_disconnect has not committed yet: still in the roster
    leaving: dict[str, Socket] = field(default_factory=dict)
    #: events not yet in a batch, in order; ``waiting_bytes`` is the sum of their sizes
    waiting: deque[Waiting] = field(default_factory=deque)
    waiting_bytes: int = 0
    #: the actor's worker has our list of its sockets (else the next batch carries it)
    roster_known: bool = False
    applied: Mark = Mark(0, 0)
    #: the task delivering ``waiting`` (None when nothing waits)
    task: asyncio.Task[None] | None = None
    #: set when ``waiting`` shrinks (its sockets' reads wait for it when it is full)
    space: asyncio.Event = field(default_factory=asyncio.Event)
    #: socket id -> the time of its last auto-response the actor has not been told of
    #: (sent with the next batch: AUTO_RESPONDED); at most one entry per socket
    auto_responded: dict[str, float] = field(default_factory=dict)

    @property
    def address(self) -> tuple[str, str]:
        return (self.type_name, self.key)

    def find(self, sid: str) -> Socket | None:
        """A socket of this room, open or leaving."""
        return self.sockets.get(sid) or self.leaving.get(sid)

    def members(self) -> list[list[Any]]:
        """The roster: the sockets the actor knows (on_connect committed, on_disconnect not)."""
        return [s.record() for d in (self.sockets, self.leaving) for s in d.values() if s.joined]
