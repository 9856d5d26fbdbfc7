"""Bounds: a full mailbox is an error the caller sees at once, not unbounded memory."""
import asyncio
from typing import Any

import psutil

import pytest

import actorsys
from actorsys.testing.nodes import wait_until, worker_pids


def test_full_mailbox_answers_overloaded_and_keeps_serving(config):
    async def flood(endpoint):
        async with actorsys.connect_async(endpoint, timeout=30) as c:
            ref = c.ref("Counter", "busy")
            # one slow turn occupies the actor; the next five fill its mailbox
            results = await asyncio.gather(*(ref.ask("slow_add", 1, 0.5) for _ in range(20)),
                                           return_exceptions=True)
            return results, await ref.ask("get")

    with actorsys.Node(config(mailbox_limit=5)) as node:
        results, final = asyncio.run(flood(node.endpoint))
    overloaded = [r for r in results if isinstance(r, actorsys.Overloaded)]
    done = [r for r in results if isinstance(r, int)]
    assert len(overloaded) == 20 - 6, f"expected 14 Overloaded (1 running + 5 queued), got {results}"
    assert "mailbox" in str(overloaded[0]), str(overloaded[0])
    assert len(done) == 6 and final == 6, f"the admitted turns all ran: {results}, final {final}"


def test_client_refuses_a_message_over_the_node_limit_before_sending(config):
    with actorsys.Node(config(max_message_bytes=4096)) as node:
        ref = node.client().ref("Log", "big")
        with pytest.raises(actorsys.MessageTooLarge, match="4096"):
            ref.ask("append", "x" * 10_000)
        assert ref.ask("append", "small") == 1, "the node keeps serving after the refusal"


def _rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def test_flooding_one_actor_is_refused_with_overloaded_and_worker_memory_stays_bounded(config):
    """3,000 asks of 100 KB (300 MB) at one busy actor: the worker queues at most
    max_queued_bytes (8 MiB) of them and refuses the rest at once."""
    blob = "b" * 100_000
    sampled: list[int] = []

    async def flood(endpoint: str, pid: int) -> tuple[list, Any, list]:
        async with actorsys.connect_async(endpoint, timeout=60) as c:
            ref = c.ref("Sink", "s")
            hold = asyncio.ensure_future(ref.ask("hold", 5.0))
            await asyncio.sleep(0.2)            # the hold turn is running
            order: list[str] = []

            async def one() -> Any:
                try:
                    return await ref.ask("take", blob)
                except actorsys.Overloaded as exc:
                    order.append("overloaded" if not hold.done() else "overloaded after hold")
                    return exc

            tasks = []
            for i in range(3000):
                tasks.append(asyncio.ensure_future(one()))
                if i % 100 == 0:
                    await asyncio.sleep(0)       # let the client's socket drain
                    sampled.append(_rss(pid))
            while not hold.done():
                sampled.append(_rss(pid))
                await asyncio.sleep(0.05)
            results = await asyncio.gather(*tasks)
            return results, await hold, order

    with actorsys.Node(config(workers=1, max_queued_bytes="8MiB")) as node:
        pid = worker_pids(node)[0]
        before = _rss(pid)
        results, held, order = asyncio.run(flood(node.endpoint, pid))
        overloaded = [r for r in results if isinstance(r, actorsys.Overloaded)]
        taken = [r for r in results if isinstance(r, int)]
        assert held == "held"
        assert len(overloaded) + len(taken) == 3000, \
            [r for r in results if not isinstance(r, (int, actorsys.Overloaded))][:3]
        assert 0 < len(taken) <= 8 * 2**20 // 100_000 + 1, \
            f"expected at most ~83 of 100 KB messages queued within 8 MiB, {len(taken)} were"
        assert "max_queued_bytes" in str(overloaded[0]), overloaded[0]
        assert set(order) == {"overloaded"}, "every refusal came while the actor was still busy"
        growth = max(sampled) - before
        print(f"flood: {len(taken)} taken, {len(overloaded)} Overloaded, worker RSS "
              f"{before / 2**20:.0f} MB before, peak +{growth / 2**20:.1f} MB")
        assert growth < 64 * 2**20, f"worker grew by {growth / 2**20:.0f} MB while flooded with 300 MB"
        w = next(p for p in node.status()["processes"] if p["role"] == "worker")
        # (the client's own send queue to the slot is bounded too: 1,000 frames of a
        # coalescing transport, client/outbox.py; what it refused never reached the worker)
        at_client = [o for o in overloaded if "send queue to worker slot" in str(o)]
        assert w["overloaded"] == len(overloaded) - len(at_client) and w["queued_bytes"] == 0, w
        assert node.client().ref("Sink", "s").ask("take", "after") == len(taken) + 1


def test_a_client_refuses_asks_beyond_max_pending_asks_at_once(config):
    async def run(endpoint: str) -> tuple[list, Any]:
        async with actorsys.connect_async(endpoint, timeout=30, max_pending=50) as c:
            ref = c.ref("Sink", "p")
            hold = asyncio.ensure_future(ref.ask("hold", 1.0))
            futs = []
            refused = 0
            for _ in range(200):
                try:
                    futs.append(ref.ask("take", "x"))
                except actorsys.Overloaded as exc:
                    refused += 1
                    assert "pending" in str(exc), exc
            return [refused, await asyncio.gather(*futs)], await hold

    with actorsys.Node(config(workers=1)) as node:
        (refused, answers), held = asyncio.run(run(node.endpoint))
    assert held == "held" and refused == 200 - 49, f"49 asks fit beside the hold, got {refused} refused"
    assert answers == list(range(1, 50)), "the admitted asks all ran, in order"


def test_queued_messages_hold_their_wire_size_not_their_decoded_size(config):
    """A 1 MB message of empty maps decodes to ~70 MB; eight of them queued at a busy
    actor within max_queued_bytes = 8 MiB once grew the worker by 556 MB."""
    blob = [{}] * (1_000_000 - 64)
    with actorsys.Node(config(workers=1, max_queued_bytes="8MiB")) as node:
        pid = worker_pids(node)[0]
        c = node.client()
        ref = c.ref("Counter", "busy")
        ref.ask("get")
        ref.tell("slow_add", 1, 10.0)      # busy (awaiting) while the big tells queue
        before = _rss(pid)

        def worker() -> dict:
            return next(p for p in c.status()["processes"] if p["role"] == "worker")

        for _ in range(12):
            ref.tell("add", blob)
        wait_until(lambda: worker()["overloaded"] >= 4, "the worker refused the last four tells", 30)
        growth = _rss(pid) - before
        w = worker()
        print(f"expansion: {w['queued_bytes']} bytes queued, {w['overloaded']} refused, "
              f"worker RSS +{growth / 2**20:.0f} MB")
        assert w["overloaded"] == 4 and 7_900_000 < w["queued_bytes"] <= 8 * 2**20, w   # 8 of ~1 MB
        assert growth < 100 * 2**20, f"worker grew by {growth / 2**20:.0f} MB holding 8 MB of messages"
