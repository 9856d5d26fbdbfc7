"""The cluster side of a node's router: membership, ownership, grants, moves.

What a cluster node does, in order, from its router process:

* **Start.** Connect to etcd (none answering: the node stops, naming every URL tried).
  If this node's previous run is still a member (killed before its lease expired), its
  lease is revoked. Shards another node owns are swept from this node's slots (a copy
  left by a move that ended while this node was down; only once the data directory
  belongs to the cluster). Then it registers (a live node with the same ``node_id``:
  the node stops with a ConfigError) and rolls back any move it had begun and not
  finished. The first member (lowest id among the live ones) claims every unowned shard.
* **Serving.** Every :data:`GRANT_PERIOD` and at every change, each local worker is told
  the shards it may serve (owned here, homed on that slot, not being moved away), with
  their epochs and a monotonic deadline: the fence of the last lease renewal
  (``fence.py``). Past it, the workers refuse turns and commits for those shards by
  themselves, even if this router is frozen; the router logs when it fences and when it
  serves again, and ``status`` shows why.
* **Placement.** Shards belong where rendezvous hashing over the live members puts them
  (``placement.py``). A node moves the shards it owns that belong elsewhere, a batch of
  64 at a time (``moves.py``, ``handoff.py``), logging its progress; shards of a dead node
  stay its own and answer ``ShardUnavailable`` until it returns.
* **Replicas** (``[cluster] replicas`` > 1; ``replicas.py``): instead of copying, the
  leader of each shard grows, promotes and trims its set of followers and hands the
  leadership to the desired leader; its grants name the followers its workers stream to.
  The lowest live member fails the shards of a dead leader over to a follower. A node
  never sweeps shards it replicates, and drops a copy it is no longer asked to keep.
* **Leave** (:meth:`Coordinator.leave`): the node places its shards as if it were not
  a member, moves them all, then revokes its lease; the router then ends the node.
* **The map** clients get is rebuilt at every change (``clustermap.py``).
"""
from __future__ import annotations

import asyncio
import enum
import json
import os
import time
from typing import Any, Callable

from ..config import NodeConfig, NodeLayout
from ..config.cluster import ClusterConfig
from ..errors import ActorError, ConfigError, NodeUnavailable
from ..log import get_logger
from ..net.members import member_keys
from ..protocol.shardmap import ShardMap
from .clustermap import build_map, cluster_view
from .handoff import Call, drop, roll_back_unfinished
from .membership import Member, Membership, cancel_all
from .moves import Moves
from .ownership import Owned, Ownership, parse
from .replicas import Replicas

log = get_logger("cluster")

#: seconds between two grants to every local worker (a restarted worker serves again
#: within this; a renewal's new deadline reaches the workers within it)
GRANT_PERIOD = 0.1
#: every how many periodic grants one looks whether the grant changed (the others renew
#: its ``until`` only: building a grant of thousands of shards ten times a second was most
#: of an idle router's time)
GRANT_LOOK_EVERY = 5
#: seconds a grant call may take past turn_timeout (it waits for revoked shards' turns to commit)
GRANT_TIMEOUT_EXTRA = 5.0
#: seconds a periodic grant may take (the next one follows anyway)
PERIODIC_GRANT_TIMEOUT = 1.0
#: seconds before a move to a node is tried again after one failed (doubling up to the max)
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
#: where the id of this node's etcd lease is kept, in the data directory
LEASE_FILE = "cluster.lease"


class State(enum.Enum):
    """A coordinator's life: ``JOINING`` -> ``SERVING`` -> ``LEAVING`` -> ``LEFT`` (the
    value is what ``status`` shows)."""
    JOINING = "joining"
    SERVING = "serving"
    LEAVING = "leaving"
    LEFT = "left"


