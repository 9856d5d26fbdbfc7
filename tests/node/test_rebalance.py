"""Changing the worker count of a data directory moves shards between slots at start:
every actor keeps its data and runs on the slot that owns its shard, the fewest shards
move, a move killed midway finishes at the next start, and removed slots are deleted."""
from __future__ import annotations

import copy
import glob
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import msgpack
import plyvel
import pytest

import actorsys
from actorsys.storage.rebalance import plan
from actorsys.protocol.shardmap import shard_of
from actorsys.storage.meta import LISTING_INDEX, load_or_create_meta
from actorsys.testing.nodes import worker_pids, workers
from helpers import ROOT, slot_dbs

ACTORS = 300


# -- helpers ----------------------------------------------------------------------------

def keeper_config(config, n_workers: int) -> dict[str, Any]:
    cfg = config(workers=n_workers)
    cfg["actors"]["Keeper"] = "rebalance_actors:Keeper"
    return cfg


def with_workers(cfg: dict[str, Any], n_workers: int) -> dict[str, Any]:
    cfg = copy.deepcopy(cfg)
    cfg["node"]["workers"] = n_workers
    return cfg


def data_dir(cfg: dict[str, Any]) -> str:
    return cfg["node"]["data_dir"]


def fill(cfg: dict[str, Any], count: int = ACTORS) -> dict[str, int]:
    """Run a node and give ``count`` Keeper actors state and two storage entries."""
    with actorsys.Node(cfg) as n:
        c = n.client()
        return {f"k{i}": c.ref("Keeper", f"k{i}").ask("fill", i) for i in range(count)}


def read_meta(path: str) -> dict[str, Any]:
    with open(os.path.join(path, "node.meta"), "rb") as f:
        return msgpack.unpackb(f.read(), raw=False)



def entry_shard(k: bytes, v: bytes) -> int | None:
    """The shard of an actor key or slot-wide index entry (None for other keys)."""
    tag = k[:1]
    if tag == b"a":
        return int.from_bytes(k[1:3], "big")
    if tag == b"n":
        return int.from_bytes(v, "big")
    if tag == b"t":
        return int.from_bytes(k[9:11], "big")
    return None


def expected_read(key: str, n: int) -> dict[str, Any]:
    return {"n": n, "a": 2 * n, "b": f"{key}:{n}"}


def check_served(node: actorsys.Node, expected: dict[str, int], n_workers: int) -> None:
    """Every actor answers with its data, from the worker of the slot owning its shard,
    and each worker holds exactly the actors of its own shards."""
    c = node.client()
    meta = read_meta(node.config.data_dir)
    assert len(c.map.endpoints) == n_workers and c.map.owner == meta["owner"], \
        f"expected the node to serve {n_workers} slots with the map of node.meta"
    pids = worker_pids(node)
    per_slot: Counter = Counter()
    for key, n in expected.items():
        got = c.ref("Keeper", key).ask("read")
        slot = meta["owner"][shard_of("Keeper", key, meta["shards"])]
        assert got.pop("pid") == pids[slot], f"expected Keeper/{key} to run in slot {slot}'s worker"
        assert got == expected_read(key, n), f"expected Keeper/{key}'s state and storage kept, got {got}"
        per_slot[slot] += 1
    resident = {slot: w["resident"] for slot, w in workers(node).items()}
    assert resident == {slot: per_slot[slot] for slot in range(n_workers)}, \
        f"expected each worker to hold only the actors of its shards: {dict(per_slot)}, got {resident}"


def check_on_disk(path: str, n_workers: int, expected: dict[str, int]) -> None:
    """Exactly slots 0..n-1 exist; each holds only keys of its own shards; every actor's
    state and both storage entries are there."""
    meta = read_meta(path)
    assert "target" not in meta and meta["workers"] == n_workers, f"expected a finished move: {meta}"
    dbs = slot_dbs(path)
    assert sorted(dbs) == list(range(n_workers)), \
        f"expected slot directories 0..{n_workers - 1} only, found {sorted(dbs)}"
    kinds: dict[str, set] = {}
    for slot, items in dbs.items():
        for k, v in items.items():
            shard = entry_shard(k, v)
            if shard is None:
                continue
            assert meta["owner"][shard] == slot, \
                f"slot {slot} holds {k!r} of shard {shard}, which slot {meta['owner'][shard]} owns"
            if k[:1] == b"a":
                type_b, key_b, rest = k[3:].split(b"\0", 2)
                if type_b == b"Keeper":
                    kinds.setdefault(key_b.decode(), set()).add(rest)
    missing = sorted(k for k in expected if not {b"s", b"ka", b"kb"} <= kinds.get(k, set()))
    assert not missing and set(kinds) == set(expected), \
        f"expected every Keeper's state and entries on disk; missing {missing[:5]}"


