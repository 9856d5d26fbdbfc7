"""Rendezvous placement of shards (actorsys/cluster/placement.py): fair, and a join or
a leave moves only the shards it must."""
from actorsys.cluster.placement import owner, placement, spread

SHARDS = 4096


def test_every_node_gets_a_fair_share():
    owners = placement(SHARDS, ["n1", "n2", "n3"])
    counts = spread(owners)
    assert set(counts) == {"n1", "n2", "n3"}
    assert all(abs(c - SHARDS / 3) < SHARDS / 3 * 0.1 for c in counts.values()), counts


def test_a_join_moves_only_shards_to_the_new_node_and_about_a_fair_share():
    before = placement(SHARDS, ["n1", "n2", "n3"])
    after = placement(SHARDS, ["n1", "n2", "n3", "n4"])
    moved = [s for s in range(SHARDS) if before[s] != after[s]]
    assert all(after[s] == "n4" for s in moved), "a join only moves shards to the joiner"
    assert abs(len(moved) - SHARDS / 4) < SHARDS / 4 * 0.15, len(moved)


def test_a_leave_moves_only_the_leavers_shards():
    before = placement(SHARDS, ["n1", "n2", "n3"])
    after = placement(SHARDS, ["n1", "n3"])
    assert all(after[s] == before[s] for s in range(SHARDS) if before[s] != "n2")
    assert "n2" not in after


def test_the_order_of_the_member_list_does_not_matter():
    assert placement(64, ["a", "b", "c"]) == placement(64, ["c", "a", "b"])
    assert owner(7, ["only"]) == "only"
