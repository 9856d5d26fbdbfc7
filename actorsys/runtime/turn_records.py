"""Exactly-once asks, the turns' side (a part of :class:`~.turns.Turns`, which owns one;
the window itself is ``storage/requests.py``).

An ask that carries a request id (``ctx["id"]``) and commits something (writes, tells,
WebSocket effects, or a nested turn's commit) has its id and reply recorded in its
actor's request-id window, staged with the turn's own writes: the record is durable
exactly when the turn is. A retry of that ask (the id in the window) is answered with
the recorded reply, through the output gate (the record may still be staged), and the
handler does not run again. A turn that commits nothing records nothing: running it
again changes nothing either.

Invariants: an activation's window (``Activation.requests``) is read from the store the
first time it is needed, kept across its turns, and forgotten whenever its memory may no
longer match storage (``Activation.drop_instance``: a failed commit among others; a
recording turn puts the activation in the commit's staged list for that); nothing is
recorded or looked up while :attr:`AskRecords.limits` has a size of 0 (exactly-once off).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..config.defaults import REQUEST_REPLY_BYTES
from ..errors import StorageError
from ..protocol import wire
from ..storage.requests import RequestWindow, WindowLimits

if TYPE_CHECKING:
    from ..storage.slot import SlotStore
    from .activation import Activation, Call
    from .commit import GroupCommit

_ASK = wire.ASK


class AskRecords:
    """Records committing asks' replies by request id, and answers their retries (see
    the module docstring)."""

    def __init__(self, store: SlotStore, commit: GroupCommit, limits: WindowLimits) -> None:
        self.store, self.commit = store, commit
        #: the request-id window kept per actor (its size 0: exactly-once is off)
        self.limits = limits

    def window(self, act: Activation) -> RequestWindow:
        """``act``'s request-id window (read from the store the first time)."""
        window = act.requests
        if window is None:
            window = act.requests = RequestWindow(self.store, act.prefix, self.limits)
        return window

    def repeated(self, act: Activation, msg: Call) -> bool:
        """An ask whose request id is in the actor's window is answered with the recorded
        reply (through the output gate: the record may still be staged)."""
        request_id = msg.ctx.get("id") if msg.ctx else None
        if request_id is None or msg.op != _ASK or msg.reply_to is None or not self.limits.size:
            return False
        try:
            recorded = self.window(act).reply(self.store, act.prefix, request_id, msg.rid,
                                              time.time())
        except StorageError as exc:
            recorded = wire.err(msg.rid, exc.to_wire())
        if recorded is None:
            return False
        self.commit.reply(msg.reply_to, recorded)
        self.commit.schedule()
        act.last_used = time.monotonic()
        return True

    def record(self, act: Activation, msg: Call, reply: bytes) -> None:
        """Record a committing ask's request id and reply, staged with its turn."""
        request_id = msg.ctx.get("id") if msg.ctx else None
        if request_id is not None:
            self.record_id(act, request_id, reply)

    def record_id(self, act: Activation, request_id: bytes, reply: bytes) -> None:
        """Record ``reply`` under ``request_id`` in ``act``'s window, staged for the next
        group commit."""
        if not self.limits.size:
            return
        writes: dict[bytes, bytes | None] = {}
        self.window(act).record(act.prefix, request_id, reply, time.time(),
                                min(self.store.max_value_bytes, REQUEST_REPLY_BYTES), writes)
        self.store.stage(writes, act.prefix)
        self.commit.staged.append(act)   # a failed commit drops the window with the instance