KILLER = r"""
import os, signal, sys
import msgpack
from actorsys.storage import rebalance as rb
data_dir, workers, rb.BATCH_KEYS, kill_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
drop, calls = rb._drop, [0]
def dying_drop(db, items):
    calls[0] += 1
    if calls[0] == kill_at:     # this batch is in its new slot and not yet deleted from the old
        os.kill(os.getpid(), signal.SIGKILL)
    drop(db, items)
rb._drop = dying_drop
with open(os.path.join(data_dir, "node.meta"), "rb") as f:
    rb.rebalance_here(data_dir, msgpack.unpackb(f.read(), raw=False), workers)
"""


def rebalance_killed(path: str, n_workers: int, kill_at: int, batch: int = 16) -> None:
    """Rebalance ``path`` in a process that SIGKILLs itself at its ``kill_at``-th batch."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    r = subprocess.run([sys.executable, "-c", KILLER, path, str(n_workers), str(batch), str(kill_at)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == -signal.SIGKILL, \
        f"expected the rebalance to be killed midway, it exited {r.returncode}: {r.stderr}"


# -- the plan ---------------------------------------------------------------------------

def test_plan_2_to_3_moves_a_third_of_the_shards_all_to_the_new_slot():
    owner = [s % 2 for s in range(4096)]
    new = plan(owner, 3)
    moved = [s for s in range(4096) if new[s] != owner[s]]
    assert sorted(Counter(new).values()) == [1365, 1365, 1366], f"expected balanced slots: {Counter(new)}"
    assert len(moved) == 1365, f"expected exactly the 1365 shards slot 2 needs to move, got {len(moved)}"
    assert {new[s] for s in moved} == {2}, "expected every moved shard to go to the new slot 2"
    assert plan(owner, 3) == new, "expected the plan to be deterministic"


def test_plan_3_to_1_moves_only_the_shards_of_slots_1_and_2():
    owner = plan([s % 2 for s in range(4096)], 3)
    new = plan(owner, 1)
    assert new == [0] * 4096, "expected every shard on slot 0"
    moved = {s for s in range(4096) if new[s] != owner[s]}
    assert moved == {s for s in range(4096) if owner[s] in (1, 2)}, \
        "expected exactly the shards of slots 1 and 2 to move"


def test_plan_is_balanced_and_moves_the_fewest_shards_from_any_layout():
    rng = random.Random(4)
    for _ in range(300):
        shards = rng.randint(1, 300)
        old_workers = rng.randint(1, min(shards, 12))
        owner = [rng.randrange(old_workers) for _ in range(shards)]
        n = rng.randint(1, min(shards, 12))
        new = plan(owner, n)
        base, extra = divmod(shards, n)
        counts = Counter(new)
        assert set(new) <= set(range(n)) and sorted(counts[s] for s in range(n)) == \
            [base] * (n - extra) + [base + 1] * extra, f"expected a balanced plan for {n} slots: {counts}"
        held = Counter(o for o in owner if o < n)
        # a slot can keep at most its count: base for all, base + 1 for `extra` of them
        best_stay = sum(min(held[s], base) for s in range(n)) + \
            min(extra, sum(1 for s in range(n) if held[s] > base))
        moved = sum(a != b for a, b in zip(owner, new))
        assert moved == shards - best_stay, \
            f"expected {shards - best_stay} moves ({old_workers} -> {n} workers), the plan made {moved}"


# -- real nodes ---------------------------------------------------------------------------

def test_2_to_3_to_1_workers_keeps_every_actor_and_each_slot_holds_only_its_shards(config, capfd):
    cfg = keeper_config(config, 2)
    path = data_dir(cfg)
    expected = fill(cfg)
    check_on_disk(path, 2, expected)
    before = read_meta(path)
    for n_workers in (3, 1):
        with actorsys.Node(with_workers(cfg, n_workers)) as node:
            check_served(node, expected, n_workers)
        meta = read_meta(path)
        assert meta["owner"] == plan(before["owner"], n_workers) and \
            meta["epoch"] == before["epoch"] + 1, f"expected the planned map at the next epoch: {meta}"
        check_on_disk(path, n_workers, expected)  # after 3 -> 1: slot-1 and slot-2 are gone
        before = meta
    err = capfd.readouterr().err
    assert "2 -> 3 workers, moved 1365 of 4096 shards" in err and \
        "3 -> 1 workers, moved 2730 of 4096 shards" in err, f"expected one line per rebalance: {err}"
    # a worker forked by a supervisor that had opened LevelDB hung closing its database
    assert "did not stop in time" not in err, f"expected every worker to stop by itself: {err}"


def raw_actor(shard: int, key: str) -> bytes:
    return b"a" + shard.to_bytes(2, "big") + b"Keeper\0" + key.encode() + b"\0"


def test_listing_and_alarm_index_entries_move_with_their_actor(config):
    cfg = keeper_config(config, 2)
    path = data_dir(cfg)
    fill(cfg, 10)
    meta = read_meta(path)
    new = plan(meta["owner"], 3)
    keys = [f"raw-{i}" for i in range(200)]
    shard = {k: shard_of("Keeper", k, meta["shards"]) for k in keys}
    moving = [k for k in keys if new[shard[k]] != meta["owner"][shard[k]]][:3]
    staying = [k for k in keys if k not in moving][:3]
    assert len(moving) == 3, "expected keys on shards that move"
    written: dict[bytes, tuple[int, bytes]] = {}    # key -> (shard, value)
    dbs = {slot: plyvel.DB(os.path.join(path, f"slot-{slot}")) for slot in (0, 1)}
    try:
        for i, key in enumerate(moving + staying):
            p = raw_actor(shard[key], key)
            when = time.time() + 3600 + i * 0.123457          # an hour away: never fires here
            entries = {
                p + b"s": msgpack.packb({"n": i}),
                p + b"ka": msgpack.packb(2 * i),
                p + b"ltick": msgpack.packb({"when": when, "payload": i, "attempt": 0}),
                b"t" + int(when * 1e6).to_bytes(8, "big") + p[1:] + b"tick": b"",
                b"nKeeper\0" + key.encode(): shard[key].to_bytes(2, "big"),
            }
            with dbs[meta["owner"][shard[key]]].write_batch(sync=True) as wb:
                for k, v in entries.items():
                    wb.put(k, v)
                    written[k] = (shard[key], v)
    finally:
        for db in dbs.values():
            db.close()
    with actorsys.Node(with_workers(cfg, 3)):
        pass
    after = slot_dbs(path)
    for k, (sh, v) in written.items():
        holders = [slot for slot, items in after.items() if items.get(k) == v]
        assert holders == [new[sh]], \
            f"expected {k!r} (shard {sh}) only in slot {new[sh]}, found it in {holders}"


def test_index_entries_without_a_matching_record_still_follow_their_shard(tmp_path):
    """A listing entry whose actor has no data left, and an alarm index entry whose due
    time differs from its record's (or whose record is unreadable), move by their shard."""
    path = str(tmp_path / "data")
    meta = load_or_create_meta(path, 64, 2)
    new = plan(meta["owner"], 3)
    moving = [s for s in range(64) if new[s] != meta["owner"][s]]
    s1, s2, s3 = moving[:3]
    when = time.time() + 3600
    orphan_listing = b"nKeeper\0ghost"
    p2, p3 = raw_actor(s2, "skewed"), raw_actor(s3, "garbled")
    entries = {
        orphan_listing: s1.to_bytes(2, "big"),
        p2 + b"lx": msgpack.packb({"when": when, "payload": None, "attempt": 0}),
        b"t" + (int(when * 1e6) + 7).to_bytes(8, "big") + p2[1:] + b"x": b"",
        p3 + b"ly": b"\xc1 not msgpack",
        b"t" + int(when * 1e6).to_bytes(8, "big") + p3[1:] + b"y": b"",
        b"zother": b"slot-wide key of no shard",
    }
    old_slot = {k: meta["owner"][s1] if (sh := entry_shard(k, v)) is None else meta["owner"][sh]
                for k, v in entries.items()}
    want_slot = {k: old_slot[k] if (sh := entry_shard(k, v)) is None else new[sh]
                 for k, v in entries.items()}
    for slot in set(old_slot.values()):
        db = plyvel.DB(os.path.join(path, f"slot-{slot}"), create_if_missing=True)
        with db.write_batch(sync=True) as wb:
            for k, v in entries.items():
                if old_slot[k] == slot:
                    wb.put(k, v)
        db.close()
    assert load_or_create_meta(path, 64, 3)["owner"] == new, "expected the planned map"
    after = slot_dbs(path)
    for k, v in entries.items():
        holders = [slot for slot, items in after.items() if items.get(k) == v]
        assert holders == [want_slot[k]], \
            f"expected {k!r} only in slot {want_slot[k]}, found it in {holders}"


