"""A cluster forming (``[cluster] bootstrap_expect`` and ``bootstrap_timeout``), against a
real etcd and real nodes on loopback hosts: the first claim gives each shard to the node
placement puts it on, so nodes started together move nothing; a forming cluster waits
for the nodes it expects, and past its timeout claims for those up, saying so."""
from __future__ import annotations

from typing import Any

from helpers import ACTORS, ACTORS_DIR

from actorsys.cluster.placement import placement
from actorsys.testing.cluster import Cluster
from actorsys.testing.nodes import wait_until

SHARDS = 4096


def owners(view: dict[str, Any]) -> dict[str, int]:
    return {n["id"]: n["shards"] for n in view["nodes"] if n["alive"]}


def moved_anything(c: Cluster) -> list[str]:
    """The log lines in which a node moved shards (none if the first claim placed them)."""
    return [line.strip() for node in c.nodes for line in open(node.log_path)
            if "moving shards from" in line]


def settled(live: int):
    def check(view: dict[str, Any]) -> bool:
        alive = owners(view)
        return (len(alive) == live and all(alive.values()) and sum(alive.values()) == SHARDS
                and not any(n["moving"] for n in view["nodes"]))
    return check


def test_nodes_started_together_claim_by_placement_and_move_nothing(tmp_path):
    with Cluster(tmp_path, 3, "loopback", actors=ACTORS, python_path=[ACTORS_DIR], workers=1) as c:
        for i in range(3):
            c.wait_ready(i, timeout=60)
        c.wait_view(0, settled(3), "3 nodes owning every shard", timeout=60)
        want = placement(SHARDS, ["n1", "n2", "n3"])
        assert owners(c.view(0)) == {n: want.count(n) for n in ("n1", "n2", "n3")}
        assert moved_anything(c) == [], "a cluster formed by placement moves no shard"
        with c.connect(0) as client:
            assert [client.ask("Counter", f"k{i}", "add", i) for i in range(20)] == list(range(20))


def test_a_forming_cluster_waits_for_the_nodes_it_expects(tmp_path):
    with Cluster(tmp_path, 1, "loopback", actors=ACTORS, python_path=[ACTORS_DIR], workers=1,
                 extra_config={"cluster": {"bootstrap_expect": 2}}) as c:
        c.wait_ready(0, timeout=60)
        wait_until(lambda: "is forming: 1 of 2 expected nodes live" in open(c.nodes[0].log_path).read(),
                   "the first node saying the cluster is forming", timeout=30)
        assert owners(c.view(0)) == {"n1": 0}, "no shard is claimed before the second node"
        c.add_node()
        c.wait_ready(1, timeout=60)
        c.wait_view(0, settled(2), "2 nodes owning every shard", timeout=60)
        want = placement(SHARDS, ["n1", "n2"])
        assert owners(c.view(0)) == {n: want.count(n) for n in ("n1", "n2")}
        assert moved_anything(c) == []


def test_past_its_timeout_a_forming_cluster_claims_for_the_nodes_up_and_says_so(tmp_path):
    with Cluster(tmp_path, 1, "loopback", actors=ACTORS, python_path=[ACTORS_DIR], workers=1,
                 extra_config={"cluster": {"bootstrap_expect": 3, "bootstrap_timeout": 2}}) as c:
        c.wait_ready(0, timeout=60)
        c.wait_view(0, settled(1), "the one node owning every shard", timeout=30)
        log = open(c.nodes[0].log_path).read()
        assert "1 of bootstrap_expect = 3 nodes live after 2 s (bootstrap_timeout)" in log, log[-2000:]
        with c.connect(0) as client:
            assert client.ask("Counter", "k", "add", 2) == 2
