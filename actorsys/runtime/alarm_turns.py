"""Alarm turns: the worker's side of alarms (what they promise, and how they are kept
in storage, is ``actorsys/storage/alarms.py``).

The slot's :class:`~actorsys.storage.alarms.AlarmClock` hands over due alarms;
:meth:`AlarmTurns.admit` counts each attempt durably (the alarm is leased until its
backoff: a delivery lost with its worker comes back then) and queues an ALARM entry
for its actor; the worker commits the attempts before any ``on_alarm`` runs. The turn
(:meth:`AlarmTurns.run`) deletes the alarm, or moves a recurring one to its next time,
in the turn's own commit, so a crash before that commit fires it again. A turn that
raises is retried after the backoff, or dropped after the last attempt (a recurring
alarm drops that firing and waits for its next time) (:meth:`AlarmTurns.failed`). On a
node started for testing, :meth:`AlarmTurns.fire` delivers an alarm before its time the
same way, its turn answering the ask that fired it (``testing_asks.py``).
"""
from __future__ import annotations

import inspect
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, cast

from ..errors import BadRequest, ShardUnavailable, UnknownActorType, WrongShard
from ..log import get_logger
from ..protocol import wire
from ..storage import alarms
from ..storage.keys import alarm_ident, alarm_record_key, alarm_records_range, due_us
from ..storage.view import Storage
from .activation import ALARM, STOPPED, Activation, Internal

if TYPE_CHECKING:
    from ..metrics import ProcessMetrics
    import asyncio

    from ..actor import Actor
    from ..protocol.shardmap import ShardMap
    from ..storage.slot import SlotStore
    from .activation import Envelope
    from .catalog import Catalog
    from .commit import GroupCommit

log = get_logger("worker")


