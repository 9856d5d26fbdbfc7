"""Failover of the shards of dead leaders (issue 16; ``[cluster] replicas`` > 1).

:class:`Failover` is run by the lowest live member only, at every change (the
coordinator sets :attr:`~Failover.wake`) and at least every second, while the node is
active and its lease's fence lets it serve. A pass (:meth:`Failover.run`) takes the
shards whose owner is not live and that have followers, asks their live followers'
workers for their positions with the fence ``epoch + 1`` (``ReplicaAsks.positions``),
plans the winners (:func:`~.replica_plans.plan_failover`: only where fewer voters than
the quorum did not answer) and writes them (``ReplicaWrites.write``). Why that is safe:
the docstring of ``replicas.py``. Shards with no live follower wait for their owner.

Invariant: :attr:`~Failover._last_failover` is the summary of the last pass logged; a
pass that failed nothing over and ends as the last one did is not logged again (a
lasting wait is logged once).
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from ..log import get_logger
from .replica_asks import ReplicaAsks
from .replica_plans import NO_COPY, plan_failover
from .replica_writes import ReplicaWrites

if TYPE_CHECKING:
    from .coordinator import Coordinator

log = get_logger("cluster")


class Failover:
    """The failover of dead leaders' shards by one node's coordinator ``co`` (see the
    module docstring): asks through ``asks``, writes through ``writes``."""

    def __init__(self, co: "Coordinator", asks: ReplicaAsks, writes: ReplicaWrites) -> None:
        self.co, self.asks, self.writes = co, asks, writes
        self.ack = co.ccfg.ack
        #: set at every change: the next pass runs at once
        self.wake = asyncio.Event()
        #: (failed over, orphans, stuck, stuck on empty copies) of the last failover pass logged
        self._last_failover: tuple[int, int, int, int] = (0, 0, 0, 0)

    async def failover_loop(self) -> None:
        """``replicas`` > 1: the lowest live member fails over the shards of dead leaders,
        at every change and every second."""
        co = self.co
        loop = asyncio.get_running_loop()
        while True:
            # (not wait_for: on 3.11 it can swallow a cancellation that races with the
            # event, set at every change, and then leave() would wait on this loop forever)
            try:
                async with asyncio.timeout(1.0):
                    await self.wake.wait()
            except TimeoutError:
                pass
            self.wake.clear()
            live = sorted(co.membership.members)
            if not co.active or not live or live[0] != co.me or \
                    not co.membership.fence.may_serve(loop.time()):
                continue
            try:
                await self.run()
            except Exception as exc:      # logged; the next wake tries again
                log.error("failing over the shards of dead nodes failed: %s: %s",
                          type(exc).__name__, exc)
                await asyncio.sleep(0.5)

    async def run(self) -> int:
        """One pass: promote a follower of each shard whose leader is not live (see the
        module docstring). Returns the shards failed over."""
        co = self.co
        live = set(co.membership.members)
        orphans = {s: r for s, r in co.owned.items() if r.owner not in live and r.followers}
        if not orphans:
            return 0
        started = time.monotonic()
        positions = await self.asks.positions(orphans)
        new, stuck = plan_failover(orphans, live, positions, self.ack)
        done = await self.writes.write(new) if new else 0
        empty = sum(1 for s in stuck if positions.get(s)
                    and all(tuple(p) == NO_COPY for p in positions[s].values()))
        seen = (done, len(orphans), len(stuck), empty)
        if done or seen != self._last_failover:      # (a lasting wait is logged once)
            self._last_failover = seen
            dead = sorted({r.owner for r in orphans.values()})
            log.info("failover of the shards of %s: %d of %d moved to a follower, %d wait for "
                     "more of their voters or their leader (%d of them: every answering "
                     "follower holds no complete copy) (%.2f s)", ", ".join(dead[:5]), done,
                     len(orphans), len(stuck), empty, time.monotonic() - started)
        return done
