"""Failover and replica-set changes written to a real etcd (actorsys/cluster/replicas.py
and its parts: failover.py, replica_writes.py; ownership.py), the workers' answers given
by a stand-in ``call`` (the real workers' side is tested with real nodes in
test_cluster_replicas.py): followers and learners
survive a write, a change of them keeps the epoch, and a failover asks each live
follower's home worker once for its position with the fence ``epoch + 1`` before it
promotes the most advanced one, only where enough voters answered."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
from helpers import emptied, etcd_client, module_etcd

from actorsys.cluster.membership import Member
from actorsys.cluster.ownership import Owned, Ownership
from actorsys.cluster.replicas import Replicas
from actorsys.errors import BadRequest
from actorsys.testing.etcd import Etcd

pytestmark = pytest.mark.timeout(120)
SHARDS = 16


@pytest.fixture(scope="module")
def shared_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    """One etcd for the module (a start costs about a second)."""
    yield from module_etcd(str(tmp_path_factory.mktemp("etcd")))


@pytest.fixture
def etcd(shared_etcd: Etcd) -> Iterator[Etcd]:
    """The module's etcd, every key and lease of the test's gone at its end."""
    yield from emptied(shared_etcd)


def member(nid: str) -> Member:
    # shard s is homed on slot s % 2 of every node
    return Member(nid, f"tcp://{nid}:1", None, (f"tcp://{nid}:w0", f"tcp://{nid}:w1"),
                  bytes(s % 2 for s in range(SHARDS)))


class Co(SimpleNamespace):
    """The parts of a Coordinator that Replicas uses."""

    changes = 0

    def merge(self, records: dict[int, Owned]) -> None:
        for s, r in records.items():
            if s not in self.owned or r.revision >= self.owned[s].revision:
                self.owned[s] = r
        self.changes += 1

    async def grant_all(self, slots: Any = None) -> None:
        self.grants += 1


def test_changes_of_followers_keep_the_epoch_and_survive_a_read(etcd):
    async def run() -> None:
        async with etcd_client(etcd) as c:
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
        async with etcd_client(etcd) as c:
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
            assert await rep.failover.run() == 0, "n3 did not answer: u = 2 (n1, n3) = quorum"
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
            assert await rep.failover.run() == 8
            now = await own.read()
            for s in range(8):
                r = now[s]
                assert (r.owner, r.epoch, r.followers) == ("n3", 2, ("n2", "n1")), r
            for s in range(8, SHARDS):
                assert now[s].owner == "n1" and now[s].epoch == 1, "not enough voters / none"
    asyncio.run(run())


def test_a_leader_grows_promotes_transfers_and_trims_its_shards_sets(etcd):
    """drive() against etcd, the leader's worker answering ``replication`` as if every
    learner and follower held its last write: learners added, promoted, the leadership
    handed to each shard's desired leader, and once a fourth node joins, the sets of the
    shards still led here follow the new rendezvous order (the surplus follower leaves
    the grant's voters before the records)."""
    from actorsys.cluster import placement

    async def run() -> None:
        async with etcd_client(etcd) as c:
            own = Ownership(c, "t")
            await own.claim(list(range(SHARDS)), "n1")
            calls: list[tuple[str, dict[str, Any]]] = []
            order: list[str] = []
            promoting: list[dict[int, set[str]]] = []
            promoted: list[dict[int, tuple[str, ...]]] = []

            async def call(endpoint: str, cmd: str, args: dict[str, Any], timeout: float) -> Any:
                calls.append((cmd, args))
                if cmd == "position":         # a transfer's target: as far as we are
                    assert "fence" not in args
                    return {"positions": {s: [co.owned[s].epoch, 5] for s in args["shards"]},
                            "fences": {}}
                assert cmd == "replication", cmd
                out = {}
                for s in args["shards"]:
                    r = co.owned[s]
                    out[s] = {"epoch": r.epoch, "seq": 5,
                              "held": {n: 5 for n in r.followers + r.learners + ((r.to,) if r.to else ())}}
                return out

            async def stop_serving(shards: list[int]) -> None:
                co.moving.update(shards)

            async def serve_again(shards: list[int]) -> None:
                co.moving.difference_update(shards)

            class Co2(Co):
                async def grant_all(self, slots: Any = None) -> None:
                    self.grants += 1
                    order.append("grant:" + ",".join(
                        f"{s}-{sorted(d)}" for s, d in sorted(rep.grants.demoting.items())))
                    promoting.append({s: set(d) for s, d in rep.grants.promoting.items()})
                    promoted.append({s: r.followers for s, r in co.owned.items()})

            nodes = ["n1", "n2", "n3"]
            co = Co2(owned=await own.read(), ownership=own, call=call, me="n1",
                     ccfg=SimpleNamespace(replicas=3, ack="majority", lease_ttl=0.1),
                     membership=SimpleNamespace(members={n: member(n) for n in nodes}),
                     grants=0, moving=set(), unresolved=set(), home=member("n1").home,
                     workers=list(member("n1").workers), stop_serving=stop_serving,
                     serve_again=serve_again)
            rep = Replicas(co)  # type: ignore[arg-type]
            for _ in range(3):
                await rep.drive(nodes)
            now = await own.read()
            for s in range(SHARDS):
                r = now[s]
                want = placement.ranked(s, nodes)
                assert r.owner == want[0] and sorted(r.voters) == nodes and r.learners == (), r
                assert r.epoch == (1 if want[0] == "n1" else 3), r     # mark + flip
                if want[0] != "n1":
                    assert r.followers[-1] == "n1", "the old leader follows"
            # settled: a pass finds nothing to do, and the next one over the same records
            # and members is skipped (no call at all); a change in etcd plans again
            co.owned = now
            co.changes += 1
            assert await rep.drive(nodes) is False
            n_calls = len(calls)
            assert await rep.drive(nodes) is False
            assert len(calls) == n_calls and rep._idle_inputs is not None
            co.changes += 1
            assert await rep.drive(nodes) is False and rep._idle_inputs is not None
            # 1 -> 3 voters raises the quorum: the grant counted the learners as voters
            # while the records still named none (grant first, then the transaction)
            first = next(i for i, p in enumerate(promoting) if p)
            assert all(sorted(p) == ["n2", "n3"] for p in promoting[first].values())
            assert all(f == () for f in promoted[first].values())
            led = [s for s in range(SHARDS) if now[s].owner == "n1"]
            assert led and len(led) < SHARDS
            # the grant that names the new voters comes after their transaction
            assert co.grants >= 2
            # a fourth node: the shards led here follow the new order
            nodes4 = nodes + ["n4"]
            co.membership.members["n4"] = member("n4")
            co.owned = {s: now[s] for s in range(SHARDS)}
            order.clear()
            for _ in range(3):
                await rep.drive(nodes4)
            now = await own.read()
            for s in range(SHARDS):
                r = now[s]
                if r.owner != "n1":
                    continue
                want = placement.ranked(s, nodes4)[:3]
                assert sorted(r.voters) == sorted(want) and r.learners == (), (s, r, want)
            trimmed = [s for s in led if "n4" in placement.ranked(s, nodes4)[:3]
                       and placement.ranked(s, nodes4)[0] == "n1"]
            if trimmed:
                assert any(o != "grant:" for o in order), "a surplus voter left the grant first"
            assert not rep.grants.demoting
    asyncio.run(run())
