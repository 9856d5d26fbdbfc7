"""The request-id window of an actor: what makes a retried ask run once.

What a user can rely on (see README, "Deadlines"):

* Every ask carries a request id unique to its client (``ctx["id"]``, see
  :mod:`actorsys.protocol.wire`). When an ask's turn commits an effect (it wrote state,
  storage or alarms, or sent tells), the worker records the id with the turn's reply in
  the **same LevelDB batch** as the turn's writes: the record exists if and only if the
  turn committed.
* An ask whose id is recorded (the client's retry after ``WorkerLost``) is answered
  with the recorded reply, through the output gate, and the handler does not run again;
  this holds across passivation, a worker restart and kill -9, since the record is
  durable and an activation loads its window from disk.
* A turn that raised is discarded and recorded nowhere, so its retry runs again (as it
  should: nothing of it committed). A turn with no effect at all (a pure read) is not
  recorded either: its retry runs again and reads the current state, which no one can
  tell apart from the reply being late.
* The window is bounded per actor: the newest ``size`` records committed within the
  last ``seconds`` (node keys ``request_window`` and ``request_window_seconds``).
  Older records are deleted by the actor's next recording commit, in that commit's
  batch, so storage never holds more than ``size`` records per actor. A retry that
  comes later than the window runs again.
* A reply larger than the store's ``max_value_bytes`` is not kept: its record holds an
  error saying the ask ran once already, and a retry gets that error.

Storage: ``P + b"r" + commit time (8 bytes, microseconds) + id`` -> the reply as it
was sent (``wire.ok``), in commit order (:mod:`.keys`). History, listing and
``storage.size()`` do not count these keys; ``$destroy`` deletes them with the rest.

Memory: an activation loads its window at its first ask with an id (one range read
within its prefix); from then on a lookup is a dict lookup and a recording is a dict
insert, with the oldest records found at the head of a deque.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, NamedTuple

from ..errors import ActorError
from ..protocol import wire
from .keys import REQUEST_AT_BYTES, request_key, request_range, split_request_key

if TYPE_CHECKING:
    from .slot import SlotStore


class WindowLimits(NamedTuple):
    """How many request records an actor keeps, and for how long."""
    size: int            #: the newest records kept (>= 1)
    seconds: float       #: records older than this are pruned (> 0)


class RequestWindow:
    """One activation's request records (see the module docstring).

    Invariants: ``keys`` and ``order`` hold the same ids, ``order`` oldest first;
    ``keys[id]`` is the record's storage key, committed or staged; ``last_us`` is the
    newest record's commit time (record keys are made strictly increasing from it, so
    the storage order is the commit order even if the clock steps back)."""

    __slots__ = ("keys", "order", "last_us", "at")

    def __init__(self, store: SlotStore, prefix: bytes) -> None:
        lo, hi = request_range(prefix)
        n = len(prefix)
        self.keys: dict[bytes, bytes] = {}
        self.order: deque[bytes] = deque()
        self.last_us = 0
        #: where a record key's commit time starts
        self.at = n + 1
        for k, _v in store.range(lo, hi, actor=prefix):
            at, rid = split_request_key(n, k)
            self.keys[rid] = k
            self.order.append(rid)
            self.last_us = at

    def __len__(self) -> int:
        return len(self.order)

    def reply(self, store: SlotStore, request_id: bytes, rid: int) -> bytes | None:
        """The recorded reply of ``request_id``, as a reply to request ``rid``; None if
        it is not recorded."""
        k = self.keys.get(request_id)
        if k is None:
            return None
        v = store.get(k)
        if v is None:
            return None
        msg = wire.unpack(v)
        msg[1] = rid
        return wire.pack(msg)

    def record(self, prefix: bytes, request_id: bytes, reply: bytes, limits: WindowLimits,
               now: float, max_bytes: int, writes: dict[bytes, bytes | None]) -> None:
        """Add the record of ``request_id`` (its ``reply``, committed at ``now``, epoch
        seconds) and the deletion of the records it pushes out of the window to
        ``writes``, which the caller stages for the same commit as the turn."""
        at = max(int(now * 1_000_000), self.last_us + 1)
        self.last_us = at
        old = self.keys.get(request_id)
        if old is not None:          # (a pure read recorded nothing; a rerun may record)
            writes[old] = None
            self.order.remove(request_id)
        k = self.keys[request_id] = request_key(prefix, at, request_id)
        self.order.append(request_id)
        if len(reply) > max_bytes:
            rid = wire.unpack(reply)[1]
            reply = wire.err(rid, ActorError(
                f"this ask ran once already; its reply ({len(reply)} bytes) was larger than "
                f"max_value_bytes ({max_bytes}), so it was not kept for a retry").to_wire())
        writes[k] = reply
        self._prune(at - int(limits.seconds * 1_000_000), limits.size, writes)

    def _prune(self, cutoff_us: int, size: int, writes: dict[bytes, bytes | None]) -> None:
        keys, order, a = self.keys, self.order, self.at
        while order:
            k = keys[order[0]]
            if len(order) <= size and int.from_bytes(k[a:a + REQUEST_AT_BYTES], "big") >= cutoff_us:
                return
            del keys[order.popleft()]
            writes[k] = None
