"""Replicated shards, the router's side (issue 16; ``[cluster] replicas`` > 1).

A shard's replica set lives in its ownership record (``ownership.py``): the **leader**
(``owner``), its **followers** (voters) and its **learners** (being filled; never
promoted by failover). The leader's workers stream every group commit to the others'
workers and release a group's output once a quorum of voters holds it (the leader
counts): ``majority`` = len(voters) // 2 + 1, ``all`` = len(voters) (:func:`quorum`).
The workers do the streaming (``runtime/replication.py``); this module decides who
replicates what, and when a follower takes over. What it asks the workers is in
:mod:`.replica_asks`; a leader's repairs of its own shards (a lost copy resigned, a
fenced shard taken back) in :mod:`.replica_repair`.

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
3. **transfer** the leadership to the desired leader when it is a follower that holds
   the shard's last write (or is streamed its batches and lacks at most
   :data:`TRANSFER_LAG` of them: :func:`near`) and the shard is not under-replicated
   (``handoff.Handoff.transfer``: no copy; a batch of :data:`~.ownership.BATCH` shards
   each, up to :data:`WRITES_AT_ONCE` at once).
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
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping

from ..errors import ActorError
from ..log import get_logger
from .handoff import (CATCH_UP_POLL, CATCH_UP_TIMEOUT, ChangedMeanwhile, Handoff,
                      HandoffFailed, Unresolved, drop)
from .membership import Member
from .ownership import BATCH, Owned
from . import replica_asks, replica_repair
from .replica_asks import unknown_command
from .replica_plans import (NO_COPY, led, plan_failover, plan_grow,
                            plan_promote, plan_surplus, plan_transfer, quorum)

if TYPE_CHECKING:
    from .coordinator import Coordinator

log = get_logger("cluster")

#: seconds past ``ack_timeout`` a voter's removal waits between the grant that stops
#: counting it and the transaction (every group flushed before the grant is done by then)
DEMOTE_MARGIN = 0.2

#: ownership transactions of one change (a failover, a promotion) in flight at once
WRITES_AT_ONCE = 8
#: batches a streaming follower may lack of a shard's last writes and still be given its
#: leadership (its appends on their way: the transfer's catch-up step waits them out in
#: milliseconds; with none allowed, a shard written every few seconds waited a pass or
#: more, and a hand-back trailed off over half a minute in single shards)
TRANSFER_LAG = 4


def near(progress: Mapping[str, Any], to: str) -> bool:
    """Whether follower ``to`` holds a shard's last write, or is streamed its batches
    and lacks at most TRANSFER_LAG of them (``progress``: the leader's ``replication``
    answer for the shard). One being caught up from the log is left for a later pass."""
    held, seq = (progress.get("held") or {}).get(to), progress.get("seq")
    if not isinstance(held, int) or not isinstance(seq, int):
        return False
    return held == seq or (to in (progress.get("streaming") or ())
                           and 0 <= seq - held <= TRANSFER_LAG)

#: seconds before a leadership transfer to a node is tried again after one failed
#: (doubling up to the max)
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0

#: the endpoint a grant gives a voter whose endpoints this router never saw (it died
#: before the router started): a valid address nobody listens on, one per node (the
#: worker keys its peers by endpoint), so the voter still counts toward the quorum
UNREACHABLE = "ipc:///nonexistent/actorsys-down/{node}"


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
        #: shards this node replicated (followed or learned) at the last look, and the
        #: coordinator's count of changes then
        self.following: dict[int, int] = {}
        self._following_changes = -1
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
        #: what :meth:`drive`'s last pass planned from, if it found nothing to do: a pass
        #: from the same inputs would find nothing again, and is skipped
        self._idle_inputs: tuple[Any, ...] | None = None

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
        if self.plain_grants or not unknown_command(exc):
            return False
        self.plain_grants = True
        log.error("this node's workers do not know the replication arguments of a grant (%s): "
                  "granting without them; its shards are NOT replicated (replicas = %d "
                  "needs the worker side of issue 16)", exc, self.replicas)
        return True

    # -- asking workers (replica_asks.py) and the leader's repairs (replica_repair.py) ---
    progress = replica_asks.progress
    positions = replica_asks.positions
    peer_positions = replica_asks.peer_positions
    _peer_copies = replica_asks.peer_copies
    lost_now = replica_repair.lost_now
    refused_lost = replica_repair.refused_lost
    stale_grant = replica_repair.stale_grant
    after_lease = replica_repair.after_lease
    _check_fences_later = replica_repair.check_fences_later
    check_fences = replica_repair.check_fences
    tasks = replica_repair.tasks
    kick = replica_repair.kick
    _repair_logged = replica_repair.repair_logged
    reclaim = replica_repair.reclaim
    resign = replica_repair.resign

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
        # (the plans are pure functions of these: a pass over unchanged ones that found
        # nothing last time finds nothing again; each pass costs a leader ~20 ms of CPU
        # with 4,096 shards, and an idle cluster made one every second)
        inputs = (co.changes, tuple(candidates), frozenset(live), frozenset(skip))
        if inputs == self._idle_inputs:
            return False
        self._idle_inputs = None
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
        planned = bool(grow or learning or moves)
        if moves:        # only to a follower about to hold our last write (no long drain)
            p = await self.progress(sorted(s for v in moves.values() for s in v))
            moves = {to: [s for s in v if s in p and near(p[s], to)] for to, v in moves.items()}
        now_t = time.monotonic()
        moves = {to: sorted(v) for to, v in moves.items()
                 if v and self._backoff.get(to, (0.0, 0.0))[0] <= now_t}
        if moves and await self._transfer(moves):
            changed = True
        now, demote = plan_surplus(co.owned, co.me, live, candidates, R, skip)
        if now or demote:
            n = await self._apply({**now, **{s: r for s, (_n, r) in demote.items()}})
            log.info("shards led by %s: %d lost surplus or dead replicas", co.me, n)
            changed = True
        elif not planned and inputs[0] == co.changes:
            self._idle_inputs = inputs
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

    async def _transfer(self, moves: Mapping[str, list[int]]) -> bool:
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
                ours = await self.progress(sorted(marked))
                theirs = await self.peer_positions(to, sorted(marked))
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
                        delay = min(self._backoff.get(to, (0.0, 0.0))[1] * 2 or BACKOFF_FIRST,
                                    BACKOFF_MAX)
                        self._backoff[to] = (time.monotonic() + delay, delay)
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
                self._backoff.pop(to, None)
            if n:
                log.info("node %s gave the leadership of %d shards to %s (%.2f s; summed over "
                         "its batches: %s)", co.me, n, to, ended[to] - started,
                         ", ".join(f"{k} {v:.2f} s" for k, v in handoffs[to].took.items()))
        for r in results:      # (after every batch ended: none is left running on its own)
            if isinstance(r, BaseException):
                raise r
        return reread or any(done.values())

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
        if co.changes == self._following_changes:
            return            # (the records are as they were at the last look)
        self._following_changes = co.changes
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

