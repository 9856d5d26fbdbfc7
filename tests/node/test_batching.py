"""Coalescing on a real node (issue 19): an asyncio client's messages of one loop turn
reach a worker as BATCH frames, a worker's tells from one commit likewise, and every
message is handled, answered and ordered as if it had come alone; a raw peer still sees
one reply per frame, and a batch's bad messages are answered one by one."""
from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Iterator

import msgpack
import pytest
import zmq
from helpers import make_config, module_node

import actorsys
from actorsys.protocol import wire

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[actorsys.Node]:
    # (a worker whose loop runs no timer for 2 s is killed as hung: a long batch must not)
    yield from module_node(make_config(str(tmp_path_factory.mktemp("coalescing") / "data"),
                                       heartbeat_timeout=2.0))


def workers(node: actorsys.Node) -> list[dict[str, Any]]:
    return [p for p in node.status()["processes"] if p["role"] == "worker"]


def test_a_burst_of_tells_and_asks_arrives_in_order_as_batches(node):
    before = sum(w["batches"] for w in workers(node))

    async def burst() -> tuple[list[list[int]], list[int]]:
        async with actorsys.connect_async(node.endpoint, timeout=30) as c:
            logs = [c.ref("Log", f"burst-{i}") for i in range(20)]
            asks = []
            for n in range(200):                # one turn of the loop: 4,000 tells, 200 asks
                for log in logs:
                    log.tell("append", n)
                asks.append(c.ref("Counter", f"burst-{n % 7}").ask("add", 1))
            counts = await asyncio.gather(*asks)
            return [await log.ask("items") for log in logs], counts
    items, counts = asyncio.run(burst())
    assert all(got == list(range(200)) for got in items), "every tell, once, in the order sent"
    assert sorted(counts) == sorted(n for k in range(7) for n in range(1, len(range(k, 200, 7)) + 1))
    assert sum(w["batches"] for w in workers(node)) - before >= 2, "they travelled as batches"


def test_an_actors_tells_of_one_commit_travel_as_a_batch(node):
    before = sum(w["batches"] for w in workers(node))
    c = node.client()
    relay = c.ref("RelayPlus", "fan")
    assert relay.ask("tell_many", "Log", "fanned", "append", list(range(500))) == 500
    log = c.ref("Log", "fanned")
    deadline = time.monotonic() + 30      # (the tells and this ask take different paths)
    while len(items := log.ask("items")) < 500 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert items == list(range(500)), "every tell, once, in the order sent"
    assert sum(w["batches"] for w in workers(node)) > before


def _raw(node: actorsys.Node, routing_id: bytes | None) -> tuple[zmq.Context, zmq.Socket, int]:
    """A raw DEALER to the worker slot that owns Counter/raw (with ``routing_id``, if any)."""
    c = node.client()
    slot = c.map.slot_of("Counter", "raw")
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if routing_id is not None:
        s.setsockopt(zmq.ROUTING_ID, routing_id)
    s.connect(c.map.endpoints[slot])
    return ctx, s, slot


def _ask(rid: int, method: str = "add", args: list | None = None) -> bytes:
    return wire.pack([wire.ASK, rid, "Counter", "raw", method, [1] if args is None else args, {}])


def _replies(s: zmq.Socket, n: int) -> list[list[Any]]:
    """``n`` replies, each frame as it came (a BATCH frame is one entry)."""
    out = []
    for _ in range(n):
        assert s.poll(10_000), f"only {len(out)} of {n} frames arrived"
        out.append(wire.unpack(s.recv()))
    return out


def _flat(s: zmq.Socket, n: int) -> list[list[Any]]:
    """``n`` replies, those of a BATCH frame taken out of it."""
    out: list[list[Any]] = []
    while len(out) < n:
        assert s.poll(10_000), f"only {len(out)} of {n} replies arrived"
        f = wire.unpack(s.recv())
        out.extend([wire.unpack(p) for p in f[2]] if f[0] == wire.BATCH else [f])
    return out


