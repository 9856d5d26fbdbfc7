"""The tree's election in a real etcd (actorsys/cluster/election.py, issue 15): one
holder of several campaigners; a holder that stops renewing loses it to another within
lease_ttl + 1 s (and calls itself deposed before that); a resign hands over at once; a
restarted tree process of the same node takes its own record over at once."""
from __future__ import annotations

import asyncio
import time
from typing import Iterator

import pytest
from helpers import emptied, module_etcd

import actorsys

from actorsys.cluster.election import Election
from actorsys.cluster.membership import connect
from actorsys.config.cluster import ClusterConfig
from actorsys.testing.etcd import Etcd


@pytest.fixture(scope="module")
def shared_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    """One etcd for the module (a start costs about a second)."""
    yield from module_etcd(str(tmp_path_factory.mktemp("etcd")))


@pytest.fixture
def etcd(shared_etcd: Etcd) -> Iterator[Etcd]:
    """The module's etcd, every key and lease of the test's gone at its end."""
    yield from emptied(shared_etcd)


async def until(cond, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def campaigners(etcd: Etcd, ttl: float, ids: list[str]) -> tuple[list[Election], list]:
    cfg = ClusterConfig([etcd.url], "test", "unused", ttl)
    out, changes = [], []
    for node in ids:
        client, _target = await connect(cfg)
        e = Election(client, "test", node, f"tcp://{node}:1", None, ttl,
                     on_change=lambda h, lead, node=node: changes.append((node, h and h.node_id, lead)))
        out.append(e)
    for e in out:
        await e.start()
    return out, changes


async def close(es: list[Election]) -> None:
    for e in es:
        await e.resign()
        await e.client.close()


def test_one_holder_of_three_campaigners(etcd):
    async def run() -> None:
        es, _ = await campaigners(etcd, 3.0, ["n1", "n2", "n3"])
        try:
            await until(lambda: all(e.holder is not None for e in es), "all to see a holder")
            leaders = [e for e in es if e.leader]
            assert len(leaders) == 1, "exactly one campaigner holds the tree"
            assert {e.holder.node_id for e in es} == {leaders[0].node_id}, "all agree on it"
            assert leaders[0].revision is not None
            assert all(e.revision is None for e in es if e is not leaders[0])
        finally:
            await close(es)
    asyncio.run(run())


def test_a_holder_that_stops_renewing_is_replaced_within_lease_ttl(etcd):
    ttl = 2.0

    async def run() -> None:
        es, changes = await campaigners(etcd, ttl, ["n1", "n2"])
        try:
            await until(lambda: any(e.leader for e in es), "a holder")
            old = next(e for e in es if e.leader)
            other = next(e for e in es if e is not old)
            old.stop_renewing()
            stopped = time.monotonic()
            await until(lambda: not old.leader, "the frozen holder to depose itself", ttl + 1)
            deposed = time.monotonic() - stopped
            assert not other.leader, "it deposes itself before etcd gives the tree to another"
            await until(lambda: other.leader, "the other to take it", ttl + 2)
            took = time.monotonic() - stopped
            assert took <= ttl + 1.0, f"taken over after {took:.2f} s (lease_ttl {ttl})"
            assert deposed < took
            assert (other.node_id, other.node_id, True) in changes, "on_change told the new holder"
        finally:
            await close(es)
    asyncio.run(run())


def test_a_resign_hands_over_at_once(etcd):
    async def run() -> None:
        es, _ = await campaigners(etcd, 10.0, ["n1", "n2"])
        try:
            await until(lambda: any(e.leader for e in es), "a holder")
            old = next(e for e in es if e.leader)
            other = next(e for e in es if e is not old)
            t0 = time.monotonic()
            await old.resign()
            await until(lambda: other.leader, "the other to take it", 2.0)
            assert time.monotonic() - t0 < 1.0, "no wait for the lease (10 s) to expire"
            assert other.holder.node_id == other.node_id
        finally:
            await close(es)
    asyncio.run(run())


def test_the_same_nodes_next_tree_process_takes_its_record_over_at_once(etcd):
    async def run() -> None:
        es, _ = await campaigners(etcd, 10.0, ["n1"])
        try:
            await until(lambda: es[0].leader, "n1 to hold it")
            first = es[0].revision
            es[0].stop_renewing()
            es[0]._tasks[0].cancel()      # noqa: SLF001  (the process dies: no resign)
            again, _ = await campaigners(etcd, 10.0, ["n2", "n1"])
            es.extend(again)
            await until(lambda: again[1].leader, "n1's new campaigner to hold it", 2.0)
            assert again[1].revision == first, "the fencing token of n1's record stays"
            assert not again[0].leader
        finally:
            await close(es)
    asyncio.run(run())


def test_the_tree_record_in_etcd_moves_with_the_tree_and_refuses_a_deposed_holder(etcd):
    from actorsys.config.supervision import ChildSpec
    from supervisors.etcdstore import EtcdTreeStore
    from supervisors.store import INCARNATION_BLOCK

    async def run() -> None:
        es, _ = await campaigners(etcd, 10.0, ["n1", "n2"])
        fenced: list[str] = []
        try:
            await until(lambda: any(e.leader for e in es), "a holder")
            old = next(e for e in es if e.leader)
            other = next(e for e in es if e is not old)
            pfx = b"/actorsys/test/treestore/"
            a = EtcdTreeStore(old.client, pfx, old.key, lambda: fenced.append("old"))
            start = await a.load(old.revision, 1000)
            assert start == 1000
            spec = ChildSpec(id="d", actor="Worker", key="d")
            a.put_dynamic("root", 3, spec)
            a.set_stopped("root", "b", True)
            a.set_deleted("root", "x")
            a.set_address(("Worker", "d"), True)
            await a.flushed()
            await old.resign()
            await until(lambda: other.leader, "the other to take the tree")
            b = EtcdTreeStore(other.client, pfx, other.key, lambda: fenced.append("new"))
            start2 = await b.load(other.revision, 0)
            assert start2 == 1000 + INCARNATION_BLOCK, "incarnations only grow across a move"
            assert b.dynamic("root") == [(3, spec.to_dict())]
            assert b.is_stopped("root", "b") and b.is_deleted("root", "x")
            assert b.addresses() == {("Worker", "d")}
            a.set_stopped("root", "b", False)          # the deposed holder writes: refused
            with pytest.raises(actorsys.SupervisorError, match="no longer holds"):
                await a.flushed()
            assert fenced == ["old"]
            c = EtcdTreeStore(other.client, pfx, other.key, lambda: None)
            await c.load(other.revision, 0)
            assert c.is_stopped("root", "b"), "the refused write changed nothing in etcd"
        finally:
            await close(es)
    asyncio.run(run())
