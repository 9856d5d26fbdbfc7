"""Cluster membership in a real etcd (actorsys/cluster/membership.py, WIP issue 15):
nodes see each other join and leave, a node that stops renewing its lease drops out
after lease_ttl, and a second node with the same node_id is refused."""
from __future__ import annotations

import asyncio
import time
from typing import Iterator

import pytest
from helpers import emptied, module_etcd

from actorsys.cluster import Member, Membership
from actorsys.config.cluster import ClusterConfig
from actorsys.errors import ConfigError
from actorsys.testing.etcd import Etcd


@pytest.fixture(scope="module")
def shared_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    """One etcd for the module (a start costs about a second)."""
    yield from module_etcd(str(tmp_path_factory.mktemp("etcd")))


@pytest.fixture
def etcd(shared_etcd: Etcd) -> Iterator[Etcd]:
    """The module's etcd, every key and lease of the test's gone at its end."""
    yield from emptied(shared_etcd)


def member(i: int) -> Member:
    return Member(f"n{i}", f"tcp://127.0.0.{i}:7100", None, (f"tcp://127.0.0.{i}:7101",))


async def two_members(cfg: ClusterConfig) -> tuple[Membership, Membership]:
    """n1 and n2 joined, each seeing both."""
    a, b = Membership(cfg, member(1)), Membership(cfg, member(2))
    await a.join()
    await b.join()
    await until(lambda: set(a.members) == {"n1", "n2"}, "both members")
    return a, b


def freeze(m: Membership) -> None:
    """``m``'s process frozen or killed: no renewal, no watch, no revoke."""
    m.stop_renewing()
    for t in m._tasks:
        t.cancel()


async def until(cond, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_nodes_see_each_other_join_and_leave(etcd):
    cfg = ClusterConfig([etcd.url], "test", "unused", 3.0)

    async def run() -> None:
        a, b = Membership(cfg, member(1)), Membership(cfg, member(2))
        await a.join()
        assert set(a.members) == {"n1"}
        await b.join()
        await until(lambda: set(a.members) == {"n1", "n2"}, "n1 to see n2 join")
        assert b.members["n1"] == member(1), "the record says where n1 is"
        await b.leave()
        await until(lambda: set(a.members) == {"n1"}, "n1 to see n2 leave")
        await a.leave()
    asyncio.run(run())


def test_a_node_that_stops_renewing_drops_out_after_its_lease(etcd):
    cfg = ClusterConfig([etcd.url], "test", "unused", 2.0)

    async def run() -> None:
        a, b = await two_members(cfg)
        freeze(b)
        stopped = time.monotonic()
        await until(lambda: not b.fence.may_serve(time.monotonic()), "n2 to fence itself")
        assert set(a.members) == {"n1", "n2"}, "n2 stopped serving before its lease expired in etcd"
        await until(lambda: set(a.members) == {"n1"}, "n2's lease to expire", timeout=10.0)
        took = time.monotonic() - stopped
        assert 1.0 < took < 6.0, f"expected n2 gone about lease_ttl (2 s) after it stopped: {took:.1f} s"
        await a.leave()
        b._lease = None
        await b.leave()
    asyncio.run(run())


def test_a_second_node_with_the_same_id_is_refused(etcd):
    cfg = ClusterConfig([etcd.url], "test", "unused", 3.0)

    async def run() -> None:
        a, twin = Membership(cfg, member(1)), Membership(cfg, member(1))
        await a.join()
        with pytest.raises(ConfigError, match="node_id 'n1' is already a live member"):
            await twin.join()
        await twin.leave()
        await a.leave()
    asyncio.run(run())


def test_a_run_killed_between_its_lease_and_its_record_is_recognised_when_it_restarts(etcd):
    """A router killed right after joining again under a new lease (its record written,
    the lease not yet remembered) took its restart for a twin and stopped the node; the
    lease is now remembered before the record is written under it."""
    cfg = ClusterConfig([etcd.url], "test", "unused", 3.0)

    async def run() -> None:
        first = Membership(cfg, member(1))
        remembered: list[int] = []
        registered: list[bool] = []
        def granted(lease_id: int) -> None:
            remembered.append(lease_id)
            registered.append(first._lease is not None)
        first.on_lease_granted = granted
        await first.join()
        assert remembered == [first.lease_id] and registered == [False], \
            "remembered before the record was written under it"
        freeze(first)                   # killed: the record stays live until its lease ends
        again = Membership(cfg, member(1))
        await again.join(previous_lease=remembered[-1])
        assert set(again.members) == {"n1"} and again.lease_id != remembered[-1], \
            "the previous run's lease revoked, not taken for a twin"
        await again.leave()
        await first.client.close()
    asyncio.run(run())


def test_the_lease_is_renewed_while_the_event_loop_is_blocked(etcd):
    """The router's loop busy for longer than the lease's ttl (planning thousands of
    shards on a starved host): the lease, renewed on its own thread, does not expire."""
    cfg = ClusterConfig([etcd.url], "test", "unused", 2.0)

    async def run() -> None:
        a, b = await two_members(cfg)
        time.sleep(3.5)                         # b's (and a's) loop blocked past the ttl
        assert b.fence.may_serve(time.monotonic()), "renewed meanwhile: no fence, no expiry"
        await asyncio.sleep(0.5)
        assert set(a.members) == {"n1", "n2"}, "n2's lease did not expire"
        await b.leave()
        await a.leave()
    asyncio.run(run())
