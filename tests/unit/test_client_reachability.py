"""Fail fast on an unreachable node (actorsys/client/reachability.py): the state machine
with the time passed in, then the clients' transports against a fake node whose router
and workers the test drops and restores (real ipc sockets, a short grace period)."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest
import zmq
from client_fakes import HOLD, ROUTER, FakeNode, echo

import actorsys
from actorsys.client.reachability import Phase, Reachability
from actorsys.client.transport import AsyncTransport
from actorsys.errors import NodeUnavailable, WorkerLost
from actorsys.protocol import wire

WAIT = 10.0      # a bound on every wait for something that should happen at once
GRACE = 0.4      # the clients' connect_timeout here: how long the node may be unreachable
EP = "ipc:///run/n/router.sock"


# -- the state machine (time passed in) -------------------------------------------------------

def up(now: float = 0.0) -> Reachability:
    r = Reachability(EP, 5.0, now)
    r.router_back(again=False)
    return r


def test_a_watch_starts_lost_and_is_up_once_the_router_connects():
    r = Reachability(EP, 5.0, 100.0)
    assert r.phase is Phase.LOST and r.deadline == 105.0
    r.router_back(again=False)
    assert (r.phase, r.deadline, r.map_due) == (Phase.UP, None, False), \
        "the first connection needs no second map: connect fetches it"


def test_the_router_gone_past_the_grace_period_makes_the_node_down_and_says_what():
    r = up()
    r.slot_lost(1)
    r.router_lost(10.0)
    assert r.phase is Phase.LOST and r.deadline == 15.0
    assert not r.expire(14.99), "within the grace period requests go on"
    assert r.phase is Phase.LOST
    assert r.expire(15.0) and r.phase is Phase.DOWN
    assert not r.expire(16.0), "DOWN once"
    assert r.why(15.0) == (f"the node at {EP} has been unreachable for 5 s (router and worker "
                           f"slot 1 disconnected); the client reconnects by itself when the node is back")
    r.slot_lost(0)
    assert "(router and worker slots 0, 1 disconnected)" in r.why(17.25)
    assert "unreachable for 7.2 s" in r.why(17.25)


def test_a_router_back_within_the_grace_period_is_up_at_once_with_its_map_due():
    r = up()
    r.router_lost(10.0)
    r.router_back(again=True)
    assert (r.phase, r.map_due) == (Phase.UP, True), "a node restarted fast may have moved its workers"
    assert not r.expire(100.0)
    r.map_fetched()
    assert (r.phase, r.map_due) == (Phase.UP, False)


def test_a_down_node_is_up_again_only_when_its_router_is_back_and_its_map_fetched():
    r = up()
    r.slot_lost(0)
    r.router_lost(0.0)
    r.expire(5.0)
    r.map_fetched()
    assert (r.phase, r.downs) == (Phase.DOWN, 1), "a map fetched while the router is gone proves nothing"
    r.router_back(again=True)
    assert (r.phase, r.map_due, r.router_up) == (Phase.DOWN, True, True)
    assert "its router is back and the client is fetching its shard map" in r.why(6.0)
    r.router_lost(7.0)
    assert (r.phase, r.since) == (Phase.DOWN, 0.0), "lost again while DOWN: still DOWN since 0"
    r.router_back(again=True)
    r.map_fetched()
    assert (r.phase, r.map_due, r.slots_down) == (Phase.UP, False, set())
    r.router_lost(20.0)
    assert (r.phase, r.deadline) == (Phase.LOST, 25.0), "a new grace period for a new loss"
    assert r.expire(25.0) and r.downs == 2


def test_a_second_connection_coming_up_for_the_first_time_needs_no_map():
    r = up()
    r.router_back(again=False)      # another thread's router connection
    assert (r.phase, r.map_due) == (Phase.UP, False)
    r.lost(3.0)                     # a connection that never came up: lost since it was made
    assert (r.phase, r.since, r.router_up) == (Phase.LOST, 3.0, True)
    assert r.expire(8.0) and not r.router_up, "DOWN: the router is back only once a connection says so"
    assert "router is back" not in r.why(8.0)


def test_a_router_never_connected_is_down_at_the_deadline_and_needs_the_map_when_it_comes():
    r = Reachability(EP, 2.0, 0.0)
    assert r.expire(2.0)
    assert "(router not connected)" in r.why(2.0)
    r.router_back(again=False)
    assert (r.phase, r.map_due) == (Phase.DOWN, True)


def test_a_slot_that_reconnects_is_no_longer_named():
    r = up()
    r.slot_lost(1)
    r.slot_back(1)
    r.router_lost(0.0)
    r.expire(5.0)
    assert "(router disconnected)" in r.why(5.0)


# -- the transports against a fake node ---------------------------------------------------------

def drop_node(fake: FakeNode) -> None:
    for slot in (ROUTER, *range(len(fake.worker_endpoints))):
        fake.drop(slot)


def restore_node(fake: FakeNode) -> None:
    for slot in (ROUTER, *range(len(fake.worker_endpoints))):
        fake.restore(slot)


def test_the_asyncio_client_fails_fast_while_the_node_is_down_and_works_when_it_is_back(tmp_path):
    with FakeNode(str(tmp_path)) as fake:
        async def main() -> None:
            async with actorsys.connect_async(fake.endpoint, timeout=30,
                                              connect_timeout=GRACE) as c:
                assert (await c.ask("T", "k", "get"))[1] == "get"
                drop_node(fake)
                dropped = time.monotonic()
                pending = c.ask("T", "k", "add")      # within the grace period: queued
                with pytest.raises(NodeUnavailable, match=r"^the node at ipc://.* has been "
                                   r"unreachable for 0\.\d s \(router and worker slot \d disconnected\)"):
                    await asyncio.wait_for(pending, WAIT)
                waited = time.monotonic() - dropped
                assert GRACE - 0.05 <= waited < GRACE + 1.0, \
                    f"expected it after ~{GRACE} s, got {waited:.2f} s"
                with pytest.raises(NodeUnavailable, match="unreachable"):
                    c.ask("T", "k", "add")
                with pytest.raises(NodeUnavailable, match="unreachable"):
                    c.tell("T", "k", "add")
                maps = len(fake.requests(ROUTER, wire.MAP))
                restore_node(fake)
                result = await retry_async(lambda: c.ask("T", "k", "again"))
                assert result[1] == "again", "the same client works once the node is back"
                assert len(fake.requests(ROUTER, wire.MAP)) > maps, "the map is fetched again"
                c.tell("T", "k", "told")
                await asyncio.to_thread(fake.wait_for, lambda: any(
                    r[4] == "told" for s in range(2) for r in fake.requests(s, wire.TELL)), "the tell")
            assert not [r for s in range(2) for r in fake.requests(s, wire.ASK) if r[4] == "add"], \
                "an ask failed with NodeUnavailable was discarded, not delivered when the node came back"
        asyncio.run(main())


async def retry_async(call: Any) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        try:
            return await asyncio.wait_for(call(), WAIT)
        except NodeUnavailable:
            assert time.monotonic() < deadline, "the client did not work again after the node came back"
            await asyncio.sleep(0.02)


def test_the_blocking_client_fails_fast_and_works_again_on_every_thread(tmp_path):
    with FakeNode(str(tmp_path)) as fake, \
            actorsys.connect(fake.endpoint, timeout=30, connect_timeout=GRACE) as c:
        assert c.ask("T", "k", "get")[1] == "get"
        drop_node(fake)
        dropped = time.monotonic()
        with pytest.raises(NodeUnavailable, match=r"unreachable for 0\.\d s \(router and worker slot \d"):
            c.ask("T", "k", "add")
        waited = time.monotonic() - dropped
        assert GRACE - 0.05 <= waited < GRACE + 1.0, f"expected it after ~{GRACE} s, got {waited:.2f} s"
        started = time.monotonic()
        for call in (lambda: c.ask("T", "k", "add"), lambda: c.tell("T", "k", "add"),
                     lambda: c.spawn("T", "k2")):
            with pytest.raises(NodeUnavailable, match="unreachable"):
                call()
        assert time.monotonic() - started < 0.2, "calls while the node is down raise at once"

        outcome: dict[str, Any] = {}

        def other_thread() -> None:        # a lane made while the node is down
            began = time.monotonic()
            try:
                c.ask("T", "k", "add")
            except BaseException as exc:
                outcome["error"], outcome["took"] = exc, time.monotonic() - began
        t = threading.Thread(target=other_thread)
        t.start()
        t.join(WAIT)
        assert isinstance(outcome.get("error"), NodeUnavailable), outcome
        assert "unreachable" in str(outcome["error"]) and outcome["took"] < 0.2, \
            f"every thread of the client knows the node is down: {outcome}"

        restore_node(fake)
        deadline = time.monotonic() + WAIT
        while True:
            try:
                assert c.ask("T", "k", "again")[1] == "again"
                break
            except (NodeUnavailable, WorkerLost):   # (a drop the slot's monitor reports late)
                assert time.monotonic() < deadline, "the client did not work again"
                time.sleep(0.02)
        t = threading.Thread(target=lambda: outcome.update(again=c.ask("T", "k", "other")))
        t.start()
        t.join(WAIT)
        assert outcome["again"][1] == "other", "the other thread's lane works again too"


def test_an_idle_blocking_client_notices_at_its_next_call_and_a_tell_raises(tmp_path):
    with FakeNode(str(tmp_path)) as fake, \
            actorsys.connect(fake.endpoint, timeout=30, connect_timeout=GRACE) as c:
        c.tell("T", "k", "first")
        drop_node(fake)
        time.sleep(GRACE + 0.1)            # the client is idle: nothing reads its sockets
        deadline = time.monotonic() + WAIT
        while True:                        # tells within the grace period are queued
            try:
                c.tell("T", "k", "more")
            except NodeUnavailable as exc:
                assert "unreachable" in str(exc)
                break
            assert time.monotonic() < deadline, "a tell to a node down for good should raise"
            time.sleep(0.01)


def test_a_lost_router_back_within_the_grace_period_loses_nothing(tmp_path):
    with FakeNode(str(tmp_path)) as fake, \
            actorsys.connect(fake.endpoint, timeout=30, connect_timeout=1.0) as c:
        assert c.ask("T", "k", "get")[1] == "get"
        maps = len(fake.requests(ROUTER, wire.MAP))
        fake.drop(ROUTER)
        fake.restore(ROUTER)
        time.sleep(0.05)
        assert c.ask("T", "k", "add")[1] == "add"
        time.sleep(1.2)
        assert c.ask("T", "k", "add")[1] == "add", "no NodeUnavailable: the router came back in time"
        assert len(fake.requests(ROUTER, wire.MAP)) > maps, \
            "the map is fetched again after the router's return"


def test_a_worker_drop_with_the_router_up_is_worker_lost_and_waits_as_before(tmp_path):
    hold = [True]
    with FakeNode(str(tmp_path), serve=lambda s, r: HOLD if hold[0] else echo(s, r)) as fake, \
            actorsys.connect(fake.endpoint, timeout=30, connect_timeout=GRACE) as c:
        k = next(k for k in (f"k{i}" for i in range(1000)) if c.map.slot_of("T", k) == 1)
        out: dict[str, Any] = {}
        t = threading.Thread(target=lambda: out.update(r=_outcome(lambda: c.ask("T", k, "nap"))))
        t.start()
        fake.wait_for(lambda: fake.requests(1, wire.ASK), "the ask")
        fake.drop(1)
        t.join(WAIT)
        assert isinstance(out["r"], WorkerLost), out
        hold[0] = False
        t = threading.Thread(target=lambda: out.update(r=_outcome(lambda: c.ask("T", k, "add"))))
        t.start()
        t.join(GRACE + 0.5)
        assert t.is_alive(), "an ask to a restarting worker waits past connect_timeout (router up)"
        fake.restore(1)
        t.join(WAIT)
        assert out["r"][:2] == [1, "add"], out


def _outcome(call: Any) -> Any:
    try:
        return call()
    except BaseException as exc:
        return exc


def test_the_nodes_own_transports_are_not_watched(tmp_path):
    with FakeNode(str(tmp_path)) as fake:
        async def main() -> None:
            ctx = zmq.Context()
            t = AsyncTransport(ctx, fake.endpoint)
            try:
                await t.connect(WAIT)
                assert t.watch is None
                drop_node(fake)
                fut = t.ask("T", "k", "add", timeout=GRACE + 0.5)
                await asyncio.sleep(GRACE + 0.1)
                assert not fut.done(), "a node process waits for its node as before"
                t.tell("T", "k", "x")
                restore_node(fake)
                assert (await asyncio.wait_for(fut, WAIT))[1] == "add"
            finally:
                t.close()
                ctx.term()
        asyncio.run(main())


def test_tells_discarded_when_the_node_goes_down_are_logged(tmp_path, caplog):
    """A tell sent in the grace period is queued; if the node then goes DOWN, it is
    discarded with the slot's queue: a tell has no caller, so the log says so."""
    caplog.set_level(logging.WARNING, "actorsys.client")
    with FakeNode(str(tmp_path)) as fake:
        async def main() -> None:
            async with actorsys.connect_async(fake.endpoint, connect_timeout=GRACE) as c:
                assert (await c.ask("T", "k", "get"))[1] == "get"
                drop_node(fake)
                await asyncio.sleep(0.1)          # the drop is seen: the router is lost
                c.tell("T", "k", "lost-1")
                c.tell("T", "k", "lost-2")
                with pytest.raises(NodeUnavailable):
                    await asyncio.wait_for(c.ask("T", "k", "add"), WAIT)
        asyncio.run(main())
    said = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert any("2 tell(s) sent since the router was lost were discarded" in m for m in said), said


def test_a_connect_that_never_had_the_map_raises_without_a_warning(tmp_path, caplog):
    """A client whose router never answered loses nothing but the map's own fetch, and
    its connect raises NodeUnavailable saying so: no warning repeats it (an embedded
    node's start probes its router this way until it is up)."""
    caplog.set_level(logging.DEBUG, "actorsys.client")
    endpoint = f"ipc://{tmp_path}/nobody.sock"
    with pytest.raises(NodeUnavailable, match="unreachable|no shard map|did not answer"):
        actorsys.connect(endpoint, connect_timeout=0.3).close()
    said = [r for r in caplog.records if "unreachable for" in r.getMessage()]
    assert said, "the loss is still logged (at debug)"
    assert all(r.levelno < logging.WARNING for r in said), [(r.levelname, r.getMessage()) for r in said]
