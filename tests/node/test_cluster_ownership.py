"""Shard ownership in a real etcd (actorsys/cluster/ownership.py, WIP issue 15): a new
cluster's first node claims every shard once; a change of owner is one transaction
that bumps the epoch, and of two changes from the same record only one wins."""
from __future__ import annotations

import asyncio
import time
from typing import Iterator

import pytest
from helpers import emptied, etcd_client, module_etcd

from actorsys.cluster.ownership import Owned, Ownership
from actorsys.testing.etcd import Etcd

SHARDS = 4096


@pytest.fixture(scope="module")
def shared_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    """One etcd for the module (a start costs about a second)."""
    yield from module_etcd(str(tmp_path_factory.mktemp("etcd")))


@pytest.fixture
def etcd(shared_etcd: Etcd) -> Iterator[Etcd]:
    """The module's etcd, every key and lease of the test's gone at its end."""
    yield from emptied(shared_etcd)


def test_the_first_node_claims_every_shard_once_and_a_second_claims_none(etcd):
    async def run() -> None:
        async with etcd_client(etcd) as c:
            own = Ownership(c, "test")
            started = time.monotonic()
            got = await own.claim(list(range(SHARDS)), "n1")
            took = time.monotonic() - started
            assert got == list(range(SHARDS))
            assert took < 20, f"claiming {SHARDS} shards took {took:.1f} s"
            assert await own.claim(list(range(SHARDS)), "n2") == []
            records = await own.read()
            assert len(records) == SHARDS and {r.owner for r in records.values()} == {"n1"}
            assert {r.epoch for r in records.values()} == {1}
    asyncio.run(run())



def test_a_claim_for_a_member_needs_its_record_in_etcd(etcd):
    """A forming cluster's first node claims shards for other members: each claim requires
    that member's record, so none is written for a member already gone."""
    async def run() -> None:
        async with etcd_client(etcd) as c:
            own = Ownership(c, "test")
            record = b"/actorsys/test/nodes/n2"
            assert await own.claim(list(range(100)), "n2", record) == [], "no record: no claim"
            assert await own.read() == {}
            await c.put(record, b"{}")
            assert await own.claim(list(range(100)), "n2", record) == list(range(100))
            assert {r.owner for r in (await own.read()).values()} == {"n2"}
    asyncio.run(run())

def test_a_transfer_bumps_the_epoch_and_a_stale_one_loses(etcd):
    async def run() -> None:
        async with etcd_client(etcd) as c:
            own = Ownership(c, "test")
            await own.claim([7], "n1")
            seen = (await own.read())[7]
            moved = await own.transfer(7, seen, "n2")
            assert moved is not None and (moved.owner, moved.epoch) == ("n2", 2)
            assert await own.transfer(7, seen, "n3") is None, "a transfer from a stale record loses"
            now = (await own.read())[7]
            assert (now.owner, now.epoch) == ("n2", 2)
            assert await own.transfer(7, Owned(now.owner, now.epoch, now.revision), "n3") is not None
    asyncio.run(run())
