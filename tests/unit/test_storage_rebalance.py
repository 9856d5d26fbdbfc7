"""Moving shards between slots, in this process against LevelDB directories in tmp_path
(rebalance_here: what the rebalancing process runs), and the plan it follows."""
from __future__ import annotations

import logging
import os
from collections import Counter

import plyvel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorsys.protocol import wire
from actorsys.storage.keys import (actor_prefix, alarm_index_key, alarm_record_key,
                                   due_us, entry_prefix, listing_key, listing_value, state_key)
from actorsys.storage.meta import LISTING_INDEX, read_meta, write_meta
from actorsys.storage.rebalance import plan, rebalance_here
from helpers import slot_dbs

SHARDS = 6
WHEN = 2_000_000_000.0


def actor_keys(shard: int, key: str) -> dict[bytes, bytes]:
    """Everything one actor holds, index entries included."""
    p = actor_prefix(shard, "T", key)
    return {state_key(p): wire.pack({"n": shard}), entry_prefix(p) + b"e": wire.pack(key),
            alarm_record_key(p, "tick"): wire.pack({"when": WHEN + shard, "payload": None, "attempt": 0}),
            alarm_index_key(p, due_us(WHEN + shard), "tick"): b"",
            listing_key("T", key): listing_value(p)}


def make_data_dir(path: str, workers: int) -> dict[bytes, tuple[int, bytes]]:
    """A data directory of ``workers`` slots, two actors per shard; returns every key
    with its shard and value."""
    owner = [s % workers for s in range(SHARDS)]
    everything: dict[bytes, tuple[int, bytes]] = {}
    dbs = {w: plyvel.DB(os.path.join(path, f"slot-{w}"), create_if_missing=True) for w in range(workers)}
    try:
        for shard in range(SHARDS):
            for i in range(2):
                for k, v in actor_keys(shard, f"k{shard}-{i}").items():
                    dbs[owner[shard]].put(k, v)
                    everything[k] = (shard, v)
    finally:
        for db in dbs.values():
            db.close()
    write_meta(path, {"shards": SHARDS, "workers": workers, "epoch": 1, "owner": owner,
                     "listing": LISTING_INDEX})
    return everything



def test_every_key_moves_with_its_shard_index_entries_included(tmp_path, caplog):
    path = str(tmp_path)
    everything = make_data_dir(path, 2)
    caplog.set_level(logging.INFO, logger="actorsys.rebalance")
    meta = rebalance_here(path, read_meta(path), 3)
    assert meta == read_meta(path) and meta["workers"] == 3 and meta["epoch"] == 2
    assert meta["owner"] == plan([s % 2 for s in range(SHARDS)], 3)
    slots = slot_dbs(path)
    for k, (shard, v) in everything.items():
        holders = [slot for slot, items in slots.items() if items.get(k) == v]
        assert holders == [meta["owner"][shard]], f"{k!r} of shard {shard} is in slots {holders}"
    assert sum(len(items) for items in slots.values()) == len(everything), "nothing duplicated"
    assert any("done: 2 -> 3 workers, moved 2 of 6 shards, 20 keys" in r.getMessage() for r in caplog.records)


def test_a_listing_from_before_issue_14_drops_the_actors_left_with_no_data(tmp_path):
    """Index 1 listed an actor that had emptied its state and storage; the rebuild
    lists only the actors that hold data."""
    path = str(tmp_path)
    everything = make_data_dir(path, 1)
    emptied = actor_prefix(0, "T", "emptied")
    db = plyvel.DB(os.path.join(path, "slot-0"))
    try:
        db.put(state_key(emptied), wire.pack({}))
        db.put(listing_key("T", "emptied"), listing_value(emptied))
    finally:
        db.close()
    meta = read_meta(path)
    meta["listing"] = 1
    write_meta(path, meta)
    assert rebalance_here(path, meta, 1)["listing"] == LISTING_INDEX == 2
    listed = {k: v for k, v in slot_dbs(path)[0].items() if k[:1] == b"n"}
    assert listed == {k: v for k, (_s, v) in everything.items() if k[:1] == b"n"}, \
        "every actor with data listed, the emptied one not"


def test_shrinking_moves_everything_home_and_removes_the_empty_slots(tmp_path):
    path = str(tmp_path)
    everything = make_data_dir(path, 3)
    rebalance_here(path, read_meta(path), 1)
    assert sorted(os.listdir(path)) == ["node.meta", "slot-0"]
    assert slot_dbs(path)[0] == {k: v for k, (_s, v) in everything.items()}


