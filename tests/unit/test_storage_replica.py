"""A follower's copy of a replicated shard (actorsys/storage/replica.py) against a real
LevelDB in a temporary directory: positions and fences, appends applied / held /
behind / refused, a prev of [0, 0] never applied, snapshot pages (a cut-short snapshot
leaves no position), the leader's split of staged writes by shard, and the position
and fence keys' place in the layout (handoff drop and clear delete the fence)."""
from __future__ import annotations

import plyvel
import pytest

from actorsys.errors import BadRequest
from actorsys.protocol import wire
from actorsys.protocol.shardmap import shard_of
from actorsys.storage import handoff, replica
from actorsys.storage.keys import (actor_prefix, alarm_index_key, fence_key, listing_key,
                                   listing_value, position_key, shard_range, split_actor_key,
                                   state_key)

N = 64


@pytest.fixture
def db(tmp_path):
    d = plyvel.DB(str(tmp_path / "f"), create_if_missing=True)
    yield d
    d.close()


def never(_s: int) -> bool:
    return False


def put(shard: int, key: str, n: int) -> list[tuple[bytes, bytes | None]]:
    p = actor_prefix(shard, "T", key)
    return [(state_key(p), wire.pack({"n": n}))]


def test_position_key_is_the_first_of_its_shard_and_no_actor_key():
    k = position_key(5)
    lo, hi = shard_range(5)
    assert lo <= k < hi and k < actor_prefix(5, "A", "")
    assert split_actor_key(k) is None
    assert fence_key(5) == b"f\x00\x05"


def test_absent_position_and_fence(db):
    assert replica.read_position(db, 3) == (0, 0)
    assert replica.read_fence(db, 3) == 0
    assert replica.raise_fences(db, {3: 4}) == {3: 4}
    assert replica.raise_fences(db, {3: 2}) == {3: 4}, "a fence never goes down"
    assert replica.read_fence(db, 3) == 4


def test_appends_apply_in_order_and_answer_held_behind_refused(db):
    # a copy at [0, 0] is never extended: it waits for a snapshot
    r = replica.apply_batches(db, [(1, 2, 0, 0, 1, put(1, "a", 1))], never, True)
    assert r == {"held": {}, "behind": {1: [0, 0]}, "refused": {}}
    assert db.get(state_key(actor_prefix(1, "T", "a"))) is None
    replica.apply_snapshot_page(db, 1, 2, True, True, [[position_key(1), replica.pack_position((2, 1))]],
                                never)
    assert replica.read_position(db, 1) == (2, 1) and replica.read_fence(db, 1) == 2
    gone = [(state_key(actor_prefix(1, "T", "b")), None)]
    r = replica.apply_batches(db, [(1, 2, 2, 1, 2, put(1, "a", 2)),
                                   (1, 2, 2, 2, 3, put(1, "a", 3) + gone)], never, True)
    assert r["held"] == {1: [2, 3]} and not r["behind"] and not r["refused"]
    assert wire.unpack(db.get(state_key(actor_prefix(1, "T", "a")))) == {"n": 3}
    assert replica.read_position(db, 1) == (2, 3)
    # the same batch again: held, nothing written
    assert replica.apply_batches(db, [(1, 2, 2, 1, 2, put(1, "a", 99))], never, True)["held"] == {1: [2, 3]}
    assert wire.unpack(db.get(state_key(actor_prefix(1, "T", "a")))) == {"n": 3}
    # a gap: behind, with the copy's position
    assert replica.apply_batches(db, [(1, 2, 2, 5, 6, [])], never, True)["behind"] == {1: [2, 3]}
    # a newer epoch follows on: the fence rises with it
    assert replica.apply_batches(db, [(1, 3, 2, 3, 4, [])], never, True)["held"] == {1: [3, 4]}
    assert replica.read_fence(db, 1) == 3
    # an older epoch is refused with the fence, and so is a shard served here
    assert replica.apply_batches(db, [(1, 2, 2, 3, 4, [])], never, True)["refused"] == {1: 3}
    assert replica.apply_batches(db, [(1, 3, 3, 4, 5, [])], lambda s: s == 1, True)["refused"] == {1: 3}
    replica.raise_fences(db, {1: 9})
    assert replica.apply_batches(db, [(1, 3, 3, 4, 5, [])], never, True)["refused"] == {1: 9}
    assert replica.read_position(db, 1) == (3, 4)


def test_batches_are_checked(db):
    with pytest.raises(BadRequest, match="does not belong to shard 2"):
        replica.check_batches([[2, 1, 1, 1, 2, [[state_key(actor_prefix(3, "T", "x")), b""]]]], N)
    with pytest.raises(BadRequest, match="does not follow"):
        replica.check_batches([[2, 1, 1, 2, 2, []]], N)
    with pytest.raises(BadRequest, match="out of range"):
        replica.check_batches([[N, 1, 0, 0, 1, []]], N)
    with pytest.raises(BadRequest):
        replica.check_batches([[2, 1, 0, 0, 1, [["k", b""]]]], N)
    ok = replica.check_batches([[2, 1, 0, 0, 1, [[state_key(actor_prefix(2, "T", "x")), None]]]], N)
    assert ok == [(2, 1, 0, 0, 1, [(state_key(actor_prefix(2, "T", "x")), None)])]


