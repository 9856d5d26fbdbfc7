"""The cluster side of a node's router: membership, ownership, grants, moves.

What a cluster node does, in order, from its router process:

* **Start.** Connect to etcd (none answering: the node stops, naming every URL tried).
  If this node's previous run is still a member (killed before its lease expired), its
  lease is revoked. Shards another node owns are swept from this node's slots (a copy
  left by a move that ended while this node was down; only once the data directory
  belongs to the cluster). Then it registers (a live node with the same ``node_id``:
  the node stops with a ConfigError) and rolls back any move it had begun and not
  finished. The first member (lowest id among the live ones) claims every unowned shard,
  each for the member placement puts it on; a cluster forming (no shard owned yet) waits
  first for ``[cluster] bootstrap_expect`` live members, at most ``bootstrap_timeout``
  (:meth:`Coordinator.claim_if_first`).
* **Serving.** Every :data:`~.grants.GRANT_PERIOD` and at every change, each local
  worker is told the shards it may serve (owned here, homed on that slot, not being moved
  away), with their epochs and a monotonic deadline: the fence of the last lease renewal
  (``fence.py``). Past it, the workers refuse turns and commits for those shards by
  themselves, even if this router is frozen; the router logs when it fences and when it
  serves again, and ``status`` shows why (``grants.py``).
* **Placement.** Shards belong where rendezvous hashing over the live members puts them
  (``placement.py``). A node moves the shards it owns that belong elsewhere, a batch of
  64 at a time (``rebalance.py``, ``moves.py``, ``handoff.py``), logging its progress;
  shards of a dead node stay its own and answer ``ShardUnavailable`` until it returns.
* **Replicas** (``[cluster] replicas`` > 1; ``replicas.py``): instead of copying, the
  leader of each shard grows, promotes and trims its set of followers and hands the
  leadership to the desired leader; its grants name the followers its workers stream to.
  The lowest live member fails the shards of a dead leader over to a follower
  (``failover.py``). A node never sweeps shards it replicates, and drops a copy it is no
  longer asked to keep.
* **Leave** (:meth:`Coordinator.leave`): the node places its shards as if it were not
  a member, moves them all, then revokes its lease; the router then ends the node.
* **The map** clients get is rebuilt at every change (``clustermap.py``) of the records
  or the members (``records.py`` counts them).

:class:`Coordinator` runs that life (join, serve, leave) and owns the parts that do the
work, each with one job: the records (``records.py``), the grants (``grants.py``), the
placement loop (``rebalance.py``), the copy-based moves (``moves.py``) and the replica
work (``replicas.py``); the steps of a join are functions in ``join.py``. The parts read
the state they share from the coordinator (see its docstring).
"""
from __future__ import annotations

import asyncio
import enum
import functools
import time
from typing import Any, Callable

from ..config import NodeConfig, NodeLayout
from ..config.cluster import ClusterConfig
from ..errors import ActorError
from ..log import get_logger
from ..protocol.shardmap import ShardMap
from .clustermap import build_map, cluster_view
from .grants import Grants
from .handoff import Call, roll_back_unfinished
from .join import check_shard_count, previous_lease, remember_lease, sweep
from .membership import Member, Membership, cancel_all
from .moves import Moves
from .ownership import Owned, Ownership
from .placement import owner
from .rebalance import Rebalance
from .records import ShardRecords
from .replicas import Replicas

log = get_logger("cluster")


class State(enum.Enum):
    """A coordinator's life: ``JOINING`` -> ``SERVING`` -> ``LEAVING`` -> ``LEFT`` (the
    value is what ``status`` shows)."""
    JOINING = "joining"
    SERVING = "serving"
    LEAVING = "leaving"
    LEFT = "left"


