"""Replicated shards across real nodes (issue 16, the router's side), with a real etcd:

* ``replicas`` and ``ack`` are cluster-wide: a node whose config says other values than
  the cluster's first node stops with a ConfigError naming both;

Placement on 3 nodes (every shard on 3 voters, leaders spread, ``actorsys cluster``), the
faults (kill -9, SIGSTOP, a partition, a lost slot, a full disk) and a node leaving are in
``test_replicated_failover.py``, on one cluster for the module.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterator

import pytest
from helpers import ACTORS_DIR, emptied, module_etcd

import actorsys
from actorsys.testing.cluster import Cluster
from actorsys.testing.etcd import Etcd
from test_cluster_join import cluster_config

pytestmark = pytest.mark.timeout(300)

SHARDS = 4096
ACTORSYS = os.path.join(os.path.dirname(sys.executable), "actorsys")
ACTORS = {"Tally": "actorsys.testing.chaos.actors:Tally"}


@pytest.fixture(scope="module")
def shared_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    """One etcd for the module (a start costs about a second)."""
    yield from module_etcd(str(tmp_path_factory.mktemp("etcd")))


@pytest.fixture
def etcd(shared_etcd: Etcd) -> Iterator[Etcd]:
    """The module's etcd, every key and lease of the test's gone at its end."""
    yield from emptied(shared_etcd)


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
