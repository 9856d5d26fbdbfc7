"""History below a node: the undo record of each commit, version numbers, the pruning
window (with the commit times given, no clock), bookmarks and rewind_writes.

A commit here is what the worker does: take the turn's writes (and the state), let
Versions add the undo record, stage and commit.
"""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from actorsys.protocol import wire
from actorsys.storage import history
from actorsys.storage.history import Versions, bookmarks, records, rewind_writes
from actorsys.storage.keys import (DUE_INDEX_RANGE, actor_prefix, alarm_index_key, due_us,
                                   mark_key, state_key, version_key)
from actorsys.storage.slot import SlotStore
from actorsys.storage.view import Storage

P = actor_prefix(2, "Hist", "h1")
T0 = 2_000_000_000.0
WINDOW = 100.0


@pytest.fixture
def store(tmp_path) -> Iterator[SlotStore]:
    s = SlotStore(str(tmp_path / "slot-0"), fsync=False)
    yield s
    s.close()


class Actor:
    """One actor's commits, as the worker makes them."""

    def __init__(self, store: SlotStore, window: float = WINDOW) -> None:
        self.store, self.window = store, window
        self.view = Storage(store, P)
        self.versions: Versions | None = None

    def commit(self, at: float, state: Any = None, **entries: Any) -> None:
        for k, v in entries.items():
            if v is None:
                self.view.delete(k)
            else:
                self.view.put(k, v)
        writes = self.view.take_writes()
        if state is not None:
            writes[state_key(P)] = wire.pack(state)
        self.stage(writes, at)

    def stage(self, writes: dict[bytes, bytes | None], at: float) -> None:
        if self.versions is None:
            self.versions = Versions(self.store, P)
        self.versions.record(self.store, P, writes, self.store.get(state_key(P)), self.window, now=at)
        self.store.stage(writes, P)
        self.store.commit()

    def rewind(self, version: int | None = None, at: float | None = None, now: float = T0 + 50):
        writes, target, earliest = rewind_writes(self.store, P, version, at)
        if writes:
            self.stage(writes, now)
        self.view = Storage(self.store, P)          # the instance is dropped: a fresh view
        return target, earliest

    def data(self) -> tuple[Any, dict[str, Any], list[str]]:
        raw = self.store.get(state_key(P))
        return (None if raw is None else wire.unpack_stored(raw)), self.view.list(), list(self.view.alarms())


def versions_of(store: SlotStore) -> list[int]:
    return [v for v, _rec in records(store, P)]


# -- recording ---------------------------------------------------------------------------

def test_each_commit_that_changes_the_actor_is_a_version_with_its_undo_record(store):
    a = Actor(store)
    a.commit(T0, state={"n": 1}, x=1)
    a.commit(T0 + 1, state={"n": 2}, x=None, y=2)
    assert bookmarks(store, P) == [{"version": 1, "time": T0}, {"version": 2, "time": T0 + 1}]
    (_v1, first), (_v2, second) = records(store, P)
    assert sorted(map(tuple, first["u"])) == [(b"kx", None), (b"s", None)], "nothing was there before"
    assert sorted(map(tuple, second["u"])) == [(b"kx", wire.pack(1)), (b"ky", None),
                                               (b"s", wire.pack({"n": 1}))]


def test_a_commit_that_writes_nothing_history_covers_records_no_version(store):
    a = Actor(store)
    a.commit(T0, state={"n": 1})
    a.stage({mark_key(P): b"mark"}, T0 + 1)
    assert versions_of(store) == [1], "the delivery mark is not the actor's data"


def test_versions_are_numbered_on_from_what_is_stored(store):
    Actor(store).commit(T0, x=1)
    again = Actor(store)                       # a new activation loads the newest version
    again.commit(T0 + 1, x=2)
    assert versions_of(store) == [1, 2] and again.versions is not None and again.versions.last == 2


# -- the pruning window --------------------------------------------------------------------

def test_versions_older_than_the_window_are_pruned_but_the_one_current_at_its_start_stays(store):
    a = Actor(store, window=WINDOW)
    for i, t in enumerate([0, 10, 20, 150, 160]):
        a.commit(T0 + t, x=i)
    # at T0 + 160 the window starts at T0 + 60: version 3 (T0 + 20) was current then
    assert [b["version"] for b in bookmarks(store, P)] == [3, 4, 5]


