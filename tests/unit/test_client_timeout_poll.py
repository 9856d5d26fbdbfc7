"""Asks timing out on a cluster's map (issue 16, replicated shards): the node they went
to may be frozen or cut off with its connections up, and its shards about to fail over
to another node. The transport then fetches the map again at once and every
TIMEOUT_REFRESH_S until its epoch changes (at most TIMEOUT_POLLS times), and holds new
asks to the slots that timed out until the first fetch is in, sending them on the new
map within their own deadline. A fake node in the test process stands for the cluster:
worker w0 is node A (frozen: it answers nothing), w1 node B; its router answers MAP
with ``fake.map`` (held until ``release()`` while ``hold_maps`` is set)."""
from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any, Callable

import pytest
import zmq
from client_fakes import ROUTER, FakeNode, echo, with_transport

import actorsys
from actorsys.client import timeouts as timeouts_module
from actorsys.client.transport import TIMEOUT_REFRESH_S as POLL
from actorsys.client.transport import AsyncTransport
from actorsys.errors import AskTimeout, NodeUnavailable
from actorsys.protocol import wire
from actorsys.protocol.messages import Ask
from actorsys.protocol.shardmap import ShardMap, shard_of

WAIT = 10.0      # a bound on every wait for something that should happen at once


def frozen_a(slot: int, req: list) -> Any:
    """Node A (w0) answers nothing; node B (w1) echoes ``[1, method, args, kwargs]``."""
    return None if slot == 0 else echo(slot, req)


def two_nodes(fake: FakeNode, epoch: int = 1) -> ShardMap:
    """Nodes A (w0, global slot 0) and B (w1, slot 1), both alive; shards alternate."""
    w = fake.worker_endpoints
    nodes = [{"id": "A", "endpoint": "tcp://10.0.0.11:7100", "alive": True, "slots": [0, 1]},
             {"id": "B", "endpoint": "tcp://10.0.0.12:7100", "alive": True, "slots": [1, 1]}]
    return ShardMap(epoch=epoch, shards=16, owner=[s % 2 for s in range(16)], nodes=nodes,
                    name="c", endpoints=w[:2])


def failed_over(fake: FakeNode, epoch: int = 2) -> ShardMap:
    """A's lease expired and its shards failed over to B (replicas): B's w1 is slot 0 now."""
    nodes = [{"id": "A", "endpoint": "tcp://10.0.0.11:7100", "alive": False, "slots": [0, 0]},
             {"id": "B", "endpoint": "tcp://10.0.0.12:7100", "alive": True, "slots": [0, 1]}]
    return ShardMap(epoch=epoch, shards=16, owner=[0] * 16, nodes=nodes, name="c",
                    endpoints=fake.worker_endpoints[1:2])


def key_on(m: ShardMap, slot: int) -> str:
    return next(k for k in (f"k{i}" for i in range(1000)) if m.owner[shard_of("T", k, m.shards)] == slot)


def maps_fetched(fake: FakeNode) -> int:
    return len(fake.requests(ROUTER, wire.MAP))


def asks(fake: FakeNode, slot: int) -> list[list]:
    return fake.requests(slot, wire.ASK)


