"""The request-id window below a node (storage/requests.py), on a real LevelDB: records
staged with a commit, found again after a reopen, pruned by count and by age (with the
commit times given, no clock), and kept out of ``storage.size()``."""
from __future__ import annotations

from typing import Iterator

import pytest

from actorsys.protocol import wire
from actorsys.storage.keys import (actor_prefix, request_key, request_range, sized_ranges,
                                   state_key)
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


def commit(store: SlotStore, window: RequestWindow, rid: bytes, result: object, at: float,
           limits: WindowLimits = WindowLimits(1000, 600.0)) -> None:
    """One ask turn's commit as the worker makes it: the reply recorded with the turn."""
    writes: dict[bytes, bytes | None] = {state_key(P): wire.pack({"n": result})}
    window.record(P, rid, wire.ok(7, result), limits, at, MAX, writes)
    store.stage(writes, P)
    store.commit()


def stored_ids(store: SlotStore, prefix: bytes = P) -> list[bytes]:
    lo, hi = request_range(prefix)
    return [k[len(lo) + 8:] for k, _v in store.range(lo, hi)]


def test_a_recorded_reply_is_found_with_the_new_request_number(store):
    w = RequestWindow(store, P)
    assert w.reply(store, b"a", 1) is None
    commit(store, w, b"a", 41, T0)
    assert wire.unpack(w.reply(store, b"a", 99)) == [wire.OK, 99, 41]
    assert w.reply(store, b"b", 99) is None


def test_the_window_is_read_back_from_disk_in_commit_order(store, tmp_path):
    w = RequestWindow(store, P)
    for i, rid in enumerate([b"x", b"a", b"m"]):
        commit(store, w, rid, i, T0 + i)
    store.close()
    reopened = SlotStore(str(tmp_path / "slot-0"), fsync=False)
    try:
        again = RequestWindow(reopened, P)
        assert list(again.order) == [b"x", b"a", b"m"]
        assert wire.unpack(again.reply(reopened, b"a", 5))[2] == 1
        assert RequestWindow(reopened, OTHER).reply(reopened, b"a", 5) is None
    finally:
        reopened.close()


def test_the_window_keeps_the_newest_records_by_count(store):
    w = RequestWindow(store, P)
    limits = WindowLimits(3, 600.0)
    for i in range(10):
        commit(store, w, b"id%d" % i, i, T0 + i, limits)
    assert stored_ids(store) == [b"id7", b"id8", b"id9"]
    assert len(w) == 3
    assert w.reply(store, b"id6", 1) is None
    assert wire.unpack(w.reply(store, b"id7", 1))[2] == 7


def test_the_window_drops_records_older_than_its_seconds_at_the_next_commit(store):
    w = RequestWindow(store, P)
    limits = WindowLimits(1000, 10.0)
    for i in range(5):
        commit(store, w, b"id%d" % i, i, T0 + i, limits)
    assert len(stored_ids(store)) == 5          # an idle actor keeps its window
    commit(store, w, b"late", 5, T0 + 13.5, limits)
    assert stored_ids(store) == [b"id4", b"late"]


def test_record_keys_follow_commit_order_when_the_clock_steps_back(store):
    w = RequestWindow(store, P)
    commit(store, w, b"first", 1, T0)
    commit(store, w, b"second", 2, T0 - 100)
    assert stored_ids(store) == [b"first", b"second"]


def test_a_reply_too_large_to_keep_is_recorded_as_an_error(store):
    w = RequestWindow(store, P)
    writes: dict[bytes, bytes | None] = {}
    w.record(P, b"big", wire.ok(3, "x" * 5000), WindowLimits(10, 60.0), T0, 1024, writes)
    store.stage(writes, P)
    store.commit()
    kind, rid, body = wire.unpack(w.reply(store, b"big", 8))
    assert (kind, rid) == (wire.ERR, 8)
    assert "ran once already" in body["message"]


def test_request_records_do_not_count_towards_storage_size(store):
    store.stage({request_key(P, 1, b"r" * 16): b"\x00" * 100, P + b"kname": wire.pack(1)}, P)
    store.commit()
    ranges = sized_ranges(P)
    assert not any(lo <= request_key(P, 1, b"r" * 16) < hi for lo, hi in ranges)
    assert Storage(store, P).size() == len(b"kname") + len(wire.pack(1))