class Coordinator:
    """The router's cluster work (see the module docstring). ``call`` sends SHARDS
    requests to workers (this node's and others'); ``on_map`` receives every new client
    map; ``on_left`` is called once the node has left the cluster."""

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
        self.membership.on_lease_granted = self._remember_lease
        self.membership.on_lease = lambda _lease: self._on_lease()
        self.on_map, self.on_left = on_map, on_left
        #: called when a long-lived task of the coordinator ended by an error (the router
        #: then ends, and its node supervisor restarts it)
        self.on_crash: Callable[[], None] = lambda: None
        #: shard -> its ownership record, as last read or watched
        self.owned: dict[int, Owned] = {}
        #: counts the changes seen in etcd (:meth:`changed`, called after every change
        #: to ``owned`` or the members): equal counts, the same records
        self.changes = 0
        #: shards of ours being moved away: not granted
        self.moving: set[int] = set()
        #: shards of a move that etcd failed at a step that changes records: not granted
        #: until :meth:`resolve` reads whose they are
        self.unresolved: set[int] = set()
        #: seconds to wait after a failed move (0: the last one went well)
        self.backoff = 0.0
        self.state = State.JOINING
        #: the current move, for status: {"to", "done", "total"} (None: none)
        self.progress: dict[str, Any] | None = None
        self.map: ShardMap | None = None
        self.fenced: str | None = None
        self._wake = asyncio.Event()
        self._failover_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._map_due = False
        self._left: asyncio.Future[None] | None = None
        #: the copy-based moves (replicas = 1)
        self.moves = Moves(self)
        #: the replica work (replicas > 1)
        self.replicas = Replicas(self)
        #: worker slot -> (the grant last sent there but for ``until``, its token):
        #: a periodic grant with the same contents is a ``renew`` (see :meth:`_grant`)
        self.grant_memo: dict[int, tuple[dict[str, Any], bytes]] = {}
        #: worker slot -> a periodic grant to it is on its way, and after it: None
        #: (nothing more), else one more, renewing only (True) or looking (False)
        self.grant_follow: dict[int, bool | None] = {}

    def _on_lease(self) -> None:
        # (the lease is in cluster.lease already: remembered before the record was written)
        if self.ccfg.replicas > 1:     # (fences a failover raised while we were away)
            self.replicas.after_lease()

    @property
    def serving(self) -> bool:
        return self.state is State.SERVING

    @property
    def active(self) -> bool:
        """Serving or leaving: it grants, moves and drives its replicas."""
        return self.state in (State.SERVING, State.LEAVING)

    @property
    def ownership(self) -> Ownership:
        return Ownership(self.membership.client, self.ccfg.name)

    # -- start -------------------------------------------------------------------
    async def start(self) -> None:
        """Join (see the module docstring); raises ConfigError or NodeUnavailable."""
        m = self.membership
        await m.connect()
        await self._check_shard_count()
        own = self.ownership
        records = await own.read()
        if self.sweep_allowed:     # (never a shard this node replicates: follower or learner)
            stale = {s: r.epoch for s, r in records.items()
                     if r.owner != self.me and r.to != self.me and self.me not in r.replicas}
            if stale:
                await self._sweep(stale)
        await m.register(self._previous_lease())
        self.owned = await own.read()
        self.merge(await roll_back_unfinished(own, self.me, self.owned))
        self._tasks.append(self._supervised(self._watch_shards()))
        await self._claim_if_first()
        self._publish()
        await self._first_grants()
        self.state = State.SERVING
        self.replicas.following = self.replicas.replicated_here()
        self._tasks += [self._supervised(self._grant_loop()),
                        self._supervised(self._rebalance_loop())]
        if self.ccfg.replicas > 1:
            self._tasks.append(self._supervised(self._failover_loop()))
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

    def _previous_lease(self) -> int | None:
        try:
            with open(os.path.join(self.cfg.data_dir, LEASE_FILE)) as f:
                return int(f.read().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def _remember_lease(self, lease_id: int) -> None:
        """Write the lease this node is about to register under to its data dir: a
        restarted router revokes it if it still holds this node's record."""
        path = os.path.join(self.cfg.data_dir, LEASE_FILE)
        with open(path + ".tmp", "w") as f:
            f.write(str(lease_id))
        os.replace(path + ".tmp", path)

    async def _check_shard_count(self) -> None:
        """Every node of a cluster has the same shard count, ``replicas`` and ``ack``: the
        first to join writes them (``/actorsys/<cluster>/config`` = JSON ``{"shards",
        "replicas", "ack"}``); another value is a ConfigError naming both. A record
        written before replication existed (no ``replicas``) says 1 and "majority"."""
        c = self.membership.client
        key = self.ownership.shards_prefix[:-len(b"shards/")] + b"config"
        mine = {"shards": self.shards, "replicas": self.ccfg.replicas, "ack": self.ccfg.ack}
        value = json.dumps(mine).encode()
        ok, _ = await c.transaction(compare=[c.transactions.version(key) == 0],
                                    success=[c.transactions.put(key, value)], failure=[])
        if ok:
            return
        kv = await c.get(key)
        theirs = {**mine, **{"replicas": 1, "ack": "majority"}, **json.loads(kv.value)} \
            if kv is not None else mine
        check_cluster_config(self.ccfg.name, theirs, mine)

    async def _sweep(self, stale: dict[int, int]) -> None:
        """Drop our copies of shards another node owns (see the module docstring): each
        only if no move newer than its record is copying it into this node (the drop
        carries the epochs read)."""
        try:
            await drop(self.call, self.workers, self.home, stale)
        except ActorError as exc:
            log.warning("could not sweep this node's stale copies of %d shards owned "
                        "elsewhere (%s); they are never served", len(stale), exc)

    async def _claim_if_first(self) -> None:
        members = sorted(self.membership.members)
        unowned = [s for s in range(self.shards) if s not in self.owned]
        if unowned and members and members[0] == self.me:
            got = await self.ownership.claim(unowned, self.me)
            if got:
                log.info("node %s claimed %d unowned shards", self.me, len(got))
                self.merge(await self.ownership.read())

    # -- watching ------------------------------------------------------------------
    async def _watch_shards(self) -> None:
        """Keep :attr:`owned` current from etcd's events; a watch that breaks (etcd
        restarted, this node cut off) is made again, after a full read, every second."""
        own = self.ownership
        while True:
            try:
                events = await self.membership.client.watch_prefix(own.shards_prefix)
                self.merge(await own.read())         # (after the watch began: nothing missed)
                async for ev in events:
                    self._on_shard_event(own, ev)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("watching the shards' owners in etcd failed (%s: %s); watching "
                            "again in 1 s", type(exc).__name__, exc)
                await asyncio.sleep(1.0)

    def _on_shard_event(self, own: Ownership, ev: Any) -> None:
        s = own.shard_of(ev.kv.key)
        if s is None:
            return
        if ev.kind == "DELETE":
            self.owned.pop(s, None)
        else:
            try:
                rec = parse(ev.kv.value, ev.kv.mod_revision)
            except ValueError as exc:
                log.warning("%s", exc)
                return
            old = self.owned.get(s)
            if old is None or rec.revision >= old.revision:
                self.owned[s] = rec
        self.changed()

    def merge(self, records: dict[int, Owned]) -> None:
        """Take in records read or written: each only if no newer one was seen (a watch
        event can be applied while a read is on its way back)."""
        owned = self.owned
        for s, r in records.items():
            old = owned.get(s)
            if old is None or r.revision >= old.revision:
                owned[s] = r
        self.changed()

    def changed(self) -> None:
        """Something in etcd changed: rebuild the map soon, grant, plan moves again."""
        self.changes += 1
        self._wake.set()
        self._failover_wake.set()
        if not self._map_due:
            self._map_due = True
            asyncio.get_running_loop().call_soon(self._publish)

    def _publish(self) -> None:
        self._map_due = False
        self.map = build_map(self.ccfg.name, self.shards, self.membership.members, self.owned)
        self.on_map(self.map)
        loop = asyncio.get_running_loop()
        loop.create_task(self._keys_to_gateway())
        if self.active:       # a shard flipped to us serves at once
            for i in range(len(self.workers)):
                loop.create_task(self._grant_quietly(i))

    def member_keys(self) -> list[str]:
        """The CURVE public keys (Z85) of the other live members: every process of this
        node lets them in (``net/members.py``)."""
        return member_keys((m.public_key for m in self.membership.members.values()),
                           own=self.membership.me.public_key)

    def gateways(self) -> list[list[Any]]:
        """``[endpoint, public_key]`` of every live member's gateway, this node's too: a
        worker sends each the WebSocket effects of its actors (gateway/fanout.py)."""
        return sorted([m.gateway, m.public_key] for m in self.membership.members.values()
                      if m.gateway)

    async def _keys_to_gateway(self) -> None:
        """The members' keys to this node's gateway (SHARDS ``keys``): it lets in the
        other nodes' workers that send it effects (net/members.py); with the map's
        version (``ShardMap.version``): a gateway whose map differs fetches it again."""
        if self.layout.gateway is None:
            return
        try:
            args: dict[str, Any] = {"keys": self.member_keys()}
            if self.map is not None:
                args["map"] = self.map.version()
            await self.call(self.layout.gateway, "keys", args, 1.0)
        except ActorError as exc:
            log.debug("the members' keys did not reach the gateway: %s", exc)

    # -- grants --------------------------------------------------------------------
    def granted(self, slot: int) -> dict[int, int]:
        """Shard -> epoch that worker ``slot`` may serve now."""
        home, me, moving, lost = self.home, self.me, self.moving, self.replicas.lost
        stale = self.replicas.stale      # (fenced above our epoch: not until taken back)
        return {s: r.epoch for s, r in self.owned.items()
                if r.owner == me and r.to is None and home[s] == slot and s not in moving
                and lost.get(s) != r.epoch and stale.get(s, 0) <= r.epoch}

    def _grant_base(self, slot: int) -> dict[str, Any]:
        """What a grant to worker ``slot`` says now, but for ``until`` and ``token``."""
        shards = self.granted(slot)
        base: dict[str, Any] = {
            "shards": shards, "epoch": self.map.epoch if self.map else 0,
            "keys": self.member_keys(), "gateways": self.gateways(), "node": self.me,
            "why": (f"node {self.me} has not renewed its etcd lease in time (lease_ttl "
                    f"{self.ccfg.lease_ttl:g} s): it serves its shards again once a renewal "
                    f"succeeds, and no other node serves them meanwhile")}
        if self._replicated_grants():
            base.update(self.replicas.grant_args(shards))
        return base

    def _replicated_grants(self) -> bool:
        """Grants carry replication arguments (replicas > 1, and the workers know them)."""
        return self.ccfg.replicas > 1 and not self.replicas.plain_grants

    def _until(self) -> float:
        """The serving deadline a grant or renew gives (0.0: none yet)."""
        until = self.membership.fence.serve_until
        return until if until != float("-inf") else 0.0

    async def _grant(self, slot: int, timeout: float | None = None, periodic: bool = False,
                     renew_only: bool = False) -> dict[str, Any]:
        """Tell worker ``slot`` what it may serve (see the module docstring). ``periodic``:
        when the grant is the one last sent there but for ``until``, only ``renew`` it
        (the worker then need not take in thousands of shards' arguments again; it
        answers ``renewed: false`` if it needs the whole grant, which follows at once).
        ``renew_only``: renew without looking whether the grant changed (the periodic
        loop's rounds between two looks: every change in etcd is granted at once by
        :meth:`_publish`, and the moves' and replicas' own changes by :meth:`grant_all`).
        The grant a renew names is the last one sent (the worker applies them in order,
        as they arrive, even one whose answer waits for revoked shards to drain): so the
        deadline keeps reaching a worker while such a drain lasts."""
        timeout = timeout or self.cfg.turn_timeout + GRANT_TIMEOUT_EXTRA
        memo = self.grant_memo.get(slot)
        base: dict[str, Any] | None = None
        if periodic and memo is not None:
            if not renew_only:
                base = self._grant_base(slot)
            if renew_only or memo[0] == base:
                try:
                    renewed = await self.call(self.workers[slot], "renew",
                                              {"token": memo[1], "until": self._until()}, timeout)
                except ActorError:
                    self._forget_grant(slot, memo[1])
                    raise
                if isinstance(renewed, dict) and renewed.get("renewed"):
                    return renewed
                self._forget_grant(slot, memo[1])
                return await self._grant(slot, timeout)     # (its contents as of now)
        if base is None:
            base = self._grant_base(slot)
        replicated = self._replicated_grants()
        token = os.urandom(8)
        args = {**base, "until": self._until(), "token": token}
        self.grant_memo[slot] = (base, token)          # (the last sent: see the docstring)
        try:
            reply: dict[str, Any] = await self.call(self.workers[slot], "grant", args, timeout)
        except ActorError as exc:
            self._forget_grant(slot, token)
            if not replicated or not self.replicas.grant_refused(exc):
                raise
            plain = {k: v for k, v in args.items() if k not in ("peers", "replicas", "ack",
                                                                "ack_timeout")}
            reply = await self.call(self.workers[slot], "grant", plain, timeout)
        if not replicated:
            return reply
        # a worker whose database was lost serves none of its empty copies (it refused
        # them, even in its first grant): they are not granted again, and resigned
        if isinstance(reply, dict) and reply.get("refused"):
            self.replicas.refused_lost(slot, [int(s) for s in reply["refused"]])
        # shards it refused as granted below a follower's fence: taken back (or followed)
        if isinstance(reply, dict) and isinstance(reply.get("stale"), dict):
            self.replicas.stale_grant(reply["stale"])
        return reply

    def _forget_grant(self, slot: int, token: bytes) -> None:
        """A grant (or renew) named ``token`` failed: the next periodic one is whole (a
        newer grant sent meanwhile stays remembered)."""
        memo = self.grant_memo.get(slot)
        if memo is not None and memo[1] == token:
            del self.grant_memo[slot]

    async def _first_grants(self) -> None:
        """Every local worker has its first grant before the router serves anything
        (a cluster worker serves nothing until then); a worker still starting is asked
        again until ``start_timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.start_timeout
        todo = list(range(len(self.workers)))
        while todo:
            replies = await asyncio.gather(*(self._grant(i, timeout=1.0) for i in todo),
                                           return_exceptions=True)
            failed = [(i, r) for i, r in zip(todo, replies) if isinstance(r, BaseException)]
            todo = [i for i, _r in failed]
            if todo and loop.time() >= deadline:
                raise NodeUnavailable(f"worker slot(s) {todo} did not take their first shard "
                                      f"grant within start_timeout ({failed[0][1]})")

    async def grant_all(self, slots: list[int] | None = None) -> None:
        """Grant every (or these) local worker(s) its shards; returns once they applied
        it (revoked shards drained). A worker that does not answer is logged: it serves
        nothing it was not granted, and the next period grants it again."""
        todo = range(len(self.workers)) if slots is None else slots
        replies = await asyncio.gather(*(self._grant(i) for i in todo), return_exceptions=True)
        for i, r in zip(todo, replies):
            if isinstance(r, BaseException):
                if slots is not None:
                    raise r
                log.warning("worker slot %d did not take its shard grant: %s", i, r)

    async def _grant_loop(self) -> None:
        loop = asyncio.get_running_loop()
        rounds = 0
        while True:
            await asyncio.sleep(GRANT_PERIOD)
            rounds += 1
            if rounds % 10 == 0:        # (a restarted gateway gets the keys within a second)
                loop.create_task(self._keys_to_gateway())
            why = self.membership.fence.why_not(loop.time())
            if bool(why) != bool(self.fenced):    # (once per change: the text counts seconds)
                if why:
                    log.error("node %s is fenced: %s", self.me, why)
                else:
                    log.info("node %s renewed its etcd lease: serving its shards again", self.me)
            self.fenced = why
            for i in range(len(self.workers)):
                loop.create_task(self._grant_quietly(i, renew_only=rounds % GRANT_LOOK_EVERY != 0))
            if (self.replicas.lost or self.replicas.stale) and \
                    self.membership.fence.may_serve(loop.time()):
                self.replicas.kick()   # (lost shards not handed over, fenced ones not taken back)

    async def _grant_quietly(self, slot: int, renew_only: bool = False) -> None:
        """A periodic grant (or one at a change), errors logged at debug: while one to
        ``slot`` is on its way, the next ones make a single grant after it (a look at the
        contents if any of them wanted one), never a queue."""
        if slot in self.grant_follow:          # (one is on its way: one more after it)
            wanted = self.grant_follow[slot]
            self.grant_follow[slot] = renew_only if wanted is None else wanted and renew_only
            return
        self.grant_follow[slot] = None
        try:
            while True:
                try:
                    await self._grant(slot, timeout=PERIODIC_GRANT_TIMEOUT, periodic=True,
                                      renew_only=renew_only)
                except Exception as exc:
                    log.debug("grant to worker slot %d failed: %s", slot, exc)
                wanted = self.grant_follow[slot]
                if wanted is None:
                    return
                self.grant_follow[slot] = None
                renew_only = wanted
        finally:
            self.grant_follow.pop(slot, None)

    # -- moves ---------------------------------------------------------------------
    def count_mine(self) -> int:
        return sum(1 for r in self.owned.values() if r.owner == self.me)

    async def _rebalance_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:              # (not wait_for: see _failover_loop)
                async with asyncio.timeout(1.0):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            if not self.active:
                continue
            if not self.membership.fence.may_serve(loop.time()):
                continue
            try:
                await self._claim_if_first()      # (a first node that died while claiming)
                if self.unresolved:
                    await self.moves.resolve()
                if self.ccfg.replicas > 1:
                    await self.replicas.drop_released()
                    live, settled = self.moves.candidates()
                    again = await self.replicas.drive([n for n in live if n in settled])
                    if self.state is State.LEAVING and self.count_mine() == 0:
                        await self._finish_leaving()
                        return
                    failed = False
                    if not again:
                        continue
                else:
                    plan = self.moves.plan()
                    if not plan:
                        if self.state is State.LEAVING and self.count_mine() == 0 and not any(
                                r.to == self.me for r in self.owned.values()):
                            await self._finish_leaving()
                            return
                        continue
                    failed = not await self.moves.move_all(plan)
            except Exception as exc:      # logged; the next wake plans again
                log.error("moving shards failed: %s: %s", type(exc).__name__, exc)
                failed = True
            finally:
                self.progress = None
            if failed:                    # (a lasting failure must not become a busy loop)
                self.backoff = min(self.backoff * 2 or BACKOFF_FIRST, BACKOFF_MAX)
                await asyncio.sleep(self.backoff)
            else:
                self.backoff = 0.0
            self._wake.set()

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

    async def _failover_loop(self) -> None:
        """``replicas`` > 1: the lowest live member fails over the shards of dead leaders
        (``replicas.py``), at every change and every second."""
        loop = asyncio.get_running_loop()
        while True:
            # (not wait_for: on 3.11 it can swallow a cancellation that races with the
            # event, set at every change, and then leave() would wait on this loop forever)
            try:
                async with asyncio.timeout(1.0):
                    await self._failover_wake.wait()
            except TimeoutError:
                pass
            self._failover_wake.clear()
            live = sorted(self.membership.members)
            if not self.active or not live or live[0] != self.me or \
                    not self.membership.fence.may_serve(loop.time()):
                continue
            try:
                await self.replicas.failover()
            except Exception as exc:      # logged; the next wake tries again
                log.error("failing over the shards of dead nodes failed: %s: %s",
                          type(exc).__name__, exc)
                await asyncio.sleep(0.5)

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
            self._wake.set()
        had, started = self.count_mine(), time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(self._left), timeout)
        except asyncio.TimeoutError:
            raise ActorError(f"node {self.me} could not move its shards within {timeout:g} s "
                             f"({self.count_mine()} left); it goes on trying") from None
        return {"moved": had, "seconds": round(time.monotonic() - started, 3)}

    async def _finish_leaving(self) -> None:
        await cancel_all(self._tasks)        # (this one, the rebalance loop, ends itself)
        await self.membership.leave()
        self.state = State.LEFT
        log.info("node %s left cluster %r", self.me, self.ccfg.name)
        if self._left is not None and not self._left.done():
            self._left.set_result(None)
        self.on_left()

    async def close(self) -> None:
        await cancel_all(self._tasks + self.replicas.tasks())
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
            out["following"] = len(self.replicas.replicated_here())
        return out



def check_cluster_config(name: str, theirs: dict[str, Any], mine: dict[str, Any]) -> None:
    """ConfigError if this node's shard count, ``replicas`` or ``ack`` differ from the
    cluster's (``theirs``, as recorded by its first node), naming both."""
    if theirs.get("shards") != mine["shards"]:
        raise ConfigError(f"cluster {name!r} has {theirs.get('shards')} shards; this node's data "
                          f"directory has {mine['shards']} (the shard count cannot change: give "
                          f"the node a new data directory with shards = {theirs.get('shards')})",
                          key="node.shards")
    for k in ("replicas", "ack"):
        if theirs.get(k) != mine[k]:
            raise ConfigError(f"cluster {name!r} has {k} = {theirs.get(k)!r}; this node's config "
                              f"says {k} = {mine[k]!r} (every node of a cluster must say the same: "
                              f"set [cluster] {k} = {json.dumps(theirs.get(k))})",
                              key=f"cluster.{k}")