async def until(predicate: Callable[[], Any], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def held_ask(t: AsyncTransport, key: str, method: str, timeout: float) -> tuple[int, Any]:
    """Send an ask with a request id of our own: (its id, its Pending)."""
    rid = t.new_id()
    return rid, t.send(Ask(rid, "T", key, method, [], {}, t.request_ctx(rid)), timeout)


@pytest.fixture
def cluster(tmp_path):
    with FakeNode(str(tmp_path), serve=frozen_a) as fake:
        fake.map = two_nodes(fake)
        yield fake


@pytest.mark.timeout(30)
def test_an_ask_timing_out_on_a_cluster_map_polls_the_map_until_it_changes(cluster):
    async def body(t: AsyncTransport) -> None:
        assert t.map is not None
        k = key_on(t.map, 0)
        assert maps_fetched(cluster) == 1, "the connect's"
        with pytest.raises(AskTimeout):
            await t.ask("T", k, "get", timeout=0.2)
        timed_out = time.monotonic()
        await until(lambda: maps_fetched(cluster) >= 2, "the fetch at the timeout", POLL)
        await until(lambda: maps_fetched(cluster) >= 4, "two more fetches", 2 * POLL + 1)
        assert time.monotonic() - timed_out >= 2 * POLL - 0.05, "one fetch every TIMEOUT_REFRESH_S"
        assert t.timeouts.task is not None, "still polling: the map has not changed"
        cluster.map = failed_over(cluster)
        await until(lambda: t.map is not None and t.map.epoch == 2, "the new map", POLL + 1)
        await until(lambda: t.timeouts.task is None, "the poll to end", 0.2)
        fetched = maps_fetched(cluster)
        await asyncio.sleep(3 * POLL)
        assert maps_fetched(cluster) == fetched, "no fetch once the map changed"
        assert (await t.ask("T", k, "get", timeout=WAIT))[:2] == [1, "get"], "B serves it now"
    with_transport(cluster, body)


@pytest.mark.timeout(30)
def test_the_poll_gives_up_after_its_last_fetch(cluster, monkeypatch):
    monkeypatch.setattr(timeouts_module, "TIMEOUT_REFRESH_S", 0.05)
    monkeypatch.setattr(timeouts_module, "TIMEOUT_POLLS", 3)

    async def body(t: AsyncTransport) -> None:
        assert t.map is not None
        with pytest.raises(AskTimeout):
            await t.ask("T", key_on(t.map, 0), "get", timeout=0.2)
        await until(lambda: t.timeouts.task is None, "the poll to give up", 2.0)
        await asyncio.sleep(0.2)
        assert maps_fetched(cluster) == 1 + 3, "the connect's and TIMEOUT_POLLS fetches"
    with_transport(cluster, body)


@pytest.mark.timeout(30)
def test_a_timeout_on_a_single_node_map_fetches_nothing(tmp_path):
    with FakeNode(str(tmp_path), serve=frozen_a) as fake:
        async def body(t: AsyncTransport) -> None:
            assert t.map is not None and t.map.nodes is None
            k = key_on(t.map, 0)
            with pytest.raises(AskTimeout):
                await t.ask("T", k, "first", timeout=0.2)
            assert t.timeouts.task is None
            rid, p = held_ask(t, k, "second", 0.2)
            assert rid in t.pending.entries, "sent at once, not held"
            await until(lambda: len(asks(fake, 0)) == 2, "the second ask at w0")
            with pytest.raises(AskTimeout):
                await p.fut
            await asyncio.sleep(2 * POLL + 0.1)
            assert maps_fetched(fake) == 1, "only the connect's fetch"
            assert t.timeouts.task is None
        with_transport(fake, body)


@pytest.mark.timeout(30)
def test_an_ask_right_after_the_timeout_waits_for_the_fetch_and_goes_to_the_new_map(cluster):
    async def body(t: AsyncTransport) -> None:
        assert t.map is not None
        k = key_on(t.map, 0)
        cluster.hold_maps = True
        with pytest.raises(AskTimeout):
            await t.ask("T", k, "first", timeout=0.2)
        rid, p = held_ask(t, k, "second", WAIT)
        await until(lambda: maps_fetched(cluster) == 2, "the fetch at the timeout")
        await asyncio.sleep(0.1)
        assert not p.fut.done() and rid not in t.pending.entries, "held while the fetch is out"
        assert [r[4] for r in asks(cluster, 0)] == ["first"] and not asks(cluster, 1), \
            "the held ask went nowhere yet"
        cluster.map = failed_over(cluster)
        cluster.hold_maps = False
        released = time.monotonic()
        cluster.release()
        assert (await asyncio.wait_for(p.fut, WAIT))[:2] == [1, "second"], "answered by B"
        assert time.monotonic() - released < 1.0
        [sent] = asks(cluster, 1)
        assert sent[1] == rid and sent[7] == {"id": t.client_id + rid.to_bytes(8, "big")}, \
            "it kept its request id"
        assert [r[4] for r in asks(cluster, 0)] == ["first"], "never sent to A"
        assert t.map.epoch == 2 and t.pending_count() == 0
    with_transport(cluster, body)


@pytest.mark.timeout(30)
def test_a_held_ask_whose_fetch_never_returns_fails_at_its_own_deadline(cluster):
    async def body(t: AsyncTransport) -> None:
        assert t.map is not None
        k = key_on(t.map, 0)
        cluster.hold_maps = True                 # the fetch is never answered
        with pytest.raises(AskTimeout):
            await t.ask("T", k, "first", timeout=0.2)
        tasks: list[int] = []

        async def sample() -> None:
            while True:
                tasks.append(len(asyncio.all_tasks()))
                await asyncio.sleep(0.01)

        sampler = asyncio.get_running_loop().create_task(sample())
        await asyncio.sleep(0.02)
        before = max(tasks)                      # this one, the sampler and the poll
        cpu, start = time.process_time(), time.monotonic()
        held = [held_ask(t, k, f"held{i}", 0.3) for i in range(20)]
        for _, p in held:
            with pytest.raises(AskTimeout, match=r"^ask T/k\d+\.held\d+: no reply within 0\.3 s$"):
                await p.fut
        took, cpu = time.monotonic() - start, time.process_time() - cpu
        await asyncio.sleep(0.05)
        sampler.cancel()
        assert 0.28 <= took < 0.6, f"each at its own deadline: {took:.2f} s"
        assert max(tasks) <= before + 20, f"a task per held ask, no more: {before} then {max(tasks)}"
        assert tasks[-1] == before, "none left once they failed"
        assert cpu < 0.5 * took + 0.1, f"the loop idled while they waited: {cpu:.2f} s of CPU in {took:.2f} s"
        assert [r[4] for r in asks(cluster, 0)] == ["first"] and not asks(cluster, 1), \
            "the held asks were sent nowhere"
        assert [p.request for p in t.pending.entries.values()
                if isinstance(p.request, Ask)] == [], "only the fetch's MAP is pending"
    with_transport(cluster, body)


@pytest.mark.timeout(30)
def test_a_held_ask_outliving_a_failed_fetch_is_sent_on_the_map_it_has(cluster, monkeypatch):
    """The fetch gives up (the router is silent) before the held ask's deadline: the ask
    is sent on the map the transport has (to A, which may only be slow), and fails with
    AskTimeout at its own deadline, not with the fetch's NodeUnavailable."""
    monkeypatch.setattr(timeouts_module, "TIMEOUT_REFRESH_S", 0.1)   # a fetch gives up after 0.4 s

    async def body(t: AsyncTransport) -> None:
        assert t.map is not None
        k = key_on(t.map, 0)
        cluster.router_silent = True
        with pytest.raises(AskTimeout):
            await t.ask("T", k, "first", timeout=0.2)
        start = time.monotonic()
        _, p = held_ask(t, k, "second", 0.8)
        with pytest.raises(AskTimeout, match=r"no reply within 0\.8 s$"):
            await p.fut
        took = time.monotonic() - start
        assert 0.75 <= took < 1.2, f"at its own deadline: {took:.2f} s"
        assert [r[4] for r in asks(cluster, 0)] == ["first", "second"], "sent to A once the fetch failed"
    with_transport(cluster, body)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("when", ["before the fetch", "after the first fetch"])
def test_the_blocking_client_reaches_the_new_maps_worker_within_a_poll(cluster, when):
    """A blocking ask times out on A; the cluster fails A over (before the client's first
    fetch, or after it, so only the poll finds it): the next ask is answered by B within
    about one poll, with the same request id."""
    with actorsys.connect(cluster.endpoint, connect_timeout=WAIT) as c:
        k = key_on(c.map, 0)
        if when == "before the fetch":
            cluster.hold_maps = True
        with pytest.raises(AskTimeout, match="no reply before the deadline"):
            c.ask("T", k, "first", timeout=0.3)
        cluster.wait_for(lambda: maps_fetched(cluster) == 2, "the fetch at the timeout")
        if when == "after the first fetch":
            time.sleep(0.05)                          # (answered with the old map)
        cluster.map = failed_over(cluster)
        if when == "before the fetch":
            cluster.hold_maps = False
            cluster.release()
        start = time.monotonic()
        assert c.ask("T", k, "second", timeout=WAIT)[:2] == [1, "second"], "answered by B"
        took = time.monotonic() - start
        assert took < POLL + 0.4, f"within about one poll: {took:.2f} s"
        assert c.map.epoch == 2
        [at_b] = asks(cluster, 1)
        second_at_a = [r for r in asks(cluster, 0) if r[4] == "second"]
        if when == "before the fetch":
            assert not second_at_a, "held until the new map, never sent to A"
        else:
            assert [r[7] for r in second_at_a] == [at_b[7]], "resent to B with its request id"
        lane = c._lane()
        assert lane.transport.timeouts.task is None, "the poll ended with the new map"
        start = time.monotonic()
        assert c.ask("T", k, "third", timeout=WAIT)[:2] == [1, "third"]
        assert time.monotonic() - start < 0.2


@pytest.mark.timeout(30)
def test_the_blocking_client_asks_a_frozen_node_on_while_the_map_stays(cluster):
    """The poll finds no new map: asks to A time out at their deadlines (no hang in
    the blocking wait), asks to B are answered at once meanwhile."""
    with actorsys.connect(cluster.endpoint, connect_timeout=WAIT) as c:
        k0, k1 = key_on(c.map, 0), key_on(c.map, 1)
        for i in range(3):
            start = time.monotonic()
            with pytest.raises(AskTimeout):
                c.ask("T", k0, f"a{i}", timeout=0.3)
            assert 0.28 <= time.monotonic() - start < 0.8
            start = time.monotonic()
            assert c.ask("T", k1, f"b{i}", timeout=WAIT)[:2] == [1, f"b{i}"]
            assert time.monotonic() - start < 0.2
        assert maps_fetched(cluster) >= 2


@pytest.mark.timeout(30)
def test_close_during_a_poll_cancels_it_and_fails_held_asks(cluster, caplog):
    caplog.set_level(logging.DEBUG, "asyncio")

    async def main() -> None:
        ctx = zmq.Context()
        t = AsyncTransport(ctx, cluster.endpoint)
        try:
            await t.connect(WAIT)
            assert t.map is not None
            k = key_on(t.map, 0)
            cluster.hold_maps = True
            with pytest.raises(AskTimeout):
                await t.ask("T", k, "first", timeout=0.2)
            _, p = held_ask(t, k, "second", WAIT)
            await until(lambda: maps_fetched(cluster) == 2, "the fetch at the timeout")
            poll = t.timeouts.task
            assert poll is not None and not poll.done()
            t.close()
            with pytest.raises(NodeUnavailable, match="closed"):
                await asyncio.wait_for(p.fut, 1.0)
            await asyncio.sleep(0.01)
            assert poll.done() and t.timeouts.task is None
            assert asyncio.all_tasks() == {asyncio.current_task()}, "no task left"
        finally:
            t.close()
            ctx.term()
    asyncio.run(main())
    gc.collect()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


@pytest.mark.timeout(30)
@pytest.mark.parametrize("during", ["the fetch", "the pause"])
def test_closing_the_blocking_client_during_a_poll_leaves_no_task(cluster, caplog, during):
    caplog.set_level(logging.DEBUG, "asyncio")
    c = actorsys.connect(cluster.endpoint, connect_timeout=WAIT)
    try:
        k = key_on(c.map, 0)
        if during == "the fetch":
            cluster.hold_maps = True
        with pytest.raises(AskTimeout):
            c.ask("T", k, "first", timeout=0.2)
        if during == "the pause":
            c._lane().loop.run_until_complete(asyncio.sleep(0.05))   # the fetch is in: the poll pauses
        lane = c._lane()
        assert bool(lane.transport.timeouts.suspects) == (during == "the fetch")
        poll = lane.transport.timeouts.task
        assert poll is not None and not poll.done()
    finally:
        c.close()
    assert lane.loop.is_closed()
    assert poll.done(), "cancelled, and its cancellation run before the loop closed"
    del poll, lane
    gc.collect()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