def test_a_rebalance_killed_midway_finishes_at_the_next_start_and_loses_nothing(config, capfd):
    cfg = keeper_config(config, 2)
    path = data_dir(cfg)
    expected = fill(cfg)
    before = read_meta(path)
    rebalance_killed(path, 3, kill_at=5)
    meta = read_meta(path)
    assert meta["workers"] == 2 and meta["target"] == {"workers": 3, "owner": plan(before["owner"], 3)}, \
        f"expected the plan written before any key moved, and the move unfinished: {meta}"
    dbs = slot_dbs(path)
    moving_left = [k for slot in (0, 1) for k in dbs[slot]
                   if k[:1] == b"a" and meta["target"]["owner"][entry_shard(k, b"")] == 2]
    assert dbs.get(2) and moving_left, "expected the kill to leave keys both in slot 2 and still to move"
    rebalance_killed(path, 3, kill_at=3)                 # the re-run is killed too
    with actorsys.Node(with_workers(cfg, 3)) as node:   # the node start finishes the plan
        check_served(node, expected, 3)
    check_on_disk(path, 3, expected)
    after = read_meta(path)
    assert after["owner"] == meta["target"]["owner"] and after["epoch"] == before["epoch"] + 1, \
        f"expected the planned map at the next epoch: {after}"
    assert "resumed and finished: 2 -> 3 workers" in capfd.readouterr().err, \
        "expected the start to say it finished an interrupted move"


