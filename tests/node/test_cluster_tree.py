"""One supervision tree for a cluster (supervisors/cluster.py, issue 15), with real nodes
configured with [cluster] and a real etcd: the tree of one node holds the election and
supervises; another node's tree stands by, forwards runtime-API requests and EXITs to the
holder, and takes the tree over (its record in etcd) when the holder's node stops; a
killed holder tree process comes back and adopts its running children, not restarting
them, keeping the run-time record (in etcd)."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any, Iterator

import pytest
import zmq

import actorsys
from actorsys.cluster.election import tree_key
from actorsys.config.layout import free_port
from actorsys.protocol.messages import Exit
from actorsys.testing.etcd import Etcd
from actorsys.testing.nodes import wait_until
from helpers import ACTORS_DIR, emptied, module_etcd

QUICK = {"shutdown": 300}
SUPS = {"root": {"children": [{"id": "a", "actor": "Worker", "key": "a", **QUICK},
                              {"id": "b", "actor": "Worker", "key": "b", **QUICK}]}}
TTL = 2.0


@pytest.fixture(scope="module")
def shared_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    """One etcd for the module (a start costs about a second)."""
    yield from module_etcd(str(tmp_path_factory.mktemp("etcd")))


@pytest.fixture
def etcd(shared_etcd: Etcd) -> Iterator[Etcd]:
    """The module's etcd, every key and lease of the test's gone at its end."""
    yield from emptied(shared_etcd)


def cluster_config(tmp_path, etcd: Etcd, node_id: str) -> dict[str, Any]:
    settings = {"data_dir": str(tmp_path / node_id), "workers": 2, "python_path": [ACTORS_DIR],
                "shutdown_timeout": 5.0, "start_timeout": 30.0, "insecure": True,
                "endpoint": f"tcp://127.0.0.1:{free_port('127.0.0.1')}"}
    return {"node": settings, "supervisors": SUPS,
            "actors": {"Worker": "sup_actors:Worker"},
            "cluster": {"etcd": [etcd.url], "name": "t", "node_id": node_id, "lease_ttl": TTL}}


def tree(node: actorsys.Node) -> dict[str, Any]:
    return next((p for p in node.status()["processes"] if p["role"] == "tree"), {})


def statuses(c: Any, sup: str = "root") -> dict[str, str]:
    return {ch["id"]: ch["status"] for ch in c.supervisor(sup).which_children()}


def etcd_keys(etcd: Etcd, prefix: bytes) -> dict[bytes, bytes]:
    from actorsys.cluster.membership import connect
    from actorsys.config.cluster import ClusterConfig

    async def run() -> dict[bytes, bytes]:
        client, _target = await connect(ClusterConfig([etcd.url], "t", "x", TTL))
        try:
            return {kv.key: kv.value for kv in await client.get_prefix(prefix)}
        finally:
            await client.close()
    return asyncio.run(run())


def test_a_killed_holder_tree_adopts_its_running_children_and_keeps_its_record(tmp_path, etcd):
    with actorsys.Node(cluster_config(tmp_path, etcd, "n1")) as node:
        c = node.client()
        wait_until(lambda: tree(node).get("state") == "running", "n1's tree to hold and run")
        assert tree(node)["cluster"]["holder"]["node_id"] == "n1"
        c.supervisor("root").start_child({"id": "d", "actor": "Worker", "key": "d", **QUICK})
        c.supervisor("root").terminate_child("b")
        keys = etcd_keys(etcd, b"/actorsys/t/treestore/")
        assert b"/actorsys/t/treestore/droot\0d" in keys, "the dynamic child is recorded in etcd"
        assert b"/actorsys/t/treestore/troot\0b" in keys, "so is the run-time stop"
        assert c.ask("Worker", "a", "add", 5) == 5
        old = tree(node)["pid"]
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: tree(node).get("pid") not in (None, old)
                   and tree(node).get("state") == "running", "a new tree process holding the tree",
                   timeout=TTL + 15)
        st = tree(node)
        assert st["adopted"] == 2 and st["restarts"] == 0, f"a and d adopted, not restarted: {st}"
        assert statuses(c) == {"a": "running", "b": "stopped", "d": "running"}
        info = c.ask("Worker", "a", "info")
        assert info["starts"] == 1 and info["n"] == 5, f"a ran on, never started twice: {info}"


def test_a_standby_tree_forwards_to_the_holder_and_takes_over_when_its_node_stops(tmp_path, etcd):
    n1 = actorsys.Node(cluster_config(tmp_path, etcd, "n1"))
    n1.start()
    try:
        wait_until(lambda: tree(n1).get("state") == "running", "n1's tree to hold the election")
        with actorsys.Node(cluster_config(tmp_path, etcd, "n2")) as n2:
            wait_until(lambda: (tree(n2).get("cluster") or {}).get("holder") is not None,
                       "n2's tree to learn the holder")
            st = tree(n2)
            assert st["state"] == "standby" and st["cluster"]["holder"]["node_id"] == "n1", st
            c2 = n2.client()
            # the runtime API through n2's tree is carried out by n1's
            c2.supervisor("root").start_child({"id": "d", "actor": "Worker", "key": "d", **QUICK})
            assert statuses(n1.client()) == {"a": "running", "b": "running", "d": "running"}
            assert statuses(c2) == statuses(n1.client())
            assert tree(n2)["cluster"]["sup_forwarded"] == 2
            # an EXIT a worker of n2 sends its own tree reaches the holder
            before = tree(n1)["exits"]
            ctx = zmq.Context()
            try:
                s = ctx.socket(zmq.DEALER)
                s.setsockopt(zmq.LINGER, 0)
                s.connect(st["endpoint"])
                s.send(Exit(0, "root", "a", "Worker", "a", 1, "normal", "").encode())
                wait_until(lambda: tree(n1)["exits"] == before + 1, "n1's tree to get the EXIT")
                s.close(0)
            finally:
                ctx.term()
            assert tree(n2)["cluster"]["exits_forwarded"] == 1
            # n1 leaves (its shards, and so the children, move to n2) and stops: its
            # tree resigns and n2's takes over at once, with the record
            n1.client().leave()
            n1.stop()
            wait_until(lambda: tree(n2).get("state") == "running", "n2's tree to take over",
                       timeout=TTL + 10)
            assert tree(n2)["cluster"]["holder"]["node_id"] == "n2"
            assert statuses(c2) == {"a": "running", "b": "running", "d": "running"}, \
                "the dynamic child added through n1's tree came with the record"
            assert tree_key("t") in etcd_keys(etcd, tree_key("t"))
    finally:
        n1.stop()


def test_a_frozen_holder_loses_the_tree_and_stands_by_when_it_wakes(tmp_path, etcd):
    n1 = actorsys.Node(cluster_config(tmp_path, etcd, "n1"))
    n1.start()
    try:
        wait_until(lambda: tree(n1).get("state") == "running", "n1's tree to hold the election")
        with actorsys.Node(cluster_config(tmp_path, etcd, "n2")) as n2:
            wait_until(lambda: tree(n2).get("state") == "standby", "n2's tree to stand by")
            frozen = tree(n1)["pid"]
            os.kill(frozen, signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                wait_until(lambda: tree(n2).get("state") == "running", "n2's tree to take over",
                           timeout=TTL + 10)
                took = time.monotonic() - t0
                assert took <= TTL + 1.5, f"n2 took the tree {took:.2f} s after n1's froze"
            finally:
                os.kill(frozen, signal.SIGCONT)
            # woken, n1's tree knows its lease ran out: it exits (5) and comes back standing by
            wait_until(lambda: tree(n1).get("pid") not in (None, frozen)
                       and tree(n1).get("state") == "standby", "n1's tree to come back standing by")
            assert tree(n1)["cluster"]["holder"]["node_id"] == "n2"
            assert statuses(n1.client()) == {"a": "running", "b": "running"}, "asked of n2's tree"
    finally:
        n1.stop()


def test_the_holder_spawns_the_children_of_a_shard_that_changed_owner_again(tmp_path, etcd):
    """A shard's new owner (here the same node, a new epoch) gets its running children
    SPAWNed again with their incarnation: adopted where they still run, not restarted."""
    from actorsys.cluster.membership import connect
    from actorsys.config.cluster import ClusterConfig
    from actorsys.protocol.shardmap import shard_of

    with actorsys.Node(cluster_config(tmp_path, etcd, "n1")) as node:
        c = node.client()
        wait_until(lambda: tree(node).get("state") == "running", "n1's tree to hold and run")
        before = tree(node)
        shard = shard_of("Worker", "a", node.status()["shards"])
        shard_b = shard_of("Worker", "b", node.status()["shards"])
        assert shard != shard_b, "(the test's premise)"

        def move(*records: tuple[int, dict[str, Any]]) -> None:
            async def run() -> None:
                client, _target = await connect(ClusterConfig([etcd.url], "t", "x", TTL))
                try:
                    for s, rec in records:
                        await client.put(b"/actorsys/t/shards/%05d" % s, json.dumps(rec).encode())
                finally:
                    await client.close()
            asyncio.run(run())
        move((shard, {"owner": "n1", "epoch": 2}))
        wait_until(lambda: tree(node).get("followed") == 1, "the tree to follow shard of 'a'")
        st = tree(node)
        assert st["adopted"] == before["adopted"] + 1 and st["restarts"] == before["restarts"], st
        assert c.ask("Worker", "a", "info")["starts"] == 1
        assert statuses(c) == {"a": "running", "b": "running"}
        # a move under way ("to") is not followed: the watch's next event, b's shard's
        # move, is the second one followed
        move((shard, {"owner": "n1", "epoch": 3, "to": "n2"}), (shard_b, {"owner": "n1", "epoch": 2}))
        wait_until(lambda: tree(node).get("followed", 0) >= 2, "the tree to follow b's shard")
        statuses(c)          # (queued behind the tree's events so far)
        assert tree(node)["followed"] == 2, "the shard still moving was not followed"
        move((shard, {"owner": "n1", "epoch": 4}))        # its move's end (a rollback) is
        wait_until(lambda: tree(node).get("followed") == 3, "the tree to follow the rollback")
        # (while its shard was marked moving, this node's router stopped serving it and
        # passivated "a"; the SPAWN that follows the rollback brings it back)
        wait_until(lambda: statuses(c) == {"a": "running", "b": "running"},
                   "both children running after the rollback")
        assert c.ask("Worker", "a", "info")["starts"] >= 1


def test_forwarding_to_the_holder_uses_its_own_curve_key(tmp_path, etcd):
    """Nodes with key pairs of their own (each authorizing the other's): a standby tree
    reaches the holder's with the public key from the holder's election record."""
    import shutil

    from actorsys.net.keys import keygen
    auth = tmp_path / "authorized"
    auth.mkdir()
    cfgs = {}
    for nid in ("n1", "n2"):
        public, secret = keygen(tmp_path / "keys" / nid, nid)
        shutil.copy(public, auth / f"{nid}.key")
        cfg = cluster_config(tmp_path, etcd, nid)
        del cfg["node"]["insecure"]
        cfg["node"].update(curve_secret_key=secret, authorized_keys=str(auth))
        cfgs[nid] = cfg
    with actorsys.Node(cfgs["n1"]) as n1:
        wait_until(lambda: tree(n1).get("state") == "running", "n1's tree to hold the election")
        with actorsys.Node(cfgs["n2"]) as n2:
            wait_until(lambda: tree(n2).get("state") == "standby", "n2's tree to stand by")
            assert statuses(n2.client()) == {"a": "running", "b": "running"}
            assert tree(n2)["cluster"]["sup_forwarded"] == 1


def test_a_forming_cluster_s_supervisors_start_once_its_shards_have_owners(tmp_path, etcd):
    """``bootstrap_expect = 2``: the first node serves nothing while the cluster forms; its
    tree, holding the election, waits for the shards' owners instead of failing its
    supervisors (which stopped the node); with the second node, every child starts once."""
    configs = [cluster_config(tmp_path, etcd, n) for n in ("n1", "n2")]
    for cfg in configs:
        cfg["cluster"]["bootstrap_expect"] = 2
    with actorsys.Node(configs[0]) as n1:
        c1 = n1.client()
        wait_until(lambda: tree(n1).get("up"), "n1's tree process up", timeout=20)
        time.sleep(2.0)                 # (the tree failing its supervisors ended the node)
        assert tree(n1).get("up") and c1.cluster()["nodes"][0]["shards"] == 0, \
            f"n1 waits for the cluster to form: {n1.status()['processes']}"
        def started() -> bool:
            try:
                return statuses(c1) == {"a": "running", "b": "running"}
            except actorsys.ActorError:       # (the tree has not booted its supervisors yet)
                return False
        with actorsys.Node(configs[1]):
            wait_until(started, "the supervisors started once the shards had owners", timeout=40)
            # (c1's map may still be the one from before the claim, its shards with no
            # owner: a client refreshes it within CLUSTER_REFRESH_S; here at once)
            c1.refresh_map()
            assert [c1.ask("Worker", k, "info")["starts"] for k in ("a", "b")] == [1, 1]
