"""The shard map a client routes by: a single node's (unchanged) and a cluster's, whose
shards on a node that is down fail at once with ShardUnavailable naming the node."""
from __future__ import annotations

import pytest

from actorsys import ActorError, ShardUnavailable
from actorsys.errors import BadRequest, error_from_wire
from actorsys.protocol import wire
from actorsys.protocol.shardmap import ShardMap, shard_of

SHARDS = 64


def single(workers: int = 4) -> ShardMap:
    return ShardMap(epoch=3, shards=SHARDS, owner=[s % workers for s in range(SHARDS)],
                    endpoints=[f"ipc:///tmp/w{i}" for i in range(workers)])


def cluster() -> ShardMap:
    """n1 (slots 0-1) and n3 (slots 2-3) alive; n2 down owns every third shard."""
    nodes = [{"id": "n1", "endpoint": "tcp://10.0.0.11:7100", "alive": True, "slots": [0, 2]},
             {"id": "n2", "endpoint": "tcp://10.0.0.12:7100", "alive": False, "slots": [0, 0]},
             {"id": "n3", "endpoint": "tcp://10.0.0.13:7100", "alive": True, "slots": [2, 2]}]
    owner = [-2 if s % 3 == 0 else s % 4 for s in range(SHARDS)]
    return ShardMap(epoch=9, shards=SHARDS, owner=owner, nodes=nodes, name="prod",
                    endpoints=[f"tcp://10.0.0.{h}:{p}" for h in (11, 13) for p in (7101, 7102)])


def key_on(m: ShardMap, want: int) -> str:
    return next(k for k in (f"k{i}" for i in range(10_000))
                if m.owner[shard_of("Counter", k, m.shards)] == want)


def test_a_single_nodes_map_is_unchanged_on_the_wire():
    m = single()
    d = m.to_wire(max_message_bytes=5)
    assert d == {"epoch": 3, "shards": SHARDS, "owner": bytes(m.owner),
                 "endpoints": m.endpoints, "max_message_bytes": 5, "batches": True}
    back = ShardMap.from_wire(wire.unpack(wire.pack(d)))
    assert back == m and back.nodes is None and back.name is None
    del d["batches"]                  # a node that does not say its workers read batches
    assert ShardMap.from_wire(d).batches is False


def test_a_clusters_map_round_trips_with_its_nodes_and_name():
    m = cluster()
    d = wire.unpack(wire.pack(m.to_wire()))
    assert d["owner"] == m.owner            # a negative owner: an array, not bytes
    assert d["name"] == "prod" and d["nodes"][1] == {
        "id": "n2", "endpoint": "tcp://10.0.0.12:7100", "alive": False, "slots": [0, 0]}
    back = ShardMap.from_wire(d)
    assert back == m
    assert back.nodes is not None and back.nodes[2]["slots"] == [2, 2]
    assert back.node_of_slot(3) == back.nodes[2] and single().node_of_slot(0) is None


def test_a_maps_version_changes_with_its_epoch_and_its_endpoints():
    """(The router pushes it to its gateway, which fetches the map when its own differs.)"""
    m = cluster()
    back = ShardMap.from_wire(wire.unpack(wire.pack(m.to_wire())))
    assert back.version() == m.version() and wire.unpack(wire.pack(m.version())) == m.version()
    failed_over = ShardMap.from_wire(wire.unpack(wire.pack(m.to_wire())))
    failed_over.epoch += 1
    assert failed_over.version() != m.version()
    n3_gone = ShardMap.from_wire(wire.unpack(wire.pack(m.to_wire())))
    n3_gone.endpoints = n3_gone.endpoints[:2]
    assert n3_gone.version() != m.version()


def test_owner_is_bytes_only_when_every_value_fits_in_a_byte():
    big = ShardMap(epoch=1, shards=4, owner=[0, 255, 256, 1],
                   endpoints=[f"ipc:///tmp/w{i}" for i in range(300)])
    assert big.to_wire()["owner"] == [0, 255, 256, 1]
    assert ShardMap.from_wire(wire.unpack(wire.pack(big.to_wire()))).owner == [0, 255, 256, 1]
    fits = ShardMap(epoch=1, shards=2, owner=[0, 255], endpoints=["x"] * 256)
    assert fits.to_wire()["owner"] == b"\x00\xff"


def test_a_live_shard_routes_to_its_global_slot():
    m = cluster()
    for slot in range(4):
        if any(o == slot for o in m.owner):
            assert m.slot_of("Counter", key_on(m, slot)) == slot


def test_a_shard_of_a_node_that_is_down_fails_at_once_naming_the_node():
    m = cluster()
    key = key_on(m, -2)
    shard = shard_of("Counter", key, SHARDS)
    with pytest.raises(ShardUnavailable) as e:
        m.slot_of("Counter", key)
    assert str(e.value) == (f"shard {shard} of Counter/{key!r} belongs to node n2 "
                            f"(tcp://10.0.0.12:7100), which is down; it answers again when n2 returns")
    assert isinstance(e.value, ActorError) and e.value.code == "shard_unavailable"


def test_a_shard_no_node_has_claimed_yet_says_so():
    m = ShardMap(epoch=1, shards=2, owner=[0, -1], endpoints=["a"], name="c",
                 nodes=[{"id": "(no owner yet)", "endpoint": None, "alive": False, "slots": [0, 0]}])
    key = next(k for k in (f"k{i}" for i in range(1000)) if shard_of("T", k, 2) == 1)
    with pytest.raises(ShardUnavailable, match=r"^shard 1 of T/'k\d+' is not served: \(no owner yet\)$"):
        m.slot_of("T", key)
    m.nodes[0]["id"] = "n9"          # a dead node whose record is gone: no endpoint known
    with pytest.raises(ShardUnavailable, match=r"belongs to node n9, which is down; it answers "
                                               r"again when n9 returns$"):
        m.slot_of("T", key)


def test_shard_unavailable_crosses_the_wire():
    err = error_from_wire(ShardUnavailable("shard 1 of A/'k' belongs to node n2").to_wire())
    assert type(err) is ShardUnavailable and "node n2" in str(err)


@pytest.mark.parametrize("bad", [
    {"epoch": 1, "shards": 3, "owner": [0, 0], "endpoints": ["a"]},              # too few owners
    {"epoch": 1, "shards": 2, "owner": [0, 1], "endpoints": ["a"]},              # no slot 1
    {"epoch": 1, "shards": 2, "owner": [0, -1], "endpoints": ["a"]},             # no node 0
    {"epoch": 1, "shards": 2, "owner": [0, -2], "endpoints": ["a"],
     "nodes": [{"id": "n", "endpoint": "e", "alive": False, "slots": [0, 0]}]},  # no node 1
    {"epoch": 1, "shards": 1, "owner": [0], "endpoints": ["a"], "nodes": [["n"]]},  # not maps
    {"epoch": 1, "shards": 1, "endpoints": ["a"]},                               # no owner
    {"epoch": "x", "shards": 1, "owner": [0], "endpoints": ["a"]},
])
def test_a_malformed_map_is_refused_clearly(bad):
    with pytest.raises(BadRequest, match="malformed shard map"):
        ShardMap.from_wire(bad)
