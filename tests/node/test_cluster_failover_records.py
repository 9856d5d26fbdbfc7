"""Failover and replica-set changes written to a real etcd (actorsys/cluster/replicas.py,
ownership.py), the workers' answers given by a stand-in ``call`` (the real workers'
side is tested with real nodes in test_cluster_replicas.py): followers and learners
survive a write, a change of them keeps the epoch, and a failover asks each live
follower's home worker once for its position with the fence ``epoch + 1`` before it
promotes the most advanced one, only where enough voters answered."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aetcd
import pytest

from actorsys.cluster.membership import Member
from actorsys.cluster.ownership import Owned, Ownership
from actorsys.cluster.replicas import Replicas
from actorsys.errors import BadRequest
from actorsys.testing.etcd import Etcd

pytestmark = pytest.mark.timeout(120)
SHARDS = 16


@pytest.fixture
def etcd(tmp_path):
    with Etcd(str(tmp_path)) as e:
        yield e


def client(etcd: Etcd) -> aetcd.Client:
    host, port = etcd.url.split("://", 1)[1].rsplit(":", 1)
    return aetcd.Client(host=host, port=int(port), timeout=5)


def member(nid: str) -> Member:
    # shard s is homed on slot s % 2 of every node
    return Member(nid, f"tcp://{nid}:1", None, (f"tcp://{nid}:w0", f"tcp://{nid}:w1"),
                  bytes(s % 2 for s in range(SHARDS)))


class Co(SimpleNamespace):
    """The parts of a Coordinator that Replicas uses."""

    def merge(self, records: dict[int, Owned]) -> None:
        for s, r in records.items():
            if s not in self.owned or r.revision >= self.owned[s].revision:
                self.owned[s] = r

    async def grant_all(self, slots: Any = None) -> None:
        self.grants += 1


def test_changes_of_followers_keep_the_epoch_and_survive_a_read(etcd):
    async def run() -> None:
        async with client(etcd) as c:
            own = Ownership(c, "t")
            await own.claim([1], "n1")
            seen = (await own.read())[1]
            new = await own.change({1: (seen, seen._replace(learners=("n2",)))})
            assert new is not None
            back = (await own.read())[1]
            assert (back.owner, back.epoch, back.followers, back.learners) == ("n1", 1, (), ("n2",))
            assert await own.change({1: (seen, seen._replace(followers=("n3",)))}) is None, \
                "a change from a stale record loses"
    asyncio.run(run())


def test_failover_fences_then_promotes_the_most_advanced_follower(etcd):
    async def run() -> None:
        async with client(etcd) as c:
            own = Ownership(c, "t")
            await own.claim(list(range(SHARDS)), "n1")
            seen = await own.read()
            # shards 0..7: followers n2, n3; 8..11: followers n2, n4 (n4 dead);
            # 12..15: no follower
            want = {s: seen[s]._replace(followers=("n2", "n3") if s < 8 else ("n2", "n4"))
                    for s in range(12)}
            assert await own.change({s: (seen[s], r) for s, r in want.items()}) is not None
            calls: list[tuple[str, str, dict[str, Any]]] = []

            async def call(endpoint: str, cmd: str, args: dict[str, Any], timeout: float) -> Any:
                calls.append((endpoint, cmd, args))
                if endpoint.startswith("tcp://n3"):
                    raise BadRequest("unknown shards command 'position'")   # no worker side
                node = endpoint[6:8]
                seq = 10 if node == "n2" else 20
                return {"positions": {s: [1, seq] for s in args["shards"]},
                        "fences": {s: 2 for s in args["shards"]}}

            co = Co(owned=await own.read(), ownership=own, call=call, me="n2",
                    ccfg=SimpleNamespace(replicas=3, ack="majority", lease_ttl=2.0),
                    membership=SimpleNamespace(members={n: member(n) for n in ("n2", "n3")}),
                    grants=0)
            rep = Replicas(co)  # type: ignore[arg-type]
            assert await rep.failover() == 0, "n3 did not answer: u = 2 (n1, n3) = quorum"
            position_calls = [(e, a) for e, cmd, a in calls if cmd == "position"]
            # one call per (follower, its home worker), each with the fence epoch + 1
            assert sorted(e for e, _a in position_calls) == [
                "tcp://n2:w0", "tcp://n2:w1", "tcp://n3:w0", "tcp://n3:w1"]
            for e, a in position_calls:
                assert all(a["fence"][s] == 2 for s in a["shards"])
                assert all(s < 12 and s % 2 == int(e[-1]) for s in a["shards"])
                if e.startswith("tcp://n3"):
                    assert all(s < 8 for s in a["shards"])
            # n3 answers now (more advanced than n2): shards 0..7 go to it
            calls.clear()

            async def call2(endpoint: str, cmd: str, args: dict[str, Any], timeout: float) -> Any:
                seq = 10 if endpoint.startswith("tcp://n2") else 20
                return {"positions": {s: [1, seq] for s in args["shards"]}, "fences": {}}
            co.call = call2
            assert await rep.failover() == 8
            now = await own.read()
            for s in range(8):
                r = now[s]
                assert (r.owner, r.epoch, r.followers) == ("n3", 2, ("n2", "n1")), r
            for s in range(8, SHARDS):
                assert now[s].owner == "n1" and now[s].epoch == 1, "not enough voters / none"
    asyncio.run(run())
