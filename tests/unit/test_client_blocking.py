"""The blocking Client on the transport, against a fake node in the test process: its
lanes (one per thread, also inside a running event loop), its error texts, and the rules
it now shares with the asyncio client."""
from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from typing import Any

import pytest
import zmq
from client_fakes import HOLD, ROUTER, FakeNode, echo, err, ok

import actorsys
from actorsys.client.requests import MAX_RESENDS
from actorsys.errors import AskTimeout, NodeUnavailable, WorkerLost, WrongShard
from actorsys.protocol import wire

WAIT = 10.0


@pytest.fixture
def fake(tmp_path):
    with FakeNode(str(tmp_path)) as f:
        yield f


def key_on(c: actorsys.Client, slot: int) -> str:
    return next(k for k in (f"k{i}" for i in range(1000)) if c.map.slot_of("T", k) == slot)


def test_asks_and_spawns_are_answered_and_sent_as_before(fake):
    with actorsys.connect(fake.endpoint) as c:
        k = key_on(c, 1)
        assert c.ask("T", k, "add", 2, by=3) == [1, "add", [2], {"by": 3}]
        ref = c.spawn("T", k)
        assert (ref.type_name, ref.key) == ("T", k)
        assert c.ref("T", k).ask("get") == [1, "get", [], {}]
    [spawn] = fake.requests(1, wire.SPAWN)
    assert spawn[2:] == ["T", k], "a spawn is [SPAWN, id, type, key]"


def test_a_missing_reply_reads_as_it_always_has_and_the_late_one_is_dropped(tmp_path):
    hold = [True]
    with FakeNode(str(tmp_path), serve=lambda s, r: HOLD if hold[0] else echo(s, r)) as fake, \
            actorsys.connect(fake.endpoint) as c:
        with pytest.raises(AskTimeout, match=r"^ask T/k\.add: no reply before the deadline$"):
            c.ask("T", "k", "add", timeout=0.1)
        with pytest.raises(AskTimeout, match=r"^spawn T/k: no reply before the deadline$"):
            c.spawn("T", "k", timeout=0.1)
        hold[0] = False
        fake.release()
        assert c.ask("T", "k", "get")[1] == "get", "the next ask gets its own reply"


def test_a_dropped_worker_fails_the_ask_in_flight_at_once(tmp_path):
    hold = [True]
    with FakeNode(str(tmp_path), serve=lambda s, r: HOLD if hold[0] else echo(s, r)) as fake, \
            actorsys.connect(fake.endpoint) as c:
        k = key_on(c, 0)
        out: dict[str, Any] = {}

        def nap() -> None:
            try:
                c.ask("T", k, "nap", timeout=30.0)
            except BaseException as exc:
                out["error"] = exc

        t = threading.Thread(target=nap)
        t.start()
        fake.wait_for(lambda: fake.requests(0, wire.ASK), "the ask")
        fake.drop(0)
        t.join(WAIT)
        assert not t.is_alive(), "the ask in flight should have returned"
        assert isinstance(out.get("error"), WorkerLost), out
        assert str(out["error"]) == (f"ask T/{k}.nap: worker slot 0 went away while the request "
                                     f"was in flight; it may or may not have been processed")
        hold[0] = False
        fake.restore(0)
        assert c.ask("T", k, "add", 1)[:2] == [0, "add"], "the next ask reaches the worker that is back"


def test_wrong_shard_is_resent_as_often_as_by_the_asyncio_client(tmp_path):
    serve = lambda s, r: err(r[1], WrongShard("no")) if r[0] == wire.ASK else echo(s, r)  # noqa: E731
    with FakeNode(str(tmp_path), serve=serve) as fake, actorsys.connect(fake.endpoint) as c:
        with pytest.raises(WrongShard):
            c.ask("T", "k", "add")
        assert sum(len(fake.requests(s, wire.ASK)) for s in (0, 1)) == MAX_RESENDS + 1
        assert len(fake.requests(ROUTER, wire.MAP)) == MAX_RESENDS + 1


def test_a_blocking_ask_refused_during_a_handoff_waits_within_its_deadline(tmp_path):
    serve = lambda s, r: err(r[1], WrongShard("moving")) if r[0] == wire.ASK else echo(s, r)  # noqa: E731
    with FakeNode(str(tmp_path), serve=serve) as fake, actorsys.connect(fake.endpoint) as c:
        start = time.monotonic()
        with pytest.raises(AskTimeout, match="no reply before the deadline"):
            c.ask("T", "k", "add", timeout=0.3)
        assert 0.25 < time.monotonic() - start < 1.5
        assert 3 < sum(len(fake.requests(s, wire.ASK)) for s in (0, 1)) < MAX_RESENDS + 1