def test_a_data_directory_without_the_listing_index_gets_one(tmp_path, caplog):
    path = str(tmp_path)
    everything = make_data_dir(path, 1)
    empty = actor_prefix(0, "T", "never-written")
    db = plyvel.DB(os.path.join(path, "slot-0"))
    try:
        for k in [k for k in everything if k[:1] == b"n"]:
            db.delete(k)
        db.put(state_key(empty), wire.pack({}))                 # state {} is no data
    finally:
        db.close()
    meta = read_meta(path)
    del meta["listing"]
    caplog.set_level(logging.INFO, logger="actorsys.rebalance")
    assert rebalance_here(path, meta, 1)["listing"] == LISTING_INDEX
    listed = {k: v for k, v in slot_dbs(path)[0].items() if k[:1] == b"n"}
    assert listed == {k: v for k, (_s, v) in everything.items() if k[:1] == b"n"}
    assert any("listed 12 actors" in r.getMessage() for r in caplog.records)


def test_an_alarm_index_entry_left_without_its_record_still_moves(tmp_path):
    path = str(tmp_path)
    make_data_dir(path, 2)
    p = actor_prefix(1, "T", "gone")
    stray = alarm_index_key(p, 5, "old")
    db = plyvel.DB(os.path.join(path, "slot-1"))
    try:
        db.put(stray, b"")
    finally:
        db.close()
    meta = rebalance_here(path, read_meta(path), 3)
    home = meta["owner"][1]
    assert [s for s, items in slot_dbs(path).items() if stray in items] == [home], \
        "swept to its shard's new slot by the index pass"


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=40), st.integers(1, 7))
def test_the_plan_balances_the_slots_and_moves_as_few_shards_as_it_can(owner, workers):
    new = plan(owner, workers)
    assert new == plan(owner, workers), "deterministic"
    counts = Counter(new)
    base = len(owner) // workers
    assert all(0 <= s < workers for s in new)
    assert all(counts[s] in (base, base + 1) for s in range(workers))
    assert sum(counts[s] == base + 1 for s in range(workers)) == len(owner) % workers
    held = Counter(o for o in owner if o < workers)
    stays = sum(min(held[s], counts[s]) for s in range(workers))
    assert sum(a == b for a, b in zip(owner, new)) == stays, "a shard stays while its slot has room"


def test_the_plan_needs_a_worker():
    with pytest.raises(ValueError, match="at least 1"):
        plan([0, 1], 0)


def test_a_replicated_shards_position_and_fence_move_with_it(tmp_path):
    """Issue 16: the position key is in the shard's range, the fence (slot-wide) follows
    its shard to the new slot; a slot left with only fences is empty."""
    from actorsys.storage import replica
    from actorsys.storage.keys import fence_key, position_key
    path = str(tmp_path)
    everything = make_data_dir(path, 2)
    db = plyvel.DB(os.path.join(path, "slot-1"))
    try:
        for shard in (1, 3, 5):
            db.put(position_key(shard), replica.pack_position((2, shard)))
            db.put(fence_key(shard), wire.pack(4))
    finally:
        db.close()
    meta = rebalance_here(path, read_meta(path), 1)
    assert sorted(os.listdir(path)) == ["node.meta", "slot-0"]
    items = slot_dbs(path)[0]
    for shard in (1, 3, 5):
        assert items[position_key(shard)] == replica.pack_position((2, shard))
        assert items[fence_key(shard)] == wire.pack(4)
    assert len(items) == len(everything) + 6 and meta["workers"] == 1


def test_a_long_rebalance_says_how_far_it_is(tmp_path, caplog, monkeypatch):
    """Moving shards at start logs a progress line now and then (every PROGRESS_EVERY
    seconds; 0 here: after every slot pair but the last)."""
    from actorsys.storage import rebalance
    monkeypatch.setattr(rebalance, "PROGRESS_EVERY", 0.0)
    monkeypatch.setattr(rebalance, "PROGRESS_SHARDS", 1)     # (a part per shard: lines within a pair)
    path = str(tmp_path)
    make_data_dir(path, 1)
    caplog.set_level(logging.INFO, logger="actorsys.rebalance")
    rebalance_here(path, read_meta(path), 3)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rebalancing:")]
    assert [line.split(" (")[0] for line in lines] == [
        f"rebalancing: {i} of 4 shards moved" for i in (1, 2, 3)], lines