def test_an_unfinished_move_is_finished_before_moving_to_another_worker_count(config):
    cfg = keeper_config(config, 2)
    path = data_dir(cfg)
    expected = fill(cfg)
    before = read_meta(path)
    rebalance_killed(path, 3, kill_at=2)
    with actorsys.Node(with_workers(cfg, 1)) as node:
        check_served(node, expected, 1)
    check_on_disk(path, 1, expected)
    assert read_meta(path)["epoch"] == before["epoch"] + 2, \
        "expected two finished moves (2 -> 3, then 3 -> 1), each a new epoch"


def test_a_removed_slot_that_still_holds_data_is_kept_and_the_start_refused(config, capfd):
    cfg = keeper_config(config, 2)
    path = data_dir(cfg)
    expected = fill(cfg, 20)
    stray = os.path.join(path, "slot-7")
    db = plyvel.DB(stray, create_if_missing=True)
    db.put(raw_actor(0, "stray") + b"s", msgpack.packb({"n": 1}), sync=True)
    db.close()
    with pytest.raises(actorsys.NodeUnavailable, match="exited with status 2"):
        actorsys.Node(with_workers(cfg, 1)).start()
    assert "slot-7 belongs to no worker slot" in capfd.readouterr().err, \
        "expected the start refused because slot-7 still holds data"
    db = plyvel.DB(stray)
    assert db.get(raw_actor(0, "stray") + b"s") is not None, "expected slot-7's data untouched"
    db.close()
    assert read_meta(path)["workers"] == 1, "expected the 2 -> 1 move itself finished"
    shutil.rmtree(stray)                                   # the operator's decision
    with actorsys.Node(with_workers(cfg, 1)) as node:
        check_served(node, expected, 1)
    check_on_disk(path, 1, expected)