class Coordinator:
    """A node's cluster life (see the module docstring): it joins, serves and leaves, and
    wires its parts together. ``call`` sends SHARDS requests to workers (this node's and
    others'); ``on_map`` receives every new client map; ``on_left`` is called once the
    node has left the cluster.

    What its parts share, read from it: the configuration (``cfg``, ``ccfg``, ``me``,
    ``shards``, ``home``, ``workers``, ``call``), ``membership`` and ``ownership``,
    ``owned`` and ``changes`` (of :attr:`records`), ``moving`` and ``unresolved``,
    ``map``, ``progress`` and the state (:attr:`active`, :attr:`serving`,
    :attr:`leaving`); and what they call: :meth:`merge`, :meth:`changed`,
    :meth:`grant_all`, :meth:`stop_serving`, :meth:`serve_again`, :meth:`count_mine`,
    :meth:`claim_if_first`, :meth:`finish_leaving`.

    Invariants: ``state`` only moves forward (see :class:`State`); a shard in ``moving``
    or ``unresolved`` is granted to no worker; ``progress`` is set only while a move
    runs."""

    def __init__(self, cfg: NodeConfig, layout: NodeLayout, meta: dict[str, Any], call: Call,
                 public_key: str | None, on_map: Callable[[ShardMap], None],
                 on_left: Callable[[], None]) -> None:
        assert cfg.cluster is not None
        self.cfg, self.layout, self.call = cfg, layout, call
        self.ccfg = ClusterConfig(**cfg.cluster)
        self.me = self.ccfg.node_id
        self.shards = int(meta["shards"])
        self.home = bytes(meta["owner"])
        self.sweep_allowed = not meta.get("cluster_joined_now", False)
        self.workers = list(layout.workers)
        self.membership = Membership(self.ccfg, Member(self.me, layout.router, public_key,
                                                       tuple(self.workers), self.home,
                                                       gateway=layout.gateway),
                                     on_change=lambda _m: self.changed())
        # the lease of every registration, also a re-join after the lease expired, is
        # remembered before the record is written under it: a router restarted later
        # finds its own record under the lease it remembers
        self.membership.on_lease_granted = functools.partial(remember_lease, cfg.data_dir)
        self.membership.on_lease = lambda _lease: self._on_lease()
        self.on_map, self.on_left = on_map, on_left
        #: called when a long-lived task of the coordinator ended by an error (the router
        #: then ends, and its node supervisor restarts it)
        self.on_crash: Callable[[], None] = lambda: None
        #: the shards' ownership records, as last read or watched, and the count of
        #: changes seen (``owned`` and ``changes``)
        self.records = ShardRecords(self._on_change)
        #: shards of ours being moved away: not granted
        self.moving: set[int] = set()
        #: shards of a move that etcd failed at a step that changes records: not granted
        #: until ``Moves.resolve`` reads whose they are
        self.unresolved: set[int] = set()
        self.state = State.JOINING
        #: the current move, for status: {"to", "done", "total"} (None: none)
        self.progress: dict[str, Any] | None = None
        self.map: ShardMap | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._map_due = False
        #: when this coordinator began (a forming cluster's claim waits from it), and
        #: when the wait may next say so
        self._started = time.monotonic()
        self._bootstrap_note = 0.0
        self._left: asyncio.Future[None] | None = None
        #: the copy-based moves (replicas = 1)
        self.moves = Moves(self)
        #: the replica work (replicas > 1)
        self.replicas = Replicas(self)
        #: the grants to this node's workers, and the keys to its gateway
        self.grants = Grants(self)
        #: the loop that places this node's shards (moves, or the replicas' pass)
        self.rebalance = Rebalance(self)

    def _on_lease(self) -> None:
        # (the lease is in cluster.lease already: remembered before the record was written)
        if self.ccfg.replicas > 1:     # (fences a failover raised while we were away)
            self.replicas.repairs.after_lease()

    @property
    def serving(self) -> bool:
        return self.state is State.SERVING

    @property
    def active(self) -> bool:
        """Serving or leaving: it grants, moves and drives its replicas."""
        return self.state in (State.SERVING, State.LEAVING)

    @property
    def leaving(self) -> bool:
        return self.state is State.LEAVING

    @property
    def ownership(self) -> Ownership:
        return Ownership(self.membership.client, self.ccfg.name)

    @property
    def owned(self) -> dict[int, Owned]:
        """Shard -> its ownership record, as last read or watched (:attr:`records`)."""
        return self.records.owned

    @property
    def changes(self) -> int:
        """The count of changes seen in etcd (:attr:`records`): equal counts, the same
        records and members."""
        return self.records.changes

    # -- start -------------------------------------------------------------------
    async def start(self) -> None:
        """Join (see the module docstring); raises ConfigError or NodeUnavailable."""
        m = self.membership
        await m.connect()
        await check_shard_count(self.ownership, self.ccfg, self.shards)
        own = self.ownership
        records = await own.read()
        if self.sweep_allowed:     # (never a shard this node replicates: follower or learner)
            stale = {s: r.epoch for s, r in records.items()
                     if r.owner != self.me and r.to != self.me and self.me not in r.replicas}
            if stale:
                await sweep(self.call, self.workers, self.home, stale)
        await m.register(previous_lease(self.cfg.data_dir))
        self.records.owned = await own.read()
        self.merge(await roll_back_unfinished(own, self.me, self.owned))
        self._tasks.append(self._supervised(self.records.watch_shards(self.ownership)))
        await self.claim_if_first()
        self._publish()
        await self.grants.first_grants()
        self.state = State.SERVING
        following = self.replicas.following
        following.shards = following.replicated_here()
        self._tasks += [self._supervised(self.grants.grant_loop()),
                        self._supervised(self.rebalance.rebalance_loop())]
        if self.ccfg.replicas > 1:
            self._tasks.append(self._supervised(self.replicas.failover.failover_loop()))
        log.info("node %s joined cluster %r (%d live members, %d shards owned here)", self.me,
                 self.ccfg.name, len(m.members), self.count_mine())

    def _supervised(self, coro: Any) -> asyncio.Task[None]:
        """A long-lived task of the coordinator; one that ends by an error is logged
        and ends the router (``on_crash``: its node supervisor restarts it), never a
        silent stop of watching, granting or moving."""
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)

        def done(t: asyncio.Task[None]) -> None:
            if t.cancelled() or self.state is State.LEFT:
                return
            exc = t.exception()
            log.error("the cluster task %s ended (%s); restarting the router",
                      getattr(coro, "__name__", "?"), f"{type(exc).__name__}: {exc}" if exc
                      else "returned")
            self.on_crash()
        task.add_done_callback(done)
        return task

    async def claim_if_first(self) -> None:
        """The first member (lowest live id) claims every unowned shard, each for the
        member placement puts it on among the live ones: nodes that start together then
        move nothing. While no shard has an owner (the cluster is forming) and fewer than
        ``bootstrap_expect`` members are live, it waits (the rebalance loop calls this
        again at every change and every second), up to ``bootstrap_timeout`` from this
        node's start; past it, it claims for those live, with a warning."""
        every = sorted(self.membership.members)
        if not every or every[0] != self.me or len(self.owned) >= self.shards:
            return        # (every router asks each second: the cheap answers first)
        unowned = [s for s in range(self.shards) if s not in self.owned]
        # placed on the members not leaving; each claim requires its member's record
        members = [n for n in every if not self.membership.members[n].leaving]
        if not members:
            return
        expect = self.ccfg.bootstrap_expect
        if not self.owned and len(members) < expect:
            now = time.monotonic()
            waited = now - self._started
            if waited < self.ccfg.bootstrap_timeout:
                if now >= self._bootstrap_note:
                    self._bootstrap_note = now + 5.0
                    log.info("cluster %r is forming: %d of %d expected nodes live (%s); its "
                             "shards are claimed when all are, or in %.0f s", self.ccfg.name,
                             len(members), expect, ", ".join(members),
                             self.ccfg.bootstrap_timeout - waited)
                return
            log.warning("cluster %r: %d of bootstrap_expect = %d nodes live after %g s "
                        "(bootstrap_timeout); claiming its shards for those: %s", self.ccfg.name,
                        len(members), expect, self.ccfg.bootstrap_timeout, ", ".join(members))
        by_node: dict[str, list[int]] = {}
        for s in unowned:
            by_node.setdefault(owner(s, members), []).append(s)
        nodes = self.membership.nodes_prefix
        got = {n: len(await self.ownership.claim(shards, n, nodes + n.encode()))
               for n, shards in sorted(by_node.items())}
        if any(got.values()):
            log.info("node %s claimed %d unowned shards: %s", self.me, sum(got.values()),
                     ", ".join(f"{n} {k}" for n, k in got.items() if k))
            self.merge(await self.ownership.read())

    # -- changes -------------------------------------------------------------------
    def merge(self, records: dict[int, Owned]) -> None:
        """Take in records read or written (``ShardRecords.merge``)."""
        self.records.merge(records)

    def changed(self) -> None:
        """Something in etcd changed: count it (``ShardRecords.changed``), then
        :meth:`_on_change`."""
        self.records.changed()

    def _on_change(self) -> None:
        """A change was counted: rebuild the map soon, grant, plan moves again."""
        self.rebalance.wake.set()
        self.replicas.failover.wake.set()
        if not self._map_due:
            self._map_due = True
            asyncio.get_running_loop().call_soon(self._publish)

    def _publish(self) -> None:
        self._map_due = False
        self.map = build_map(self.ccfg.name, self.shards, self.membership.members, self.owned)
        self.on_map(self.map)
        self.grants.send(self.grants.keys_to_gateway())
        if self.active:       # a shard flipped to us serves at once
            for i in range(len(self.workers)):
                self.grants.send(self.grants.grant_quietly(i))

    def member_keys(self) -> list[str]:
        """The CURVE public keys (Z85) of the other live members (``Grants.member_keys``)."""
        return self.grants.member_keys()

    # -- grants for the moves --------------------------------------------------------
    async def grant_all(self, slots: list[int] | None = None) -> None:
        """Grant every (or these) local worker(s) its shards (``Grants.grant_all``)."""
        await self.grants.grant_all(slots)

    async def stop_serving(self, shards: list[int]) -> None:
        """Stop serving ``shards`` here (a move or transfer of them began); returns once
        the workers drained them."""
        self.moving.update(shards)
        await self.grant_all(sorted({self.home[s] for s in shards}))

    async def serve_again(self, shards: list[int]) -> None:
        """A move of ``shards`` was rolled back: serve them again."""
        self.moving.difference_update(shards)
        self.merge(await self.ownership.read())
        await self.grant_all(sorted({self.home[s] for s in shards}))

    def count_mine(self) -> int:
        return sum(1 for r in self.owned.values() if r.owner == self.me)

    # -- leave and stop ------------------------------------------------------------
    async def leave(self, timeout: float) -> dict[str, Any]:
        """Move every shard of this node to the others, then leave the cluster.
        Returns ``{"moved": n, "seconds": t}``; raises ActorError if it could not."""
        others = [n for n, m in self.membership.members.items() if n != self.me and not m.leaving]
        if not others:
            raise ActorError(f"node {self.me} is the only live member of cluster "
                             f"{self.ccfg.name!r}: its shards have nowhere to go")
        if self._left is None:
            await self.membership.mark_leaving()      # (etcd fails: nothing changed, says why)
            self._left = asyncio.get_running_loop().create_future()
            self.state = State.LEAVING
            self.rebalance.wake.set()
        had, started = self.count_mine(), time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(self._left), timeout)
        except asyncio.TimeoutError:
            raise ActorError(f"node {self.me} could not move its shards within {timeout:g} s "
                             f"({self.count_mine()} left); it goes on trying") from None
        return {"moved": had, "seconds": round(time.monotonic() - started, 3)}

    async def finish_leaving(self) -> None:
        """Nothing is left here (the placement loop, which calls this, then ends):
        stop every task, leave the membership, tell the router."""
        await cancel_all(self._tasks)        # (this one, the rebalance loop, ends itself)
        await self.membership.leave()
        self.state = State.LEFT
        log.info("node %s left cluster %r", self.me, self.ccfg.name)
        if self._left is not None and not self._left.done():
            self._left.set_result(None)
        self.on_left()

    async def close(self) -> None:
        await cancel_all(self._tasks + self.replicas.repairs.tasks() + list(self.grants.sending))
        if self.state is not State.LEFT:
            await self.membership.leave()

    # -- views ---------------------------------------------------------------------
    def view(self) -> dict[str, Any]:
        """``client.cluster()``."""
        assert self.map is not None
        return cluster_view(self.map, self.owned, self.membership.members, self.ccfg.replicas)

    def status(self) -> dict[str, Any]:
        """This node's part, for ``actorsys status``."""
        out = {"name": self.ccfg.name, "node_id": self.me, "state": self.state.value,
               "members": sorted(self.membership.members), "shards_owned": self.count_mine(),
               "fenced": self.membership.fence.why_not(asyncio.get_running_loop().time()),
               "moving": self.progress}
        if self.ccfg.replicas > 1:
            out["replicas"] = self.ccfg.replicas
            out["following"] = len(self.replicas.following.replicated_here())
        return out
