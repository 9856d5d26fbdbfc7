"""Alarms: named, durable wake-ups an actor sets for itself.

What a user can rely on:

* ``self.set_alarm(when, name="default", payload=None)`` schedules ``on_alarm(name,
  payload)``. ``when`` is a delay in seconds, or an absolute epoch time (any value of
  1e9 or more). An actor holds as many alarms as it likes, one per name; setting a name
  again replaces that alarm. ``self.alarms()`` lists them, ``self.cancel_alarm(name)``
  cancels one. Like any write, these commit with the turn (a turn that fails sets
  nothing).
* A **recurring** alarm takes ``cron="*/5 * * * *"`` (with an optional ``tz=``) or
  ``every=seconds`` instead of ``when``: exactly one of the three is given, and a bad
  one is refused at the call (``TypeError``/``ValueError``, so the turn fails and
  commits nothing). Its schedule, what happens to missed times and how the next time
  is found are :mod:`.schedule`'s. It stays set until cancelled, set again (which
  replaces it, schedule and all) or its actor is destroyed; ``self.alarms()`` lists its
  next due time as ``when``, with its ``cron`` (and ``tz``) or ``every``.
* An alarm fires **at least once**: in the same commit as the turn that ran
  ``on_alarm``, a one-shot alarm's record is deleted and a recurring one's moves to its
  next time (attempt 0), so a crash before that commit fires it again. While
  ``on_alarm`` runs, a one-shot alarm is no longer listed and a recurring one is listed
  at its next time. An alarm reactivates a passivated actor; on an idle node it fires
  within a few milliseconds of its time.
* Each delivery is an **attempt**, counted durably before ``on_alarm`` runs. One that
  raises is retried with exponential backoff (node key ``alarm_retry = { initial = 1.0,
  max = 60.0, attempts = 6 }``); one that takes its worker down (a segfault, kill -9, a
  sync turn past ``turn_timeout``) is retried after the same backoff, counted the same
  way, so a poisonous alarm cannot crash-loop its worker. After the last attempt the
  alarm is dropped and the worker says so in its log; a recurring alarm drops only that
  firing and waits for its schedule's next time after the give-up (with fresh
  attempts). A raise is also the actor's crash, as for any handler. While a firing is
  retried, the schedule's times that pass are not fired separately (missed times fire
  once).
* Alarms survive worker crashes, node restarts and shard moves; one that came due while
  the node was down fires when its worker starts. An alarm of a supervised child that
  is stopped does not run: each time it comes due is a failed attempt, so it is dropped
  after the last one unless the child runs again before (a recurring one drops that
  firing).

Storage: the alarm record lives with the actor (``P + b"l" + name``); a slot-wide index
``b"t" + due + P[1:] + name`` keeps alarms in due order, so the worker's clock reads only
the alarms that are due (:mod:`.keys`). Durable Objects allows one alarm per object.

Work is bounded by what is due: the clock's scan stops at the first due-index entry in
the future, so tens of thousands of recurring alarms cost nothing between their times;
each has one record and one index entry at any time, and a firing costs one croniter
step on a cached parse (:mod:`.schedule`).

Here: the turn's alarm calls (:func:`set_alarm`, :func:`cancel_alarm`,
:func:`list_alarms`, on an actor's :class:`~.view.Storage`), a firing's turn
(:func:`take_due`), the attempt bookkeeping (:func:`reschedule`, :func:`backoff`) and
the worker's timer (:class:`AlarmClock`).
"""
from __future__ import annotations

import asyncio
import datetime
import math
import time
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from .. import tracing
from ..errors import LimitExceeded
from ..log import get_logger
from ..protocol import wire
from . import schedule
from .keys import (DUE_INDEX_RANGE, alarm_index_key, alarm_index_key_of, alarm_record_key,
                   alarm_records_range, due_us, index_entry_shard, index_key_due, index_key_ident,
                   parse_alarm_index_key)

