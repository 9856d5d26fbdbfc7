"""The request-id window below a node (storage/requests.py), on a real LevelDB: records
staged with a commit, found again after a reopen, bounded by count (a ring of places on
disk) and by age (with the times given, no clock), and kept out of ``storage.size()``."""
from __future__ import annotations

from typing import Iterator

import pytest

from actorsys.protocol import wire
from actorsys.storage.keys import (actor_prefix, request_key, request_marker, request_range,
                                   sized_ranges, state_key)
from actorsys.storage.requests import RequestWindow, WindowLimits
from actorsys.storage.slot import SlotStore
from actorsys.storage.view import Storage

P = actor_prefix(3, "Counter", "c1")
OTHER = actor_prefix(3, "Counter", "c2")
T0 = 2_000_000_000.0
MAX = 512 * 1024


@pytest.fixture
def store(tmp_path) -> Iterator[SlotStore]:
    s = SlotStore(str(tmp_path / "slot-0"), fsync=False)
    yield s
    s.close()


LIMITS = WindowLimits(1000, 600.0)


def commit(store: SlotStore, window: RequestWindow, rid: bytes, result: object, at: float) -> None:
    """One ask turn's commit as the worker makes it: the reply recorded with the turn."""
    writes: dict[bytes, bytes | None] = {state_key(P): wire.pack({"n": result})}
    window.record(P, rid, wire.ok(7, result), at, MAX, writes)
    store.stage(writes, P)
    store.commit()


def records(store: SlotStore, prefix: bytes = P) -> list[bytes]:
    """The keys of the actor's request records (its marker left out)."""
    lo, hi = request_range(prefix)
    return [k for k, _v in store.range(lo, hi) if k != request_marker(prefix)]


def answer(store: SlotStore, w: RequestWindow, rid: bytes, now: float = T0) -> object:
    got = w.reply(store, P, rid, 99, now)
    return None if got is None else wire.unpack(got)[2]


def test_a_recorded_reply_is_found_with_the_new_request_number(store):
    w = RequestWindow(store, P, LIMITS)
    assert w.reply(store, P, b"a", 1, T0) is None
    commit(store, w, b"a", 41, T0)
    assert wire.unpack(w.reply(store, P, b"a", 99, T0 + 1)) == [wire.OK, 99, 41]
    assert w.reply(store, P, b"b", 99, T0) is None


def test_the_window_is_read_back_from_disk(store, tmp_path):
    w = RequestWindow(store, P, LIMITS)
    for i, rid in enumerate([b"x", b"a", b"m"]):
        commit(store, w, rid, i, T0 + i)
    store.close()
    reopened = SlotStore(str(tmp_path / "slot-0"), fsync=False)
    try:
        again = RequestWindow(reopened, P, LIMITS)
        assert len(again) == 3 and again.next_seq == 3
        assert [answer(reopened, again, r) for r in (b"x", b"a", b"m")] == [0, 1, 2]
        assert RequestWindow(reopened, OTHER, LIMITS).reply(reopened, OTHER, b"a", 5, T0) is None
    finally:
        reopened.close()


def test_the_window_keeps_the_newest_records_in_a_ring_of_places(store, tmp_path):
    w = RequestWindow(store, P, WindowLimits(3, 600.0))
    for i in range(10):
        commit(store, w, b"id%d" % i, i, T0 + i)
    assert len(records(store)) == 3, "one place per record kept: storage is bounded"
    assert len(w) == 3
    assert answer(store, w, b"id6") is None
    assert [answer(store, w, b"id%d" % i) for i in (7, 8, 9)] == [7, 8, 9]
    again = RequestWindow(store, P, WindowLimits(3, 600.0))
    assert [answer(store, again, b"id%d" % i) for i in (6, 7, 8, 9)] == [None, 7, 8, 9]


def test_an_actor_without_records_has_no_marker_and_its_first_record_writes_one(store):
    w = RequestWindow(store, P, LIMITS)
    assert not w.marked and store.get(request_marker(P)) is None
    commit(store, w, b"a", 1, T0)
    commit(store, w, b"b", 2, T0)
    assert store.get(request_marker(P)) == b""
    assert RequestWindow(store, P, LIMITS).marked
    assert RequestWindow(store, OTHER, LIMITS).marked is False


def test_a_record_older_than_the_windows_seconds_is_not_answered(store):
    w = RequestWindow(store, P, WindowLimits(1000, 10.0))
    commit(store, w, b"old", 1, T0)
    assert answer(store, w, b"old", T0 + 9.5) == 1
    assert answer(store, w, b"old", T0 + 10.5) is None


def test_a_smaller_window_drops_what_no_longer_fits_at_the_next_record(store):
    w = RequestWindow(store, P, WindowLimits(10, 600.0))
    for i in range(6):
        commit(store, w, b"id%d" % i, i, T0 + i)
    small = RequestWindow(store, P, WindowLimits(4, 600.0))
    assert len(small) < 6
    commit(store, small, b"new", 6, T0 + 6)
    assert len(records(store)) <= 4
    assert answer(store, small, b"new") == 6
    assert answer(store, RequestWindow(store, P, WindowLimits(4, 600.0)), b"new") == 6


def test_a_reply_too_large_to_keep_is_recorded_as_an_error(store):
    w = RequestWindow(store, P, LIMITS)
    writes: dict[bytes, bytes | None] = {}
    w.record(P, b"big", wire.ok(3, "x" * 5000), T0, 1024, writes)
    store.stage(writes, P)
    store.commit()
    kind, rid, body = wire.unpack(w.reply(store, P, b"big", 8, T0))
    assert (kind, rid) == (wire.ERR, 8)
    assert "ran once already" in body["message"]


def test_request_records_do_not_count_towards_storage_size(store):
    store.stage({request_key(P, 1): b"\x00" * 100, P + b"kname": wire.pack(1)}, P)
    store.commit()
    assert not any(lo <= request_key(P, 1) < hi for lo, hi in sized_ranges(P))
    assert Storage(store, P).size() == len(b"kname") + len(wire.pack(1))


def test_history_undo_records_leave_request_records_out(store):
    from actorsys.storage.history import Versions, records
    w = RequestWindow(store, P, LIMITS)
    writes: dict[bytes, bytes | None] = {state_key(P): wire.pack({"n": 1})}
    w.record(P, b"a", wire.ok(1, 1), T0, MAX, writes)
    Versions(store, P).record(store, P, writes, None, 100.0, now=T0)
    store.stage(writes, P)
    store.commit()
    [(_version, rec)] = records(store, P)
    assert [bytes(sub) for sub, _old in rec["u"]] == [b"s"], "only the state is undone"
