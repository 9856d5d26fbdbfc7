"""Alarms below a node: setting, replacing, cancelling and listing them in a turn, the
due index, reschedule's attempts, backoff and give-up, and the AlarmClock driven by a
fake loop and a fake clock (no sleeps)."""
from __future__ import annotations

import datetime
import math
import time
from typing import Any, Callable, Iterator

import pytest
from loops import FakeLoop

from actorsys.errors import LimitExceeded, StorageError
from actorsys.protocol import wire
from actorsys.storage import alarms
from actorsys.storage.alarms import (MAX_ALARM_NAME_BYTES, SUPERSEDED, AlarmClock, backoff,
                                     reschedule)
from actorsys.storage.keys import (DUE_INDEX_RANGE, actor_prefix, alarm_ident, alarm_index_key,
                                   alarm_record_key, due_us, parse_alarm_index_key)
from actorsys.storage.slot import SlotStore
from actorsys.storage.view import Storage

P = actor_prefix(1, "Alarmed", "a1")
Q = actor_prefix(0, "Alarmed", "a0")
RETRY = {"initial": 1.0, "max": 5.0, "attempts": 4}
T0 = 2_000_000_000.0          # a fixed "now" (epoch seconds)


@pytest.fixture
def store(tmp_path) -> Iterator[SlotStore]:
    s = SlotStore(str(tmp_path / "slot-0"), fsync=False, max_value_bytes=1024)
    yield s
    s.close()


def turn(store: SlotStore, prefix: bytes, body: Callable[[Storage], Any]) -> Any:
    """Run ``body`` as a turn of the actor at ``prefix`` and commit it."""
    view = Storage(store, prefix)
    result = body(view)
    store.stage(view.take_writes(), prefix)
    store.commit()
    return result


def due_index(store: SlotStore) -> list[tuple[int, int, str, str, str]]:
    return [parse_alarm_index_key(k) for k, _v in store.range(*DUE_INDEX_RANGE)]


def record(store: SlotStore, prefix: bytes, name: str) -> dict[str, Any] | None:
    raw = store.get(alarm_record_key(prefix, name))
    return None if raw is None else wire.unpack_stored(raw)


# -- set, replace, cancel, list ----------------------------------------------------------

def test_set_alarm_takes_a_delay_an_epoch_time_or_an_aware_datetime(store):
    view = Storage(store, P)
    before = time.time()
    at = view.set_alarm(30, "delay")
    assert before + 30 <= at <= time.time() + 30
    assert view.set_alarm(T0, "epoch") == T0
    past = view.set_alarm(-5, "past")
    assert before <= past <= time.time(), "a negative delay is due now"
    aware = datetime.datetime(2034, 1, 1, tzinfo=datetime.timezone.utc)
    assert view.set_alarm(aware, "datetime") == aware.timestamp()
    assert view.alarms_changed == past, "the earliest alarm the turn set, for the worker's clock"
    listed = view.alarms()
    assert list(listed) == ["datetime", "delay", "epoch", "past"], "in name order, before the commit"
    assert listed["epoch"] == {"when": T0, "payload": None, "attempt": 0}


def test_set_alarm_refuses_bad_times_names_and_payloads(store):
    view = Storage(store, P)
    with pytest.raises(TypeError, match="timezone-aware"):
        view.set_alarm(datetime.datetime(2030, 1, 1), "naive")
    for bad in (True, "10", None):
        with pytest.raises(TypeError, match="delay in seconds"):
            view.set_alarm(bad, "x")
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="finite"):
            view.set_alarm(bad, "x")
    with pytest.raises(ValueError, match="too far in the future"):
        view.set_alarm(1e13, "x")
    with pytest.raises(TypeError, match="alarm names are strings"):
        view.set_alarm(1, 7)
    with pytest.raises(LimitExceeded, match=f"longer than {MAX_ALARM_NAME_BYTES} bytes"):
        view.set_alarm(1, "n" * (MAX_ALARM_NAME_BYTES + 1))
    with pytest.raises(TypeError, match="payload of alarm 'x' is not msgpack-able"):
        view.set_alarm(1, "x", object())
    with pytest.raises(LimitExceeded, match="max_value_bytes is 1024"):
        view.set_alarm(1, "x", "p" * 1024)
    assert view.take_writes() == {} and view.alarms() == {}, "nothing was set"