if TYPE_CHECKING:
    from .slot import SlotStore
    from .view import Storage

log = get_logger("alarms")
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


def set_alarm(storage: "Storage", when: Any, name: str, payload: Any, *, cron: Any = None,
              every: Any = None, tz: Any = None, now: float | None = None) -> float:
    """Stage an alarm in the turn's writes; returns its (first) due time (epoch seconds).

    Exactly one of ``when`` (one-shot), ``cron`` (with ``tz``) and ``every`` (recurring,
    :mod:`.schedule`) is given; everything is checked before anything is staged."""
    _name_ok(name)
    now = time.time() if now is None else now
    given = [k for k, v in (("when", when), ("cron", cron), ("every", every)) if v is not None]
    if len(given) != 1:
        raise TypeError("set_alarm takes exactly one of when= (a delay in seconds, an epoch time "
                        "or an aware datetime), cron= and every="
                        + (f"; got {' and '.join(given)}" if given else ""))
    fields: dict[str, Any] = {}
    if when is not None:
        if tz is not None:
            raise TypeError("an alarm's tz= goes with cron= (a `when` is an absolute time)")
        at = _when(when, now)
    else:
        fields = schedule.check(cron, every, tz)
        at = schedule.first(fields, now)
    if due_us(at) > MAX_DUE_US:
        what = repr(when) if when is not None else f"{at!r} (every={every!r})"
        raise ValueError(f"alarm time {what} is too far in the future")
    record = {"when": at, "payload": payload, "attempt": 0}
    if fields:
        record.update(fields)
        record["scheduled"] = at
    trace = tracing.current()      # (the setting turn's span, when the node traces)
    if trace is not None:
        record["trace"] = trace
    packed = _pack(storage, name, record)
    prefix = storage.actor_range
    rk = alarm_record_key(prefix, name)
    old = storage.read_raw(rk)
    if old is not None:
        storage.write_raw(alarm_index_key_of(prefix, name, old), None)
    storage.write_raw(rk, packed)
    storage.write_raw(alarm_index_key(prefix, due_us(at), name), b"")
    if storage.alarms_changed is None or at < storage.alarms_changed:
        storage.alarms_changed = at
    return at


def _when(when: Any, now: float) -> float:
    """A one-shot alarm's due time from ``when``, checked."""
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None:
            raise TypeError("an alarm's `when` as a datetime must be timezone-aware")
        when = when.timestamp()
    if isinstance(when, bool) or not isinstance(when, (int, float)):
        raise TypeError("an alarm's `when` is a delay in seconds, an epoch time, or an aware datetime")
    if not math.isfinite(when):
        raise ValueError(f"an alarm's `when` must be finite, got {when!r}")
    return float(when) if when >= EPOCH_THRESHOLD else now + max(float(when), 0.0)


def _pack(storage: "Storage", name: str, record: dict[str, Any]) -> bytes:
    try:
        packed = wire.pack(record)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"the payload of alarm {name!r:.100} is not msgpack-able: {exc}") from None
    if len(packed) > storage.store.max_value_bytes:
        raise LimitExceeded(f"alarm {name!r:.100} is {len(packed)} bytes; max_value_bytes is "
                            f"{storage.store.max_value_bytes}")
    return packed


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
    """``{name: {"when", "payload", "attempt"}}`` in name order, as this turn sees them; a
    recurring alarm's also has ``"cron"`` and ``"tz"``, or ``"every"``."""
    lo, hi = alarm_records_range(storage.actor_range)
    n = len(lo)
    return {k[n:].decode("utf-8"): listed(wire.unpack_stored(v)) for k, v in storage.entries(lo, hi)}


def listed(record: Any) -> Any:
    """What a user sees of a stored alarm record (``self.alarms()``, the inspector):
    ``when`` is when it is next due (its next time, or its next attempt's)."""
    if not isinstance(record, dict):
        return record
    record.pop("trace", None)          # (the runtime's: the turn that set it)
    record.pop("scheduled", None)      # (the schedule's time `when` stands for: .schedule)
    if "cron" in record:
        record.setdefault("tz", "UTC")
    return record


