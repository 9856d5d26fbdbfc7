"""The router's replica decisions (actorsys/cluster/replicas.py), pure: rendezvous order,
quorums, grow / promote / transfer / surplus planning, and failover from the followers'
positions; records encode and parse with their followers and learners."""
from __future__ import annotations

import pytest

from actorsys.cluster import placement
from actorsys.cluster.ownership import Owned, encode, parse, record
from actorsys.cluster.replica_plans import (desired, plan_failover, plan_grow, plan_promote,
                                            plan_surplus, plan_transfer, quorum, under_replicated)

NODES = ["n1", "n2", "n3", "n4", "n5"]


def test_ranked_is_a_stable_rendezvous_order():
    for s in range(200):
        order = placement.ranked(s, NODES)
        assert sorted(order) == sorted(NODES)
        assert order[0] == placement.owner(s, NODES)
        # removing a node keeps the others' order (only its shards' sets change)
        for gone in NODES:
            assert placement.ranked(s, [n for n in NODES if n != gone]) == \
                [n for n in order if n != gone]
    firsts = {placement.ranked(s, NODES)[0] for s in range(200)}
    assert firsts == set(NODES), "leaders spread over every node"


@pytest.mark.parametrize("voters, ack, q", [(1, "majority", 1), (2, "majority", 2),
                                            (3, "majority", 2), (4, "majority", 3),
                                            (5, "majority", 3), (7, "majority", 4),
                                            (3, "all", 3), (1, "all", 1)])
def test_quorum(voters, ack, q):
    assert quorum(voters, ack) == q


def test_records_keep_followers_and_learners_and_old_records_parse():
    r = Owned("n1", 4, 0, None, ("n2", "n3"), ("n4",))
    back = parse(record(r), 9)
    assert back == r._replace(revision=9)
    assert back.voters == ("n1", "n2", "n3") and back.replicas == ("n1", "n2", "n3", "n4")
    old = parse(b'{"owner": "n1", "epoch": 2}', 3)
    assert old.followers == () and old.learners == () and old.voters == ("n1",)
    assert encode("n1", 2) == b'{"owner": "n1", "epoch": 2}', "unreplicated records unchanged"
    with pytest.raises(ValueError):
        parse(b'{"owner": "n1", "epoch": 2, "followers": "n2"}', 1)


def test_grow_adds_the_missing_desired_nodes_as_learners():
    live = ["n1", "n2", "n3"]
    owned = {s: Owned("n1", 1, 7) for s in range(50)}
    owned[50] = Owned("n2", 1, 7)                          # not ours
    owned[51] = Owned("n1", 1, 7, "n2")                    # a move under way
    new = plan_grow(owned, "n1", live, 3)
    assert set(new) == set(range(50))
    for r in new.values():
        assert r.owner == "n1" and r.epoch == 1 and r.followers == ()
        assert sorted(r.learners) == ["n2", "n3"]
    assert plan_grow(owned, "n1", live, 3, skip={0, 1}).keys() == set(range(2, 50))
    # nothing to add once every desired node holds a copy
    assert plan_grow({0: Owned("n1", 1, 7, None, ("n2",), ("n3",))}, "n1", live, 3) == {}
    # 5 nodes, R = 2: only the desired node that is missing
    for s in range(50):
        want = desired(s, NODES, 2)
        r = plan_grow({s: Owned(want[0], 1, 7)}, want[0], NODES, 2)[s]
        assert r.learners == (want[1],)


def test_promote_only_caught_up_live_learners_and_drop_a_dead_follower_with_each():
    live = {"n1", "n2", "n3", "n4"}
    owned = {0: Owned("n1", 5, 7, None, ("n9",), ("n2", "n3")),
             1: Owned("n1", 5, 7, None, (), ("n2",)),
             2: Owned("n1", 5, 7, None, (), ("n2",)),
             3: Owned("n1", 5, 7, None, (), ("n5",))}      # n5 not live
    progress = {0: {"epoch": 5, "seq": 10, "held": {"n2": 10, "n3": 9}},
                1: {"epoch": 4, "seq": 10, "held": {"n2": 9}},     # behind: not yet
                2: {"epoch": 5, "seq": 3, "held": {}},
                3: {"epoch": 5, "seq": 3, "held": {"n5": 3}}}
    new = plan_promote(owned, "n1", live, progress)
    assert set(new) == {0}
    assert new[0].followers == ("n2",) and new[0].learners == ("n3",) and new[0].epoch == 5
    assert plan_promote(owned, "n1", live, {}) == {}, "no answer (no worker side): nothing"


def test_transfer_goes_to_the_desired_leader_when_it_follows_and_the_shard_is_whole():
    live = ["n1", "n2", "n3"]
    out: dict[str, list[int]] = {}
    for s in range(60):
        want = desired(s, live, 3)
        others = tuple(n for n in live if n != "n1")
        owned = {s: Owned("n1", 2, 7, None, others)}
        got = plan_transfer(owned, "n1", set(live), live, 3)
        if want[0] == "n1":
            assert got == {}
        else:
            assert got == {want[0]: [s]}
            out.setdefault(want[0], []).append(s)
            # under-replicated (a follower is a learner still): no transfer
            half = {s: Owned("n1", 2, 7, None, (want[0],), tuple(n for n in others if n != want[0]))}
            assert plan_transfer(half, "n1", set(live), live, 3) == {}
            # the desired leader only learning: no transfer either
            learner = {s: Owned("n1", 2, 7, None, tuple(n for n in others if n != want[0]), (want[0],))}
            assert plan_transfer(learner, "n1", set(live), live, 3) == {}
    assert set(out) == {"n2", "n3"}


