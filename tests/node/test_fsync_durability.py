"""``durability = "fsync"`` (issue 19): many concurrent asks are all answered in order per
actor, and a kill -9 of a worker loses no acknowledged write (the output gate holds
with a commit that waits on the disk)."""
from __future__ import annotations

import asyncio

from helpers import writes_through_kills

import actorsys


def test_many_concurrent_asks_in_fsync_mode_are_all_answered(config):
    with actorsys.Node(config(durability="fsync")) as n:
        keys = [f"f{i}" for i in range(40)]

        async def run() -> list[list[int]]:
            async with actorsys.connect_async(n.endpoint, timeout=30) as c:
                asks = [[c.ref("Counter", k).ask("add", 1, timeout=30) for _ in range(50)]
                        for k in keys]
                return [list(await asyncio.gather(*per)) for per in asks]
        got = asyncio.run(run())
        # each actor's asks ran in the order sent, and every one was answered
        assert got == [list(range(1, 51))] * len(keys)
        c = n.client()
        assert [c.ask("Counter", k, "get") for k in keys] == [50] * len(keys)


def test_kill_9_in_fsync_mode_loses_no_acknowledged_write(config):
    with actorsys.Node(config(durability="fsync")) as node:
        progress = writes_through_kills(node, [f"k9-{i}" for i in range(16)], threads=4,
                                        kills=[[0], [1], [0]], pause=0.4)
        assert progress[-1] > 0
