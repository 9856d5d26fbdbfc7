"""Handing the leadership of replicated shards to their desired leaders (issue 16).

:class:`Transfers` carries out the transfer step of a leader's pass (``replicas.py``):
for each target node, the shards whose leadership goes to it (each a follower that holds
the shard's last write, or is streamed its batches and lacks at most
:data:`TRANSFER_LAG` of them: :func:`near`), one ``handoff.Handoff.transfer`` per
:data:`~.ownership.BATCH` shards, up to ``WRITES_AT_ONCE`` of them at once. A target
whose batch failed gets no more batches in that pass, and a backoff before the next
(:meth:`Transfers.due` leaves it out until then).

Invariant: :attr:`~Transfers.backoff` maps a node to (the monotonic time before which no
transfer to it is tried, the last delay): set when a batch to it failed
(:data:`BACKOFF_FIRST` doubling up to :data:`BACKOFF_MAX`), removed only by a pass that
gave it shards and had no batch to it fail.
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping

from ..log import get_logger
from .handoff import ChangedMeanwhile, Handoff, HandoffFailed, Unresolved
from .ownership import BATCH, Owned
from .replica_asks import ReplicaAsks
from .replica_writes import WRITES_AT_ONCE

if TYPE_CHECKING:
    from .coordinator import Coordinator

log = get_logger("cluster")

#: batches a streaming follower may lack of a shard's last writes and still be given its
#: leadership (its appends on their way: the transfer's catch-up step waits them out in
#: milliseconds; with none allowed, a shard written every few seconds waited a pass or
#: more, and a hand-back trailed off over half a minute in single shards)
TRANSFER_LAG = 4
#: seconds before a leadership transfer to a node is tried again after one failed
#: (doubling up to the max)
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0


def near(progress: Mapping[str, Any], to: str) -> bool:
    """Whether follower ``to`` holds a shard's last write, or is streamed its batches
    and lacks at most TRANSFER_LAG of them (``progress``: the leader's ``replication``
    answer for the shard). One being caught up from the log is left for a later pass."""
    held, seq = (progress.get("held") or {}).get(to), progress.get("seq")
    if not isinstance(held, int) or not isinstance(seq, int):
        return False
    return held == seq or (to in (progress.get("streaming") or ())
                           and 0 <= seq - held <= TRANSFER_LAG)


class Transfers:
    """The leadership transfers of one node's coordinator ``co`` (see the module
    docstring); the positions it compares come from ``asks``."""

    def __init__(self, co: "Coordinator", asks: ReplicaAsks) -> None:
        self.co, self.asks = co, asks
        #: node -> (monotonic time before which no transfer to it is tried, last delay)
        self.backoff: dict[str, tuple[float, float]] = {}

    def due(self, moves: Mapping[str, list[int]]) -> dict[str, list[int]]:
        """``moves`` (target node -> shards) without the targets still backed off, nor
        those left with no shard; each one's shards sorted."""
        now_t = time.monotonic()
        return {to: sorted(v) for to, v in moves.items()
                if v and self.backoff.get(to, (0.0, 0.0))[0] <= now_t}

    async def run(self, moves: Mapping[str, list[int]]) -> bool:
        """Give the leadership of ``moves`` (target node -> shards) to those followers:
        one :meth:`Handoff.transfer` per :data:`BATCH` shards, up to
        :data:`WRITES_AT_ONCE` of them at once (disjoint shards: each batch is a transfer
        of its own, safe alone; one after the other, a hand-back of 600 shards took 10
        to 45 s in the chaos runs, most of it waiting on etcd and on drains). A target
        whose batch failed gets no more batches in this pass, and a backoff. True if any
        record changed."""
        co = self.co

        def is_target(node_id: str) -> bool:
            m = co.membership.members.get(node_id)
            return m is not None and not m.leaving

        def behind(to: str) -> Callable[[Mapping[int, Owned]], Awaitable[set[int]]]:
            async def check(marked: Mapping[int, Owned]) -> set[int]:
                # our position (our worker stops tracking a revoked shard's peers once they
                # all hold it, so T's own answer is the word): T's position must equal ours
                ours = await self.asks.progress(sorted(marked))
                theirs = await self.asks.peer_positions(to, sorted(marked))
                return {s for s in marked if not (
                    s in ours and s in theirs
                    and theirs[s] == (ours[s].get("epoch"), ours[s].get("seq")))}
            return check

        handoffs = {to: Handoff(co.ownership, co.me, co.call, co.workers, co.home, co.stop_serving,
                                co.serve_again, is_target, co.merge) for to in moves}
        failed: set[str] = set()
        done: dict[str, int] = dict.fromkeys(moves, 0)
        ended: dict[str, float] = {}
        reread = False
        limit = asyncio.Semaphore(WRITES_AT_ONCE)

        async def one(to: str, part: list[int]) -> None:
            try:
                await one_batch(to, part)
            finally:
                ended[to] = time.monotonic()

        async def one_batch(to: str, part: list[int]) -> None:
            nonlocal reread
            async with limit:
                batch = [s for s in part if s in co.owned and co.owned[s].owner == co.me
                         and co.owned[s].to is None]
                if not batch or to in failed:
                    return
                try:
                    new = await handoffs[to].transfer(to, {s: co.owned[s] for s in batch},
                                                      behind(to))
                except ChangedMeanwhile:
                    co.moving.difference_update(batch)
                    reread = True
                    return
                except HandoffFailed as exc:
                    co.moving.difference_update(batch)
                    if to not in failed:
                        failed.add(to)
                        delay = min(self.backoff.get(to, (0.0, 0.0))[1] * 2 or BACKOFF_FIRST,
                                    BACKOFF_MAX)
                        self.backoff[to] = (time.monotonic() + delay, delay)
                        log.error("%s; the next transfer to %s in %g s", exc, to, delay)
                    return
                except Unresolved as exc:
                    exc.hold(co.moving, co.unresolved)
                    failed.add(to)
                    return
                co.moving.difference_update(batch)
                co.merge(new)
                done[to] += len(new)

        started = time.monotonic()
        # (batch by batch across the targets, so that each gets going at once)
        parts = sorted(((i, to, shards[i:i + BATCH]) for to, shards in moves.items()
                        for i in range(0, len(shards), BATCH)), key=lambda x: (x[0], x[1]))
        results = await asyncio.gather(*(one(to, part) for _i, to, part in parts),
                                       return_exceptions=True)
        if reread:
            co.merge(await co.ownership.read())
        for to, n in done.items():
            if n and to not in failed:
                self.backoff.pop(to, None)
            if n:
                log.info("node %s gave the leadership of %d shards to %s (%.2f s; summed over "
                         "its batches: %s)", co.me, n, to, ended[to] - started,
                         ", ".join(f"{k} {v:.2f} s" for k, v in handoffs[to].took.items()))
        for r in results:      # (after every batch ended: none is left running on its own)
            if isinstance(r, BaseException):
                raise r
        return reread or any(done.values())
