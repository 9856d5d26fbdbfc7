"""Replicated shards, the router's side (issue 16; ``[cluster] replicas`` > 1).

A shard's replica set lives in its ownership record (``ownership.py``): the **leader**
(``owner``), its **followers** (voters) and its **learners** (being filled; never
promoted by failover). The leader's workers stream every group commit to the others'
workers and release a group's output once a quorum of voters holds it (the leader
counts): ``majority`` = len(voters) // 2 + 1, ``all`` = len(voters) (:func:`quorum`).
The workers do the streaming (``runtime/replication.py``); this module decides who
replicates what, and when a follower takes over.

**Desired replicas** of shard ``s``: the first ``replicas`` of the live, settled,
non-leaving members in rendezvous order (:func:`~.placement.ranked`); the first is the
desired leader. The leader of each shard drives its set, each loop, in this order
(pure planners in :mod:`.replica_plans`: ``plan_grow``, ``plan_promote``,
``plan_transfer``, ``plan_surplus``; :class:`Replicas` carries them out):

1. **grow**: every desired node that is not a replica becomes a learner (one etcd
   transaction per :data:`~.ownership.BATCH` shards; the next grant streams to it).
2. **promote**: a learner that holds the leader's last write (the leader's worker
   answers ``replication``: its position ``[epoch, seq]``, each peer's seq of it)
   becomes a follower, and in the same change one follower that is not live is dropped.
   A voter is added by the transaction first, then the grant (until the grant, the
   leader's quorum is over fewer voters, each of which the records name too), when that
   keeps the quorum; when it raises it, the grant first, then the transaction once the
   new voter holds every write acknowledged before that grant (:meth:`Replicas._promote`).
3. **transfer** the leadership to the desired leader when it is a follower and the
   shard is not under-replicated (``handoff.Handoff.transfer``: no copy).
4. **surplus**: a learner that is not desired, or dead, is removed (transaction); a
   follower that is not desired is removed only while more than ``replicas`` voters are
   live (so placement never lowers a shard below ``replicas`` live voters); a dead
   follower once ``replicas`` voters are live. A node that stops being a replica drops
   its copy (:meth:`Replicas.drop_released`).

Every removal of a voter, by promote or surplus, alive or not (a node whose lease
expired may still be running and acknowledging), goes grant first: a grant that no
longer counts it, then ``ack_timeout`` (every group flushed before that grant is
released or failed by then), then the transaction (:meth:`Replicas._apply`): the
records never name fewer voters than the quorum a released group was counted on.

**Failover** (:func:`plan_failover`; run by the lowest live member): for each shard
whose owner is not live and that has followers, the live followers' home workers are
asked their ``position`` with ``fence = epoch + 1``: each promises (synced before it
answers) to refuse every batch of an older epoch. With ``u`` voters not answering (the
dead leader counts), the shard fails over only if ``u < quorum``: then the answering
voters intersect every quorum that acknowledged a write, so one of them holds every
acknowledged write, and the one with the highest ``[epoch, seq]`` (ties: rendezvous
order) holds them all; and the old leader (still running behind a partition, say) can
no longer gather a quorum, since every answering voter refuses its epoch. The winner
becomes the owner with ``epoch + 1`` (one transaction per 64 shards comparing
``mod_revision``); the old owner becomes a follower (it catches up when it returns);
learners are never promoted. Shards with no live follower wait for their owner
(``ShardUnavailable``), as without replication.

**Taken back** (:meth:`Replicas.reclaim`): a failover that raised the fences and
promoted no one (no follower held a complete copy: a shard never written; too few
answered) leaves the owner, once back, refused by its followers. It looks for such fences after
each new lease (:meth:`Replicas.check_fences`), and its worker names a shard refused by
one in a grant reply (``stale``); either way the owner takes the shard back with an
epoch above the fence, as a Raft leader re-elected at a higher term: the record shows
no other leader ever wrote it.

Before the worker side of issue 16 exists, a worker answers ``replication`` and
``position`` with BadRequest (unknown shards command): that counts as "holds nothing" /
"did not answer", so learners are never promoted and nothing fails over (logged once),
and a grant whose replication arguments the worker does not know is sent again without
them (logged once): growth stalls visibly instead of crashing.
"""
from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import ActorError
from ..log import get_logger
from .handoff import (CALL_TIMEOUT, CATCH_UP_POLL, CATCH_UP_TIMEOUT, ChangedMeanwhile, Handoff,
                      HandoffFailed, Unresolved, drop)
