"""When a node places its shards (issue 15): the loop that plans and carries out moves.

:class:`Rebalance` runs one pass at every change (``Coordinator`` sets
:attr:`~Rebalance.wake`) and at least every second, while the node is serving or leaving
and its lease's fence lets it serve. A pass, in order:

1. claims every unowned shard if this node is the first member (one that died while
   claiming leaves some);
2. resolves the shards of a move that etcd failed (``Moves.resolve``);
3. ``replicas`` > 1: drops the copies this node no longer replicates
   (``replica_following.py``), then drives the replica sets it leads over the live,
   settled members (``Replicas.drive``); ``replicas = 1``: moves the shards that belong
   elsewhere (``Moves.plan``, ``Moves.move_all``);
4. a leaving node with nothing left here ends its leave (``Coordinator.finish_leaving``;
   this loop then ends).

A pass that changed something wakes the next at once; a failed one (an error, or a move
rolled back) first sleeps its backoff, so that a lasting failure is no busy loop.

Invariants: :attr:`~Rebalance.backoff` is 0.0 after a pass that went well, else the last
delay slept (:data:`BACKOFF_FIRST` doubling up to :data:`BACKOFF_MAX`); the
coordinator's ``progress`` is None between passes.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..log import get_logger

if TYPE_CHECKING:
    from .coordinator import Coordinator

log = get_logger("cluster")

#: seconds before a move to a node is tried again after one failed (doubling up to the max)
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0


class Rebalance:
    """The placement loop of one coordinator ``co`` (see the module docstring)."""

    def __init__(self, co: "Coordinator") -> None:
        self.co = co
        #: set at every change (and by a leave): the next pass runs at once
        self.wake = asyncio.Event()
        #: seconds to wait after a failed move (0: the last one went well)
        self.backoff = 0.0

    async def rebalance_loop(self) -> None:
        co = self.co
        loop = asyncio.get_running_loop()
        while True:
            try:              # (not wait_for: see Failover.failover_loop)
                async with asyncio.timeout(1.0):
                    await self.wake.wait()
            except TimeoutError:
                pass
            self.wake.clear()
            if not co.active:
                continue
            if not co.membership.fence.may_serve(loop.time()):
                continue
            try:
                await co.claim_if_first()      # (a first node that died while claiming)
                if co.unresolved:
                    await co.moves.resolve()
                if co.ccfg.replicas > 1:
                    await co.replicas.following.drop_released()
                    live, settled = co.moves.candidates()
                    again = await co.replicas.drive([n for n in live if n in settled])
                    if co.leaving and co.count_mine() == 0:
                        await co.finish_leaving()
                        return
                    failed = False
                    if not again:
                        continue
                else:
                    plan = co.moves.plan()
                    if not plan:
                        if co.leaving and co.count_mine() == 0 and not any(
                                r.to == co.me for r in co.owned.values()):
                            await co.finish_leaving()
                            return
                        continue
                    failed = not await co.moves.move_all(plan)
            except Exception as exc:      # logged; the next wake plans again
                log.error("moving shards failed: %s: %s", type(exc).__name__, exc)
                failed = True
            finally:
                co.progress = None
            if failed:                    # (a lasting failure must not become a busy loop)
                self.backoff = min(self.backoff * 2 or BACKOFF_FIRST, BACKOFF_MAX)
                await asyncio.sleep(self.backoff)
            else:
                self.backoff = 0.0
            self.wake.set()
