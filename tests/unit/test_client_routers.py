"""A client of a cluster: several router endpoints (``connect([ep1, ep2])``). The map
comes from the first that answers; a lost router is left for the next; the cluster is
unreachable (NodeUnavailable naming every router) only when none answers. Fake nodes in
the test process stand for two routers (real ipc sockets, a short grace period)."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from client_fakes import ROUTER, FakeNode

import actorsys
from actorsys.client.common import router_list
from actorsys.errors import NodeUnavailable
from actorsys.protocol import wire
from actorsys.protocol.shardmap import ShardMap, shard_of

WAIT = 10.0
GRACE = 0.4


def dead(tmp_path: Any, name: str = "dead") -> str:
    return f"ipc://{tmp_path}/{name}.sock"      # nothing listens there


def test_router_list_takes_one_endpoint_or_a_list_of_them():
    assert router_list("ipc:///a") == ["ipc:///a"]
    assert router_list(["tcp://a:1", "tcp://b:1", "tcp://a:1"]) == ["tcp://a:1", "tcp://b:1"]
    for bad in ([], [""], [1], None, {"tcp://a:1"}):
        with pytest.raises(TypeError, match="router endpoint or a non-empty list"):
            router_list(bad)  # type: ignore[arg-type]


def test_the_blocking_client_gets_the_map_from_the_first_router_that_answers(tmp_path):
    with FakeNode(str(tmp_path)) as fake:
        start = time.monotonic()
        with actorsys.connect([dead(tmp_path), fake.endpoint], connect_timeout=GRACE) as c:
            took = time.monotonic() - start
            assert c.endpoint == fake.endpoint and c.endpoints == [dead(tmp_path), fake.endpoint]
            assert c.ask("T", "k", "get")[1] == "get"
            assert GRACE - 0.05 <= took < GRACE + 2.0, "the dead one had its connect_timeout"
            other: dict[str, Any] = {}
            import threading
            t = threading.Thread(target=lambda: other.update(r=c.ask("T", "k", "x")))
            t.start()
            t.join(WAIT)
            assert other["r"][1] == "x", "a new thread's lane starts with the router that answered"


def test_the_asyncio_client_gets_the_map_from_the_first_router_that_answers(tmp_path):
    with FakeNode(str(tmp_path)) as fake:
        async def main() -> None:
            async with actorsys.connect_async([dead(tmp_path), fake.endpoint],
                                              connect_timeout=GRACE) as c:
                assert c.endpoint == fake.endpoint
                assert (await c.ask("T", "k", "get"))[1] == "get"
                await asyncio.sleep(GRACE + 0.2)     # past the dead one's grace: still fine
                assert (await c.ask("T", "k", "more"))[1] == "more"
        asyncio.run(main())


@pytest.mark.parametrize("flavour", ["blocking", "asyncio"])
def test_no_router_answering_fails_fast_naming_every_one(tmp_path, flavour):
    eps = [dead(tmp_path, "a"), dead(tmp_path, "b")]
    start = time.monotonic()
    with pytest.raises(NodeUnavailable) as e:
        if flavour == "blocking":
            actorsys.connect(eps, connect_timeout=0.3)
        else:
            async def main() -> None:
                await actorsys.connect_async(eps, connect_timeout=0.3)
            asyncio.run(main())
    took = time.monotonic() - start
    assert str(e.value).startswith("none of the 2 routers answered: ")
    assert f"router at {eps[0]} did not answer within 0.3 s" in str(e.value)
    assert f"router at {eps[1]} did not answer within 0.3 s" in str(e.value)
    assert 0.55 <= took < 3.0, f"each router its connect_timeout, no more: {took:.2f} s"


def test_one_dead_router_alone_fails_as_it_always_did(tmp_path):
    with pytest.raises(NodeUnavailable, match=r"^router at ipc://.*/a\.sock did not answer within 0\.3 s$"):
        actorsys.connect(dead(tmp_path, "a"), connect_timeout=0.3)


def test_a_lost_router_is_left_for_the_next_and_nothing_fails(tmp_path):
    """Router A goes away for good: the client moves to B, fetches B's map there and
    asks on (B's map names B's workers), with no NodeUnavailable."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with FakeNode(str(tmp_path / "a")) as a, FakeNode(str(tmp_path / "b")) as b:
        async def main() -> None:
            async with actorsys.connect_async([a.endpoint, b.endpoint], timeout=WAIT,
                                              connect_timeout=GRACE) as c:
                assert (await c.ask("T", "k", "get"))[1] == "get"
                a.drop(ROUTER)
                deadline = time.monotonic() + WAIT
                while not b.requests(ROUTER, wire.MAP):
                    assert time.monotonic() < deadline, "the client did not move to router B"
                    await asyncio.sleep(0.01)
                await asyncio.sleep(GRACE + 0.2)          # past A's grace period
                assert (await c.ask("T", "k", "again"))[1] == "again"
                assert c.transport.router_endpoint == b.endpoint
                assert any(r[4] == "again" for s in (0, 1) for r in b.requests(s, wire.ASK)), \
                    "sent by B's map to B's workers"
                assert (await c.cluster())["op"] == wire.CLUSTER, "control requests go to B"
        asyncio.run(main())