from .membership import Member
from .ownership import BATCH, Owned
from .replica_plans import (NO_COPY, Position, led, plan_failover, plan_grow,
                            plan_promote, plan_surplus, plan_transfer, quorum)

if TYPE_CHECKING:
    from .coordinator import Coordinator

log = get_logger("cluster")

#: seconds past ``ack_timeout`` a voter's removal waits between the grant that stops
#: counting it and the transaction (every group flushed before the grant is done by then)
DEMOTE_MARGIN = 0.2

#: ownership transactions of one change (a failover, a promotion) in flight at once
WRITES_AT_ONCE = 8

#: seconds before a leadership transfer to a node is tried again after one failed
#: (doubling up to the max)
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0

#: the endpoint a grant gives a voter whose endpoints this router never saw (it died
#: before the router started): a valid address nobody listens on, one per node (the
#: worker keys its peers by endpoint), so the voter still counts toward the quorum
UNREACHABLE = "ipc:///nonexistent/actorsys-down/{node}"

#: seconds between two attempts to resign the shards of a lost slot
RESIGN_PERIOD = 1.0
#: seconds after a new lease at which the followers' fences are looked for
FENCE_CHECKS = (1.0, 3.0, CALL_TIMEOUT + 2.0)

def _unknown_command(exc: BaseException) -> bool:
    """A worker without the worker side of issue 16 (an older build, or before the merge)."""
    return "unknown shards command" in str(exc) or "unknown grant argument" in str(exc)


