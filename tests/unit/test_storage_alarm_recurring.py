"""Recurring alarms below a node, with a driven clock: their records and due-index
entries through setting, firing, retries, give-up, replacing and cancelling; old records
stay one-shot; and many recurring alarms on the real AlarmClock and LevelDB: each fires
once per time of its schedule, once after downtime, and the clock reads only what is due.
"""
from __future__ import annotations

from typing import Any, Iterator

import pytest
from loops import FakeLoop

from actorsys.protocol import wire
from actorsys.storage import alarms
from actorsys.storage.alarms import AlarmClock, reschedule, take_due
from actorsys.storage.keys import (DUE_INDEX_RANGE, actor_prefix, alarm_ident, alarm_index_key,
                                   alarm_record_key, due_us, parse_alarm_index_key)
from actorsys.storage.slot import SlotStore
from actorsys.storage.view import Storage

P = actor_prefix(1, "Ticker", "t1")
RETRY = {"initial": 1.0, "max": 4.0, "attempts": 3}
T0 = 2_000_000_000.0          # 2033-05-18 03:33:20 UTC


@pytest.fixture
def store(tmp_path) -> Iterator[SlotStore]:
    s = SlotStore(str(tmp_path / "slot-0"), fsync=False, max_value_bytes=4096)
    yield s
    s.close()


def commit(store: SlotStore, prefix: bytes, view: Storage) -> None:
    store.stage(view.take_writes(), prefix)
    store.commit()


def set_at(store: SlotStore, now: float, name: str, prefix: bytes = P, **how: Any) -> float:
    """A committed turn of the actor at ``prefix`` that sets alarm ``name`` at ``now``."""
    view = Storage(store, prefix)
    at = alarms.set_alarm(view, how.pop("when", None), name, how.pop("payload", None), now=now, **how)
    commit(store, prefix, view)
    return at


def fire_at(store: SlotStore, now: float, name: str, due: int, prefix: bytes = P) -> Any:
    """The alarm's turn at ``now`` (delivered for ``due``), committed; take_due's answer."""
    view = Storage(store, prefix)
    rec = take_due(view, name, due, now)
    commit(store, prefix, view)
    return rec


def record(store: SlotStore, name: str, prefix: bytes = P) -> dict[str, Any] | None:
    raw = store.get(alarm_record_key(prefix, name))
    return None if raw is None else wire.unpack_stored(raw)


def index(store: SlotStore) -> list[tuple[int, str]]:
    return [(d.due, d.name) for d in (parse_alarm_index_key(k) for k, _v in store.range(*DUE_INDEX_RANGE))]


# -- set, list, fire ------------------------------------------------------------------------

def test_a_recurring_alarm_keeps_its_schedule_in_its_record_and_lists_its_next_time(store):
    every = set_at(store, T0, "beat", every=30, payload={"n": 1})
    cron = set_at(store, T0, "report", cron="*/5 * * * *")
    zoned = set_at(store, T0, "morning", cron="0 9 * * *", tz="Europe/Berlin")
    assert (every, cron) == (T0 + 30, T0 + 100)            # 03:33:50, 03:35:00 UTC
    assert record(store, "beat") == {"when": T0 + 30, "payload": {"n": 1}, "attempt": 0,
                                     "every": 30.0, "scheduled": T0 + 30}
    assert Storage(store, P).alarms() == {
        "beat": {"when": T0 + 30, "payload": {"n": 1}, "attempt": 0, "every": 30.0},
        "morning": {"when": zoned, "payload": None, "attempt": 0, "cron": "0 9 * * *",
                    "tz": "Europe/Berlin"},
        "report": {"when": T0 + 100, "payload": None, "attempt": 0, "cron": "*/5 * * * *", "tz": "UTC"},
    }, "the next due time as `when`, the schedule beside it (not the runtime's own fields)"
    assert index(store) == sorted([(due_us(T0 + 30), "beat"), (due_us(T0 + 100), "report"),
                                   (due_us(zoned), "morning")])