def test_every_thread_asks_on_its_own_lane(fake):
    with actorsys.connect(fake.endpoint) as c:
        results: dict[int, list] = {}

        def worker(n: int) -> None:
            results[n] = [c.ask("T", f"k{n}-{i}", "add", n, i) for i in range(50)]

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        assert not any(t.is_alive() for t in threads)
        for n in range(8):
            assert [r[2] for r in results[n]] == [[n, i] for i in range(50)], \
                f"thread {n} got another thread's replies"
        assert len(fake.requests(ROUTER, wire.MAP)) == 1, "new threads start from the client's map"


def test_a_thread_that_ends_takes_its_lane_with_it(fake):
    with actorsys.connect(fake.endpoint) as c:
        lanes: list[weakref.ref] = []

        def once() -> None:
            c.ask("T", "k", "add")
            lanes.append(weakref.ref(c._threads.local.lane))

        for _ in range(20):
            t = threading.Thread(target=once)
            t.start()
            t.join(WAIT)
        gc.collect()
        assert [r() for r in lanes] == [None] * 20, "every ended thread's lane is gone"
        assert len(c._threads.all) == 1, "only the main thread's lane is left"


def test_a_map_fetched_by_one_thread_serves_the_others(tmp_path):
    moved: list[int] = []

    def serve(slot: int, r: list) -> Any:
        if r[0] == wire.ASK and r[4] == "move" and not moved:
            moved.append(r[1])
            return err(r[1], WrongShard("moved"))
        return echo(slot, r)

    with FakeNode(str(tmp_path), serve=serve) as fake, actorsys.connect(fake.endpoint) as c:
        first = c.map
        asked, moved_on, seen = threading.Event(), threading.Event(), []

        def other() -> None:              # a thread with a lane from before the refresh
            c.ask("T", "k", "get")
            asked.set()
            moved_on.wait(WAIT)
            seen.append((c._lane().transport.map, c.ask("T", "k", "get")[1]))

        t = threading.Thread(target=other)
        t.start()
        assert asked.wait(WAIT)
        c.ask("T", "k", "move")           # wrong_shard: refreshed on this thread
        assert c.map is not first, "the client's map is the newest one"
        moved_on.set()
        t.join(WAIT)
        assert seen == [(c.map, "get")], "the other thread adopted the newest map"
        assert len(fake.requests(ROUTER, wire.MAP)) == 2, "connect and one refresh, not one per thread"


def test_the_client_works_inside_a_running_event_loop(tmp_path):
    serve = lambda s, r: ok(r[1], [f"s{s}"]) if r[0] == wire.LIST else echo(s, r)  # noqa: E731
    with FakeNode(str(tmp_path), serve=serve) as fake, actorsys.connect(fake.endpoint) as c:
        async def coroutine() -> tuple:
            return (c.ask("T", "k", "add", 1)[1:3], c.list_actors("T"), c.status()["op"],
                    actorsys.connect(fake.endpoint).close())

        assert asyncio.run(coroutine()) == (["add", [1]], ["s0", "s1"], wire.STATUS, None)


def test_control_requests_keep_their_texts(tmp_path):
    with FakeNode(str(tmp_path), serve=lambda s, r: None) as fake, \
            actorsys.connect(fake.endpoint) as c:
        with pytest.raises(AskTimeout, match=r"^list T: no reply before the deadline$"):
            c.list_actors("T", timeout=0.1)
        with pytest.raises(NodeUnavailable, match=r"^worker slot 0 did not answer within 0\.3 s$"):
            c.ping_workers(timeout=0.3)
        fake.router_silent = True
        with pytest.raises(NodeUnavailable,
                           match=rf"^router at {fake.endpoint} did not answer within 0\.2 s$"):
            c.status(timeout=0.2)
        with pytest.raises(actorsys.SupervisorNotFound, match="declares no supervisors"):
            c.supervisor("root").which_children(timeout=0.2)


def test_ping_workers_waits_for_a_slot_that_is_down(fake):
    with actorsys.connect(fake.endpoint) as c:
        c.ping_workers(timeout=WAIT)
        fake.drop(1)
        with pytest.raises(NodeUnavailable, match=r"^worker slot 1 did not answer within 0\.3 s$"):
            c.ping_workers(timeout=0.3)
        fake.restore(1)
        c.ping_workers(timeout=WAIT)


def test_connect_gives_up_at_its_deadline(fake):
    fake.router_silent = True
    with pytest.raises(NodeUnavailable,
                       match=rf"^router at {fake.endpoint} did not answer within 0\.3 s$"):
        actorsys.connect(fake.endpoint, connect_timeout=0.3)


