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


def test_a_remembered_ranking_is_the_ranking_and_the_caller_cannot_spoil_it():
    """Rankings are remembered per (shard, node list): the same answer as a fresh one,
    whatever the list's order, and a caller changing the list it got changes nothing."""
    from actorsys.cluster.placement import _weight, ranked

    nodes = ["n1", "n2", "n3", "n4"]
    for s in range(200):
        fresh = sorted(nodes, key=lambda n: (_weight(s, n), n), reverse=True)
        assert ranked(s, nodes) == fresh == ranked(s, nodes[::-1])
        assert owner(s, nodes) == fresh[0]
    got = ranked(5, nodes)
    got.reverse()
    assert ranked(5, nodes) == got[::-1]