def test_a_firing_moves_a_recurring_alarm_to_its_next_time_in_the_same_turn(store):
    set_at(store, T0, "beat", every=30, payload="p")
    view = Storage(store, P)
    rec = take_due(view, "beat", due_us(T0 + 30), T0 + 30.004)
    assert rec is not None and rec["payload"] == "p"
    assert view.alarms() == {"beat": {"when": T0 + 60, "payload": "p", "attempt": 0, "every": 30.0}}, \
        "while on_alarm runs, it is listed at its next time"
    assert view.alarms_changed == T0 + 60, "the worker's clock learns the next time"
    commit(store, P, view)
    assert index(store) == [(due_us(T0 + 60), "beat")], "one index entry, at the next time"


def test_a_one_shot_alarm_and_a_record_from_before_schedules_are_deleted_by_their_firing(store):
    set_at(store, T0, "once", when=T0 + 5)
    old = {"when": T0 + 7, "payload": "old", "attempt": 0}      # as written before issue 18
    store.stage({alarm_record_key(P, "old"): wire.pack(old), alarm_index_key(P, due_us(T0 + 7), "old"): b""},
                P)
    store.commit()
    assert Storage(store, P).alarms()["old"] == old, "an old record lists as it was"
    assert fire_at(store, T0 + 5, "once", due_us(T0 + 5))["when"] == T0 + 5
    assert fire_at(store, T0 + 7, "old", due_us(T0 + 7)) == old
    assert record(store, "once") is None and record(store, "old") is None and index(store) == []


def test_a_firing_for_a_due_time_the_alarm_no_longer_has_does_nothing(store):
    set_at(store, T0, "beat", every=30)
    view = Storage(store, P)
    assert take_due(view, "beat", due_us(T0 + 29), T0 + 30) is None, "set again meanwhile"
    assert take_due(view, "gone", due_us(T0 + 30), T0 + 30) is None, "cancelled meanwhile"
    assert view.take_writes() == {}


def test_setting_the_name_again_replaces_the_schedule_and_cancel_stops_it(store):
    set_at(store, T0, "beat", every=30)
    set_at(store, T0 + 1, "beat", cron="@hourly", payload=2)
    assert record(store, "beat") == {"when": T0 + 1600, "payload": 2, "attempt": 0,
                                     "cron": "@hourly", "scheduled": T0 + 1600}, "no `every` left"
    assert index(store) == [(due_us(T0 + 1600), "beat")]
    set_at(store, T0 + 2, "beat", when=T0 + 10)
    assert record(store, "beat") == {"when": T0 + 10, "payload": None, "attempt": 0}, "one-shot now"
    set_at(store, T0 + 3, "beat", every=5)
    fire_at(store, T0 + 8, "beat", due_us(T0 + 8))
    view = Storage(store, P)
    assert view.cancel_alarm("beat") is True
    commit(store, P, view)
    assert record(store, "beat") is None and index(store) == [], "cancelled: no next time"


def test_bad_schedules_raise_at_the_call_and_stage_nothing(store):
    set_at(store, T0, "beat", every=30)
    view = Storage(store, P)
    for how, error in [({"when": 5, "cron": "* * * * *"}, TypeError),
                       ({"cron": "* * * * *", "every": 5}, TypeError),
                       ({"when": 5, "every": 5}, TypeError),
                       ({}, TypeError),
                       ({"cron": "not a cron"}, ValueError),
                       ({"cron": "0 0 30 2 *"}, ValueError),
                       ({"every": 0}, ValueError),
                       ({"every": 0.01}, ValueError),
                       ({"every": 1e15}, ValueError),
                       ({"when": 5, "tz": "UTC"}, TypeError),
                       ({"every": 5, "payload": object()}, TypeError)]:
        with pytest.raises(error):
            alarms.set_alarm(view, how.pop("when", None), "beat", how.pop("payload", None), now=T0, **how)
    assert view.take_writes() == {} and view.alarms_changed is None, "nothing staged"
    assert record(store, "beat")["every"] == 30.0, "the alarm it would have replaced stands"