class Replicas:
    """The replica work of one node's coordinator (see the module docstring)."""

    def __init__(self, co: "Coordinator") -> None:
        self.co = co
        self.replicas, self.ack = co.ccfg.replicas, co.ccfg.ack
        #: shard -> the followers a change is removing: granted as non-voters until the
        #: transaction that removes them has been written
        self.demoting: dict[int, set[str]] = {}
        #: shard -> learners a promotion counts as voters before the records name them
        #: (when it raises the quorum: see :meth:`_promote`)
        self.promoting: dict[int, set[str]] = {}
        #: every member ever seen by id (a follower that died keeps its place in grants:
        #: it still counts toward the quorum, with the endpoint it last had)
        self.known: dict[str, Member] = {}
        #: shards this node replicated (followed or learned) at the last look
        self.following: dict[int, int] = {}
        #: the local workers do not know the replication arguments (no worker side yet)
        self.plain_grants = False
        self._warned: set[str] = set()
        #: node -> (monotonic time before which no transfer to it is tried, last delay)
        self._backoff: dict[str, tuple[float, float]] = {}
        #: shard -> the epoch of our record when our worker refused it as lost (its slot's
        #: database was lost and its copy there is empty: see :meth:`lost`); never granted
        #: again while we lead it with that epoch
        self.lost: dict[int, int] = {}
        #: shard -> the epoch our worker refused our grant of it below, or a follower's
        #: fence above our record's epoch (raised by a failover that promoted no one
        #: while we were away): not granted (``Coordinator.granted``) until taken back
        #: at a newer epoch by :meth:`reclaim`
        self.stale: dict[int, int] = {}
        self._resign_task: asyncio.Task[None] | None = None
        #: the look for raised fences after a new lease (:meth:`after_lease`)
        self._fence_task: asyncio.Task[None] | None = None
        self._resign_next = 0.0
        #: the lost shards already logged as having no replica to take them
        self._no_replica: set[int] = set()
        #: (failed over, orphans, stuck, stuck on empty copies) of the last failover pass logged
        self._last_failover: tuple[int, int, int, int] = (0, 0, 0, 0)

    def _warn_once(self, what: str, msg: str, *args: Any) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning(msg, *args)

    # -- grants ----------------------------------------------------------------------
    def grant_args(self, granted: Mapping[int, int]) -> dict[str, Any]:
        """The replication arguments of a grant of the shards ``granted`` (the brief's
        ``peers``, ``replicas``, ``ack``, ``ack_timeout``)."""
        co = self.co
        self.known.update(co.membership.members)
        peers: list[list[Any]] = []
        index: dict[tuple[str, str], int] = {}
        reps: dict[int, list[list[Any]]] = {}
        for s in granted:
            r = co.owned.get(s)
            if r is None:
                continue
            row = []
            for n, voter in [(f, True) for f in r.followers] + [(n, False) for n in r.learners]:
                if n == co.me:
                    continue
                if n in self.demoting.get(s, ()):
                    voter = False
                elif n in self.promoting.get(s, ()):
                    voter = True
                m: Member | None = self.known.get(n)
                # a voter never seen (dead since before this router started) still counts
                # toward the quorum: an endpoint of its own that nobody listens on
                endpoint = (m.workers[m.home[s]] if m is not None and len(m.home) > s
                            else UNREACHABLE.format(node=n))
                key = (n, endpoint)
                if key not in index:
                    index[key] = len(peers)
                    peers.append([n, endpoint, m.public_key if m is not None else None])
                row.append([index[key], voter])
            if row:
                reps[s] = row
        return {"peers": peers, "replicas": reps, "ack": self.ack,
                "ack_timeout": float(co.ccfg.lease_ttl)}

    def grant_refused(self, exc: BaseException) -> bool:
        """A grant failed: if because the worker does not know the replication arguments,
        grant without them from now on (True: send again)."""
        if self.plain_grants or not _unknown_command(exc):
            return False
        self.plain_grants = True
        log.error("this node's workers do not know the replication arguments of a grant (%s): "
                  "granting without them; its shards are NOT replicated (replicas = %d "
                  "needs the worker side of issue 16)", exc, self.replicas)
        return True

    # -- asking workers --------------------------------------------------------------
    async def progress(self, shards: list[int]) -> dict[int, dict[str, Any]]:
        """Our workers' ``replication`` answers for ``shards`` (homed on them): shard ->
        ``{"epoch", "seq", "held": {node: seq}}``; a worker that cannot say holds nothing."""
        co = self.co
        by_slot: dict[int, list[int]] = defaultdict(list)
        for s in shards:
            by_slot[co.home[s]].append(s)
        out: dict[int, dict[str, Any]] = {}

        async def one(slot: int, group: list[int]) -> None:
            try:
                reply = await co.call(co.workers[slot], "replication", {"shards": group},
                                      CALL_TIMEOUT)
            except ActorError as exc:
                if _unknown_command(exc):
                    self._warn_once("replication", "worker slot %d does not answer "
                                    "`replication` (%s): no learner is promoted", slot, exc)
                else:
                    log.warning("worker slot %d did not say what its followers hold: %s",
                                slot, exc)
                return
            for s, p in (reply or {}).items():
                if isinstance(p, dict):
                    out[int(s)] = p
        await asyncio.gather(*(one(k, v) for k, v in by_slot.items()))
        return out

    async def positions(self, ask: Mapping[int, Owned]) -> dict[int, dict[str, Position]]:
        """Failover's first step: every live follower of the shards of ``ask`` promises the
        fence ``epoch + 1`` and says its position; shard -> {follower: [epoch, seq]}.
        One call per (follower, its home worker of those shards)."""
        co = self.co
        members = co.membership.members
        calls: dict[tuple[str, str], list[int]] = defaultdict(list)
        for s, r in ask.items():
            for f in r.followers:
                m = members.get(f)
                if m is not None and len(m.home) > s:
                    calls[(f, m.workers[m.home[s]])].append(s)
        out: dict[int, dict[str, Position]] = defaultdict(dict)

        async def one(node: str, endpoint: str, group: list[int]) -> None:
            args = {"shards": group, "fence": {s: ask[s].epoch + 1 for s in group}}
            try:
                reply = await co.call(endpoint, "position", args, CALL_TIMEOUT)
            except ActorError as exc:
                if _unknown_command(exc):
                    self._warn_once("position", "the worker of node %s does not answer "
                                    "`position` (%s): no shard fails over", node, exc)
                else:
                    log.warning("node %s did not give the positions of %d shards for "
                                "failover: %s", node, len(group), exc)
                return
            for s, p in ((reply or {}).get("positions") or {}).items():
                if int(s) in ask and isinstance(p, (list, tuple)) and len(p) == 2:
                    out[int(s)][node] = (int(p[0]), int(p[1]))
        await asyncio.gather(*(one(n, e, g) for (n, e), g in calls.items()))
        return dict(out)

    async def peer_positions(self, node: str, shards: list[int]) -> dict[int, Position]:
        """``node``'s positions of ``shards`` (it follows them: no fence asked); shard ->
        ``(epoch, seq)``, missing where its worker did not answer."""
        return (await self._peer_copies(node, shards))[0]

    async def _peer_copies(self, node: str, shards: list[int]
                           ) -> tuple[dict[int, Position], dict[int, int]]:
        """``node``'s positions and fences of ``shards`` (no fence asked), each missing
        where its worker did not answer."""
        co = self.co
        m = co.membership.members.get(node)
        if m is None:
            return {}, {}
        by_worker: dict[str, list[int]] = defaultdict(list)
        for s in shards:
            if len(m.home) > s:
                by_worker[m.workers[m.home[s]]].append(s)
        out: dict[int, Position] = {}
        fences: dict[int, int] = {}

        async def one(endpoint: str, group: list[int]) -> None:
            try:
                reply = await co.call(endpoint, "position", {"shards": group}, CALL_TIMEOUT)
            except ActorError as exc:
                log.debug("node %s did not give its positions of %d shards: %s", node,
                          len(group), exc)
                return
            for s, p in ((reply or {}).get("positions") or {}).items():
                if isinstance(p, (list, tuple)) and len(p) == 2:
                    out[int(s)] = (int(p[0]), int(p[1]))
            for s, f in ((reply or {}).get("fences") or {}).items():
                if type(f) is int:
                    fences[int(s)] = f
        await asyncio.gather(*(one(e, g) for e, g in by_worker.items()))
        return out, fences

    # -- changing records ------------------------------------------------------------
    async def _write(self, new: Mapping[int, Owned]) -> int:
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

    async def drive(self, candidates: list[str]) -> bool:
        """One pass over the shards this node leads (grow, promote, transfer, surplus);
        True if something changed (loop again soon)."""
        co = self.co
        live = set(co.membership.members)
        skip = co.moving | co.unresolved | self.lost_now()
        R = self.replicas
        changed = False
        grow = plan_grow(co.owned, co.me, candidates, R, skip)
        if grow:
            n = await self._apply(grow)
            log.info("shards led by %s: %d got new learners", co.me, n)
            changed = True
        learning = [s for s, r in led(co.owned, co.me, skip).items() if r.learners]
        if learning:
            promote = plan_promote(co.owned, co.me, live, await self.progress(learning), skip)
            if promote:
                n = await self._promote(promote)
                log.info("shards led by %s: %d learners promoted to followers", co.me, n)
                changed = True
        moves = plan_transfer(co.owned, co.me, live, candidates, R, skip)
        if moves:        # only to a follower that holds our last write now (no long drain)
            p = await self.progress(sorted(s for v in moves.values() for s in v))
            moves = {to: [s for s in v
                          if s in p and (p[s].get("held") or {}).get(to) == p[s].get("seq")]
                     for to, v in moves.items()}
        now_t = time.monotonic()
        for to, shards in sorted(moves.items()):
            if not shards or self._backoff.get(to, (0.0, 0.0))[0] > now_t:
                continue
            if await self._transfer(to, sorted(shards)):
                changed = True
        now, demote = plan_surplus(co.owned, co.me, live, candidates, R, skip)
        if now or demote:
            n = await self._apply({**now, **{s: r for s, (_n, r) in demote.items()}})
            log.info("shards led by %s: %d lost surplus or dead replicas", co.me, n)
            changed = True
        return changed

    async def _promote(self, new: Mapping[int, Owned]) -> int:
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
        if not raise_q or self.plain_grants:
            return await self._apply(new)
        for s, nodes in raise_q.items():
            self.promoting.setdefault(s, set()).update(nodes)
        try:
            await co.grant_all(sorted({co.home[s] for s in raise_q}))
            ready = await self._hold_all(raise_q)
            late = set(raise_q) - ready
            if late:
                log.info("shards led by %s: %d learners did not catch up after being counted "
                         "as voters; promoting them later", co.me, len(late))
            return await self._apply({s: r for s, r in new.items() if s not in late})
        finally:
            for s in raise_q:
                self.promoting.pop(s, None)

    async def _hold_all(self, nodes: Mapping[int, set[str]]) -> set[int]:
        """The shards of ``nodes`` whose nodes all hold the leader's position as it was
        at the first look (after the grant that counts them), within CATCH_UP_TIMEOUT."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CATCH_UP_TIMEOUT
        target: dict[int, int] = {}
        ready: set[int] = set()
        todo = sorted(nodes)
        while todo:
            p = await self.progress(todo)
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

    async def _apply(self, new: Mapping[int, Owned]) -> int:
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
        for s, g in gone.items():
            self.demoting.setdefault(s, set()).update(g)
        try:
            if gone and not self.plain_grants:
                await co.grant_all(sorted({co.home[s] for s in gone}))
                await asyncio.sleep(float(co.ccfg.lease_ttl) + DEMOTE_MARGIN)
            n = await self._write(new)
        finally:
            for s in gone:
                self.demoting.pop(s, None)
        await co.grant_all(slots)
        return n

    async def _transfer(self, to: str, shards: list[int]) -> bool:
        co = self.co

        def is_target(node_id: str) -> bool:
            m = co.membership.members.get(node_id)
            return m is not None and not m.leaving

        async def caught_up(marked: Mapping[int, Owned]) -> bool:
            # our position (our worker stops tracking a revoked shard's peers once they
            # all hold it, so T's own answer is the word): T's position must equal ours
            ours = await self.progress(sorted(marked))
            theirs = await self.peer_positions(to, sorted(marked))
            return all(s in ours and s in theirs
                       and theirs[s] == (ours[s].get("epoch"), ours[s].get("seq"))
                       for s in marked)

        handoff = Handoff(co.ownership, co.me, co.call, co.workers, co.home, co.stop_serving,
                          co.serve_again, is_target, co.merge)
        started = time.monotonic()
        for i in range(0, len(shards), BATCH):
            batch = [s for s in shards[i:i + BATCH] if s in co.owned and co.owned[s].owner == co.me
                     and co.owned[s].to is None]
            if not batch:
                continue
            try:
                new = await handoff.transfer(to, {s: co.owned[s] for s in batch}, caught_up)
            except ChangedMeanwhile:
                co.moving.difference_update(batch)
                co.merge(await co.ownership.read())
                return True
            except HandoffFailed as exc:
                co.moving.difference_update(batch)
                delay = min(self._backoff.get(to, (0.0, 0.0))[1] * 2 or BACKOFF_FIRST, BACKOFF_MAX)
                self._backoff[to] = (time.monotonic() + delay, delay)
                log.error("%s; the next transfer to %s in %g s", exc, to, delay)
                return False
            except Unresolved as exc:
                exc.hold(co.moving, co.unresolved)
                return False
            self._backoff.pop(to, None)
            co.moving.difference_update(batch)
            co.merge(new)
        log.info("node %s gave the leadership of %d shards to %s (%.2f s)", co.me, len(shards),
                 to, time.monotonic() - started)
        return True

    # -- failover --------------------------------------------------------------------
    async def failover(self) -> int:
        """Run by the lowest live member: promote a follower of each shard whose leader
        is not live (see the module docstring). Returns the shards failed over."""
        co = self.co
        live = set(co.membership.members)
        orphans = {s: r for s, r in co.owned.items() if r.owner not in live and r.followers}
        if not orphans:
            return 0
        started = time.monotonic()
        positions = await self.positions(orphans)
        new, stuck = plan_failover(orphans, live, positions, self.ack)
        done = await self._write(new) if new else 0
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

    # -- a lost slot: resign its shards ---------------------------------------------
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
        co = self.co
        for key, epoch in stale.items():
            s, e = int(key), int(epoch)
            r = co.owned.get(s)
            if r is not None and r.owner == co.me and r.to is None and r.epoch < e:
                self.stale[s] = max(e, self.stale.get(s, 0))
        if self.stale:
            self.kick()

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
        for _pos, fences in await asyncio.gather(*(self._peer_copies(n, v)
                                                   for n, v in by_node.items())):
            for s, fence in fences.items():
                rec = co.owned.get(s)
                if rec is not None and rec.owner == co.me and rec.to is None and fence > rec.epoch:
                    found += s not in self.stale
                    self.stale[s] = max(fence, self.stale.get(s, 0))
        if found:
            log.info("node %s leads %d shards whose followers were fenced above its epoch "
                     "while it was away: taking them back", co.me, found)
            self.kick()
        return found

    def tasks(self) -> list[asyncio.Task[None]]:
        """The background tasks of this object (cancelled when the coordinator closes)."""
        return [t for t in (self._resign_task, self._fence_task) if t is not None]

    def kick(self) -> None:
        """Resign the lost shards in the background if some wait and no attempt runs
        (at most every RESIGN_PERIOD s; the grant loop calls this every period)."""
        if (self._resign_task is None or self._resign_task.done()) and \
                (self.lost_now() or self.stale) and time.monotonic() >= self._resign_next:
            self._resign_next = time.monotonic() + RESIGN_PERIOD
            self._resign_task = asyncio.get_running_loop().create_task(self._resign_logged())

    async def _resign_logged(self) -> None:
        try:
            await self.resign()
        except asyncio.CancelledError:
            raise
        except Exception as exc:       # (the next grant reply tries again)
            log.error("resigning the lost shards of %s failed: %s: %s", self.co.me,
                      type(exc).__name__, exc)
        try:
            await self.reclaim()
        except asyncio.CancelledError:
            raise
        except Exception as exc:       # (the next grant reply tries again)
            log.error("taking back the fenced shards of %s failed: %s: %s", self.co.me,
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
        done = await self._write({s: co.owned[s]._replace(epoch=e + 1, revision=0)
                                  for s, e in todo.items()})
        # not granted while in self.stale with an epoch above the record's (coordinator.
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
            positions = await self.positions(ask)
            new, stuck = plan_failover(ask, set(co.membership.members) - {co.me}, positions,
                                       self.ack)
        done = await self._write(new) if new else 0
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

    # -- this node as a replica ------------------------------------------------------
    def replicated_here(self) -> dict[int, int]:
        """Shards this node follows or learns: shard -> epoch."""
        me = self.co.me
        return {s: r.epoch for s, r in self.co.owned.items()
                if r.owner != me and (me in r.followers or me in r.learners)}

    async def drop_released(self) -> None:
        """Drop our copy of each shard we replicated and no longer do (a surplus step of
        its leader removed us), unless we own it or a move brings it to us."""
        co = self.co
        now = self.replicated_here()
        gone = {s: co.owned[s].epoch for s in self.following
                if s not in now and s in co.owned and co.me not in co.owned[s].replicas
                and co.owned[s].to != co.me}
        self.following = now
        if gone:
            try:
                await drop(co.call, co.workers, co.home, gone)
                log.info("node %s dropped its copy of %d shards it no longer replicates",
                         co.me, len(gone))
            except ActorError as exc:
                log.warning("could not drop this node's copy of %d shards it no longer "
                            "replicates (%s); the next start sweeps them", len(gone), exc)

