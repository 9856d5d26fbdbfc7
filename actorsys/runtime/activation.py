"""The in-memory record of one actor address on a worker, and its mailbox."""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..actor import Actor
    from ..actor.connection import Connection
    from ..storage import history

_NO_MAIL: tuple = ()


class Activation:
    """The in-memory record of one actor address on this worker."""

    __slots__ = ("type_name", "key", "prefix", "cls", "handlers", "instance", "mailbox",
                 "running", "last_used", "snapshot", "tells", "sup", "status", "task",
                 "kill_timer", "gen", "versions", "indexed", "ws", "ws_gateway", "ws_out",
                 "ws_batch", "ws_parts")

    def __init__(self, type_name: str, key: str, prefix: bytes, cls: type,
                 handlers: dict[str, Any]) -> None:
        self.type_name, self.key, self.prefix = type_name, key, prefix
        self.cls, self.handlers = cls, handlers
        self.instance: Actor | None = None
        # messages waiting for their turn; an empty tuple while none do (an empty deque
        # is 760 bytes, the largest part of an idle resident actor): see mail()
        self.mailbox: deque[tuple] | tuple = _NO_MAIL
        self.running = False
        self.last_used = time.monotonic()
        self.snapshot: bytes | None = None   # state bytes as of the last commit (b"" = none yet)
        self.tells: list[tuple] = []
        # supervision record {"sup", "child", "args", "kwargs", "inc", "running"} or None
        self.sup: dict[str, Any] | None = None
        # for supervised children: "starting" (a START is queued or running), "running",
        # "dead" (exited, the tree decides), "stopped"
        self.status = "running"
        self.task: asyncio.Task | None = None     # the async turn in progress, if any
        self.kill_timer: asyncio.TimerHandle | None = None   # a timed shutdown's deadline
        # bumped by a kill and by START: an async turn of an earlier generation that
        # finishes later (it awaited while being cancelled) is discarded
        self.gen = 0
        self.versions: history.Versions | None = None   # loaded at the first commit
        self.indexed = False        # its listing entry was written by this activation
        # its WebSockets as the gateway last sent them (None: not known), the gateway
        # incarnation that sent them, and this turn's effects on them (websocket.py)
        self.ws: dict[str, Connection] | None = None
        self.ws_gateway: str | None = None
        self.ws_out: list[list] = []
        # [gateway, number] of the socket events' batch this turn runs; a roster arriving
        # in parts (websocket.py)
        self.ws_batch: list | None = None
        self.ws_parts: list | None = None


def mail(act: Activation) -> deque[tuple]:
    """The activation's mailbox, to add to (made on first use)."""
    mb = act.mailbox
    if mb.__class__ is tuple:
        mb = act.mailbox = deque()
    return mb  # type: ignore[return-value]
