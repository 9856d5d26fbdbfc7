"""An actor's Storage view against a real SlotStore in tmp_path: reads that see the
turn's own writes, get/put/delete of one key or many, list ordering and ranges, size,
delete_all, the key and value limits, transactions and the read cache.

A "turn" here is what the worker does at its end: take the view's writes, stage them
and commit.
"""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from actorsys.errors import LimitExceeded
from actorsys.protocol import wire
from actorsys.storage.keys import (actor_prefix, alarm_record_key, mark_key, state_key,
                                   supervision_key, version_key)
from actorsys.storage.slot import CACHE_ENTRIES, MAX_STORAGE_KEY_BYTES, SlotStore
from actorsys.storage.view import Storage

MAX_VALUE = 1024
P = actor_prefix(1, "Box", "b1")
ITEMS = {"a": 1, "b/1": [1, 2], "b/2": {"x": "y"}, "b/3": None, "c": "text", "é": b"\x00bytes"}


class Owner:
    """What a view needs of its actor: ``state``."""

    def __init__(self, state: Any) -> None:
        self.state = state


@pytest.fixture
def store(tmp_path) -> Iterator[SlotStore]:
    s = SlotStore(str(tmp_path / "slot-0"), fsync=False, max_value_bytes=MAX_VALUE)
    yield s
    s.close()


@pytest.fixture
def owner() -> Owner:
    return Owner({"n": 0})


@pytest.fixture
def view(store, owner) -> Storage:
    return Storage(store, P, owner)


def end_turn(view: Storage, commit: bool = True) -> None:
    view.store.stage(view.take_writes(), view.actor_range)
    if commit:
        view.store.commit()


def keys_of(view: Storage, **kw: Any) -> list[str]:
    return list(view.list(**kw))


# -- reads see the turn's writes ----------------------------------------------------------

def test_values_round_trip_and_reads_see_the_turns_own_writes(view):
    view.put(ITEMS)
    assert {k: view.get(k, "MISSING") for k in ITEMS} == ITEMS, "before the turn ends"
    end_turn(view)
    assert {k: view.get(k, "MISSING") for k in ITEMS} == ITEMS, "after its commit"
    assert view.get("nope", "MISSING") == "MISSING"
    view.put("a", 2)
    assert view.delete("c") is True
    assert view.get("a") == 2 and view.get("c", "gone") == "gone"
    assert keys_of(view, end="c\x00") == ["a", "b/1", "b/2", "b/3"], "list sees the deletion"


def test_a_turn_sees_writes_staged_by_earlier_turns_not_yet_committed(view, store):
    view.put("staged", 1)
    end_turn(view, commit=False)
    fresh = Storage(store, P)
    assert fresh.get("staged") == 1 and keys_of(fresh) == ["staged"]


def test_another_actors_writes_do_not_show_in_this_actors_list(view, store):
    other = Storage(store, actor_prefix(1, "Box", "b"))      # a key that is a prefix of b1
    other.put({"a": 1, "z": 2})
    end_turn(other, commit=False)
    view.put("m", 3)
    assert view.list() == {"m": 3} and view.get("a") is None


# -- many keys at once ----------------------------------------------------------------------

def test_get_many_returns_the_found_keys_only(view):
    view.put({"a": 1, "b": [2], "c": None})
    end_turn(view)
    view.put("d", 4)
    assert view.get(["a", "b", "missing", "c", "d"]) == {"a": 1, "b": [2], "c": None, "d": 4}
    assert view.get(("a",)) == {"a": 1} and view.get([]) == {}


def test_put_many_is_all_or_nothing(view):
    with pytest.raises(LimitExceeded):
        view.put({"good": 1, "k" * (MAX_STORAGE_KEY_BYTES + 1): 2})
    with pytest.raises(TypeError, match="not msgpack-able"):
        view.put({"good": 1, "bad": object()})
    assert view.get("good") is None and view.take_writes() == {}, "a bad item writes none"
    with pytest.raises(TypeError, match="takes no value"):
        view.put({"a": 1}, 2)
    with pytest.raises(TypeError, match="needs a value"):
        view.put("a")


def test_delete_many_counts_the_keys_that_existed(view):
    view.put({"a": 1, "b": 2})
    end_turn(view)
    view.put("c", 3)
    assert view.delete(["a", "c", "nope"]) == 2
    assert view.delete("a") is False and view.delete("b") is True
    assert view.list() == {}


# -- list ------------------------------------------------------------------------------------

def test_list_orders_by_key_bytes_and_honours_prefix_range_reverse_limit(view):
    view.put({k: v for k, v in ITEMS.items() if k != "b/2"})
    end_turn(view)
    view.put("b/2", {"x": "y"})                       # one entry only in the turn's buffer
    assert view.list() == ITEMS
    assert keys_of(view) == ["a", "b/1", "b/2", "b/3", "c", "é"], "key-byte order (é is 0xC3 0xA9)"
    assert keys_of(view, prefix="b/") == ["b/1", "b/2", "b/3"]
    assert keys_of(view, start="b/2") == ["b/2", "b/3", "c", "é"], "start is inclusive"
    assert keys_of(view, start_after="b/2") == ["b/3", "c", "é"], "start_after is exclusive"
    assert keys_of(view, end="b/3") == ["a", "b/1", "b/2"], "end is exclusive"
    assert keys_of(view, prefix="b/", start="b/2", end="b/3") == ["b/2"]
    assert keys_of(view, reverse=True, limit=2) == ["é", "c"]
    assert keys_of(view, prefix="b/", reverse=True) == ["b/3", "b/2", "b/1"]
    assert keys_of(view, limit=0) == [] and keys_of(view, prefix="nope") == []
    assert keys_of(view, start="c", end="b") == [], "an empty range"