def test_setting_a_name_again_replaces_its_alarm_and_its_index_entry(store):
    turn(store, P, lambda v: v.set_alarm(T0 + 10, "tick", 1))
    turn(store, P, lambda v: v.set_alarm(T0 + 5, "tick", 2))
    assert record(store, P, "tick") == {"when": T0 + 5, "payload": 2, "attempt": 0}
    assert due_index(store) == [(due_us(T0 + 5), 1, "Alarmed", "a1", "tick")], "one entry, the new one"


def test_cancel_removes_the_record_and_its_index_entry(store):
    turn(store, P, lambda v: (v.set_alarm(T0, "a"), v.set_alarm(T0, "b")))
    assert turn(store, P, lambda v: v.cancel_alarm("a")) is True
    assert turn(store, P, lambda v: v.cancel_alarm("a")) is False, "no longer set"
    assert turn(store, P, lambda v: list(v.alarms())) == ["b"]
    assert [d.name for d in due_index(store)] == ["b"]


def test_the_due_index_holds_every_actors_alarms_in_due_order(store):
    turn(store, P, lambda v: (v.set_alarm(T0 + 3, "late"), v.set_alarm(T0 + 1, "early")))
    turn(store, Q, lambda v: v.set_alarm(T0 + 2, "middle"))
    assert [(d.due, d.shard, d.key, d.name) for d in due_index(store)] == [
        (due_us(T0 + 1), 1, "a1", "early"), (due_us(T0 + 2), 0, "a0", "middle"),
        (due_us(T0 + 3), 1, "a1", "late")]


# -- attempts: reschedule and backoff --------------------------------------------------------

