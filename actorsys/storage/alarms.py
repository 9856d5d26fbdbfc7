"""Alarms: named, durable wake-ups an actor sets for itself.

What a user can rely on:

* ``self.set_alarm(when, name="default", payload=None)`` schedules ``on_alarm(name,
  payload)``. ``when`` is a delay in seconds, or an absolute epoch time (any value of
  1e9 or more). An actor holds as many alarms as it likes, one per name; setting a name
  again replaces that alarm. ``self.alarms()`` lists them, ``self.cancel_alarm(name)``
  cancels one. Like any write, these commit with the turn (a turn that fails sets
  nothing).
* An alarm fires **at least once**: its record is deleted in the same commit as the
  turn that ran ``on_alarm``, so a crash before that commit fires it again. An alarm
  reactivates a passivated actor; on an idle node it fires within a few milliseconds of
  its time.
* Each delivery is an **attempt**, counted durably before ``on_alarm`` runs. One that
  raises is retried with exponential backoff (node key ``alarm_retry = { initial = 1.0,
  max = 60.0, attempts = 6 }``); one that takes its worker down (a segfault, kill -9, a
  sync turn past ``turn_timeout``) is retried after the same backoff, counted the same
  way, so a poisonous alarm cannot crash-loop its worker. After the last attempt the
  alarm is dropped and the worker says so in its log. A raise is also the actor's crash,
  as for any handler.
* Alarms survive worker crashes, node restarts and shard moves; one that came due while
  the node was down fires when its worker starts. An alarm of a supervised child that
  is stopped does not run: each time it comes due is a failed attempt, so it is dropped
  after the last one unless the child runs again before.

Storage: the alarm record lives with the actor (``P + b"l" + name``); a slot-wide index
``b"t" + due + P[1:] + name`` keeps alarms in due order, so the worker's clock reads only
the alarms that are due (:mod:`.keys`). Durable Objects allows one alarm per object.

Here: the turn's alarm calls (:func:`set_alarm`, :func:`cancel_alarm`,
:func:`list_alarms`, on an actor's :class:`~.view.Storage`), the attempt bookkeeping
(:func:`reschedule`, :func:`backoff`) and the worker's timer (:class:`AlarmClock`).
"""
from __future__ import annotations

import asyncio
import datetime
import math
import time
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from .. import tracing
from ..errors import LimitExceeded
from ..protocol import wire
from .keys import (DUE_INDEX_RANGE, alarm_index_key, alarm_index_key_of, alarm_record_key,
                   alarm_records_range, due_us, index_entry_shard, index_key_due, index_key_ident,
                   parse_alarm_index_key)

if TYPE_CHECKING:
    from .slot import SlotStore
    from .view import Storage

MAX_ALARM_NAME_BYTES = 1024


MAX_DUE_US = 2 ** 63 - 1          # the due index holds 8 bytes of microseconds


EPOCH_THRESHOLD = 1e9           # a `when` at least this large is an epoch time


REDELIVER_AFTER = 30.0          # an alarm handed to its actor and not done by then is sent again


SCAN_BATCH = 2000               # alarms handed out per scan before yielding to the loop


def _name_ok(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"alarm names are strings, got {type(name).__name__}")
    if len(name.encode("utf-8")) > MAX_ALARM_NAME_BYTES:
        raise LimitExceeded(f"alarm name is longer than {MAX_ALARM_NAME_BYTES} bytes")
    return name


