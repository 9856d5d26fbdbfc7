"""The request-id window of an actor: what makes a retried ask run once.

What a user can rely on (see docs/concepts/clients.md, "Deadlines"):

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
* The window is bounded per actor: the newest ``size`` records, and of those only the
  ones committed within the last ``seconds`` count (node keys ``request_window`` and
  ``request_window_seconds``). A retry that comes later than the window runs again.
  ``request_window = 0`` records nothing (each recorded ask costs one more write in its
  commit; see BENCHMARKS.md, issue 14): a retry may then run twice.
* Storage never holds more than ``size`` records per actor: the records are a ring of
  ``size`` places, and each new record overwrites the place of the one ``size``
  records older, in the same batch as its turn (one write per recorded ask, no
  deletes). A record past ``seconds`` stays on disk until it is overwritten, but is
  never answered from. If ``size`` changes, the records that no longer fit the ring
  are deleted with the actor's next recording commit.
* A reply larger than ``max_bytes`` (the runtime passes the smaller of the store's
  ``max_value_bytes`` and :data:`~actorsys.config.defaults.REQUEST_REPLY_BYTES`, 64 KiB)
  is not kept: its record holds an error saying the ask ran once already, and a retry
  gets that error. So one actor's window holds at most ``size`` times that on disk.

Storage: ``P + b"r" + place (4 bytes)`` -> ``sequence number (8 bytes) + commit time
(8 bytes, microseconds) + id length (1 byte) + id + the reply as it was sent``
(``wire.ok``; :mod:`.keys`), and ``P + b"r"`` -> ``b""`` once the actor has records,
written with its first (so activating an actor without records costs a point read, not
a range read). History, listing and ``storage.size()`` do not count these
keys; ``$destroy`` deletes them with the rest.

Memory: an activation loads its window at its first ask with an id (one range read
within its prefix); from then on a lookup is a dict lookup, and a recording two dict
writes and one staged write.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, NamedTuple

from ..errors import ActorError
from ..protocol import wire
from .keys import request_key, request_marker, request_range

if TYPE_CHECKING:
    from .slot import SlotStore

#: a record's value starts with its sequence number, commit time (us) and id length
_HEAD = struct.Struct(">QQB")


class WindowLimits(NamedTuple):
    """How many request records an actor keeps, and for how long they count."""
    size: int            #: the newest records kept: the places of the ring (0: none kept)
    seconds: float       #: a record older than this is not answered from (> 0)


class RequestWindow:
    """One activation's request records (see the module docstring).

    Invariants: ``index[id]`` is the sequence number of the newest record of ``id``,
    which sits at place ``seq % size`` (``ring[place]`` is the id there); only the
    records of the last ``size`` sequence numbers are in ``index``; ``next_seq`` is one
    past the newest record's. Records (committed or staged) and memory agree: a failed
    commit drops the window with the instance (``Activation.drop_instance``)."""

    __slots__ = ("size", "span_us", "index", "ring", "next_seq", "stale", "marked")

    def __init__(self, store: SlotStore, prefix: bytes, limits: WindowLimits) -> None:
        self.size = limits.size
        self.span_us = int(limits.seconds * 1_000_000)
        self.index: dict[bytes, int] = {}
        self.ring: dict[int, bytes] = {}
        #: keys of records that do not fit the ring (its size changed): deleted with the next record
        self.stale: list[bytes] = []
        self.next_seq = 0
        #: the actor's marker is on disk (or staged)
        self.marked = store.get(request_marker(prefix)) is not None
        if not self.marked:
            return
        lo, hi = request_range(prefix)
        n, head = len(lo), _HEAD.size
        found = []
        for k, v in store.range(lo, hi, actor=prefix):
            if len(k) == n:
                continue                 # the marker
            seq, _at, length = _HEAD.unpack_from(v)
            found.append((seq, int.from_bytes(k[n:], "big"), k, v[head:head + length]))
        found.sort()
        self.next_seq = found[-1][0] + 1 if found else 0
        for seq, place, k, request_id in found:
            if place != seq % self.size or seq < self.next_seq - self.size:
                self.stale.append(k)
            else:
                self.ring[place] = request_id
                self.index[request_id] = seq

    def __len__(self) -> int:
        return len(self.index)

    def reply(self, store: SlotStore, prefix: bytes, request_id: bytes, rid: int,
              now: float) -> bytes | None:
        """The recorded reply of ``request_id``, as a reply to request ``rid``; None if
        it is not recorded, or was recorded longer ago than the window's seconds."""
        seq = self.index.get(request_id)
        if seq is None:
            return None
        v = store.get(request_key(prefix, seq % self.size))
        if v is None:
            return None
        stored_seq, at, length = _HEAD.unpack_from(v)
        if stored_seq != seq or at < int(now * 1_000_000) - self.span_us:
            return None
        msg = wire.unpack(v[_HEAD.size + length:])
        msg[1] = rid
        return wire.pack(msg)

    def record(self, prefix: bytes, request_id: bytes, reply: bytes, now: float,
               max_bytes: int, writes: dict[bytes, bytes | None]) -> None:
        """Add the record of ``request_id`` (its ``reply``, committed at ``now``, epoch
        seconds) to ``writes``, which the caller stages for the same commit as the turn;
        it takes the place of the record ``size`` records older."""
        if self.stale:
            for k in self.stale:
                writes[k] = None
            self.stale = []
        if not self.marked:
            writes[request_marker(prefix)] = b""
            self.marked = True
        seq = self.next_seq
        self.next_seq = seq + 1
        place = seq % self.size
        old = self.ring.get(place)
        if old is not None and self.index.get(old) == seq - self.size:
            del self.index[old]
        self.ring[place] = request_id
        self.index[request_id] = seq
        if len(reply) > max_bytes:
            reply = wire.err(wire.unpack(reply)[1], ActorError(
                f"this ask ran once already; its reply ({len(reply)} bytes) was larger than "
                f"{max_bytes} bytes, so it was not kept for a retry").to_wire())
        writes[request_key(prefix, place)] = (
            _HEAD.pack(seq, int(now * 1_000_000), len(request_id)) + request_id + reply)