def test_a_snapshot_cut_short_leaves_no_position(db):
    for k, v in put(4, "old", 1):
        db.put(k, v)
    db.put(position_key(4), replica.pack_position((1, 7)))
    items = [[k, v] for k, v in put(4, "new", 5)]
    r = replica.apply_snapshot_page(db, 4, 2, True, False, items, never)
    assert r["position"] == [0, 0], "cleared, and no position before the last page"
    assert db.get(state_key(actor_prefix(4, "T", "old"))) is None
    with pytest.raises(BadRequest, match="last page"):
        replica.apply_snapshot_page(db, 4, 2, False, False,
                                    [[position_key(4), replica.pack_position((2, 9))]], never)
    r = replica.apply_snapshot_page(db, 4, 2, False, True, [[position_key(4), replica.pack_position((2, 9))]],
                                    never)
    assert r["position"] == [2, 9] and replica.read_fence(db, 4) == 2
    assert replica.apply_snapshot_page(db, 4, 1, True, True, [], never) == {"refused": 2}
    assert replica.read_position(db, 4) == (2, 9)


def test_staged_writes_split_by_shard():
    key = "k1"
    s = shard_of("T", key, N)
    p = actor_prefix(s, "T", key)
    pending = {state_key(p): b"x", listing_key("T", key): None,
               alarm_index_key(p, 10, "a"): b"", actor_prefix(s + 1, "T", "z") + b"s": b"y",
               b"zz-unknown": b""}
    out = replica.split_by_shard(pending, lambda sh: sh == s, N)
    assert out == {s: [(state_key(p), b"x"), (listing_key("T", key), None),
                       (alarm_index_key(p, 10, "a"), b"")]}
    assert set(replica.split_by_shard(pending, lambda sh: True, N)) == {s, s + 1}


def test_drop_and_clearing_import_delete_the_fence_and_keep_the_position_with_the_data(db):
    p = actor_prefix(6, "T", "a")
    db.put(state_key(p), wire.pack({"n": 1}))
    db.put(listing_key("T", "a"), listing_value(p))
    db.put(position_key(6), replica.pack_position((2, 3)))
    replica.raise_fences(db, {6: 2, 7: 5})
    items, nxt = handoff.export_page(db, [6], None, 1 << 20)
    assert nxt is None and (position_key(6), replica.pack_position((2, 3))) in items
    assert not any(k.startswith(b"f") for k, _v in items), "a fence is never exported"
    handoff.import_items(db, {7}, [], clear=True)
    assert replica.read_fence(db, 7) == 0 and replica.read_fence(db, 6) == 2
    handoff.drop_shards(db, {6})
    assert replica.read_fence(db, 6) == 0 and replica.read_position(db, 6) == (0, 0)
    assert list(db.iterator()) == []


def test_a_served_shard_is_refused_with_the_epoch_it_is_served_with(db):
    always = lambda s: True  # noqa: E731
    r = replica.apply_batches(db, [(1, 2, 0, 0, 1, [])], always, True, lambda s: 7)
    assert r["refused"] == {1: 7}, "not the fence (0 here)"
    assert replica.apply_snapshot_page(db, 1, 9, True, True, [], always, lambda s: 7) == {"refused": 7}


def test_a_copy_with_a_newer_position_than_its_fence_refuses_an_older_epoch(db):
    # an ex-leader's copy at epoch 5 that never wrote a fence
    db.put(position_key(2), replica.pack_position((5, 4)))
    assert replica.read_fence(db, 2) == 0
    r = replica.apply_batches(db, [(2, 4, 5, 4, 5, put(2, "z", 1))], never, True)
    assert r["refused"] == {2: 5}, "a zombie leader of epoch 4"
    assert replica.apply_snapshot_page(db, 2, 4, True, True, [], never) == {"refused": 5}
    assert replica.read_position(db, 2) == (5, 4)
    r = replica.apply_batches(db, [(2, 6, 5, 4, 1, put(2, "z", 1))], never, True)
    assert r["held"] == {2: [6, 1]}, "a newer epoch goes on from the copy's position"


@pytest.mark.parametrize("batch", [
    [0, 1, 0, 0, 1, [[b"a", b""]]],
    [0, 1, 0, 0, 1, [[b"a\0", b""]]],
    [0, 1, 0, 0, 1, [[b"t", b""]]],
    [0, 1, 0, 0, 1, [[b"t" + bytes(10), b""]]],
    [0, 2, 1, 5, -3, []],
    [0, 2, 1, 5, 0, []],
    [0, 1 << 64, 0, 0, 1, []],
    [0, 1, 0, 0, 1 << 63, []],
])
def test_peer_values_that_could_crash_or_corrupt_are_bad_requests(db, batch):
    with pytest.raises(BadRequest):
        replica.check_batches([batch], N)


def test_a_snapshot_position_value_must_be_a_position(db):
    for bad in (wire.pack("x"), wire.pack([1]), wire.pack([1, "2"]), wire.pack([1 << 63, 1]), b"\xc1"):
        with pytest.raises(BadRequest, match="position value"):
            replica.apply_snapshot_page(db, 4, 2, True, True, [[position_key(4), bad]], never)
    assert replica.read_position(db, 4) == (0, 0)
