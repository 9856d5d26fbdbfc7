"""Replicated shards across real nodes (issue 16, the router's side), with a real etcd:

* ``replicas`` and ``ack`` are cluster-wide: a node whose config says other values than
  the cluster's first node stops with a ConfigError naming both;
* 3 nodes with ``replicas = 3`` end with every shard on 3 nodes: each node holds a copy
  (led, followed or being learned) of every shard, and the view says so;
* once the workers stream (the worker side of issue 16: ``WORKER_SIDE``), every learner
  is promoted (no shard under-replicated), the leaders spread over the nodes, and a
  leader killed -9 has its shards served by a follower within ``lease_ttl + 2`` s with
  every acknowledged write there; started again, it follows, catches up and leads its
  share again. Those tests are skipped on a
  tree without the worker side (they need the merge).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from helpers import ACTORS_DIR

import actorsys
from actorsys.protocol import wire
from actorsys.testing.cluster import Cluster
from actorsys.testing.etcd import Etcd
from test_cluster_join import cluster_config

pytestmark = pytest.mark.timeout(300)

SHARDS = 4096
ACTORSYS = os.path.join(os.path.dirname(sys.executable), "actorsys")
#: whether the workers replicate (runtime/replication.py, the worker side of issue 16)
WORKER_SIDE = importlib.util.find_spec("actorsys.runtime.replication") is not None
needs_worker_side = pytest.mark.skipif(
    not WORKER_SIDE, reason="needs the worker side of issue 16 (streaming, acks): after the merge")
ACTORS = {"Tally": "actorsys.testing.chaos.actors:Tally"}


@pytest.fixture
def etcd(tmp_path):
    with Etcd(str(tmp_path / "etcd"), "127.0.0.1") as e:
        yield e


def replicated(tmp_path, n: int = 3, **kw: Any) -> Cluster:
    kw.setdefault("workers", 2)
    kw.setdefault("lease_ttl", 3.0)
    return Cluster(tmp_path, n, "loopback", actors=ACTORS, python_path=[ACTORS_DIR],
                   extra_config={"cluster": {"replicas": 3}}, **kw)


def copies(view: dict[str, Any]) -> dict[str, int]:
    """Node -> shards it holds a copy of (led, followed or learned)."""
    return {n["id"]: n["shards"] + n["follows"] + n["learning"] for n in view["nodes"]}


def logs(c: Cluster) -> str:
    return "\n".join(f"--- {n.node_id}:\n{c.log_tail(n.index, 20)}" for n in c.nodes)


def test_a_node_with_other_replicas_or_ack_than_the_cluster_is_refused(tmp_path, etcd):
    first = cluster_config(tmp_path, [etcd.url], "n1")
    first["cluster"]["replicas"] = 3
    with actorsys.Node(first):
        for change, words in (({"replicas": 2}, "replicas = 3"),
                              ({"replicas": 1}, "replicas = 3"),
                              ({"replicas": 3, "ack": "all"}, "ack = 'majority'")):
            cfg = cluster_config(tmp_path, [etcd.url], "n2", data=f"n2-{len(change)}-{id(change)}")
            cfg["cluster"].update(change)
            started = time.monotonic()
            with pytest.raises((actorsys.ConfigError, actorsys.NodeUnavailable)) as err:
                actorsys.Node(cfg).start()
            text = str(err.value)
            assert words in text and ("cluster.replicas" in text or "cluster.ack" in text), text
            assert time.monotonic() - started < 30


def test_three_nodes_with_three_replicas_hold_every_shard_three_times(tmp_path):
    with replicated(tmp_path) as c:
        for i in range(3):
            c.wait_ready(i, timeout=60)

        def placed(view: dict[str, Any]) -> bool:
            held = copies(view)
            return (sum(1 for n in view["nodes"] if n["alive"]) == 3 and view["replicas"] == 3
                    and sum(n["shards"] for n in view["nodes"]) == SHARDS
                    and held == {"n1": SHARDS, "n2": SHARDS, "n3": SHARDS}
                    and view["unavailable"] == 0)
        try:
            view = c.wait_view(0, placed, "every shard on 3 nodes", timeout=90)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{logs(c)}") from None
        out = subprocess.run([ACTORSYS, "cluster", "-e", c.endpoints[1]], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 0 and "replicas 3" in out.stdout, out
        assert "FOLLOWS" in out.stdout and "LEARNING" in out.stdout, out.stdout
        if not WORKER_SIDE:     # the cluster serves (the leader alone, not streamed)
            client = actorsys.connect(c.endpoints[0])
            try:
                assert client.ask("Tally", "a", "add") >= 1
            finally:
                client.close()
        else:     # after the merge: promoted, spread over the nodes
            def whole(view: dict[str, Any]) -> bool:
                return (placed(view) and view["under_replicated"] == 0
                        and all(n["learning"] == 0 and n["moving"] == 0 and n["shards"] > 0
                                for n in view["nodes"]))
            try:
                view = c.wait_view(0, whole, "every shard on 3 voters, leaders spread",
                                   timeout=120)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{logs(c)}") from None
            for n in view["nodes"]:
                assert SHARDS // 3 - 300 < n["shards"] < SHARDS // 3 + 300, view
                assert n["follows"] == SHARDS - n["shards"], view
            client = actorsys.connect(c.endpoints[0])
            try:
                assert client.ask("Tally", "a", "add") >= 1
            finally:
                client.close()


@needs_worker_side
def test_a_killed_leaders_shards_are_served_by_a_follower_with_every_acked_write(tmp_path):
    with replicated(tmp_path) as c:
        for i in range(3):
            c.wait_ready(i, timeout=60)
        c.wait_view(0, lambda v: v["under_replicated"] == 0 and all(
            n["learning"] == 0 and n["moving"] == 0 and n["shards"] for n in v["nodes"]),
            "every shard on 3 voters, leaders spread", timeout=120)
        client = actorsys.connect(c.endpoints[0])
        try:
            acked = {}
            for i in range(300):
                acked[f"k{i}"] = client.ask("Tally", f"k{i}", "add")
            c.kill_node(2)
            killed = time.monotonic()
            c.wait_view(0, lambda v: v["unavailable"] == 0 and not any(
                n["shards"] for n in v["nodes"] if n["id"] == "n3"),
                "n3's shards served by a follower", timeout=30)
            assert time.monotonic() - killed < c.lease_ttl + 2 + 1.0   # (+ the view's polling)
            for k, v in acked.items():
                assert client.ask("Tally", k, "read")["n"] == v, k
                acked[k] = client.ask("Tally", k, "add")
            # it returns: a follower of what it led, it catches up, and leads its share again
            c.start_node(2)
            c.wait_ready(2, timeout=60)
            try:
                c.wait_view(0, lambda v: v["under_replicated"] == 0 and v["unavailable"] == 0
                            and all(n["alive"] and n["learning"] == 0 and n["moving"] == 0
                                    and n["shards"] for n in v["nodes"]),
                            "n3 back, leading its share again", timeout=120)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{logs(c)}") from None
            for k, v in acked.items():
                assert client.ask("Tally", k, "read")["n"] == v, k
        finally:
            client.close()


@needs_worker_side
def test_a_leaving_node_hands_its_leadership_to_followers(tmp_path):
    with replicated(tmp_path) as c:
        for i in range(3):
            c.wait_ready(i, timeout=60)
        c.wait_view(0, lambda v: v["under_replicated"] == 0 and all(
            n["learning"] == 0 and n["moving"] == 0 and n["shards"] for n in v["nodes"]),
            "every shard on 3 voters, leaders spread", timeout=120)
        client = actorsys.connect(c.endpoints[0])
        try:
            acked = {f"k{i}": client.ask("Tally", f"k{i}", "add") for i in range(100)}
            reply = c.stop_node(2, drain=True)
            assert reply is not None and reply[0] == wire.OK, (reply, logs(c))
            view = c.wait_view(0, lambda v: v["unavailable"] == 0 and sum(
                n["shards"] for n in v["nodes"] if n["id"] != "n3") == SHARDS,
                "n3's shards led by n1 and n2", timeout=30)
            assert all(n["shards"] for n in view["nodes"] if n["id"] != "n3"), view
            for k, v in acked.items():
                assert client.ask("Tally", k, "read")["n"] == v, k
        finally:
            client.close()
