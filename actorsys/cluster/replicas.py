"""Replicated shards, the router's side (issue 16; ``[cluster] replicas`` > 1).

A shard's replica set lives in its ownership record (``ownership.py``): the **leader**
(``owner``), its **followers** (voters) and its **learners** (being filled; never
promoted by failover). The leader's workers stream every group commit to the others'
workers and release a group's output once a quorum of voters holds it (the leader
counts): ``majority`` = len(voters) // 2 + 1, ``all`` = len(voters) (:func:`quorum`).
The workers do the streaming (``runtime/replication.py``); the router decides who
replicates what, and when a follower takes over. :class:`Replicas` is that work for one
node: it owns the parts below (one job each, sharing what they must through it and its
coordinator) and runs the leader's pass over the shards it leads (:meth:`Replicas.drive`):

* :mod:`.replica_asks` (``asks``): what it asks workers (``replication``, ``position``);
* :mod:`.replica_grants` (``grants``): the replication arguments of a grant;
* :mod:`.replica_writes` (``writes``): replica-set changes written in a safe order with
  the grants;
* :mod:`.replica_transfers` (``transfers``): leadership handed to the desired leader;
* :mod:`.failover` (``failover``): the shards of dead leaders, by the lowest live member;
* :mod:`.replica_repair` (``repairs``): a leader's repairs of its own shards (a lost
  copy resigned, a fenced shard taken back);
* :mod:`.replica_following` (``following``): this node as a follower (copies dropped).

**Desired replicas** of shard ``s``: the first ``replicas`` of the live, settled,
non-leaving members in rendezvous order (:func:`~.placement.ranked`); the first is the
desired leader. The leader of each shard drives its set, each loop, in this order
(pure planners in :mod:`.replica_plans`: ``plan_grow``, ``plan_promote``,
``plan_transfer``, ``plan_surplus``; :meth:`Replicas.drive` carries them out):

1. **grow**: every desired node that is not a replica becomes a learner (one etcd
   transaction per :data:`~.ownership.BATCH` shards; the next grant streams to it).
2. **promote**: a learner that holds the leader's last write (the leader's worker
   answers ``replication``: its position ``[epoch, seq]``, each peer's seq of it)
   becomes a follower, and in the same change one follower that is not live is dropped.
   A voter is added by the transaction first, then the grant (until the grant, the
   leader's quorum is over fewer voters, each of which the records name too), when that
   keeps the quorum; when it raises it, the grant first, then the transaction once the
   new voter holds every write acknowledged before that grant
   (:meth:`.ReplicaWrites.promote`).
3. **transfer** the leadership to the desired leader when it is a follower that holds
   the shard's last write (or is streamed its batches and lacks at most
   :data:`~.replica_transfers.TRANSFER_LAG` of them: :func:`~.replica_transfers.near`)
   and the shard is not under-replicated (``handoff.Handoff.transfer``: no copy; a batch
   of :data:`~.ownership.BATCH` shards each, up to
   :data:`~.replica_writes.WRITES_AT_ONCE` at once: :class:`.Transfers`).
4. **surplus**: a learner that is not desired, or dead, is removed (transaction); a
   follower that is not desired is removed only while more than ``replicas`` voters are
   live (so placement never lowers a shard below ``replicas`` live voters); a dead
   follower once ``replicas`` voters are live. A node that stops being a replica drops
   its copy (:meth:`.Following.drop_released`).

Every removal of a voter, by promote or surplus, alive or not (a node whose lease
expired may still be running and acknowledging), goes grant first: a grant that no
longer counts it, then ``ack_timeout`` (every group flushed before that grant is
released or failed by then), then the transaction (:meth:`.ReplicaWrites.apply`): the
records never name fewer voters than the quorum a released group was counted on.

**Failover** (:func:`plan_failover`; run by the lowest live member: :class:`.Failover`):
for each shard whose owner is not live and that has followers, the live followers' home
workers are asked their ``position`` with ``fence = epoch + 1``: each promises (synced
before it answers) to refuse every batch of an older epoch. With ``u`` voters not answering (the
dead leader counts), the shard fails over only if ``u < quorum``: then the answering
voters intersect every quorum that acknowledged a write, so one of them holds every
acknowledged write, and the one with the highest ``[epoch, seq]`` (ties: rendezvous
order) holds them all; and the old leader (still running behind a partition, say) can
no longer gather a quorum, since every answering voter refuses its epoch. The winner
becomes the owner with ``epoch + 1`` (one transaction per 64 shards comparing
``mod_revision``); the old owner becomes a follower (it catches up when it returns);
learners are never promoted. Shards with no live follower wait for their owner
(``ShardUnavailable``), as without replication.

**Taken back** (:meth:`.Repairs.reclaim`): a failover that raised the fences and
promoted no one (no follower held a complete copy: a shard never written; too few
answered) leaves the owner, once back, refused by its followers. It looks for such fences after
each new lease (:meth:`.Repairs.check_fences`), and its worker names a shard refused by
one in a grant reply (``stale``); either way the owner takes the shard back with an
epoch above the fence, as a Raft leader re-elected at a higher term: the record shows
no other leader ever wrote it.

Before the worker side of issue 16 exists, a worker answers ``replication`` and
``position`` with BadRequest (unknown shards command): that counts as "holds nothing" /
"did not answer", so learners are never promoted and nothing fails over (logged once),
and a grant whose replication arguments the worker does not know is sent again without
them (logged once): growth stalls visibly instead of crashing.

Invariant: :attr:`Replicas._idle_inputs` is set only by a pass that found nothing to do
and began at the coordinator's current count of changes; a pass from the same inputs
(that count, the candidates, the live members, the shards skipped) is skipped.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..log import get_logger
from .failover import Failover
from .replica_asks import ReplicaAsks
from .replica_following import Following
from .replica_grants import ReplicaGrants
from .replica_plans import led, plan_grow, plan_promote, plan_surplus, plan_transfer
from .replica_repair import Repairs
from .replica_transfers import Transfers, near
from .replica_writes import ReplicaWrites

if TYPE_CHECKING:
    from .coordinator import Coordinator

log = get_logger("cluster")


class Replicas:
    """The replica work of one node's coordinator ``co`` (see the module docstring): the
    leader's pass over its shards (:meth:`drive`), by the parts it owns."""

    def __init__(self, co: "Coordinator") -> None:
        self.co = co
        self.replicas = co.ccfg.replicas
        #: what it asks workers (shared by the parts that decide)
        self.asks = ReplicaAsks(co)
        #: the replication arguments of a grant, and the overrides of a change under way
        self.grants = ReplicaGrants(co)
        #: replica-set changes written to etcd, ordered with the grants
        self.writes = ReplicaWrites(co, self.asks, self.grants)
        #: leadership handed to the desired leaders
        self.transfers = Transfers(co, self.asks)
        #: the failover of dead leaders' shards (run by the lowest live member)
        self.failover = Failover(co, self.asks, self.writes)
        #: the leader's repairs of its own shards (lost copies resigned, fenced ones
        #: taken back)
        self.repairs = Repairs(co, self.asks, self.writes)
        #: this node as a replica of other leaders' shards
        self.following = Following(co)
        #: what :meth:`drive`'s last pass planned from, if it found nothing to do: a pass
        #: from the same inputs would find nothing again, and is skipped
        self._idle_inputs: tuple[Any, ...] | None = None

    async def drive(self, candidates: list[str]) -> bool:
        """One pass over the shards this node leads (grow, promote, transfer, surplus);
        True if something changed (loop again soon)."""
        co = self.co
        live = set(co.membership.members)
        skip = co.moving | co.unresolved | self.repairs.lost_now()
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
            n = await self.writes.apply(grow)
            log.info("shards led by %s: %d got new learners", co.me, n)
            changed = True
        learning = [s for s, r in led(co.owned, co.me, skip).items() if r.learners]
        if learning:
            promote = plan_promote(co.owned, co.me, live, await self.asks.progress(learning), skip)
            if promote:
                n = await self.writes.promote(promote)
                log.info("shards led by %s: %d learners promoted to followers", co.me, n)
                changed = True
        moves = plan_transfer(co.owned, co.me, live, candidates, R, skip)
        planned = bool(grow or learning or moves)
        if moves:        # only to a follower about to hold our last write (no long drain)
            p = await self.asks.progress(sorted(s for v in moves.values() for s in v))
            moves = {to: [s for s in v if s in p and near(p[s], to)] for to, v in moves.items()}
        moves = self.transfers.due(moves)
        if moves and await self.transfers.run(moves):
            changed = True
        now, demote = plan_surplus(co.owned, co.me, live, candidates, R, skip)
        if now or demote:
            n = await self.writes.apply({**now, **{s: r for s, (_n, r) in demote.items()}})
            log.info("shards led by %s: %d lost surplus or dead replicas", co.me, n)
            changed = True
        elif not planned and inputs[0] == co.changes:
            self._idle_inputs = inputs
        return changed
