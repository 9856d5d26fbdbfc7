"""``durability = "fsync"`` (issue 19): many concurrent asks are all answered in order per
actor, and a kill -9 of a worker loses no acknowledged write (the output gate holds
with a commit that waits on the disk)."""
from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import actorsys
from actorsys.testing.nodes import wait_until, worker_pids


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
        c = node.client()
        keys = [f"k9-{i}" for i in range(16)]
        attempted = {k: 0 for k in keys}
        acked = {k: 0 for k in keys}
        errors: list[str] = []
        stop = threading.Event()

        def writer(mine: list[str]) -> None:
            while not stop.is_set():
                for k in mine:
                    attempted[k] += 1
                    try:
                        n = c.ask("Counter", k, "add", 1, timeout=5.0)
                    except (actorsys.WorkerLost, actorsys.AskTimeout) as exc:
                        errors.append(type(exc).__name__)
                        continue
                    except BaseException as exc:
                        errors.append(repr(exc))
                        raise
                    acked[k] += 1
                    if n < acked[k]:
                        errors.append(f"{k}: add returned {n} after {acked[k]} acknowledged adds")

        writers = [threading.Thread(target=writer, args=(keys[i::4],)) for i in range(4)]
        for t in writers:
            t.start()
        try:
            for victim in (0, 1, 0):
                time.sleep(0.4)
                before = worker_pids(node)
                os.kill(before[victim], signal.SIGKILL)
                wait_until(lambda: (p := _pids(node)) is not None and  # noqa: B023
                           p.get(victim) not in (None, before[victim]),  # noqa: B023
                           f"worker slot {victim} restarted", 15)
            time.sleep(0.4)
        finally:
            stop.set()
            for t in writers:
                t.join(15)
        unexpected = [e for e in errors if e not in ("WorkerLost", "AskTimeout")]
        assert not unexpected, f"expected only WorkerLost/AskTimeout around kills: {unexpected}"
        assert sum(acked.values()) > 0
        final = {k: c.ask("Counter", k, "get", timeout=10) for k in keys}
        lost = {k: (final[k], acked[k]) for k in keys if final[k] < acked[k]}
        assert not lost, f"acknowledged writes lost (value, acknowledged): {lost}"
        extra = {k: (final[k], attempted[k]) for k in keys if final[k] > attempted[k]}
        assert not extra, f"counters above the adds attempted (value, attempted): {extra}"


def _pids(node: actorsys.Node) -> dict[int, int] | None:
    try:
        return worker_pids(node)
    except actorsys.ActorError:
        return None
