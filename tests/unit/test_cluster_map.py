"""The cluster's client map built from etcd's view (actorsys/cluster/clustermap.py): one
hop to the owner's worker slot on any host, a dead owner's shards marked as its own."""
from __future__ import annotations

from actorsys.cluster.clustermap import UNCLAIMED, build_map, cluster_view
from actorsys.cluster.membership import Member
from actorsys.cluster.ownership import Owned

SHARDS = 8


def member(nid: str, workers: int) -> Member:
    return Member(nid, f"tcp://{nid}:7100", None,
                  tuple(f"tcp://{nid}:{7101 + i}" for i in range(workers)),
                  bytes(s % workers for s in range(SHARDS)))


def test_each_shard_maps_to_its_owners_home_slot_in_global_numbering():
    members = {"a": member("a", 2), "b": member("b", 3)}
    owned = {s: Owned("a" if s < 4 else "b", 1, 10) for s in range(SHARDS)}
    m = build_map("prod", SHARDS, members, owned)
    assert m.endpoints == [*members["a"].workers, *members["b"].workers]
    for s in range(SHARDS):
        owner = members[owned[s].owner]
        assert m.endpoints[m.owner[s]] == owner.workers[owner.home[s]]
    assert m.epoch == SHARDS and m.name == "prod"
    assert [n["slots"] for n in m.nodes] == [[0, 2], [2, 3]]


def test_a_dead_owners_shards_point_at_it_by_a_negative_index():
    members = {"a": member("a", 2)}
    owned = {s: Owned("a" if s % 2 else "b", 3, 10) for s in range(SHARDS)}
    m = build_map("prod", SHARDS, members, owned)
    ids = [n["id"] for n in m.nodes]
    assert ids == ["a", "b"] and [n["alive"] for n in m.nodes] == [True, False]
    for s in range(0, SHARDS, 2):
        assert m.owner[s] == -1 - ids.index("b")
    assert m.endpoints == list(members["a"].workers)
    view = cluster_view(m, owned, members)
    assert view["nodes"] == [
        {"id": "a", "endpoint": "tcp://a:7100", "alive": True, "shards": 4, "follows": 0,
         "learning": 0, "moving": 0, "leaving": False},
        {"id": "b", "endpoint": None, "alive": False, "shards": 4, "follows": 0, "learning": 0,
         "moving": 0, "leaving": False}]
    assert view["replicas"] == 1 and view["unavailable"] == 4 and view["under_replicated"] == 4


def test_the_view_counts_followers_learners_and_under_replicated_shards():
    members = {n: member(n, 2) for n in ("a", "b", "c")}
    owned = {0: Owned("a", 1, 5, followers=("b", "c")),          # 3 live voters
             1: Owned("b", 1, 5, followers=("a",), learners=("c",)),   # 2 voters: under
             2: Owned("c", 1, 5, followers=("a", "b")),
             3: Owned("d", 2, 5, followers=("a", "b"))}        # leader dead: unavailable
    owned.update({s: Owned("a", 1, 5, followers=("b", "c")) for s in range(4, SHARDS)})
    m = build_map("prod", SHARDS, members, owned)
    view = cluster_view(m, owned, members, 3)
    by = {n["id"]: (n["shards"], n["follows"], n["learning"]) for n in view["nodes"]}
    assert by == {"a": (SHARDS - 3, 3, 0), "b": (1, SHARDS - 1, 0), "c": (1, SHARDS - 3, 1),
                  "d": (1, 0, 0)}
    assert view["replicas"] == 3 and view["under_replicated"] == 2 and view["unavailable"] == 1


def test_unclaimed_shards_are_unavailable_and_not_a_node_of_the_view():
    members = {"a": member("a", 1)}
    m = build_map("prod", SHARDS, members, {0: Owned("a", 1, 5)})
    assert m.owner[0] == 0
    assert m.nodes[m.owner[1] * -1 - 1]["id"] == UNCLAIMED
    assert [n["id"] for n in cluster_view(m, {0: Owned("a", 1, 5)}, members)["nodes"]] == ["a"]


def test_the_map_round_trips_through_the_wire():
    from actorsys.protocol.shardmap import ShardMap
    members = {"a": member("a", 2)}
    owned = {s: Owned("a" if s % 2 else "z", 1, 10) for s in range(SHARDS)}
    m = build_map("prod", SHARDS, members, owned)
    back = ShardMap.from_wire(m.to_wire())
    assert back.owner == m.owner and back.nodes == m.nodes and back.endpoints == m.endpoints


def test_the_view_counts_the_shards_each_live_node_still_has_to_move():
    from actorsys.cluster import placement
    members = {"a": member("a", 1), "b": member("b", 1)}
    owned = {s: Owned("a", 1, 10) for s in range(SHARDS)}
    m = build_map("prod", SHARDS, members, owned)
    elsewhere = sum(placement.owner(s, ["a", "b"]) != "a" for s in range(SHARDS))
    assert cluster_view(m, owned, members)["nodes"][0]["moving"] == elsewhere
    import dataclasses
    leaving = {**members, "b": dataclasses.replace(members["b"], leaving=True)}
    view = cluster_view(m, owned, leaving)
    assert view["nodes"][0]["moving"] == 0 and view["nodes"][1]["leaving"] is True