def test_every_router_lost_is_unavailable_naming_them_all_and_any_back_recovers(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with FakeNode(str(tmp_path / "a")) as a, FakeNode(str(tmp_path / "b")) as b, \
            actorsys.connect([a.endpoint, b.endpoint], timeout=WAIT, connect_timeout=GRACE) as c:
        assert c.ask("T", "k", "get")[1] == "get"
        b.drop(ROUTER)
        for fake in (a,):
            fake.drop(ROUTER)
            fake.drop(0)
            fake.drop(1)
        dropped = time.monotonic()
        deadline = dropped + WAIT
        while True:
            try:
                c.ask("T", "k", "add", timeout=WAIT)
            except NodeUnavailable as exc:
                text = str(exc)
                break
            assert time.monotonic() < deadline, "never unavailable"
            time.sleep(0.02)
        assert text.startswith(f"the cluster (routers {a.endpoint}, {b.endpoint}) has been "
                               f"unreachable for "), text
        assert time.monotonic() - dropped < GRACE + 2.0
        b.restore(ROUTER)                  # B is back: the client finds it by itself
        deadline = time.monotonic() + WAIT
        while True:
            try:
                assert c.ask("T", "k", "back", timeout=WAIT)[1] == "back"
                break
            except NodeUnavailable:
                assert time.monotonic() < deadline, "the client did not find router B again"
                time.sleep(0.05)


def cluster_map(fake: FakeNode, epoch: int, n2_alive: bool) -> ShardMap:
    """n1 serves slots 0-1 (w0, w1), n2 slot 2 (w2) while alive; down, its shards are -2."""
    w = fake.worker_endpoints
    nodes = [{"id": "n1", "endpoint": "tcp://10.0.0.11:7100", "alive": True, "slots": [0, 2]},
             {"id": "n2", "endpoint": "tcp://10.0.0.12:7100", "alive": n2_alive,
              "slots": [2, 1] if n2_alive else [0, 0]}]
    owner = [s % 3 if n2_alive or s % 3 != 2 else -2 for s in range(16)]
    return ShardMap(epoch=epoch, shards=16, owner=owner, nodes=nodes, name="c",
                    endpoints=w if n2_alive else w[:2])


def key_of(m: ShardMap, slot: int) -> str:
    return next(k for k in (f"k{i}" for i in range(1000)) if m.owner[shard_of("T", k, 16)] == slot)


@pytest.mark.parametrize("flavour", ["asyncio", "blocking"])
def test_an_ask_queued_for_a_dead_cluster_node_fails_when_the_map_says_so(tmp_path, flavour):
    """n2's worker goes away; the router marks n2 down a moment later (its lease): the ask
    queued for n2 fails with WorkerLost then, not at its deadline, and the next one gets
    ShardUnavailable naming n2 at once."""
    with FakeNode(str(tmp_path), workers=3) as fake:
        fake.map = cluster_map(fake, 1, n2_alive=True)
        key = key_of(fake.map, 2)

        def kill_n2() -> None:
            fake.drop(2)
            time.sleep(0.3)             # the cluster notices later
            fake.map = cluster_map(fake, 2, n2_alive=False)

        if flavour == "asyncio":
            async def main() -> float:
                async with actorsys.connect_async(fake.endpoint, connect_timeout=WAIT) as c:
                    assert (await c.ask("T", key, "get"))[0] == 2
                    await asyncio.to_thread(kill_n2)
                    start = time.monotonic()
                    with pytest.raises(actorsys.WorkerLost):
                        await c.ask("T", key, "queued", timeout=WAIT)
                    took = time.monotonic() - start
                    with pytest.raises(actorsys.ShardUnavailable, match="belongs to node n2"):
                        c.ask("T", key, "next")
                    assert (await c.ask("T", key_of(fake.map, 0), "n1"))[0] == 0
                    return took
            took = asyncio.run(main())
        else:
            with actorsys.connect(fake.endpoint, connect_timeout=WAIT) as c:
                assert c.ask("T", key, "get")[0] == 2
                kill_n2()
                start = time.monotonic()
                with pytest.raises(actorsys.WorkerLost):
                    c.ask("T", key, "queued", timeout=WAIT)
                took = time.monotonic() - start
                with pytest.raises(actorsys.ShardUnavailable, match="belongs to node n2"):
                    c.ask("T", key, "next")
                assert c.ask("T", key_of(fake.map, 0), "n1")[0] == 0
        assert took < 3.0, f"failed when the map changed, not at the deadline: {took:.2f} s"


@pytest.mark.parametrize("flavour", ["asyncio", "blocking"])
def test_a_dead_cluster_node_answers_again_once_the_map_has_it_back(tmp_path, flavour):
    """A map with n2 down: its actors get ShardUnavailable at once; when n2 returns (the
    router's map has it alive again) the client learns it by itself, with no router or
    worker connection of its own changing, and n2's actors answer again."""
    with FakeNode(str(tmp_path), workers=3) as fake:
        fake.map = cluster_map(fake, 1, n2_alive=False)
        key = key_of(cluster_map(fake, 1, n2_alive=True), 2)

        def answer_after_return(ask: Any) -> float:
            with pytest.raises(actorsys.ShardUnavailable, match="belongs to node n2"):
                ask("before")
            fake.map = cluster_map(fake, 2, n2_alive=True)
            start = time.monotonic()
            while True:
                try:
                    assert ask("after")[0] == 2
                    return time.monotonic() - start
                except actorsys.ShardUnavailable:
                    assert time.monotonic() - start < WAIT, "n2's actor never answered again"
                    time.sleep(0.05)

        if flavour == "asyncio":
            async def main() -> float:
                async with actorsys.connect_async(fake.endpoint, connect_timeout=WAIT) as c:
                    loop = asyncio.get_running_loop()

                    async def one(method: str) -> Any:
                        return await c.ask("T", key, method, timeout=WAIT)

                    def ask(method: str) -> Any:     # run on the client's loop, from a thread
                        return asyncio.run_coroutine_threadsafe(one(method), loop).result(WAIT + 1)
                    return await asyncio.to_thread(answer_after_return, ask)
            took = asyncio.run(main())
        else:
            with actorsys.connect(fake.endpoint, connect_timeout=WAIT) as c:
                took = answer_after_return(lambda method: c.ask("T", key, method, timeout=WAIT))
        assert took < 3.0, f"the map was fetched again within a few refresh periods: {took:.2f} s"