def set_alarm(storage: "Storage", when: float, name: str, payload: Any) -> float:
    """Stage an alarm in the turn's writes; returns its due time (epoch seconds)."""
    _name_ok(name)
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None:
            raise TypeError("an alarm's `when` as a datetime must be timezone-aware")
        when = when.timestamp()
    if isinstance(when, bool) or not isinstance(when, (int, float)):
        raise TypeError("an alarm's `when` is a delay in seconds, an epoch time, or an aware datetime")
    if not math.isfinite(when):
        raise ValueError(f"an alarm's `when` must be finite, got {when!r}")
    now = time.time()
    at = float(when) if when >= EPOCH_THRESHOLD else now + max(float(when), 0.0)
    if due_us(at) > MAX_DUE_US:
        raise ValueError(f"alarm time {when!r} is too far in the future")
    prefix = storage.actor_range
    rk = alarm_record_key(prefix, name)
    old = storage.read_raw(rk)
    if old is not None:
        storage.write_raw(alarm_index_key_of(prefix, name, old), None)
    try:
        record = {"when": at, "payload": payload, "attempt": 0}
        trace = tracing.current()      # (the setting turn's span, when the node traces)
        if trace is not None:
            record["trace"] = trace
        packed = wire.pack(record)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"the payload of alarm {name!r:.100} is not msgpack-able: {exc}") from None
    if len(packed) > storage.store.max_value_bytes:
        raise LimitExceeded(f"alarm {name!r:.100} is {len(packed)} bytes; max_value_bytes is "
                            f"{storage.store.max_value_bytes}")
    storage.write_raw(rk, packed)
    storage.write_raw(alarm_index_key(prefix, due_us(at), name), b"")
    if storage.alarms_changed is None or at < storage.alarms_changed:
        storage.alarms_changed = at
    return at


def cancel_alarm(storage: "Storage", name: str) -> bool:
    """Stage the removal of an alarm; returns whether it was set."""
    _name_ok(name)
    prefix = storage.actor_range
    rk = alarm_record_key(prefix, name)
    old = storage.read_raw(rk)
    if old is None:
        return False
    storage.write_raw(rk, None)
    storage.write_raw(alarm_index_key_of(prefix, name, old), None)
    return True


def list_alarms(storage: "Storage") -> dict[str, dict[str, Any]]:
    """``{name: {"when", "payload", "attempt"}}`` in name order, as this turn sees them."""
    lo, hi = alarm_records_range(storage.actor_range)
    n = len(lo)
    out = {}
    for k, v in storage.entries(lo, hi):
        rec = wire.unpack_stored(v)
        rec.pop("trace", None)         # (the runtime's: the turn that set it)
        out[k[n:].decode("utf-8")] = rec
    return out