def test_list_refuses_bad_arguments(view):
    with pytest.raises(ValueError, match="start or start_after"):
        view.list(start="a", start_after="b")
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match="limit"):
            view.list(limit=bad)


# -- delete_all and size ----------------------------------------------------------------------

def test_delete_all_deletes_entries_only_and_counts_them(view, store):
    view.put({"a": 1, "b": 2})
    view.set_alarm(60, "tick")
    end_turn(view)
    store.stage({state_key(P): wire.pack({"n": 1})}, P)
    store.commit()
    view.put("c", 3)
    assert view.delete_all() == 3, "the committed entries and the turn's own"
    assert view.list() == {} and view.get("c") is None
    end_turn(view)
    assert store.get(state_key(P)) is not None and list(view.alarms()) == ["tick"]


def test_size_counts_state_entries_and_alarms_but_not_history_supervision_or_the_mark(view, store):
    assert view.size() == 0
    state = wire.pack({"n": 1})
    store.stage({state_key(P): state, supervision_key(P): b"sup" * 10, mark_key(P): b"mark" * 10,
                 version_key(P, 1): b"history" * 10}, P)
    store.commit()
    view.put("k", "v")
    view.set_alarm(60, "tick")
    alarm = view.read_raw(alarm_record_key(P, "tick"))
    assert alarm is not None
    expected = (1 + len(state)) + (len(b"kk") + len(wire.pack("v"))) + (len(b"ltick") + len(alarm))
    assert view.size() == expected


# -- limits -----------------------------------------------------------------------------------

def test_keys_are_strings_of_at_most_16_kib_of_utf8(view):
    view.put("k" * MAX_STORAGE_KEY_BYTES, 1)
    view.put("é" * (MAX_STORAGE_KEY_BYTES // 2), 2)       # 2 bytes each: exactly at the limit
    with pytest.raises(LimitExceeded, match=f"storage key is {MAX_STORAGE_KEY_BYTES + 1} bytes"):
        view.put("k" * (MAX_STORAGE_KEY_BYTES + 1), 1)
    with pytest.raises(LimitExceeded):
        view.get("é" * (MAX_STORAGE_KEY_BYTES // 2 + 1))
    with pytest.raises(TypeError, match="storage keys are strings, got int"):
        view.put(1, 1)
    with pytest.raises(TypeError, match="storage keys are strings, got bytes"):
        view.get(b"k")


def test_values_are_at_most_max_value_bytes(view):
    at_limit = "x" * (MAX_VALUE - 3)                       # str8/16 header: 3 bytes
    assert len(wire.pack(at_limit)) == MAX_VALUE
    view.put("ok", at_limit)
    with pytest.raises(LimitExceeded, match=f"is {MAX_VALUE + 1} bytes; max_value_bytes is {MAX_VALUE}"):
        view.put("big", at_limit + "x")
    with pytest.raises(TypeError, match="value of storage key 'odd' is not msgpack-able"):
        view.put("odd", {1, 2})
    assert view.get("ok") == at_limit and view.get("big") is None


# -- transactions -----------------------------------------------------------------------------

def test_a_transaction_that_raises_undoes_its_writes_alarms_and_state(view, owner):
    view.put("before", 1)
    state = owner.state
    with pytest.raises(RuntimeError, match="boom"):
        with view.transaction():
            view.put("inside", 2)
            view.delete("before")
            view.set_alarm(60, "tick")
            owner.state["n"] = 99
            raise RuntimeError("boom")
    assert view.get("before") == 1 and view.get("inside") is None
    assert view.alarms() == {} and view.alarms_changed is None
    assert owner.state == {"n": 0} and owner.state is state, "restored in place"


def test_a_transaction_that_ends_keeps_its_writes_and_nested_ones_roll_back_alone(view, owner):
    with view.transaction() as tx:
        assert tx is view
        view.put("outer", 1)
        with pytest.raises(KeyError):
            with view.transaction():
                view.put("inner", 2)
                raise KeyError("inner")
        view.put("after", 3)
    assert view.list() == {"after": 3, "outer": 1}


def test_a_transaction_restores_a_state_that_is_not_a_dict(store):
    owner = Owner([1, 2])
    view = Storage(store, P, owner)
    with pytest.raises(ValueError):
        with view.transaction():
            owner.state = "replaced"
            raise ValueError
    assert owner.state == [1, 2]


# -- the turn's writes and the read cache -------------------------------------------------------

def test_take_writes_hands_over_the_turn_and_starts_a_new_one(view):
    view.put("a", 1)
    view.delete("b")
    view.set_alarm(60, "tick")
    assert view.alarms_changed is not None
    writes = view.take_writes()
    assert writes[P + b"ka"] == wire.pack(1) and writes[P + b"kb"] is None
    assert alarm_record_key(P, "tick") in writes
    assert view.take_writes() == {} and view.alarms_changed is None


def test_committed_values_are_cached_and_forget_drops_what_changed_underneath(view, store):
    view.put("a", 1)
    end_turn(view)
    assert view.get("a") == 1
    store.stage({P + b"ka": wire.pack(2)}, P)                 # written outside the actor's turns
    store.commit()
    assert view.get("a") == 1, "served from the cache"
    view.forget([P + b"ka"])
    assert view.get("a") == 2


def test_the_cache_stays_within_its_bound(view):
    view.put({f"k{i:04d}": i for i in range(CACHE_ENTRIES + 50)})
    end_turn(view)
    for i in range(CACHE_ENTRIES + 50):
        assert view.get(f"k{i:04d}") == i
    assert view._cache is not None and len(view._cache) <= CACHE_ENTRIES
