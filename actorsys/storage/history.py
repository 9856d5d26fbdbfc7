"""History: each actor's committed versions, kept for a window, and rewinding to one.

What a user can rely on (for actor types with a ``history_window``; see config.py):

* Every commit that changes an actor (its state, storage entries or alarms) is a new
  **version**, numbered 1, 2, 3... ``ref.history()`` lists the retained versions as
  bookmarks ``{"version", "time"}`` (commit time, epoch seconds), oldest first.
* Versions committed within the window are kept, and so is the one that was current at
  the window's start (so any time inside the window can be restored); older ones are
  pruned as the actor commits (an idle actor keeps its old versions until then). The
  newest version is always kept, so numbering never restarts.
* ``ref.rewind(version=N)`` or ``ref.rewind(time=T)`` (the last version committed at or
  before T) restores state, storage and alarms as they were at that version; version 0
  (while version 1 is kept) is the actor before its first commit. The rewind is itself a
  new version, so rewinding to the version before it undoes it; rewinding to the
  current version changes nothing and records nothing. The live
  instance is dropped without ``on_stop`` (its memory is from the future); the next
  message activates the actor from the restored data (``on_start`` runs).
* ``ref.destroy()`` deletes everything, history included.

Storage: version N's record ``P + b"h" + N`` holds its commit time and the *previous*
value of every key that commit wrote (an undo log), so keeping history costs one more
write per commit plus the old values. Rewinding to V applies the undo of N, N-1 ... V+1.
"""
from __future__ import annotations

import math
import time
from itertools import islice
from typing import TYPE_CHECKING, Any

from ..protocol import wire
from .keys import ALARM, ENTRY, STATE, alarm_index_key_of, version_key, version_of_key, version_range

if TYPE_CHECKING:
    from .slot import SlotStore

#: what history covers (the byte after the actor's prefix): state, storage, alarms
_KEPT = (STATE[0], ENTRY[0], ALARM[0])


def records(store: "SlotStore", prefix: bytes) -> list[tuple[int, dict[str, Any]]]:
    """Every retained version of the actor, oldest first: ``[(version, record)]``; a
    record is ``{"t": commit time, "u": [[key after the prefix, value before], ...]}``."""
    lo, hi = version_range(prefix)
    return [(version_of_key(k), wire.unpack_stored(v))
            for k, v in store.range(lo, hi, actor=prefix)]


def bookmarks(store: "SlotStore", prefix: bytes) -> list[dict[str, Any]]:
    """``ref.history()``: ``[{"version", "time"}]``, oldest first."""
    return [{"version": v, "time": r["t"]} for v, r in records(store, prefix)]


class Versions:
    """The history bookkeeping of one activation (loaded at its first commit): the
    newest version number and the commit times pruning looks at."""

    __slots__ = ("last", "first_time", "second_time")

    def __init__(self, store: "SlotStore", prefix: bytes) -> None:
        lo, hi = version_range(prefix)
        newest = next(iter(store.range(lo, hi, reverse=True, actor=prefix)), None)
        #: the newest version (0: none yet)
        self.last = version_of_key(newest[0]) if newest else 0
        # commit times of the two oldest records: pruning has work once the second
        # oldest is older than the window (the oldest is then no longer needed)
        oldest = [wire.unpack_stored(v)["t"]
                  for _k, v in islice(store.range(lo, hi, actor=prefix), 2)]
        self.first_time: float | None = oldest[0] if oldest else None
        self.second_time: float | None = oldest[1] if len(oldest) > 1 else None

    def record(self, store: "SlotStore", prefix: bytes, writes: dict[bytes, bytes | None],
               old_state: bytes | None, window: float, now: float | None = None) -> None:
        """Add this commit's undo record (and prunes) to ``writes``; call before staging.
        ``old_state``: the state as last committed (the state key's old value); a commit
        that writes nothing history covers records no version. ``now``: the commit's
        time (default: the clock's)."""
        n = len(prefix)
        undo = []
        for k in writes:
            if len(k) > n and k[n] in _KEPT and k.startswith(prefix):
                sub = k[n:]
                undo.append([sub, old_state if sub == STATE else store.get(k)])
        if not undo:
            return
        if now is None:
            now = time.time()
        self.last += 1
        writes[version_key(prefix, self.last)] = wire.pack({"t": now, "u": undo})
        if self.first_time is None:
            self.first_time = now
        elif self.second_time is None:
            self.second_time = now
        elif self.second_time < now - window:
            self._prune(store, prefix, writes, now - window, now)

    def _prune(self, store: "SlotStore", prefix: bytes, writes: dict[bytes, bytes | None],
               cutoff: float, now: float) -> None:
        """Delete the records before the newest one older than ``cutoff`` (that one is
        the version current at the window's start: it stays)."""
        lo, hi = version_range(prefix)
        keep: tuple[bytes, float] | None = None
        self.second_time = now           # this commit's record, if nothing older is left
        for k, v in store.range(lo, hi, actor=prefix):
            t = wire.unpack_stored(v)["t"]
            if t >= cutoff:
                self.second_time = t
                break
            if keep is not None:
                writes[keep[0]] = None
            keep = (k, t)
        if keep is not None:
            self.first_time = keep[1]


def rewind_writes(store: "SlotStore", prefix: bytes, version: int | None,
                  at: float | None) -> tuple[dict[bytes, bytes | None], int, float | None]:
    """The writes that restore the actor to a version (or to its last version at or
    before time ``at``): ``(writes, target version, earliest restored alarm or None)``.
    Raises ValueError when that version is outside the retained history."""
    recs = records(store, prefix)
    if not recs:
        raise ValueError("this actor has no history (is history_window set for its type?)")
    oldest, newest = recs[0][0], recs[-1][0]
    if (version is None) == (at is None):
        raise ValueError("rewind takes a version or a time")
    if at is not None and (isinstance(at, bool) or not isinstance(at, (int, float))
                           or not math.isfinite(at)):
        raise TypeError("rewind's time is epoch seconds (a finite number)")
    if at is not None:
        before = [v for v, r in recs if r["t"] <= at]
        if before:
            version = before[-1]
        elif oldest == 1:
            version = 0                 # before the first commit: the empty actor
        else:
            raise ValueError(f"time {at} is before the history window (oldest version "
                             f"{oldest} at {recs[0][1]['t']})")
    assert version is not None
    # the listed versions, and 0 (the empty actor) while version 1 is kept
    lowest = 0 if oldest == 1 else oldest
    if type(version) is not int:
        raise TypeError(f"a version is an integer, got {type(version).__name__}")
    if not lowest <= version <= newest:
        raise ValueError(f"version {version!r} is not in the history window "
                         f"(versions {lowest}..{newest})")
    restore: dict[bytes, bytes | None] = {}
    for v, rec in reversed(recs):
        if v <= version:
            break
        for sub, old in rec["u"]:
            restore[bytes(sub)] = old
    writes: dict[bytes, bytes | None] = {}
    earliest: float | None = None
    for sub, old in restore.items():
        k = prefix + sub
        writes[k] = old
        if sub[:1] == ALARM:             # keep the alarm index in step with the records
            name = sub[1:]
            cur = store.get(k)
            if cur is not None:
                writes[alarm_index_key_of(prefix, name, cur)] = None
            if old is not None:
                writes[alarm_index_key_of(prefix, name, old)] = b""
                when = wire.unpack_stored(old)["when"]
                earliest = when if earliest is None else min(earliest, when)
    return writes, version, earliest