def test_alarms_history_and_listing_follow_their_actors_through_2_to_3_to_1(config):
    cfg = keeper_config(config, 2)
    cfg["actors"]["Sleeper"] = {"class": "rebalance_actors:Sleeper", "history_window": 3600}
    keys = [f"s{i}" for i in range(60)]
    with actorsys.Node(cfg) as node:
        c = node.client()
        for k in keys:      # due while the data moves: each fires once, on whichever slot owns it
            c.ask("Sleeper", k, "sleep", time.time() + 3)
    for n_workers in (3, 1):
        with actorsys.Node(with_workers(cfg, n_workers)) as node:
            c = node.client()
            assert c.list_actors("Sleeper") == sorted(keys), \
                f"every actor is listed once after moving to {n_workers} workers"
            later = {k: "later" in c.ask("Sleeper", k, "pending") for k in keys}
            assert all(later.values()), \
                f"every 'later' alarm is still set after moving to {n_workers} workers: {later}"
            versions = {k: c.ref("Sleeper", k).history()[0]["version"] for k in keys}
            assert set(versions.values()) == {1}, f"history moved with its actor: {versions}"
            if n_workers == 1:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    woke = {k: c.ask("Sleeper", k, "woke") for k in keys}
                    if all(woke.values()):
                        break
                    time.sleep(0.2)
                assert all(v == ["wake", k] for k, v in woke.items()), \
                    f"every 'wake' alarm fired (moved with its actor): {woke}"


def test_a_slot_removal_cut_short_is_finished_at_the_next_start(config):
    cfg = keeper_config(config, 1)
    expected = fill(cfg, 20)
    tomb = os.path.join(data_dir(cfg), "slot-3.removed")   # a removal killed mid-rmtree:
    os.makedirs(tomb)                                       # no CURRENT file any more
    with open(os.path.join(tomb, "000005.ldb"), "wb") as f:
        f.write(b"half a database")
    with actorsys.Node(cfg) as node:
        got = {k: node.client().ask("Keeper", k, "read")["n"] for k in expected}
    assert got == expected, "the node started and serves every actor"
    assert not os.path.exists(tomb), "the tombstone of the cut-short removal is gone"


def test_a_data_directory_made_before_the_listing_index_gets_one_at_start(config):
    cfg = keeper_config(config, 2)
    expected = fill(cfg, 40)
    with actorsys.Node(cfg) as node:           # an actor whose state is still {}: not data
        node.client().ask("Keeper", "empty", "read")
    path = data_dir(cfg)
    for db_path in glob.glob(os.path.join(path, "slot-*")):   # as an older version left it
        db = plyvel.DB(db_path)
        for k in list(db.iterator(prefix=b"n", include_value=False)):
            db.delete(k)
        db.close()
    meta = read_meta(path)
    del meta["listing"]
    with open(os.path.join(path, "node.meta"), "wb") as f:
        f.write(msgpack.packb(meta))
    with actorsys.Node(cfg) as node:
        listed = node.client().list_actors("Keeper")
    assert listed == sorted(expected), f"every actor with data listed, nothing else: {listed}"
    assert read_meta(path)["listing"] == LISTING_INDEX, "the index is built once"


def test_a_move_ignores_an_actorsys_folder_in_the_working_directory(config, tmp_path):
    """`actorsys run` from a folder holding another `actorsys` package (a checkout)."""
    cfg = keeper_config(config, 2)
    fill(cfg, 10)
    shadow = tmp_path / "cwd"
    (shadow / "actorsys").mkdir(parents=True)
    (shadow / "actorsys" / "__init__.py").write_text("raise ImportError('not the real actorsys')\n")
    from actorsys.storage.rebalance import rebalance
    from actorsys.storage.meta import read_meta as meta_of
    old = os.getcwd()
    os.chdir(shadow)
    try:
        meta = rebalance(data_dir(cfg), meta_of(data_dir(cfg)), 3)
    finally:
        os.chdir(old)
    assert meta["workers"] == 3, f"the move ran with the real package: {meta}"
