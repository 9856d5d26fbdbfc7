"""A leader's repairs of its own shards (issue 16; ``[cluster] replicas`` > 1).

:class:`Repairs` does two repairs:

* **resign** the shards whose copy its worker lost (a lost slot refuses them in its
  grant replies): a failover with this node counted as not answering hands each to a
  follower with a complete copy;
* **take back** the shards its followers were fenced for above its epoch while it was
  away (a failover that promoted no one): found after each new lease
  (:meth:`Repairs.check_fences`) or named by a grant reply (``stale``), not granted
  meanwhile, and written back with an epoch above the fence (:meth:`Repairs.reclaim`).

Both run in one background task, at most every :data:`RESIGN_PERIOD` s, started by
:meth:`Repairs.kick` (a grant reply, the grant loop).

Invariants: :attr:`~Repairs.lost` and :attr:`~Repairs.stale` name shards this node's
grants leave out (``Grants.granted``): ``lost[s]`` while we lead ``s`` at that epoch,
``stale[s]`` while our record's epoch is below it; at most one repair task and one
fence look run at a time (``tasks()``: cancelled when the coordinator closes).
"""
from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Mapping

from ..log import get_logger
from .handoff import CALL_TIMEOUT
from .ownership import Owned
from .replica_asks import ReplicaAsks
from .replica_plans import plan_failover
from .replica_writes import ReplicaWrites

if TYPE_CHECKING:
    from .coordinator import Coordinator

log = get_logger("cluster")

#: seconds between two attempts to resign the shards of a lost slot
RESIGN_PERIOD = 1.0
#: seconds after a new lease at which the followers' fences are looked for
FENCE_CHECKS = (1.0, 3.0, CALL_TIMEOUT + 2.0)


