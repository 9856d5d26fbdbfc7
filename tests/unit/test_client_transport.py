"""AsyncTransport against a fake node in the test process: the wire messages it sends,
and its rules for deadlines, wrong-shard resends, worker loss and overload."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import zmq
from client_fakes import HOLD, ROUTER, FakeNode, echo, err, ok, with_transport

from actorsys.client.requests import MAX_RESENDS, Pending, resend_pause
from actorsys.client.transport import AsyncTransport
from actorsys.errors import (AskTimeout, MessageTooLarge, NodeUnavailable, Overloaded,
                             SupervisorNotFound, WorkerLost, WrongShard)
from actorsys.protocol import wire
from actorsys.protocol.messages import Ask

WAIT = 10.0      # a bound on every wait for something that should happen at once


@pytest.fixture
def fake(tmp_path):
    with FakeNode(str(tmp_path)) as f:
        yield f


def key_on(t: AsyncTransport, slot: int) -> str:
    assert t.map is not None
    return next(k for k in (f"k{i}" for i in range(1000)) if t.map.slot_of("T", k) == slot)


def test_every_request_is_its_typed_record_on_the_wire(fake):
    async def body(t: AsyncTransport) -> None:
        k0, k1 = key_on(t, 0), key_on(t, 1)
        assert await t.ask("T", k0, "add", (1,), {"x": 2}) == [0, "add", [1], {"x": 2}]
        await t.spawn("T", k1)
        await t.control_actor(wire.SPAWN, "T", k0, {"sup": "root"}, WAIT)
        t.tell("T", k1, "note", ["hi"])
        assert await t.list_keys("T", None, 10, WAIT) == []
        assert await t.call_slot(0, wire.PING) == "pong"
        await t.call_router(wire.STATUS)
        fake.wait_for(lambda: fake.requests(1, wire.TELL), "the tell")

    with_transport(fake, body)
    shapes = {(s, r[0]): r for s, r in fake.received}
    assert shapes[ROUTER, wire.MAP][0:1] == [wire.MAP] and len(shapes[ROUTER, wire.MAP]) == 2
    assert shapes[0, wire.ASK][2] == "T" and shapes[0, wire.ASK][4:7] == ["add", [1], {"x": 2}]
    assert shapes[0, wire.ASK][7].keys() == {"id"}, "every ask carries a request id"
    assert len(shapes[1, wire.SPAWN]) == 4, "a plain spawn is [SPAWN, id, type, key]"
    assert shapes[0, wire.SPAWN][4] == {"sup": "root"}, "a supervised spawn carries its options"
    assert shapes[1, wire.TELL][:2] == [wire.TELL, 0] and shapes[1, wire.TELL][4:] == ["note", ["hi"], {}]
    assert shapes[0, wire.LIST][2:] == ["T", None, 10] and shapes[1, wire.LIST][2:] == ["T", None, 10]
    assert len(shapes[0, wire.PING]) == 2 and len(shapes[ROUTER, wire.STATUS]) == 2


def test_a_pending_ask_is_a_typed_record_until_its_reply(tmp_path):
    with FakeNode(str(tmp_path), serve=lambda s, r: HOLD) as fake:
        async def body(t: AsyncTransport) -> list[Pending]:
            fut = t.ask("T", "k", "add", [1])
            entries = list(t.pending.entries.values())
            # (release only once the fake holds it: released earlier, it would be held
            # for good; seen on a loaded machine)
            deadline = time.monotonic() + WAIT
            while not any(r[0] == wire.ASK for _slot, r in fake.received):
                assert time.monotonic() < deadline, "the ask did not reach the fake node"
                await asyncio.sleep(0.005)
            fake.release()
            assert await fut == "late"
            assert t.pending_count() == 0, "the reply removed the entry"
            return entries

        [p] = with_transport(fake, body)
    assert isinstance(p, Pending) and isinstance(p.request, Ask)
    assert (p.request.type_name, p.request.key, p.request.method, p.request.args) == ("T", "k", "add", [1])
    assert (p.timeout, p.retries, p.timer) == (30.0, 0, None)


def test_wrong_shard_is_resent_after_a_map_refresh_at_most_max_resends_times(tmp_path):
    serve = lambda s, r: err(r[1], WrongShard("not mine")) if r[0] == wire.ASK else echo(s, r)  # noqa: E731
    with FakeNode(str(tmp_path), serve=serve) as fake:
        async def body(t: AsyncTransport) -> float:
            start = t.loop.time()
            with pytest.raises(WrongShard):
                await t.ask("T", "k", "add")
            return t.loop.time() - start

        took = with_transport(fake, body)
        asks = sum(len(fake.requests(s, wire.ASK)) for s in (0, 1))
        assert asks == MAX_RESENDS + 1, f"the ask and its {MAX_RESENDS} resends, got {asks}"
        assert len(fake.requests(ROUTER, wire.MAP)) == MAX_RESENDS + 1, \
            "connect, then a refresh before each resend"
        pauses = sum(resend_pause(i) for i in range(MAX_RESENDS))
        assert pauses <= took < pauses + 5.0, "each resend after its pause"


def test_resend_pauses_start_at_once_and_double_up_to_a_bound():
    assert [resend_pause(i) for i in range(8)] == [0.0, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.2]
    assert resend_pause(50) == 0.2
    assert 2.0 < sum(resend_pause(i) for i in range(MAX_RESENDS)) < 5.0, \
        "resends cover a handoff of a few seconds"


def test_resends_after_wrong_shard_stay_within_the_asks_one_deadline(tmp_path):
    serve = lambda s, r: err(r[1], WrongShard("moving")) if r[0] == wire.ASK else echo(s, r)  # noqa: E731
    with FakeNode(str(tmp_path), serve=serve) as fake:
        async def body(t: AsyncTransport) -> float:
            start = t.loop.time()
            with pytest.raises(AskTimeout, match=r"^ask T/k\.add: no reply within 0\.3 s$"):
                await t.ask("T", "k", "add", timeout=0.3)
            return t.loop.time() - start

        took = with_transport(fake, body)
        assert 0.2 < took < 1.5, f"failed at its deadline, not after every resend: {took:.2f} s"
        assert 3 < sum(len(fake.requests(s, wire.ASK)) for s in (0, 1)) < MAX_RESENDS + 1


def test_an_ask_refused_during_a_handoff_is_answered_once_the_move_is_done(tmp_path):
    """The old owner answers wrong_shard for 150 ms (the map does not change meanwhile):
    the ask is resent with a growing pause until the shard is served again."""
    done_at: list[float] = []

    def serve(slot: int, r: list) -> Any:
        if r[0] == wire.ASK:
            if not done_at:
                done_at.append(time.monotonic() + 0.15)
            if time.monotonic() < done_at[0]:
                return err(r[1], WrongShard("shard moving to n2"))
        return echo(slot, r)

    with FakeNode(str(tmp_path), serve=serve) as fake:
        async def body(t: AsyncTransport) -> Any:
            return await t.ask("T", "k", "add", [5], timeout=5.0)

        assert with_transport(fake, body)[1:] == ["add", [5], {}]
        asks = [r for s in (0, 1) for r in fake.requests(s, wire.ASK)]
        assert 3 <= len(asks) <= 9, f"a few resends with a growing pause, not a busy loop: {len(asks)}"
        assert len({a[7]["id"] for a in asks}) == 1, "every resend keeps the ask's request id"


def test_a_wrong_shard_answer_is_resent_and_answered(tmp_path):
    refused: list[int] = []

    def serve(slot: int, r: list) -> Any:
        if r[0] == wire.ASK and not refused:
            refused.append(r[1])
            return err(r[1], WrongShard("moved"))
        return echo(slot, r)

    with FakeNode(str(tmp_path), serve=serve) as fake:
        async def body(t: AsyncTransport) -> Any:
            return await t.ask("T", "k", "add", [5])

        assert with_transport(fake, body)[1:] == ["add", [5], {}]
        asks = [r for s in (0, 1) for r in fake.requests(s, wire.ASK)]
        assert len(asks) == 2 and asks[1][1] != asks[0][1], "resent under a new request id"


def test_an_ask_past_its_deadline_fails_and_its_late_reply_is_dropped(tmp_path):
    hold = [True]
    with FakeNode(str(tmp_path), serve=lambda s, r: HOLD if hold[0] else echo(s, r)) as fake:
        async def body(t: AsyncTransport) -> Any:
            with pytest.raises(AskTimeout, match=r"^ask T/k\.add: no reply within 0\.1 s$"):
                await t.ask("T", "k", "add", timeout=0.1)
            hold[0] = False
            fake.release()                        # the late reply comes first, then ours
            return await t.ask("T", "k", "get")

        assert with_transport(fake, body)[1] == "get", "the next ask gets its own reply"


def test_a_dropped_worker_fails_its_requests_at_once_and_the_next_waits_for_it(tmp_path):
    hold = [True]
    with FakeNode(str(tmp_path), serve=lambda s, r: HOLD if hold[0] else echo(s, r)) as fake:
        lost: list[int] = []

        async def body(t: AsyncTransport) -> Any:
            t.on_slot_lost = lost.append
            k = key_on(t, 1)
            fut = t.ask("T", k, "nap")
            await asyncio.to_thread(fake.wait_for, lambda: fake.requests(1, wire.ASK), "the ask")
            fake.drop(1)
            with pytest.raises(WorkerLost, match=r"^worker slot 1 went away while the request was "
                                                 r"in flight; it may or may not have been processed$"):
                await asyncio.wait_for(fut, WAIT)
            hold[0] = False
            later = t.ask("T", k, "add", [1])     # queued until the slot is back
            await asyncio.sleep(0.05)
            assert not later.done(), "nothing answers while the slot is down"
            fake.restore(1)
            return await asyncio.wait_for(later, WAIT)

        assert with_transport(fake, body)[:2] == [1, "add"]
        assert lost == [1]


def test_a_request_to_another_endpoint_fails_at_once_when_its_connection_drops(tmp_path):
    """A router's own worker killed with its grant in flight: the call fails now, not at
    its (65 s) deadline."""
    with FakeNode(str(tmp_path), serve=lambda s, r: HOLD) as fake:
        async def body(t: AsyncTransport) -> float:
            endpoint = fake.worker_endpoints[1]
            call = asyncio.ensure_future(t.call_peer(endpoint, wire.PING, [], 60.0, "worker 1"))
            other = asyncio.ensure_future(t.call_peer(fake.worker_endpoints[0], wire.PING, [],
                                                      60.0, "worker 0"))
            await asyncio.to_thread(fake.wait_for, lambda: fake.requests(1, wire.PING), "the call")
            start = t.loop.time()
            fake.drop(1)
            with pytest.raises(WorkerLost, match=f"the connection to {endpoint} dropped"):
                await asyncio.wait_for(call, WAIT)
            assert not other.done(), "a request to another endpoint is not failed with it"
            other.cancel()
            return t.loop.time() - start

        assert with_transport(fake, body) < WAIT


def test_an_ask_with_retry_is_resent_with_the_same_request_id_after_worker_lost(tmp_path):
    hold = [True]
    with FakeNode(str(tmp_path), serve=lambda s, r: HOLD if hold[0] else echo(s, r)) as fake:
        async def body(t: AsyncTransport) -> Any:
            k = key_on(t, 1)
            fut = t.ask("T", k, "add", [1], retry=True)
            await asyncio.to_thread(fake.wait_for, lambda: fake.requests(1, wire.ASK), "the ask")
            fake.drop(1)                          # WorkerLost: the retry waits for the slot
            hold[0] = False
            await asyncio.sleep(0.2)
            assert not fut.done(), "a retried ask is not failed by the worker's loss"
            fake.restore(1)
            return await asyncio.wait_for(fut, WAIT)

        assert with_transport(fake, body)[:3] == [1, "add", [1]]
        first, again = fake.requests(1, wire.ASK)
        assert first[1] != again[1], "each attempt is a new request number"
        assert first[7]["id"] == again[7]["id"] and len(first[7]["id"]) == 16, "the same request id"


def test_request_ids_are_unique_and_a_given_id_is_kept(fake):
    async def body(t: AsyncTransport) -> Any:
        await t.ask("T", "a", "x")
        await t.ask("T", "a", "x")
        await t.ask("T", "a", "x", ctx={"id": b"mine", "chain": [["A", "1"]]})
        await t.ask("T", "a", "x", ctx={"chain": [["A", "1"]]})

    with_transport(fake, body)
    ctxs = [r[7] for _s, r in fake.received if r[0] == wire.ASK]
    assert len({c["id"] for c in ctxs}) == 4
    assert ctxs[2] == {"id": b"mine", "chain": [["A", "1"]]}
    assert ctxs[3]["chain"] == [["A", "1"]] and len(ctxs[3]["id"]) == 16


def test_a_retried_ask_stops_at_its_deadline_and_a_timeout_is_not_retried(tmp_path):
    with FakeNode(str(tmp_path), serve=lambda s, r: HOLD) as fake:
        async def body(t: AsyncTransport) -> Any:
            k = key_on(t, 0)
            with pytest.raises(AskTimeout):
                await t.ask("T", k, "nap", timeout=0.3, retry=True)
            assert len(fake.requests(0, wire.ASK)) == 1, "no resend after AskTimeout"
            fut = t.ask("T", k, "nap", timeout=0.5, retry=True)
            await asyncio.to_thread(fake.wait_for, lambda: len(fake.requests(0, wire.ASK)) == 2,
                                    "the second ask")
            fake.drop(0)                          # lost, resent, and the slot never comes back
            started = t.loop.time()
            with pytest.raises((AskTimeout, WorkerLost)):
                await asyncio.wait_for(fut, WAIT)
            assert t.loop.time() - started < 1.0, "within the ask's one deadline"

        with_transport(fake, body)


def test_asks_beyond_max_pending_are_refused_at_once_and_close_fails_the_rest(tmp_path):
    with FakeNode(str(tmp_path), serve=lambda s, r: HOLD) as fake:
        async def body(t: AsyncTransport) -> None:
            futs = [t.ask("T", f"k{i}", "nap") for i in range(2)]
            with pytest.raises(Overloaded, match=r"^2 asks already pending \(max_pending_asks\)$"):
                t.ask("T", "k9", "nap")
            t.close()
            for f in futs:
                with pytest.raises(NodeUnavailable, match="client closed"):
                    await f
            with pytest.raises(NodeUnavailable, match="client is closed"):
                t.ask("T", "k", "nap")
            with pytest.raises(NodeUnavailable, match="client is closed"):
                t.tell("T", "k", "nap")

        with_transport(fake, body, max_pending=2)


def test_a_message_over_the_nodes_limit_is_refused_before_it_is_sent(tmp_path):
    with FakeNode(str(tmp_path), max_message_bytes=2048) as fake:
        async def body(t: AsyncTransport) -> None:
            assert t.max_message_bytes == 2048, "the limit comes with the map"
            with pytest.raises(MessageTooLarge, match="max_message_bytes is 2048"):
                t.ask("T", "k", "add", ["x" * 4096])
            with pytest.raises(MessageTooLarge, match="2048"):
                t.tell("T", "k", "add", ["x" * 4096])
            assert t.pending_count() == 0

        with_transport(fake, body)
        assert not fake.requests(0) and not fake.requests(1)


def test_control_requests_fail_at_their_deadline_naming_who_did_not_answer(tmp_path):
    with FakeNode(str(tmp_path), serve=lambda s, r: None) as fake:
        async def body(t: AsyncTransport) -> None:
            fake.router_silent = True
            with pytest.raises(NodeUnavailable, match=r"^router did not answer within 0\.1 s$"):
                await t.call_router(wire.STATUS, timeout=0.1)
            with pytest.raises(NodeUnavailable, match=r"^worker slot 0 did not answer within 0\.1 s$"):
                await t.call_slot(0, wire.PING, timeout=0.1)
            with pytest.raises(NodeUnavailable, match=r"^worker slot \d did not answer within 0\.1 s$"):
                await t.list_keys("T", None, 5, 0.1)
            while t.pending_count():       # the other slot's page expires at its own deadline
                await asyncio.sleep(0.01)

        with_transport(fake, body)


def test_connect_gives_up_at_its_deadline(fake):
    fake.router_silent = True

    async def main() -> None:
        ctx = zmq.Context()
        t = AsyncTransport(ctx, fake.endpoint)
        try:
            with pytest.raises(NodeUnavailable,
                               match=rf"^router at {fake.endpoint} did not answer within 0\.3 s$"):
                await t.connect(0.3)
        finally:
            t.close()
            ctx.term()
    asyncio.run(main())


def test_listing_merges_every_slots_page_in_utf8_byte_order(tmp_path):
    pages = {0: ["b", "é"], 1: ["a", "z"]}
    serve = lambda s, r: ok(r[1], pages[s]) if r[0] == wire.LIST else echo(s, r)  # noqa: E731
    with FakeNode(str(tmp_path), serve=serve) as fake:
        async def body(t: AsyncTransport) -> list[list[str]]:
            for bad in ((1, None, 5), ("T", 3, 5)):
                with pytest.raises(TypeError):
                    await t.list_keys(*bad, timeout=1.0)
            for limit in (-1, wire.MAX_LIST_LIMIT + 1, 2.0):
                with pytest.raises(ValueError):
                    await t.list_keys("T", None, limit, 1.0)   # type: ignore[arg-type]
            return [await t.list_keys("T", None, n, WAIT) for n in (3, 10)]

        assert with_transport(fake, body) == [["a", "b", "z"], ["a", "b", "z", "é"]]


def test_a_supervisor_command_needs_a_tree(fake):
    async def body(t: AsyncTransport) -> None:
        with pytest.raises(SupervisorNotFound, match="declares no supervisors"):
            await t.supervise("root", "which_children", None, 1.0)

    with_transport(fake, body)


def test_a_new_map_with_other_endpoints_keeps_the_connections_and_asks_in_flight(tmp_path):
    """A node of a cluster joins or leaves: the map's endpoints are renumbered. Asks in
    flight to endpoints still in the map get their replies; those to endpoints gone from
    it fail with WorkerLost (they may have run)."""
    def serve(slot: int, request: list) -> Any:
        return HOLD if request[0] == wire.ASK else echo(slot, request)

    with FakeNode(str(tmp_path), workers=3, serve=serve) as fake:
        async def body(t: AsyncTransport) -> None:
            k1, k2 = key_on(t, 1), key_on(t, 2)
            kept = asyncio.ensure_future(t.ask("T", k1, "add", (1,), {}))
            gone = asyncio.ensure_future(t.ask("T", k2, "add", (1,), {}))
            fake.wait_for(lambda: fake.requests(1, wire.ASK) and fake.requests(2, wire.ASK),
                          "both asks")
            m = t.map
            assert m is not None
            eps = fake.worker_endpoints
            new = type(m)(epoch=m.epoch + 1, shards=m.shards,
                          owner=[{0: 1, 1: 0, 2: 0}[o] for o in m.owner],
                          endpoints=[eps[1], eps[0]])
            t.set_map(new, 1 << 20, None)
            with pytest.raises(WorkerLost):
                await asyncio.wait_for(gone, WAIT)
            fake.release()
            assert await asyncio.wait_for(kept, WAIT) == "late"
            assert t.map.slot_of("T", k1) == 0
def test_a_map_with_renumbered_slots_keeps_the_connections_and_whats_in_flight(tmp_path):
    """A cluster's map changes its worker endpoints when a node joins or leaves: the
    requests in flight on endpoints still in the map are answered on their kept
    connections; an ask on an endpoint gone from it is sent again at once, with its
    request id, to where the new map puts it (a node that left moved its shards, with
    the records of the asks it ran, first)."""
    from actorsys.protocol.shardmap import ShardMap

    serve = lambda s, r: HOLD if r[0] == wire.ASK else echo(s, r)  # noqa: E731
    with FakeNode(str(tmp_path), workers=3, serve=serve) as fake:
        w = fake.worker_endpoints
        fake.map = ShardMap(epoch=1, shards=16, owner=[i % 2 for i in range(16)], endpoints=[w[1], w[2]])

        async def body(t: AsyncTransport) -> None:
            on_w2, on_w1 = t.ask("T", key_on(t, 1), "a"), t.ask("T", key_on(t, 0), "b")
            await asyncio.to_thread(fake.wait_for, lambda: len(fake.requests(2, wire.ASK)) == 1
                                    and len(fake.requests(1, wire.ASK)) == 1, "both asks")
            # w1 leaves the map, w2 moves from slot 1 to slot 0, w0 joins as slot 1
            fake.map = ShardMap(epoch=2, shards=16, owner=[0] * 8 + [1] * 8, endpoints=[w[2], w[0]])
            await t.refresh_map()
            first = fake.requests(1, wire.ASK)[0]
            await asyncio.to_thread(fake.wait_for, lambda: len(fake.requests(0, wire.ASK))
                                    + len(fake.requests(2, wire.ASK)) == 2, "the ask sent again")
            again = [r for r in fake.requests(0, wire.ASK) + fake.requests(2, wire.ASK)
                     if r[4] == "b"]
            assert len(again) == 1 and again[0][-1]["id"] == first[-1]["id"], \
                "sent again with its request id"
            fake.release()
            assert await asyncio.wait_for(on_w2, 2.0) == "late", "answered on its kept connection"
            assert await asyncio.wait_for(on_w1, 2.0) == "late", "answered where it was sent again"
            assert t.pending_count() == 0

        with_transport(fake, body)


def test_listing_a_cluster_with_a_node_down_says_so_instead_of_an_incomplete_list(tmp_path):
    """A listing asks every live worker; without the shards of a node that is down it
    would be silently incomplete: ShardUnavailable naming the node instead."""
    from actorsys.errors import ShardUnavailable
    from actorsys.protocol.shardmap import ShardMap

    with FakeNode(str(tmp_path), workers=2) as fake:
        w = fake.worker_endpoints
        fake.map = ShardMap(epoch=1, shards=16, owner=[0, 1] * 4 + [-2] * 8, endpoints=w,
                            nodes=[{"id": "n1", "endpoint": fake.endpoint, "alive": True,
                                    "slots": [0, 2]},
                                   {"id": "n2", "endpoint": None, "alive": False, "slots": [0, 0]}],
                            name="c")

        async def body(t: AsyncTransport) -> None:
            with pytest.raises(ShardUnavailable, match=r"n2 \(8 shards\)"):
                await t.list_keys("T", None, 10, WAIT)
            assert not fake.requests(0, wire.LIST), "no worker was asked"

        with_transport(fake, body)