def test_the_newest_version_is_always_kept(store):
    a = Actor(store, window=WINDOW)
    for i, t in enumerate([0, 1, 2]):
        a.commit(T0 + t, x=i)
    a.commit(T0 + 10_000, x=9)
    assert versions_of(store) == [3, 4]
    a.commit(T0 + 20_000, x=10)
    assert versions_of(store) == [4, 5], "numbering goes on; only the window's start and later stay"


def test_an_idle_actor_keeps_its_old_versions_until_it_commits(store):
    a = Actor(store, window=WINDOW)
    a.commit(T0, x=1)
    a.commit(T0 + 1, x=2)
    a.commit(T0 + 2, x=3)
    assert versions_of(store) == [1, 2, 3]


# -- rewinding ---------------------------------------------------------------------------

def test_rewind_to_a_version_restores_state_storage_and_alarms(store):
    a = Actor(store)
    a.commit(T0, state={"n": 1}, x=1)                                   # v1
    a.view.set_alarm(T0 + 500, "tick", "p")
    a.commit(T0 + 1, state={"n": 2}, y=2)                               # v2
    a.view.cancel_alarm("tick")
    a.commit(T0 + 2, state={"n": 3}, x=None, z=3)                       # v3
    target, earliest = a.rewind(version=2)
    assert target == 2 and earliest == T0 + 500, "the restored alarm, for the clock"
    assert a.data() == ({"n": 2}, {"x": 1, "y": 2}, ["tick"])
    assert [k for k, _v in store.range(*DUE_INDEX_RANGE)] == [alarm_index_key(P, due_us(T0 + 500), "tick")]
    assert versions_of(store) == [1, 2, 3, 4], "the rewind is itself a version"
    target, _ = a.rewind(version=3)
    assert a.data() == ({"n": 3}, {"y": 2, "z": 3}, []), "rewinding to the version before undoes it"
    assert list(store.range(*DUE_INDEX_RANGE)) == [], "the alarm index follows the records"


def test_rewind_by_time_takes_the_last_version_at_or_before_it_and_zero_is_the_empty_actor(store):
    a = Actor(store)
    a.commit(T0, state={"n": 1}, x=1)
    a.commit(T0 + 10, state={"n": 2})
    assert a.rewind(at=T0 + 5)[0] == 1 and a.data() == ({"n": 1}, {"x": 1}, [])
    assert a.rewind(at=T0 - 1)[0] == 0, "before the first commit: version 0"
    assert a.data() == (None, {}, [])


def test_rewinding_to_the_current_version_writes_nothing(store):
    a = Actor(store)
    a.commit(T0, x=1)
    assert rewind_writes(store, P, 1, None) == ({}, 1, None)


def test_rewind_refuses_what_is_outside_the_history(store):
    with pytest.raises(ValueError, match="has no history"):
        rewind_writes(store, P, 1, None)
    a = Actor(store, window=WINDOW)
    for i, t in enumerate([0, 10, 200, 210]):
        a.commit(T0 + t, x=i)
    assert versions_of(store) == [2, 3, 4]
    with pytest.raises(ValueError, match=r"not in the history window \(versions 2..4\)"):
        rewind_writes(store, P, 1, None)
    with pytest.raises(ValueError, match="before the history window"):
        rewind_writes(store, P, None, T0 + 5)
    with pytest.raises(ValueError, match="a version or a time"):
        rewind_writes(store, P, None, None)
    with pytest.raises(ValueError, match="a version or a time"):
        rewind_writes(store, P, 2, T0)
    with pytest.raises(TypeError, match="a version is an integer"):
        rewind_writes(store, P, "2", None)
    with pytest.raises(TypeError, match="epoch seconds"):
        rewind_writes(store, P, None, float("nan"))


def test_versions_reads_its_bookkeeping_from_the_store(store):
    a = Actor(store)
    a.commit(T0, x=1)
    a.commit(T0 + 5, x=2)
    v = Versions(store, P)
    assert (v.last, v.first_time, v.second_time) == (2, T0, T0 + 5)
    empty = Versions(store, actor_prefix(2, "Hist", "other"))
    assert (empty.last, empty.first_time, empty.second_time) == (0, None, None)
    assert store.get(version_key(P, 2)) is not None and history.bookmarks is bookmarks
