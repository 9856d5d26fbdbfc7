"""Exactly-once asks against real processes: a repeated request id is answered with the
recorded reply without running the handler again (resident, and after kill -9); the
window of ids is bounded on disk; and ``retry=True`` makes every increment apply exactly
once while the hosting worker is killed with kill -9 again and again."""
from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

import actorsys
from actorsys.protocol.shardmap import shard_of
from actorsys.storage.keys import REQUEST, actor_prefix
from actorsys.testing.nodes import key_on_slot, kill_worker_of, slot_of, wait_until, worker_pids
from helpers import slot_dbs


def ask_with_id(node: actorsys.Node, key: str, method: str, request_id: bytes, *args) -> object:
    """One ask of Counter/key carrying the request id ``request_id`` (what a client's retry sends)."""
    async def go() -> object:
        async with actorsys.connect_async(node.endpoint) as c:
            return await c.transport.ask("Counter", key, method, args, {}, 10.0,
                                         ctx={"id": request_id})
    return asyncio.run(go())


def test_a_repeated_request_id_gets_the_recorded_reply_and_the_handler_runs_once(node):
    c = node.client()
    assert ask_with_id(node, "once", "add", b"request-1", 5) == 5
    assert ask_with_id(node, "once", "add", b"request-1", 5) == 5, "the recorded reply"
    assert c.ask("Counter", "once", "get") == 5, "the repeated ask did not run the handler"
    assert ask_with_id(node, "once", "add", b"request-2", 1) == 6, "a new id runs"

    kill_worker_of(node, c, "Counter", "once")
    assert ask_with_id(node, "once", "add", b"request-1", 5) == 5, \
        "the recorded reply survives kill -9 of the worker"
    assert ask_with_id(node, "once", "add", b"request-2", 1) == 6
    assert c.ask("Counter", "once", "get", retry=True) == 6


def test_the_asyncio_client_retries_by_default_when_connected_with_retry(node):
    c = node.client()
    slot = slot_of(c, "Counter", "aio")
    victim = worker_pids(node)[slot]

    async def go() -> list:
        async with actorsys.connect_async(node.endpoint, retry=True) as ac:
            ref = ac.ref("Counter", "aio")
            first = await ref.ask("add", 1)
            fut = ref.ask("add", 1, timeout=20.0)       # in flight as its worker is killed
            os.kill(victim, signal.SIGKILL)
            # (the get may be sent before the client has seen the drop: it retries too)
            return [first, await fut, await ref.ask("get")]

    assert asyncio.run(go()) == [1, 2, 2]


def test_a_failed_turn_is_not_recorded_so_its_retry_runs_again(node):
    c = node.client()
    with pytest.raises(actorsys.RemoteError):
        ask_with_id(node, "fails", "add_then_fail", b"request-f", 2)
    with pytest.raises(actorsys.RemoteError):
        ask_with_id(node, "fails", "add_then_fail", b"request-f", 2)   # ran again, failed again
    assert c.ask("Counter", "fails", "get") == 0


def test_the_window_of_request_ids_is_bounded_on_disk(config, tmp_path):
    with actorsys.Node(config(request_window=5)) as n:
        c = n.client()
        for _ in range(30):
            c.ask("Counter", "bounded", "add", 1)
        assert c.ask("Counter", "bounded", "get") == 30
        slot = slot_of(c, "Counter", "bounded")
        p = actor_prefix(shard_of("Counter", "bounded", c.map.shards), "Counter", "bounded")
        assert c.list_actors("Counter") == ["bounded"]
    db = slot_dbs(str(tmp_path / "data"))[slot]
    records = [k for k in db if k.startswith(p + REQUEST) and k != p + REQUEST]   # (the marker)
    assert len(records) == 5, f"expected the newest 5 request records, found {len(records)}"


def test_a_zero_window_records_nothing_and_a_repeat_runs_again(config, tmp_path):
    with pytest.raises(actorsys.ConfigError, match="request_window"):
        actorsys.Node(config(request_window=-1))
    with actorsys.Node(config(request_window=0)) as n:
        assert ask_with_id(n, "off", "add", b"request-z", 2) == 2
        assert ask_with_id(n, "off", "add", b"request-z", 2) == 4, "no window: it ran again"
        slot = slot_of(n.client(), "Counter", "off")
        p = actor_prefix(shard_of("Counter", "off", n.client().map.shards), "Counter", "off")
    db = slot_dbs(str(tmp_path / "data"))[slot]
    assert p + b"s" in db and not [k for k in db if k.startswith(p + REQUEST)]