# -- attempts, retries and the give-up ---------------------------------------------------------

def test_retries_keep_the_schedule_and_a_given_up_firing_waits_for_the_next_time(store):
    set_at(store, T0, "beat", every=10, payload="p")
    due, now, seen = due_us(T0 + 10), T0 + 10, []
    while True:
        started = reschedule(store, P, "beat", due, RETRY, now, attempt_starts=True)
        store.stage(started.writes, P)
        store.commit()
        assert started.at is not None and not started.skipped
        assert record(store, "beat")["every"] == 10.0, "a lease keeps the schedule"
        failed = reschedule(store, P, "beat", due_us(started.at), RETRY, now, attempt_starts=False)
        store.stage(failed.writes, P)
        store.commit()
        assert failed.at is not None, "a recurring alarm is never dropped by its failures"
        if failed.skipped:
            break
        seen.append((failed.attempts, failed.at - now))
        due, now = due_us(failed.at), failed.at
    assert seen == [(1, 1.0), (2, 2.0)]
    assert now == T0 + 13 and failed.attempts == 3
    assert failed.at == T0 + 20, "the next time of the schedule after the give-up"
    assert record(store, "beat") == {"when": T0 + 20, "payload": "p", "attempt": 0, "every": 10.0,
                                     "scheduled": T0 + 20}, "fresh attempts"
    assert index(store) == [(due_us(T0 + 20), "beat")]
    assert fire_at(store, T0 + 20, "beat", due_us(T0 + 20)) is not None
    assert record(store, "beat")["when"] == T0 + 30, "and it carries on"


def test_retries_past_later_times_fire_once_then_the_schedule_resumes(store):
    """Retried past two later times: those are not fired separately."""
    set_at(store, T0, "beat", every=1)
    due, now = due_us(T0 + 1), T0 + 1
    for _ in range(2):                        # two failed attempts: 1 s, then 2 s back off
        started = reschedule(store, P, "beat", due, RETRY, now, attempt_starts=True)
        store.stage(started.writes, P)
        store.commit()
        failed = reschedule(store, P, "beat", due_us(started.at), RETRY, now, attempt_starts=False)
        store.stage(failed.writes, P)
        store.commit()
        due, now = due_us(failed.at), failed.at
    assert now == T0 + 4
    started = reschedule(store, P, "beat", due, RETRY, now, attempt_starts=True)
    store.stage(started.writes, P)
    store.commit()
    fire_at(store, now + 0.01, "beat", due_us(started.at))        # the third attempt succeeds
    assert record(store, "beat")["when"] == T0 + 5, "times 2, 3 and 4 were this firing; then 5"


def test_a_recurring_alarm_whose_attempts_crash_is_skipped_to_its_next_time(store):
    """Leases that are never ended (the worker died each time) count the same way."""
    set_at(store, T0, "cron", cron="*/5 * * * *")       # first at 03:35:00 = T0 + 100
    due, now = due_us(T0 + 100), T0 + 100
    for _ in range(RETRY["attempts"]):
        r = reschedule(store, P, "cron", due, RETRY, now, attempt_starts=True)
        store.stage(r.writes, P)
        store.commit()
        due, now = due_us(r.at), r.at
    r = reschedule(store, P, "cron", due, RETRY, now, attempt_starts=True)
    assert r.skipped and r.attempts == 3 and r.at == T0 + 400, "03:40:00"
    store.stage(r.writes, P)
    store.commit()
    assert record(store, "cron")["attempt"] == 0 and index(store) == [(due_us(T0 + 400), "cron")]


# -- many recurring alarms on the clock ---------------------------------------------------------