def backoff(retry: dict[str, float], attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...)."""
    return min(retry["initial"] * 2.0 ** (attempt - 1), retry["max"])


#: ``Rescheduled.attempts`` of an alarm that was cancelled or set again meanwhile
SUPERSEDED = -1


class Rescheduled(NamedTuple):
    """What :func:`reschedule` decided for a due alarm."""

    #: to stage (the old due-index entry goes; the record and its new entry, or not)
    writes: dict[bytes, bytes | None]
    #: the alarm's new due time (epoch seconds), or None: dropped or superseded
    at: float | None
    #: attempts made so far, or SUPERSEDED (at is then None)
    attempts: int


def reschedule(store: "SlotStore", prefix: bytes, name: str, due: int, retry: dict[str, float],
               now: float, attempt_starts: bool) -> Rescheduled:
    """The writes that move a due alarm to its next attempt, or drop it.

    ``attempt_starts``: a delivery is about to start; it is counted now and the alarm is
    leased until ``now + backoff`` (a delivery lost with its worker comes back then).
    Otherwise the attempt in progress failed: retry after the backoff. Returns
    ``(writes, new due time or None, attempts made)``: None with SUPERSEDED (-1)
    attempts when the alarm was cancelled or set again meanwhile, else None when it is
    dropped (its attempts are used up).
    """
    rk = alarm_record_key(prefix, name)
    raw = store.get(rk)
    rec = wire.unpack_stored(raw) if raw is not None else None
    if rec is None or due_us(rec["when"]) != due:
        # cancelled or set again meanwhile (that alarm stands): this index entry is not
        # the record's own, so it goes (it was left behind by a lease written while a
        # turn that set the alarm again was still running)
        return Rescheduled({alarm_index_key(prefix, due, name): None}, None, SUPERSEDED)
    attempt = int(rec.get("attempt", 0))
    writes: dict[bytes, bytes | None] = {alarm_index_key(prefix, due, name): None}
    if attempt >= int(retry["attempts"]):
        writes[rk] = None
        return Rescheduled(writes, None, attempt)
    if attempt_starts:
        attempt += 1
    at = now + backoff(retry, max(attempt, 1))
    again = {"when": at, "payload": rec["payload"], "attempt": attempt}
    if "trace" in rec:
        again["trace"] = rec["trace"]     # (an attempt's turn links to the setting turn too)
    writes[rk] = wire.pack(again)
    writes[alarm_index_key(prefix, due_us(at), name)] = b""
    return Rescheduled(writes, at, attempt)


class AlarmClock:
    """The worker's timer: hands each due alarm of its slot to its actor.

    ``deliver([DueAlarm(due, shard, type, key, name), ...])`` starts the alarms' turns;
    ``done(ident)`` is called when a turn has ended (committed or failed). An alarm
    handed out and not done within ``redeliver_after`` (the worker passes
    ``REDELIVER_AFTER`` plus the turn timeout) is handed out again. ``now`` gives the
    epoch time (tests pass a fake one).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, store: "SlotStore",
                 deliver: Callable[[list[tuple[int, int, str, str, str]]], None],
                 redeliver_after: float, now: Callable[[], float] = time.time) -> None:
        self.loop, self.store, self.deliver = loop, store, deliver
        self.redeliver_after = redeliver_after
        self.now = now
        self.inflight: dict[bytes, float] = {}   # index key minus its due -> redelivery time
        self.timer: asyncio.TimerHandle | None = None
        self.next_due = math.inf
        self.fired = 0
        #: shard -> whether its alarms may fire now (None: all; a cluster worker's grant,
        #: ``actorsys/runtime/grants.py``); the owner rescans when it changes
        self.admits: Callable[[int], bool] | None = None

    def note(self, when: float) -> None:
        """An alarm due at ``when`` was set: wake up for it if it is the earliest."""
        if when < self.next_due:
            self._arm(when)

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.next_due = when
        self.timer = self.loop.call_later(max(when - self.now(), 0.0), self.scan)

    def done(self, ident: bytes) -> None:
        self.inflight.pop(ident, None)

    def lost(self, ident: bytes, due: int) -> None:
        """A handed-out alarm's turn will not run (its message was dropped): it is due
        again at ``due`` (its lease)."""
        self.inflight.pop(ident, None)
        self.note(due / 1_000_000)

    def rescan(self) -> None:
        """Scan now (what may fire changed: a grant, an import), instead of at the
        armed time."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.scan()

    def scan(self) -> None:
        """Hand out every due alarm (in due order), then sleep until the next one."""
        self.timer, self.next_due = None, math.inf
        now = self.now()
        if self.store.broken is not None:
            self._arm(now + 1.0)    # each attempt is counted by a write: wait for storage
            return
        now_us = due_us(now)
        wake = math.inf
        batch: list[tuple[int, int, str, str, str]] = []
        admits = self.admits
        for k, v in self.store.range(*DUE_INDEX_RANGE):
            due = index_key_due(k)
            if due > now_us:
                wake = min(wake, due / 1_000_000)
                break
            if admits is not None and not admits(index_entry_shard(k, v) or 0):
                continue            # not this slot's to serve now
            ident = index_key_ident(k)
            again = self.inflight.get(ident)
            if again is not None and again > now:
                wake = min(wake, again)
                continue
            if len(batch) >= SCAN_BATCH:
                wake = now          # more are due: carry on after other work
                break
            self.inflight[ident] = now + self.redeliver_after
            wake = min(wake, now + self.redeliver_after)     # if its turn is lost
            batch.append(parse_alarm_index_key(k))
        if wake < math.inf:
            self._arm(wake)         # before delivering: deliver() may note an earlier time
        if batch:
            self.fired += len(batch)
            self.deliver(batch)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