def test_a_batchs_bad_messages_are_answered_one_by_one(node):
    ctx, s, _slot = _raw(node, None)
    try:
        nested = wire.batch([_ask(90), _ask(91)])
        bad = b"\xc1 not msgpack"
        frame = wire.batch([_ask(1), bad, msgpack.packb([wire.ASK, 3, "Counter"]),
                            nested, _ask(5, "no_such_method"), _ask(6)])
        s.send(frame)
        replies = _flat(s, 6)
        assert not s.poll(300), "a reply too many"
        assert all(r[0] in (wire.OK, wire.ERR) for r in replies)
        # (a refusal runs nothing and leaves at once; an answer after its turn's commit)
        assert sorted(r[1] for r in replies) == [0, 0, 1, 3, 5, 6], "each answered once"
        got = {r[1]: r for r in replies}
        assert got[1][0] == wire.OK and got[6][0] == wire.OK and got[6][2] == got[1][2] + 1
        assert got[3][2]["code"] == "bad_request"
        zeros = sorted(r[2]["message"] for r in replies if r[1] == 0)
        assert "no batch" in zeros[0] and "undecodable" in zeros[1], zeros
        assert got[5][2]["code"] == "unknown_method"
    finally:
        s.close(0)
        ctx.term()


def test_a_peer_that_sends_a_batch_gets_its_replies_in_batches_one_that_does_not_alone(node):
    ctx, s, _slot = _raw(node, b"c" + os.urandom(8))
    try:
        for i in range(1, 6):                        # singles: each reply alone
            s.send(_ask(i))
        singles = _replies(s, 5)
        assert all(f[0] == wire.OK for f in singles)
        s.send(wire.batch([_ask(i) for i in range(10, 60)]))
        frames = []
        total = 0
        while total < 50:
            assert s.poll(10_000), f"{total} of 50 replies arrived"
            f = wire.unpack(s.recv())
            frames.append(f)
            total += len(f[2]) if f[0] == wire.BATCH else 1
        assert total == 50 and any(f[0] == wire.BATCH for f in frames)
        replies = [wire.unpack(p) for f in frames if f[0] == wire.BATCH for p in f[2]] + \
                  [f for f in frames if f[0] != wire.BATCH]
        assert sorted(r[1] for r in replies) == list(range(10, 60))
        values = [r[2] for r in sorted(replies, key=lambda r: r[1])]
        assert values == list(range(values[0], values[0] + 50)), "in the order sent"
    finally:
        s.close(0)
        ctx.term()


def test_a_long_batch_is_answered_in_groups_of_flush_at_as_it_goes(node):
    """The output gate releases every FLUSH_AT replies (commit.py), not once at the end of
    a frame: 300 asks to one actor in one batch come back in frames of at most FLUSH_AT
    replies, every one answered once and in order."""
    from actorsys.runtime.commit import FLUSH_AT
    n = 2 * FLUSH_AT + 44
    ctx, s, _slot = _raw(node, b"c" + os.urandom(8))
    try:
        s.send(wire.batch([_ask(i) for i in range(1, n + 1)]))
        frames: list[list[Any]] = []
        while sum(len(f[2]) if f[0] == wire.BATCH else 1 for f in frames) < n:
            assert s.poll(10_000), f"{len(frames)} frames arrived"
            frames.append(wire.unpack(s.recv()))
        sizes = [len(f[2]) if f[0] == wire.BATCH else 1 for f in frames]
        assert sum(sizes) == n and len(sizes) >= 3 and max(sizes) <= FLUSH_AT, sizes
        replies = [wire.unpack(p) if f[0] == wire.BATCH else f for f in frames
                   for p in (f[2] if f[0] == wire.BATCH else [None])]
        assert [r[1] for r in replies] == list(range(1, n + 1)), "each once, in order"
        values = [r[2] for r in replies]
        assert values == list(range(values[0], values[0] + n)), "each turn after the one before"
    finally:
        s.close(0)
        ctx.term()


def test_a_long_batch_lets_the_worker_breathe_and_is_not_killed_as_hung(node):
    """300 sync turns of 10 ms in one batch (3 s, with a 2 s heartbeat timeout): the
    worker goes on with the rest in later turns of its loop, its heartbeat between."""
    pids = {w["pid"] for w in workers(node)}

    async def burst() -> list[Any]:
        async with actorsys.connect_async(node.endpoint, timeout=30) as c:
            ref = c.ref("Counter", "breathe")
            return await asyncio.gather(*(ref.ask("sleep", 0.01, timeout=60) for _ in range(300)),
                                        return_exceptions=True)
    results = asyncio.run(burst())
    assert results == ["slept"] * 300, [r for r in results if r != "slept"][:3]
    assert {w["pid"] for w in workers(node)} == pids, "no worker was restarted"