def test_destroy_deletes_the_request_records_and_does_not_count_them(config, tmp_path):
    with actorsys.Node(config()) as n:
        c = n.client()
        assert ask_with_id(n, "gone", "add", b"request-d", 3) == 3
        c.ask("Counter", "gone", "add", 1)
        assert c.ask("Counter", "gone", "$destroy") == {"deleted": 1}, "the state alone is data"
        assert ask_with_id(n, "gone", "add", b"request-d", 3) == 3, "a new actor: it ran again"
        c.ask("Counter", "gone", "$destroy")
        slot = slot_of(c, "Counter", "gone")
        p = actor_prefix(shard_of("Counter", "gone", c.map.shards), "Counter", "gone")
    left = [k for k in slot_dbs(str(tmp_path / "data"))[slot] if k.startswith(p)]
    assert left == [], f"destroy left keys of the actor: {left}"


def test_retrying_asks_apply_every_increment_exactly_once_through_repeated_kill_9(node):
    c = actorsys.connect(node.endpoint, retry=True)
    keys = [f"x{i}" for i in range(8)]
    acked = {k: 0 for k in keys}
    errors: list[str] = []
    stop = threading.Event()

    def writer(my_keys: list[str]) -> None:
        while not stop.is_set():
            for k in my_keys:
                try:
                    n = c.ask("Counter", k, "add", 1, timeout=20.0)
                except BaseException as exc:      # with retry, every ask is acknowledged
                    errors.append(repr(exc))
                    return
                acked[k] += 1
                if n != acked[k]:
                    errors.append(f"{k}: add returned {n} after {acked[k]} acknowledged adds")
                    return

    writers = [threading.Thread(target=writer, args=(keys[i::2],)) for i in range(2)]
    for t in writers:
        t.start()
    kills = 0

    def progressing(what: str) -> None:
        done = sum(acked.values())
        wait_until(lambda: sum(acked.values()) > done + 20 or errors, what, timeout=30)

    def kill(victims: list[int]) -> None:
        before = worker_pids(node)
        for s in victims:
            os.kill(before[s], signal.SIGKILL)
        wait_until(lambda: all(worker_pids(node).get(s) not in (None, before[s]) for s in victims),
                   f"slots {victims} restarted", timeout=30)

    try:
        for victims in ([0], [1], [0, 1], [0], [1]):
            progressing("asks acknowledged between kills")
            kill(victims)
            kills += len(victims)
        progressing("asks acknowledged after the last restart")
    finally:
        stop.set()
        for t in writers:
            t.join(30)
    try:
        assert not errors, f"every retried ask should be acknowledged exactly once: {errors[:5]}"
        final = {k: c.ask("Counter", k, "get", timeout=10) for k in keys}
        print(f"{kills} kills, {sum(acked.values())} acknowledged adds")
        assert final == acked, "each counter should equal its acknowledged adds exactly"
    finally:
        c.close()


def test_an_ask_made_by_a_retried_turn_keeps_its_id_and_runs_once(node, tmp_path):
    """A's turn (no writes of its own: never recorded) asks Counter/B to add 1; A's worker
    is killed after B committed; the client's retry re-runs A's turn, whose ask carries
    the id it had the first time (derived from the retried ask's), so B adds once."""
    c = actorsys.connect(node.endpoint, retry=True)
    try:
        a = key_on_slot(c, "RelayPlus", 0, "a")
        b = key_on_slot(c, "Counter", 1, "b")
        marker, hold = str(tmp_path / "added"), str(tmp_path / "hold")
        open(hold, "w").close()
        out: dict[str, object] = {}
        t = threading.Thread(target=lambda: out.update(
            got=c.ask("RelayPlus", a, "add_then_hold", b, marker, hold, timeout=30.0)))
        t.start()
        wait_until(lambda: os.path.exists(marker), "B's add to commit and A to hold")
        os.kill(worker_pids(node)[0], signal.SIGKILL)     # A's turn is lost, B's add is not
        os.remove(hold)                                   # the re-run goes through
        t.join(35)
        assert out.get("got") == 1, f"expected the retried turn's ask answered from B's record: {out}"
        assert c.ask("Counter", b, "get") == 1, "expected B's add applied once"
    finally:
        c.close()