def test_a_tell_just_sent_leaves_before_close_and_nothing_is_sent_after(fake):
    c = actorsys.connect(fake.endpoint)
    c.tell("T", "k", "note", "last words")
    c.close()
    c.close()
    fake.wait_for(lambda: [r for s in (0, 1) for r in fake.requests(s, wire.TELL)], "the tell")
    for call in (lambda: c.ask("T", "k", "get"), lambda: c.tell("T", "k", "note"), c.status):
        with pytest.raises(NodeUnavailable, match="client is closed"):
            call()
    out: list[BaseException] = []

    def other_thread() -> None:
        try:
            c.ask("T", "k", "get")
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=other_thread)
    t.start()
    t.join(WAIT)
    assert isinstance(out[0], NodeUnavailable) and "client is closed" in str(out[0])


def test_a_forked_child_that_closes_or_drops_the_client_leaves_the_parents_working(fake):
    """A child shares its parent's epoll instance behind each lane's loop: a child that
    closed an inherited client, or dropped it, used to unregister the parent's sockets
    there, and the parent's status, listing and resends then heard nothing (review
    finding)."""
    import os
    held = [actorsys.connect(fake.endpoint, timeout=3)]   # the only reference to the client
    try:
        assert held[0].status(timeout=3) is not None
        for how in ("close", "drop"):
            pid = os.fork()
            if pid == 0:                      # the child: close or drop it, then leave
                try:
                    if how == "close":
                        held[0].close()
                    else:
                        held.clear()
                        gc.collect()
                finally:
                    os._exit(0)
            assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
            assert held[0].status(timeout=3) is not None, f"after a child's {how}"
            assert held[0].ask("T", "k", "m", 1)[1] == "m"
    finally:
        held[0].close()


def test_close_fails_a_wait_in_another_thread_at_once(tmp_path):
    """close() while another thread waits on a request that runs its lane's loop: the
    wait fails with NodeUnavailable now, not at its deadline (review finding)."""
    import time
    with FakeNode(str(tmp_path)) as f:
        c = actorsys.connect(f.endpoint, timeout=8)
        f.router_silent = True                       # STATUS goes unanswered
        out: dict[str, Any] = {}

        def wait() -> None:
            t0 = time.monotonic()
            try:
                c.status(timeout=8)
            except NodeUnavailable as exc:
                out["error"] = str(exc)
            out["took"] = time.monotonic() - t0

        t = threading.Thread(target=wait)
        t.start()
        time.sleep(0.3)
        c.close()
        t.join(WAIT)
        assert not t.is_alive()
        assert "closed" in out.get("error", ""), out
        assert out["took"] < 3, f"expected the wait to end at close, took {out['took']:.1f} s"


@pytest.mark.timeout(30)
def test_a_reply_another_worker_delivers_ends_a_blocking_wait(tmp_path):
    """A replicated shard's follower delivers the leader's reply on the asker's connection
    to its own worker (by the asker's routing id): a blocking wait on the leader's slot
    reads every slot connection, hinted or not (a wait on the leader's alone would sit
    until the ask's deadline)."""
    def serve(slot: int, req: list) -> Any:
        if req[0] == wire.ASK and req[4] == "write":
            return (1 - slot, ok(req[1], f"delivered by slot {1 - slot}"))
        return echo(slot, req)
    with FakeNode(str(tmp_path), serve=serve) as fake, actorsys.connect(fake.endpoint) as c:
        k0, k1 = key_on(c, 0), key_on(c, 1)
        assert c.ask("T", k1, "get")[0] == 1, "(connected to slot 1)"
        for _ in range(20):
            assert c.ask("T", k0, "write", timeout=60) == "delivered by slot 1"
        lane = c._lane()
        assert {bytes(s.sock.getsockopt(zmq.ROUTING_ID)) for s in lane.transport.conns.slots.values()} \
            == {lane.transport.routing_id}, "one routing id on every slot, of the client's making"


def test_a_reply_naming_a_worker_connects_the_client_there(tmp_path):
    """A leader's reply that a follower could not deliver names the follower's worker
    (``[OK, id, result, endpoint]``): the client connects there (a worker of its map only)."""
    def serve(slot: int, req: list) -> Any:
        if req[0] == wire.ASK:
            return wire.pack([wire.OK, req[1], "ok", req[5][0]])
        return echo(slot, req)
    with FakeNode(str(tmp_path), serve=serve) as fake, actorsys.connect(fake.endpoint) as c:
        t = c._lane().transport
        k0 = key_on(c, 0)
        assert c.ask("T", k0, "a", "ipc:///nowhere/not-in-the-map") == "ok"
        assert set(t.conns.slots) == {0}
        assert c.ask("T", k0, "a", fake.worker_endpoints[1]) == "ok"
        assert set(t.conns.slots) == {0, 1}