def test_surplus_removes_undesired_learners_now_and_undesired_followers_by_demotion():
    live = {"n1", "n2", "n3", "n4"}
    cands = sorted(live)
    for s in range(40):
        want = desired(s, cands, 3)
        if "n1" not in want:
            continue
        out = [n for n in cands if n not in want][0]
        rest = tuple(n for n in want if n != "n1")
        # an undesired learner: removed by the transaction alone
        now, demote = plan_surplus({s: Owned("n1", 1, 7, None, rest, (out,))}, "n1", live, cands, 3)
        assert now[s].learners == () and now[s].followers == rest and demote == {}
        # an undesired follower with 4 live voters: demoted (grant first)
        now, demote = plan_surplus({s: Owned("n1", 1, 7, None, rest + (out,))}, "n1", live, cands, 3)
        assert now == {} and demote[s][0] == out and demote[s][1].followers == rest
        # with only 3 live voters it stays (never below R live voters for placement)
        now, demote = plan_surplus({s: Owned("n1", 1, 7, None, (rest[0], out))}, "n1", live, cands, 3)
        assert now == {} and demote == {}
        # a dead follower goes once R voters are live; a dead learner always
        now, _ = plan_surplus({s: Owned("n1", 1, 7, None, rest + ("n9",), ("n8",))}, "n1", live,
                              cands, 3)
        assert now[s].followers == rest and now[s].learners == ()
        now, _ = plan_surplus({s: Owned("n1", 1, 7, None, (rest[0], "n9"))}, "n1", live, cands, 3)
        assert now == {}, "a dead voter stays while the shard has fewer than R live voters"


def test_failover_promotes_the_most_advanced_follower_if_enough_voters_answered():
    live = {"n2", "n3", "n4"}
    owned = {0: Owned("n1", 3, 7, None, ("n2", "n3"), ("n4",)),
             1: Owned("n1", 3, 7, None, ("n2", "n3")),
             2: Owned("n1", 3, 7, None, ("n2", "n5")),       # n5 dead too
             3: Owned("n2", 3, 7, None, ("n3",)),            # leader live: untouched
             4: Owned("n1", 3, 7),                           # no follower: waits for n1
             5: Owned("n1", 3, 7, "n2", ("n2", "n3"))}       # died during a transfer
    positions = {0: {"n2": (3, 10), "n3": (3, 12)}, 1: {"n2": (3, 12), "n3": (2, 40)},
                 2: {"n2": (3, 12)}, 5: {"n2": (3, 4), "n3": (3, 4)}}
    new, stuck = plan_failover(owned, live, positions, "majority")
    assert set(new) == {0, 1, 5} and stuck == [2]
    assert new[0] == Owned("n3", 4, 0, None, ("n2", "n1"), ("n4",))
    assert new[1].owner == "n2" and new[1].followers == ("n3", "n1"), "[epoch, seq] order"
    tie = placement.ranked(5, ["n2", "n3"])[0]
    assert new[5].owner == tie and new[5].to is None and new[5].epoch == 4
    # one of two followers answering: u = 2 (leader + one) = quorum of 3: no failover
    new, stuck = plan_failover({1: owned[1]}, live, {1: {"n2": (3, 12)}}, "majority")
    assert new == {} and stuck == [1]
    # ack = all: any answering follower holds every acknowledged write
    new, _ = plan_failover({1: owned[1]}, live, {1: {"n2": (3, 12)}}, "all")
    assert new[1].owner == "n2"
    # answers from non-followers (learners) or dead nodes never count
    new, stuck = plan_failover({0: owned[0]}, live, {0: {"n4": (3, 99), "n2": (3, 1)}}, "majority")
    assert new == {} and stuck == [0]


def test_failover_never_promotes_an_empty_copy():
    live = {"n2", "n3"}
    owned = {0: Owned("n1", 3, 7, None, ("n2", "n3")), 1: Owned("n1", 3, 7, None, ("n2", "n3")),
             2: Owned("n1", 3, 7, None, ("n2", "n3"))}
    # n2 lost its copy (or took a snapshot only in part): [0, 0] is never promoted, even
    # when its tie-break order or the other's position would put it first
    positions = {0: {"n2": (0, 0), "n3": (3, 1)}, 1: {"n2": (0, 0), "n3": (0, 0)},
                 2: {"n2": (0, 0), "n3": (1, 0)}}
    new, stuck = plan_failover(owned, live, positions, "majority")
    assert set(new) == {0, 2} and stuck == [1], "every answering copy empty: the shard waits"
    assert new[0].owner == "n3" and new[2].owner == "n3"
    assert new[0].followers == ("n2", "n1"), "the empty copy stays a follower (rebuilt later)"
    # an empty answer still counts as answering (it promised the fence) for the quorum
    new, stuck = plan_failover({0: owned[0]}, live, {0: {"n2": (0, 0), "n3": (3, 1)}}, "all")
    assert new[0].owner == "n3"
    # the only answering follower is empty: the shard waits for its leader
    new, stuck = plan_failover({0: Owned("n1", 3, 7, None, ("n2",))}, live, {0: {"n2": (0, 0)}},
                               "all")
    assert new == {} and stuck == [0]


def test_under_replicated_counts_live_voters():
    owned = {0: Owned("a", 1, 1, None, ("b", "c")), 1: Owned("a", 1, 1, None, ("b",), ("c",)),
             2: Owned("d", 1, 1, None, ("b", "c"))}
    assert under_replicated(owned, {"a", "b", "c"}, 3) == 2