def take_due(storage: "Storage", name: str, due: int, now: float) -> dict[str, Any] | None:
    """An alarm's firing, in its turn's writes: the record of alarm ``name`` delivered for
    ``due`` (microseconds), deleted (one-shot) or moved to its schedule's next time with
    fresh attempts (recurring); None if it was cancelled or set again meanwhile (that
    alarm stands)."""
    prefix = storage.actor_range
    rk = alarm_record_key(prefix, name)
    raw = storage.read_raw(rk)
    if raw is None:
        return None                  # cancelled meanwhile
    rec: dict[str, Any] = wire.unpack_stored(raw)
    if due_us(rec["when"]) != due:
        return None                  # set again meanwhile: that one fires at its time
    storage.write_raw(alarm_index_key(prefix, due, name), None)
    at = schedule.following(rec, now) if schedule.recurring(rec) else None
    if at is None or due_us(at) > MAX_DUE_US:
        if schedule.recurring(rec):       # (a schedule with no more times: never silent)
            log.warning("recurring alarm %.100r has no next time after this firing (%s); it "
                        "ends", name, rec.get("cron") or f"every {rec.get('every')} s")
        storage.write_raw(rk, None)
        return rec
    storage.write_raw(rk, wire.pack(_next_time(rec, at)))
    storage.write_raw(alarm_index_key(prefix, due_us(at), name), b"")
    if storage.alarms_changed is None or at < storage.alarms_changed:
        storage.alarms_changed = at
    return rec


def _next_time(rec: dict[str, Any], at: float) -> dict[str, Any]:
    """A recurring alarm's record at its next time ``at``, with fresh attempts."""
    return dict(rec, when=at, attempt=0, scheduled=at)


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
    #: the firing was given up after its last attempt, and the recurring alarm waits for
    #: its schedule's next time (``at``, attempt 0)
    skipped: bool = False


def reschedule(store: "SlotStore", prefix: bytes, name: str, due: int, retry: dict[str, float],
               now: float, attempt_starts: bool) -> Rescheduled:
    """The writes that move a due alarm to its next attempt, or drop it.

    ``attempt_starts``: a delivery is about to start; it is counted now and the alarm is
    leased until ``now + backoff`` (a delivery lost with its worker comes back then).
    Otherwise the attempt in progress failed: retry after the backoff. Returns
    ``(writes, new due time or None, attempts made, skipped)``: None with SUPERSEDED
    (-1) attempts when the alarm was cancelled or set again meanwhile, else None when it
    is dropped (its attempts are used up). A recurring alarm whose attempts are used up
    is not dropped: that firing is (``skipped``), and the alarm moves to its schedule's
    first time after ``now`` with fresh attempts (``at``).
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
        nxt = schedule.following(rec, now) if schedule.recurring(rec) else None
        if nxt is None or due_us(nxt) > MAX_DUE_US:
            writes[rk] = None
            return Rescheduled(writes, None, attempt)
        writes[rk] = wire.pack(_next_time(rec, nxt))
        writes[alarm_index_key(prefix, due_us(nxt), name)] = b""
        return Rescheduled(writes, nxt, attempt, skipped=True)
    if attempt_starts:
        attempt += 1
    at = now + backoff(retry, max(attempt, 1))
    # (the payload, the schedule and the setting turn's trace stay: an attempt's turn
    # links to the setting turn too)
    writes[rk] = wire.pack(dict(rec, when=at, attempt=attempt))
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

    def hold(self, ident: bytes, now: float) -> None:
        """An alarm handed out by other means than :meth:`scan` (``$fire_alarm`` on a
        testing node) is in flight as a scanned one is: not handed out again for
        ``redeliver_after`` or until its turn ends (:meth:`done`)."""
        self.inflight[ident] = now + self.redeliver_after

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