class Repairs:
    """The repairs of the shards one node's coordinator ``co`` leads (see the module
    docstring): asks through ``asks``, writes through ``writes``."""

    def __init__(self, co: "Coordinator", asks: ReplicaAsks, writes: ReplicaWrites) -> None:
        self.co, self.asks, self.writes = co, asks, writes
        self.ack = co.ccfg.ack
        #: shard -> the epoch of our record when our worker refused it as lost (its slot's
        #: database was lost and its copy there is empty: see :meth:`lost_now`); never
        #: granted again while we lead it with that epoch
        self.lost: dict[int, int] = {}
        #: shard -> the epoch our worker refused our grant of it below, or a follower's
        #: fence above our record's epoch (raised by a failover that promoted no one
        #: while we were away): not granted (``Grants.granted``) until taken back
        #: at a newer epoch by :meth:`reclaim`
        self.stale: dict[int, int] = {}
        self._resign_task: asyncio.Task[None] | None = None
        #: the look for raised fences after a new lease (:meth:`after_lease`)
        self._fence_task: asyncio.Task[None] | None = None
        self._resign_next = 0.0
        #: the lost shards already logged as having no replica to take them
        self._no_replica: set[int] = set()

    def lost_now(self) -> set[int]:
        """The shards we lead that our worker refused as lost (with the epoch it refused)."""
        owned, me = self.co.owned, self.co.me
        return {s for s, e in self.lost.items()
                if s in owned and owned[s].owner == me and owned[s].epoch == e}

    def refused_lost(self, slot: int, shards: list[int]) -> None:
        """Worker ``slot``'s grant reply: its database was lost and ``shards`` (granted)
        have no complete copy there. They are not granted again while we lead them, and
        are resigned (:meth:`resign`) in the background, at most every second."""
        co = self.co
        for s in shards:
            r = co.owned.get(s)
            if r is not None and r.owner == co.me and co.home[s] == slot:
                self.lost[s] = r.epoch
        self.kick()

    def stale_grant(self, stale: Mapping[Any, Any]) -> None:
        """A grant reply's ``stale``: shard -> the epoch our worker saw (a fence, or a
        grant) above the one we granted. Those we still lead, unmarked, by our records,
        are taken back at a newer epoch (:meth:`reclaim`, in the background)."""
        for key, epoch in stale.items():
            self._note_fenced(int(key), int(epoch))
        if self.stale:
            self.kick()

    def _note_fenced(self, s: int, fence: int) -> bool:
        """Mark ``s`` to be taken back if we still lead it, unmarked, below ``fence``;
        True if it was not marked yet."""
        r = self.co.owned.get(s)
        if r is None or r.owner != self.co.me or r.to is not None or r.epoch >= fence:
            return False
        new = s not in self.stale
        self.stale[s] = max(fence, self.stale.get(s, 0))
        return new

    def after_lease(self) -> None:
        """This node registered under a new lease (it started, or came back after its
        lease expired): a failover may have raised the fences of shards it still leads
        meanwhile. Looked for (:meth:`check_fences`) at :data:`FENCE_CHECKS` (the last
        once a failover pass begun before could have ended: a follower that does not
        answer holds it up to CALL_TIMEOUT), so that those shards are taken back before
        a write is refused for them; a fence found otherwise shows in a grant reply
        (after a write refused with ShardUnavailable)."""
        if self._fence_task is not None and not self._fence_task.done():
            self._fence_task.cancel()
        self._fence_task = asyncio.get_running_loop().create_task(self._check_fences_later())

    async def _check_fences_later(self) -> None:
        t0 = time.monotonic()
        for at in FENCE_CHECKS:
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            if not self.co.active:
                continue
            try:
                await self.check_fences()
            except asyncio.CancelledError:
                raise
            except Exception as exc:       # (a grant reply still shows a fence later)
                log.warning("looking for the followers' fences of the shards %s leads "
                            "failed: %s: %s", self.co.me, type(exc).__name__, exc)

    async def check_fences(self) -> int:
        """Ask the live followers of the shards we lead (unmarked) their fences; those
        above our record's epoch are taken back (:meth:`reclaim`). Returns how many."""
        co = self.co
        by_node: dict[str, list[int]] = defaultdict(list)
        for s, r in co.owned.items():
            if r.owner == co.me and r.to is None:
                for node in r.followers:
                    if node in co.membership.members:
                        by_node[node].append(s)
        found = 0
        for _pos, fences in await asyncio.gather(*(self.asks.peer_copies(n, v)
                                                   for n, v in by_node.items())):
            for s, fence in fences.items():
                found += self._note_fenced(s, fence)
        if found:
            log.info("node %s leads %d shards whose followers were fenced above its epoch "
                     "while it was away: taking them back", co.me, found)
            self.kick()
        return found

    def tasks(self) -> list[asyncio.Task[None]]:
        """The background tasks of this object (cancelled when the coordinator closes)."""
        return [t for t in (self._resign_task, self._fence_task) if t is not None]

    def kick(self) -> None:
        """Resign the lost shards and take back the fenced ones in the background, if some
        wait and no attempt runs (at most every RESIGN_PERIOD s; the grant loop calls this
        every period)."""
        if (self._resign_task is None or self._resign_task.done()) and \
                (self.lost_now() or self.stale) and time.monotonic() >= self._resign_next:
            self._resign_next = time.monotonic() + RESIGN_PERIOD
            self._resign_task = asyncio.get_running_loop().create_task(self._repair_logged())

    async def _repair_logged(self) -> None:
        """Resign the lost shards, then take back the fenced ones; each failure logged (the
        next kick tries again)."""
        for what, repair in (("resigning the lost", self.resign),
                             ("taking back the fenced", self.reclaim)):
            try:
                await repair()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("%s shards of %s failed: %s: %s", what, self.co.me,
                          type(exc).__name__, exc)

    async def reclaim(self) -> int:
        """Take back, at an epoch above the fence, the shards whose followers refused us
        while our records still name us their owner, unmarked. A failover that ran while
        we were away (paused, cut off: our lease expired) raised their followers' fences
        and promoted no one (no follower held a complete copy, or too few answered): the
        records show no other leader, and each transaction compares the record it was
        planned from, so a promotion written meanwhile wins and we follow it. We hold
        every write acknowledged for those shards (no one else led them), so, as in Raft
        a leader re-elected at a higher term, we lead again; without this, every write
        to them would be refused for good (issue 16). Returns the shards taken back."""
        co = self.co
        lost = self.lost_now()
        # (the others are done with: taken back, or no longer ours to take)
        self.stale = todo = {s: e for s, e in self.stale.items() if s not in lost
                             and (r := co.owned.get(s)) is not None and r.owner == co.me
                             and r.to is None and r.epoch < e}
        if not todo or not co.membership.fence.may_serve(asyncio.get_running_loop().time()):
            return 0            # (fenced: the grant loop kicks again)
        started = time.monotonic()
        done = await self.writes.write({s: co.owned[s]._replace(epoch=e + 1, revision=0)
                                        for s, e in todo.items()})
        # not granted while in self.stale with an epoch above the record's (Grants.
        # granted): those taken back are granted now; a lost race is tried again
        self.stale = {s: e for s, e in self.stale.items()
                      if (r := co.owned.get(s)) is not None and r.owner == co.me and r.epoch < e}
        log.warning("node %s took back the leadership of %d of %d shards at an epoch above "
                    "their followers' fences (raised by a failover that promoted no one while "
                    "this node was away) (%.2f s)", co.me, done, len(todo),
                    time.monotonic() - started)
        return done

    async def resign(self) -> int:
        """Hand the shards we lead whose copy here was lost to a follower: the failover
        of :func:`plan_failover` with this node counted as not answering (its followers
        promise the fence ``epoch + 1``; only if fewer than a quorum of voters do not
        answer, the best follower that holds a complete copy becomes the owner with
        ``epoch + 1``, this node a follower, rebuilt by its new leader). Shards with no
        follower, or whose followers cannot take over, stay unserved (ERROR, once)."""
        co = self.co
        lost = {s: co.owned[s] for s in sorted(self.lost_now())}
        self.lost = {s: e for s, e in self.lost.items() if s in lost}
        if not lost:
            return 0
        started = time.monotonic()
        alone = sorted(s for s, r in lost.items() if not r.followers)
        ask = {s: r for s, r in lost.items() if r.followers}
        new: dict[int, Owned] = {}
        stuck: list[int] = []
        if ask:
            positions = await self.asks.positions(ask)
            new, stuck = plan_failover(ask, set(co.membership.members) - {co.me}, positions,
                                       self.ack)
        done = await self.writes.write(new) if new else 0
        if done:
            log.info("node %s lost its copy of %d shards it led: %d handed to a follower "
                     "(%.2f s); it follows them now and is rebuilt", co.me, len(lost), done,
                     time.monotonic() - started)
        unserved = set(alone) | set(stuck)
        fresh = sorted(unserved - self._no_replica)
        if fresh:
            log.error("node %s lost its copy of %d shards it leads and no replica can take them "
                      "(%d have no follower, %d no follower with a complete copy or too few "
                      "answering): their data is lost on this node and they stay unserved "
                      "(%s)", co.me, len(fresh), len(set(fresh) & set(alone)),
                      len(set(fresh) - set(alone)), fresh[:10])
        self._no_replica = unserved
        return done
