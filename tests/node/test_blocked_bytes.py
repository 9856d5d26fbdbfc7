"""Bytes bounded even while a worker's loop is blocked (issue 20): ZeroMQ keeps reading
into a worker's receive queue while a sync handler blocks its loop, where admission
(``max_queued_bytes``) cannot see it. The queue is sized in messages from the limits
(``runtime/worker.py``: ``receive_hwm``), so a flood of large tells at a blocked worker
costs it at most about ``max(max_queued_bytes, 16 * max_message_bytes)`` per connection,
and the sender sees Overloaded once its own queue is full.

Before: 3,000 tells of 100 KB grew the worker by about 100 MB (a queue of 1,000 messages)."""
from __future__ import annotations

import asyncio
import threading
import time

import psutil
from helpers import make_config

import actorsys
from actorsys.testing.nodes import key_on_slot

MAX_MESSAGE = 256 * 1024
MAX_QUEUED = 4 * 1024 * 1024
#: what one connection may queue at a blocked worker (runtime/worker.py: receive_hwm)
BOUND = max(MAX_QUEUED, 16 * MAX_MESSAGE)
#: the kernel's socket buffers, the allocator's slack and the message being decoded
SLACK = 12 * 1024 * 1024
TELLS, SIZE = 2000, 200 * 1000      # 400 MB offered


def test_a_flood_of_large_tells_at_a_blocked_worker_is_bounded_and_refused(tmp_path):
    cfg = make_config(str(tmp_path / "data"), max_message_bytes=MAX_MESSAGE,
                      max_queued_bytes=MAX_QUEUED)
    with actorsys.Node(cfg) as node:
        c = node.client()
        key = key_on_slot(c, "Counter", 0, "flooded")
        pid = c.ask("Counter", key, "pid")
        worker = psutil.Process(pid)
        before = worker.memory_info().rss
        counted = slot0(node)
        sleeper = threading.Thread(target=c.ask, args=("Counter", key, "sleep", 4.0),
                                   kwargs={"timeout": 20})
        sleeper.start()
        time.sleep(0.2)                  # the worker's loop is blocked from here on
        blob = b"x" * SIZE

        async def flood() -> tuple[int, int, int]:
            accepted = refused = 0
            async with actorsys.connect_async(node.endpoint) as ac:
                for i in range(TELLS):
                    try:
                        ac.tell("Counter", key, "weigh", blob)
                        accepted += 1
                    except actorsys.Overloaded:
                        refused += 1
                    if i % 32 == 0:
                        await asyncio.sleep(0)      # (its loop sends what it queued)
                await asyncio.sleep(0.5)            # ZeroMQ moves what it can meanwhile
                grown = worker.memory_info().rss - before
                sleeper.join()                      # (the worker's loop runs again)
                deadline = time.monotonic() + 15
                while True:         # an ask after them: the accepted tells were delivered first
                    try:
                        await ac.ask("Counter", key, "get", timeout=10)
                        break
                    except actorsys.Overloaded:     # (its queue is still full: drained soon)
                        assert time.monotonic() < deadline, "the sender's queue never drained"
                        await asyncio.sleep(0.05)
            return accepted, refused, grown

        accepted, refused, grown = asyncio.run(flood())
        assert grown < BOUND + SLACK, \
            f"the blocked worker grew by {grown / 1e6:.1f} MB (bound {BOUND / 1e6:.1f} MB + slack)"
        assert refused > 0 and accepted < TELLS, \
            f"the sender saw no back-pressure: {accepted} accepted, {refused} refused"
        # the node works as before: the same worker, answering; every tell it took was run
        # or refused (counted) by admission
        assert c.ask("Counter", key, "add", 1) == 1
        w = slot0(node)
        assert w["pid"] == pid and w["answered"], w
        taken = w["turns"] - counted["turns"] + w["overloaded"] - counted["overloaded"]
        assert taken >= accepted, (accepted, counted, w)


def slot0(node: actorsys.Node) -> dict:
    return next(p for p in node.status()["processes"] if p["role"] == "worker" and p["slot"] == 0)