class Worker:
    """What the worker does with the clock's batches (admit, then the turn), driven by a
    fake loop: each alarm's turn fires at the loop's time and commits. Counts the
    due-index entries each scan reads from the real store."""

    def __init__(self, store: SlotStore, loop: FakeLoop, monkeypatch: pytest.MonkeyPatch) -> None:
        self.store, self.loop = store, loop
        self.clock = AlarmClock(loop, store, self.deliver, redeliver_after=30.0, now=loop.time)
        #: key -> [(the schedule's time it fired for, when it fired)]
        self.fired: dict[str, list[tuple[float, float]]] = {}
        self.batches: list[int] = []
        self.reads: list[int] = []
        real_range, real_scan = store.range, self.clock.scan

        def counted(lo: bytes, hi: bytes, *args: Any, **kwargs: Any) -> Iterator[tuple[bytes, bytes]]:
            for kv in real_range(lo, hi, *args, **kwargs):
                if self.scanning:
                    self.reads[-1] += 1
                yield kv

        def scan() -> None:
            self.reads.append(0)
            self.scanning = True
            try:
                real_scan()
            finally:
                self.scanning = False
        self.scanning = False
        monkeypatch.setattr(store, "range", counted)
        monkeypatch.setattr(self.clock, "scan", scan)

    def deliver(self, batch: list[Any]) -> None:
        self.scanning = False         # (the turns' reads are not the scan's)
        self.batches.append(len(batch))
        now = self.loop.now
        for due, shard, type_name, key, name in batch:
            prefix = actor_prefix(shard, type_name, key)
            r = reschedule(self.store, prefix, name, due, RETRY, now, attempt_starts=True)
            self.store.stage(r.writes, prefix)
            self.store.commit()
            rec = fire_at(self.store, now, name, due_us(r.at), prefix)
            assert rec is not None
            self.fired.setdefault(key, []).append((rec["scheduled"], now))
            self.clock.done(alarm_ident(prefix, name))
            self.clock.note(record(self.store, name, prefix)["when"])


def test_many_recurring_alarms_fire_once_per_time_and_once_after_downtime(store, monkeypatch):
    n, every = 1200, 60.0
    keys = [f"k{i:04d}" for i in range(n)]
    offsets = {k: (i % 600) / 10 + 0.05 for i, k in enumerate(keys)}   # spread over the minute
    for k in keys:
        set_at(store, T0 - every + offsets[k], "tick", prefix=actor_prefix(7, "Ticker", k), every=every)
    loop = FakeLoop(T0)
    w = Worker(store, loop, monkeypatch)
    w.clock.note(T0)
    for step in range(1, 2 * 600 + 1):                 # two minutes, in 0.1 s steps
        loop.advance(T0 + step / 10)
    for k in keys:
        times = [T0 + offsets[k], T0 + every + offsets[k]]
        assert [s for s, _at in w.fired[k]] == pytest.approx(times, abs=1e-6), \
            "each alarm once per minute, at its schedule's times"
        assert all(0 < at - s <= 0.1 + 1e-6 for s, at in w.fired[k]), "at the first scan after"
    assert max(w.batches) == 2, "only what is due is handed out (two alarms per 0.1 s)"
    assert max(w.reads) <= max(w.batches) + 1, \
        f"a scan reads the due entries and the first one that is not: {max(w.reads)} reads"
    assert len(index(store)) == n, "one due-index entry per alarm, always"
    loop.advance(T0 + 2 * every + 600)                 # the node is down for ten minutes
    assert all(len(w.fired[k]) == 3 for k in keys), "ten missed times fire once, not in a burst"
    assert len(index(store)) == n
    for k in keys:
        assert record(store, "tick", actor_prefix(7, "Ticker", k))["when"] == \
            pytest.approx(T0 + 12 * every + offsets[k], abs=1e-6), "then on the schedule again"
