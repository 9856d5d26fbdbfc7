"""Writing replica-set changes to etcd, in a safe order with the grants (issue 16).

:class:`ReplicaWrites` writes what the replica work planned (``replicas.py`` says why
each order is safe):

* :meth:`~ReplicaWrites.write`: records, each against the record it was planned from,
  one transaction per :data:`~.ownership.BATCH` shards, up to :data:`WRITES_AT_ONCE` at
  once; a batch that lost a race is skipped (the records are read again);
* :meth:`~ReplicaWrites.apply`: changed sets (same owner, same epoch); voters that go
  first stop counting (a grant naming them as non-voters, then ``ack_timeout`` +
  :data:`DEMOTE_MARGIN`), then the transaction, then a grant with what it added;
* :meth:`~ReplicaWrites.promote`: learners made followers; where that raises the
  quorum, the grant counts them first and the transaction follows once each holds the
  leader's position as of that grant (within ``handoff.CATCH_UP_TIMEOUT``).

Invariant: the overrides this puts in the grants (``ReplicaGrants.demoting`` /
``promoting``) are removed when the change that put them there ends, failed or not, so
the records never name fewer voters than the quorum a released group was counted on.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Mapping

from ..log import get_logger
from .handoff import CATCH_UP_POLL, CATCH_UP_TIMEOUT
from .ownership import BATCH, Owned
from .replica_asks import ReplicaAsks
from .replica_grants import ReplicaGrants
from .replica_plans import quorum

if TYPE_CHECKING:
    from .coordinator import Coordinator

log = get_logger("cluster")

#: seconds past ``ack_timeout`` a voter's removal waits between the grant that stops
#: counting it and the transaction (every group flushed before the grant is done by then)
DEMOTE_MARGIN = 0.2
#: ownership transactions of one change (a failover, a promotion) in flight at once
WRITES_AT_ONCE = 8


class ReplicaWrites:
    """The replica-set changes of one node's coordinator ``co`` (see the module
    docstring): the grant overrides in ``grants``, the leader's progress by ``asks``."""

    def __init__(self, co: "Coordinator", asks: ReplicaAsks, grants: ReplicaGrants) -> None:
        self.co, self.asks, self.grants = co, asks, grants
        self.ack = co.ccfg.ack

    async def write(self, new: Mapping[int, Owned]) -> int:
        """Write ``new`` records (each against the record it was planned from), one
        transaction per BATCH; the shards changed (a batch that lost a race is skipped:
        the next loop reads and plans again)."""
        co = self.co
        items = sorted(new.items())
        parts = [{s: (co.owned[s], r) for s, r in items[i:i + BATCH] if s in co.owned}
                 for i in range(0, len(items), BATCH)]
        # the batches are disjoint: several transactions at once (a failover of a third of
        # 4096 shards is 22 of them, ~1.8 s one after the other on a busy 2-core host)
        limit = asyncio.Semaphore(WRITES_AT_ONCE)
        raced = False

        async def one(part: dict[int, tuple[Owned, Owned]]) -> int:
            nonlocal raced
            async with limit:
                got = await co.ownership.change(part)
            if got is None:
                raced = True
                return 0
            co.merge(got)
            return len(got)
        done = sum(await asyncio.gather(*(one(p) for p in parts if p)))
        if raced:
            co.merge(await co.ownership.read())
        return done

    async def promote(self, new: Mapping[int, Owned]) -> int:
        """Promote learners (``new``: the records with them as followers). Where the
        promotion keeps the quorum (majority, 2 -> 3 voters), the transaction goes first,
        then the grant: a write acknowledged by the old quorum meets every failover
        answer set of the new voters. Where it raises the quorum (1 -> 2 or 3 voters,
        3 -> 4, any with ``ack = "all"``), a write acknowledged by the old quorum just
        before the grant need not be on the new voter, and the new voters' failover answer
        sets may miss it: so the grant counts the new voters first, then, once each holds
        the leader's position as of after that grant (every earlier write), the
        transaction. A shard whose new voters do not catch up within
        ``handoff.CATCH_UP_TIMEOUT`` is left as it was (tried again next loop)."""
        co = self.co
        raise_q = {s: set(r.followers) - set(co.owned[s].followers) for s, r in new.items()
                   if s in co.owned and quorum(len(r.voters), self.ack)
                   > quorum(len(co.owned[s].voters), self.ack)}
        if not raise_q or self.grants.plain_grants:
            return await self.apply(new)
        promoting = self.grants.promoting
        for s, nodes in raise_q.items():
            promoting.setdefault(s, set()).update(nodes)
        try:
            await co.grant_all(sorted({co.home[s] for s in raise_q}))
            ready = await self._hold_all(raise_q)
            late = set(raise_q) - ready
            if late:
                log.info("shards led by %s: %d learners did not catch up after being counted "
                         "as voters; promoting them later", co.me, len(late))
            return await self.apply({s: r for s, r in new.items() if s not in late})
        finally:
            for s in raise_q:
                promoting.pop(s, None)

    async def _hold_all(self, nodes: Mapping[int, set[str]]) -> set[int]:
        """The shards of ``nodes`` whose nodes all hold the leader's position as it was
        at the first look (after the grant that counts them), within CATCH_UP_TIMEOUT."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CATCH_UP_TIMEOUT
        target: dict[int, int] = {}
        ready: set[int] = set()
        todo = sorted(nodes)
        while todo:
            p = await self.asks.progress(todo)
            for s in todo:
                if s not in p:
                    continue
                seq = int(p[s].get("seq") or 0)
                target.setdefault(s, seq)
                held = p[s].get("held") or {}
                if all(int(held.get(n, -1)) >= target[s] for n in nodes[s]) and \
                        seq >= target[s]:
                    ready.add(s)
            todo = [s for s in todo if s not in ready]
            if not todo or loop.time() >= deadline:
                break
            await asyncio.sleep(CATCH_UP_POLL)
        return ready

    async def apply(self, new: Mapping[int, Owned]) -> int:
        """Write changed replica sets (same owner, same epoch) so that every record's
        voters meet every quorum the leader used: voters that go (alive or not: a node
        whose lease expired may still be acknowledging) first stop counting (a grant that
        names them as non-voters, then ``ack_timeout`` for the groups flushed before it
        to be released or failed), then the transaction, then a grant with the voters
        and learners it added. Returns the shards changed."""
        co = self.co
        gone = {s: set(co.owned[s].voters) - set(r.voters) for s, r in new.items()
                if s in co.owned}
        gone = {s: g for s, g in gone.items() if g}
        slots = sorted({co.home[s] for s in new})
        demoting = self.grants.demoting
        for s, g in gone.items():
            demoting.setdefault(s, set()).update(g)
        try:
            if gone and not self.grants.plain_grants:
                await co.grant_all(sorted({co.home[s] for s in gone}))
                await asyncio.sleep(float(co.ccfg.lease_ttl) + DEMOTE_MARGIN)
            n = await self.write(new)
        finally:
            for s in gone:
                demoting.pop(s, None)
        await co.grant_all(slots)
        return n