class AlarmTurns:
    """Admits due alarms as turns, and settles each turn's outcome with the clock."""

    def __init__(self, catalog: Catalog, commit: GroupCommit, store: SlotStore,
                 shard_map: ShardMap, slot: int, retry: dict[str, float],
                 counters: dict[str, int]) -> None:
        self.catalog, self.commit, self.store = catalog, commit, store
        self.map, self.slot, self.retry, self.counters = shard_map, slot, retry, counters
        self.clock: alarms.AlarmClock | None = None
        #: the epoch time (tests drive a fake one)
        self.now: Callable[[], float] = time.time
        #: the process's metrics, when the node serves them (alarm lateness)
        self.metrics: ProcessMetrics | None = None

    def start_clock(self, loop: asyncio.AbstractEventLoop,
                    deliver: Callable[[list[tuple[int, int, str, str, str]]], None],
                    redeliver_after: float) -> alarms.AlarmClock:
        """Make the slot's alarm clock, which hands due alarms to ``deliver``."""
        self.clock = alarms.AlarmClock(loop, self.store, deliver, redeliver_after=redeliver_after)
        return self.clock

    def admit(self, batch: list[tuple[int, int, str, str, str]]) -> list[Activation]:
        """Count an attempt of each due alarm (staged: the caller commits them before any
        turn runs) and queue its turn; returns the activations to pump."""
        now = self.now()
        clock = self.clock
        assert clock is not None
        queued = []
        for due, shard, type_name, key, name in batch:
            if self.map.owner[shard] != self.slot or type_name not in self.catalog.classes:
                continue     # (a type that left the config: handed out again later)
            try:
                act = self.catalog.resident(type_name, key)
            except (UnknownActorType, BadRequest, WrongShard, ShardUnavailable):
                continue
            ident = alarm_ident(act.prefix, name)
            writes, at, attempt, skipped = alarms.reschedule(self.store, act.prefix, name, due,
                                                             self.retry, now, attempt_starts=True)
            if writes:
                self.store.stage(writes, act.prefix)
                if act.instance is not None:    # its view's cache must not serve the old record
                    cast(Storage, act.instance.storage).forget(writes)
            if at is None or skipped:
                why = "its attempts may have crashed the worker"
                if skipped and at is not None:
                    self._dropped(act, name, attempt, why, at)
                    clock.note(at)
                elif attempt >= 0:
                    self._dropped(act, name, attempt, why)
                clock.done(ident)
                clock.note(now)     # a stale entry may have hidden this alarm's real one
                continue
            clock.note(at)          # the lease: due again then if this attempt is lost
            if act.status is STOPPED:
                # a stopped supervised child does not run: this attempt failed
                self.counters["alarms_failed"] += 1
                clock.done(ident)
                continue
            self.counters["alarms_fired"] += 1
            if self.metrics is not None:
                self.metrics.alarm_late(type_name, now - due / 1e6)
            # queued now (a queued actor is never evicted), run once the attempts are durable
            act.mail().append(Internal(ALARM, name=name, due=due_us(at)))
            queued.append(act)
        return queued

    def run(self, act: Activation, inst: Actor, name: str, due: int, answer: bool = False) -> Any:
        """An alarm's turn: its record goes (a recurring one moves to its next time) with
        this turn's commit, then on_alarm runs (nothing runs if it was cancelled or set
        again meanwhile). ``answer`` (a fired alarm's turn, which has a caller:
        :meth:`fire`): the result is whether on_alarm ran (after awaiting it, if async),
        not what it returned."""
        rec = alarms.take_due(cast(Storage, inst.storage), name, due, self.now())
        if rec is None:
            return False if answer else None
        r = inst.on_alarm(name, rec["payload"])
        if not answer:
            return r
        return _ran(r) if inspect.isawaitable(r) else True

    def fire(self, act: Activation, name: str, reply_to: Envelope | None, rid: int) -> bool:
        """``$fire_alarm`` (a node started for testing, ``testing_asks.py``): deliver
        alarm ``name`` now, due or not, as :meth:`admit` delivers a due one: its attempt
        is counted and the alarm leased (staged: the caller commits before the turn
        runs), and its turn is queued behind the actor's mail, answering ``reply_to``
        when it ends. False, queuing nothing, if the actor has no such alarm or its
        attempts are used up (then it is dropped, as the clock would)."""
        raw = self.store.get(alarm_record_key(act.prefix, name))
        if raw is None:
            return False
        due = due_us(wire.unpack_stored(raw)["when"])
        writes, at, attempt, skipped = alarms.reschedule(self.store, act.prefix, name, due,
                                                         self.retry, self.now(), attempt_starts=True)
        if writes:
            self.store.stage(writes, act.prefix)
            if act.instance is not None:    # its view's cache must not serve the old record
                cast(Storage, act.instance.storage).forget(writes)
        if at is None or skipped:
            if skipped and at is not None:      # a recurring alarm: on to its next time
                self._dropped(act, name, attempt, "fired after its last attempt", at)
                self.note(at)
            elif attempt >= 0:
                self._dropped(act, name, attempt, "fired after its last attempt")
            return False
        self.note(at)               # the lease: due again then if this attempt is lost
        if self.clock is not None:  # (in flight: the clock does not hand it out as well)
            self.clock.hold(alarm_ident(act.prefix, name), self.now())
        self.counters["alarms_fired"] += 1
        act.mail().append(Internal(ALARM, reply_to=reply_to, rid=rid, name=name, due=due_us(at)))
        return True

    def names(self, act: Activation) -> list[str]:
        """The names of the actor's alarms, earliest first (then by name), as last
        committed (``$fire_alarm`` with no name)."""
        lo, hi = alarm_records_range(act.prefix)
        found = [(wire.unpack_stored(v)["when"], k[len(lo):].decode("utf-8", "replace"))
                 for k, v in self.store.range(lo, hi, committed=True)]
        return [name for _when, name in sorted(found)]

    def set_by(self, act: Activation, name: str) -> Any:
        """The trace context of the turn that set alarm ``name`` (None: none recorded)."""
        raw = self.store.get(alarm_record_key(act.prefix, name))
        rec = wire.unpack_stored(raw) if raw is not None else None
        return rec.get("trace") if isinstance(rec, dict) else None

    def failed(self, act: Activation, name: str, due: int, exc: BaseException) -> None:
        """on_alarm raised: retry after the backoff, or drop it after the last attempt."""
        self.counters["alarms_failed"] += 1
        writes, at, attempt, skipped = alarms.reschedule(self.store, act.prefix, name, due,
                                                         self.retry, self.now(), attempt_starts=False)
        if writes:
            self.store.stage(writes, act.prefix)
            self.commit.schedule()
        why = f"last error: {type(exc).__name__}: {str(exc):.300}"
        if skipped:
            self._dropped(act, name, attempt, why, at)
        elif at is None and attempt >= 0:
            self._dropped(act, name, attempt, why)
        if at is not None:
            self.note(at)
        self.done(act, name)

    def _dropped(self, act: Activation, name: str, attempts: int, why: str,
                 next_at: float | None = None) -> None:
        """Log a dropped alarm, or (``next_at``) a recurring alarm's dropped firing."""
        self.counters["alarms_dropped"] += 1
        if next_at is None:
            log.warning("alarm %.100r of %s/%.100s dropped after %d failed attempts; %s",
                        name, act.type_name, act.key, attempts, why)
        else:
            log.warning("firing of recurring alarm %.100r of %s/%.100s dropped after %d failed "
                        "attempts; next due in %.1f s; %s", name, act.type_name, act.key, attempts,
                        next_at - self.now(), why)

    def done(self, act: Activation, name: str) -> None:
        """The alarm's turn ended (committed, or failed and rescheduled)."""
        if self.clock is not None:
            self.clock.done(alarm_ident(act.prefix, name))

    def lost(self, act: Activation, name: str, due: int) -> None:
        """The alarm's turn will not run: it comes back at the end of its lease."""
        if self.clock is not None:
            self.clock.lost(alarm_ident(act.prefix, name), due)

    def note(self, when: float) -> None:
        """An alarm is due at ``when`` (epoch seconds): wake up for it."""
        if self.clock is not None:
            self.clock.note(when)

    def in_flight(self) -> int:
        return len(self.clock.inflight) if self.clock is not None else 0


async def _ran(on_alarm: Awaitable[Any]) -> bool:
    """An async on_alarm awaited: a fired alarm's turn answers that it ran."""
    await on_alarm
    return True