def test_backoff_doubles_from_initial_up_to_max():
    assert [backoff(RETRY, n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_each_attempt_is_counted_before_it_starts_and_leases_the_alarm(store):
    turn(store, P, lambda v: v.set_alarm(T0, "tick", "p"))
    r = reschedule(store, P, "tick", due_us(T0), RETRY, T0, attempt_starts=True)
    assert (r.at, r.attempts) == (T0 + 1.0, 1)
    assert r.writes == {alarm_index_key(P, due_us(T0), "tick"): None,
                        alarm_record_key(P, "tick"):
                            wire.pack({"when": T0 + 1.0, "payload": "p", "attempt": 1}),
                        alarm_index_key(P, due_us(T0 + 1.0), "tick"): b""}
    writes, at, attempts, skipped = r                 # the runtime unpacks it as a tuple
    assert (at, attempts, skipped) == (T0 + 1.0, 1, False)


def test_failed_attempts_back_off_and_the_alarm_is_dropped_after_the_last(store):
    turn(store, P, lambda v: v.set_alarm(T0, "tick"))
    due, now, seen = due_us(T0), T0, []
    while True:
        started = reschedule(store, P, "tick", due, RETRY, now, attempt_starts=True)
        store.stage(started.writes, P)
        store.commit()
        assert started.at is not None
        failed = reschedule(store, P, "tick", due_us(started.at), RETRY, now, attempt_starts=False)
        store.stage(failed.writes, P)
        store.commit()
        if failed.at is None:
            break
        seen.append((failed.attempts, failed.at - now))
        due, now = due_us(failed.at), failed.at
    assert seen == [(1, 1.0), (2, 2.0), (3, 4.0)]
    assert failed.attempts == RETRY["attempts"], "dropped when its last attempt failed"
    assert record(store, P, "tick") is None and due_index(store) == []


def test_attempts_that_never_end_are_counted_too_and_the_alarm_is_dropped(store):
    """A delivery lost with its worker (a crash) fails nothing explicitly: the lease
    comes due and the next start counts it."""
    turn(store, P, lambda v: v.set_alarm(T0, "tick"))
    due, now, leases = due_us(T0), T0, []
    for _ in range(5):
        r = reschedule(store, P, "tick", due, RETRY, now, attempt_starts=True)
        store.stage(r.writes, P)
        store.commit()
        if r.at is None:
            break
        leases.append((r.attempts, r.at - now))
        due, now = due_us(r.at), r.at
    assert leases == [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0)]
    assert (r.at, r.attempts) == (None, 4) and record(store, P, "tick") is None and due_index(store) == []


def test_an_alarm_cancelled_or_set_again_meanwhile_only_loses_the_stale_index_entry(store):
    turn(store, P, lambda v: v.set_alarm(T0, "tick"))
    stale = due_us(T0) - 1
    r = reschedule(store, P, "tick", stale, RETRY, T0, attempt_starts=True)
    assert r == ({alarm_index_key(P, stale, "tick"): None}, None, SUPERSEDED, False)
    gone = reschedule(store, P, "never", due_us(T0), RETRY, T0, attempt_starts=True)
    assert gone.attempts == SUPERSEDED and gone.at is None


# -- the clock ----------------------------------------------------------------------------------

@pytest.fixture
def clocked(store) -> Iterator[tuple[FakeLoop, AlarmClock, list[list[Any]]]]:
    loop, delivered = FakeLoop(T0), []
    clock = AlarmClock(loop, store, delivered.append, redeliver_after=30.0, now=loop.time)
    yield loop, clock, delivered
    clock.close()
    assert loop.pending() == [], "close cancels the timer"


def test_the_clock_hands_out_due_alarms_in_due_order_and_sleeps_until_the_next(store, clocked):
    loop, clock, delivered = clocked
    turn(store, P, lambda v: (v.set_alarm(T0 + 2, "second"), v.set_alarm(T0 + 9, "later")))
    turn(store, Q, lambda v: v.set_alarm(T0 + 1, "first"))
    clock.note(T0 + 1)
    assert loop.pending() == [T0 + 1]
    clock.note(T0 + 5)
    assert loop.pending() == [T0 + 1], "a later time does not move the timer"
    loop.advance(T0 + 2)
    assert [[d.name for d in batch] for batch in delivered] == [["first", "second"]]
    assert loop.pending() == [T0 + 9], "asleep until the next due alarm"
    assert clock.fired == 2


def test_a_handed_out_alarm_is_not_handed_out_again_until_its_redelivery_time(store, clocked):
    loop, clock, delivered = clocked
    turn(store, P, lambda v: v.set_alarm(T0, "tick"))
    clock.note(T0)
    loop.advance(T0)
    assert len(delivered) == 1 and loop.pending() == [T0 + 30.0], "awake for a lost turn"
    clock.note(T0)
    loop.advance(T0)
    assert len(delivered) == 1 and loop.pending() == [T0 + 30.0], "in flight: not handed out twice"
    loop.advance(T0 + 30.0)
    assert len(delivered) == 2, "its turn never ended: handed out again"
    clock.done(alarm_ident(P, "tick"))
    clock.note(T0 + 30.0)
    loop.advance(T0 + 30.0)
    assert len(delivered) == 3, "done: the index entry (still there) is due again"


def test_a_lost_alarm_is_due_again_at_its_lease(store, clocked):
    loop, clock, delivered = clocked
    turn(store, P, lambda v: v.set_alarm(T0, "tick"))
    clock.note(T0)
    loop.advance(T0)
    assert len(delivered) == 1
    clock.lost(alarm_ident(P, "tick"), due_us(T0 + 4))
    assert loop.pending() == [T0 + 4] and clock.inflight == {}


def test_the_clock_waits_for_a_read_only_store(store, clocked):
    loop, clock, delivered = clocked
    turn(store, P, lambda v: v.set_alarm(T0, "tick"))
    store.broken = StorageError("stand-in for a failed commit")
    clock.note(T0)
    loop.advance(T0)
    assert delivered == [] and loop.pending() == [T0 + 1.0], "each attempt is a write: later"
    store.broken = None
    loop.advance(T0 + 1.0)
    assert len(delivered) == 1


def test_a_scan_hands_out_at_most_a_batch_then_carries_on(store, clocked, monkeypatch):
    loop, clock, delivered = clocked
    monkeypatch.setattr(alarms, "SCAN_BATCH", 2)
    turn(store, P, lambda v: [v.set_alarm(T0 - i, f"n{i}") for i in range(5)])
    clock.note(T0)
    loop.advance(T0)
    assert [[d.name for d in b] for b in delivered] == [["n4", "n3"], ["n2", "n1"], ["n0"]], \
        "batches of at most SCAN_BATCH, in due order, one after the other"


def test_the_clock_skips_alarms_of_shards_it_may_not_fire_until_a_rescan(store, clocked):
    loop, clock, delivered = clocked
    turn(store, P, lambda v: v.set_alarm(T0, "p"))       # shard 1
    turn(store, Q, lambda v: v.set_alarm(T0, "q"))       # shard 0
    clock.admits = lambda shard: shard == 0
    clock.note(T0)
    loop.advance(T0)
    assert [[d.name for d in batch] for batch in delivered] == [["q"]]
    assert list(clock.inflight) == [alarm_ident(Q, "q")], "a skipped alarm is not in flight"
    clock.admits = lambda shard: True          # (a grant)
    clock.rescan()
    assert [[d.name for d in batch] for batch in delivered] == [["q"], ["p"]]
    assert loop.pending() == [T0 + 30.0], "one timer: the rescan cancelled the armed one"
