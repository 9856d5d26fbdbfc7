"""Joining a cluster, and the bad input a join refuses (issue 15), against a real etcd:
etcd unreachable at start, a duplicate live node_id, a data directory of another
node id or cluster: each stops the node with an error naming the cause, in bounded time.
A node killed before its lease expired starts again at once (its own lease is revoked)."""
from __future__ import annotations

import os
import signal
import socket
import time
from typing import Iterator

import psutil
import pytest
from helpers import emptied, make_config, module_etcd

import actorsys
from actorsys.testing.etcd import Etcd
from actorsys.testing.nodes import role_pid


@pytest.fixture(scope="module")
def shared_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    """One etcd for the module (a start costs about a second)."""
    yield from module_etcd(str(tmp_path_factory.mktemp("etcd")))


@pytest.fixture
def etcd(shared_etcd: Etcd) -> Iterator[Etcd]:
    """The module's etcd, every key and lease of the test's gone at its end."""
    yield from emptied(shared_etcd)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def cluster_config(tmp_path, etcd_urls: list[str], node_id: str, name: str = "t",
                   data: str | None = None, lease_ttl: float = 2.0, **node):
    cfg = make_config(str(tmp_path / (data or node_id)),
                      endpoint=f"tcp://127.0.0.1:{free_port()}", insecure=True, **node)
    cfg["cluster"] = {"etcd": etcd_urls, "name": name, "node_id": node_id, "lease_ttl": lease_ttl}
    return cfg


def test_a_single_cluster_node_owns_every_shard_and_serves(tmp_path, etcd):
    with actorsys.Node(cluster_config(tmp_path, [etcd.url], "n1")) as n:
        c = n.client()
        assert c.ask("Counter", "a", "add", 5) == 5
        view = c.cluster()
        assert view["name"] == "t"
        assert [(x["id"], x["alive"], x["shards"]) for x in view["nodes"]] == [("n1", True, 4096)]
        part = c.status()["cluster"]
        assert part["node_id"] == "n1" and part["shards_owned"] == 4096 and part["fenced"] is None


def test_etcd_unreachable_at_start_stops_the_node_naming_etcd(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"       # nobody listens there
    node = actorsys.Node(cluster_config(tmp_path, [url], "n1", start_timeout=20.0))
    started = time.monotonic()
    with pytest.raises(actorsys.NodeUnavailable) as err:
        node.start()
    assert "etcd" in str(err.value) and url in str(err.value)
    assert time.monotonic() - started < 20


def test_a_duplicate_live_node_id_is_refused(tmp_path, etcd):
    with actorsys.Node(cluster_config(tmp_path, [etcd.url], "n1")):
        twin = actorsys.Node(cluster_config(tmp_path, [etcd.url], "n1", data="twin"))
        with pytest.raises(actorsys.NodeUnavailable) as err:
            twin.start()
        assert "node_id 'n1' is already a live member" in str(err.value)


def test_a_data_directory_of_another_node_id_or_cluster_is_refused(tmp_path, etcd):
    with actorsys.Node(cluster_config(tmp_path, [etcd.url], "n1", data="d")):
        pass
    for kw, word in (({"node_id": "n2"}, "node id 'n1'"), ({"node_id": "n1", "name": "other"},
                                                            "name 't'")):
        cfg = cluster_config(tmp_path, [etcd.url], data="d", **kw)
        with pytest.raises((actorsys.ConfigError, actorsys.NodeUnavailable)) as err:
            actorsys.Node(cfg).start()
        assert word in str(err.value) and "cluster." in str(err.value)


def test_a_node_killed_before_its_lease_expired_starts_again_at_once(tmp_path, etcd):
    cfg = cluster_config(tmp_path, [etcd.url], "n1", lease_ttl=30.0)
    with actorsys.Node(cfg) as n:
        assert n.client().ask("Counter", "a", "add", 1) == 1
        router = psutil.Process(role_pid(n, "router"))
        os.kill(role_pid(n, "supervisor"), signal.SIGKILL)    # its children die with it
        router.wait(10)
    started = time.monotonic()
    with actorsys.Node(cfg) as n:
        assert time.monotonic() - started < 15      # not the lease's 30 s
        assert n.client().ask("Counter", "a", "add", 1) == 2
