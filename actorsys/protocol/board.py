"""The slot board: memory one node's processes share about its worker slots.

One anonymous shared ``mmap``, made by the node supervisor before it forks anything, so
the router and every worker inherit it. Per worker slot:

* ``beats``: two doubles, written by the worker: its last heartbeat and the start of
  the synchronous turn in progress (0.0: none), both ``time.monotonic()`` (the node
  supervisor kills a worker whose turn overruns or whose beats stop:
  ``supervisors/health.py``).
* the process record, written by the node supervisor: the slot's pid (0: none, the
  process is gone or waits out a restart backoff) and when it was forked.
* the turn label, written by the worker's slow-turn watch thread
  (:class:`~actorsys.runtime.loud.SlowTurnWatch`, which runs beside a blocked loop):
  which actor and method the running turn is, stamped with the turn's start time. The
  loop itself writes nothing more per turn than it did: the watch labels a turn it sees
  running (every :attr:`~actorsys.runtime.loud.SlowTurnWatch.poll` seconds).

Readers take no lock: a label is written as stamp 0, text, stamp; :meth:`SlotBoard.label`
accepts it only when it read the same non-zero stamp before and after the text, and the
router only when that stamp is the start of the turn in progress.

The router reads the board to answer ``status`` for a worker that cannot answer in time
(busy in a long synchronous turn, or gone): :mod:`actorsys.node.slots`.

After the worker slots, one record per other process the router asks for its status
(:data:`PEERS`: the supervision tree, the gateway), with its pid and fork time only,
written by the node supervisor: a tree or gateway that does not answer in time is then
told apart from one that is gone.
"""
from __future__ import annotations

import mmap
import struct
from typing import NamedTuple

#: bytes of one slot's record after the beats: pid, forked at, label stamp, label length,
#: label text
RECORD = 512
_HEAD = struct.Struct("<qddH")      # pid, forked_at, label stamp, label length
_STAMP_AT = 16                      # offset of the label stamp in a record
LABEL_MAX = RECORD - _HEAD.size
#: the other processes with a record (pid and fork time) after the worker slots
PEERS = ("tree", "gateway")
_PEER = struct.Struct("<qd")       # pid, forked_at


class SlotView(NamedTuple):
    """What the board says of one slot (times: ``time.monotonic()``, 0.0: none)."""

    pid: int             # 0: no process (gone, or waiting out a restart backoff)
    forked_at: float
    beat: float          # the worker's last heartbeat (its fork time until its first)
    turn: float          # start of the sync turn in progress
    actor: str | None    # "Type/key" of that turn, when the watch labelled it
    method: str | None


class SlotBoard:
    """The shared record of ``workers`` slots (see the module docstring)."""

    def __init__(self, workers: int) -> None:
        n = max(workers, 1)
        self.workers = n
        self._map = mmap.mmap(-1, 16 * n + RECORD * n + _PEER.size * len(PEERS))
        #: [heartbeat, sync turn start] per slot (``beats[2 * slot]``, ``beats[2 * slot + 1]``)
        self.beats = memoryview(self._map)[:16 * n].cast("d")
        self._records = memoryview(self._map)[16 * n:16 * n + RECORD * n]
        self._peers = memoryview(self._map)[16 * n + RECORD * n:]

    def _at(self, slot: int) -> int:
        if not 0 <= slot < self.workers:
            raise IndexError(f"no worker slot {slot} (the board has {self.workers})")
        return slot * RECORD

    # -- the node supervisor --------------------------------------------------------
    def forked(self, slot: int, pid: int, now: float) -> None:
        """A new worker runs in ``slot`` as ``pid`` since ``now``."""
        at = self._at(slot)
        _HEAD.pack_into(self._records, at, pid, now, 0.0, 0)

    def gone(self, slot: int) -> None:
        """The slot's process is gone (reaped); a new one is not running yet."""
        at = self._at(slot)
        _HEAD.pack_into(self._records, at, 0, 0.0, 0.0, 0)

    def peer_forked(self, role: str, pid: int, now: float) -> None:
        """The process of ``role`` (one of :data:`PEERS`) runs as ``pid`` since ``now``."""
        _PEER.pack_into(self._peers, _PEER.size * PEERS.index(role), pid, now)

    def peer_gone(self, role: str) -> None:
        """The process of ``role`` exited and was reaped."""
        _PEER.pack_into(self._peers, _PEER.size * PEERS.index(role), 0, 0.0)

    def peer(self, role: str) -> tuple[int, float]:
        """``(pid, forked_at)`` of ``role``'s process (pid 0: none running)."""
        pid, forked_at = _PEER.unpack_from(self._peers, _PEER.size * PEERS.index(role))
        return int(pid), float(forked_at)

    # -- the worker (its slow-turn watch thread) ---------------------------------------
    def write_label(self, slot: int, stamp: float, actor: str, method: str) -> None:
        """Label the turn that started at ``stamp``: ``actor`` ("Type/key") and ``method``
        (cut to fit :data:`LABEL_MAX` bytes)."""
        at = self._at(slot)
        text = (actor.encode("utf-8", "replace")[:LABEL_MAX - 101] + b"\0"
                + method.encode("utf-8", "replace")[:100])
        rec = self._records
        struct.pack_into("<d", rec, at + _STAMP_AT, 0.0)
        rec[at + _HEAD.size:at + _HEAD.size + len(text)] = text
        struct.pack_into("<H", rec, at + _STAMP_AT + 8, len(text))
        struct.pack_into("<d", rec, at + _STAMP_AT, stamp)

    # -- the router -----------------------------------------------------------------
    def read(self, slot: int) -> SlotView:
        """One slot's record; the label only if it is the running turn's."""
        at = self._at(slot)
        beat, turn = self.beats[2 * slot], self.beats[2 * slot + 1]
        pid, forked_at, stamp, length = _HEAD.unpack_from(self._records, at)
        actor = method = None
        if turn and stamp == turn:
            text = bytes(self._records[at + _HEAD.size:at + _HEAD.size + min(length, LABEL_MAX)])
            if struct.unpack_from("<d", self._records, at + _STAMP_AT)[0] == stamp and b"\0" in text:
                a, m = text.split(b"\0", 1)
                actor, method = a.decode("utf-8", "replace"), m.decode("utf-8", "replace")
        return SlotView(pid, forked_at, beat, turn, actor, method)
