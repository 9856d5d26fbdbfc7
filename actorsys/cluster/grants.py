"""A cluster node's grants, from its router to its own workers (issue 15; the workers'
side is ``runtime/grants.py``), and the members' keys to its gateway.

:class:`Grants` tells each local worker, every :data:`GRANT_PERIOD` and at every change
(``Coordinator`` publishing a new map), the shards it may serve (:meth:`Grants.granted`:
owned here, homed on that slot, not being moved away, not lost there, not fenced above
our epoch), with their epochs and a monotonic deadline: the fence of the last lease
renewal (``fence.py``). Past it, the workers refuse turns and commits for those shards by
themselves, even if this router is frozen; the grant loop logs when the node fences and
when it serves again. A grant also carries the CURVE keys of the live members and their
gateways' endpoints; with ``replicas`` > 1, each shard's peers (``replica_grants.py``).

Most periodic grants only ``renew`` the deadline of the last grant sent (a grant of
thousands of shards is costly to build and to take in): every :data:`GRANT_LOOK_EVERY`-th
one looks whether the grant changed, and sends it whole if so. Grants to one slot never
queue up: while one is on its way, the next ones become a single grant after it.

Invariants: ``grant_memo[slot]`` is the last grant sent to ``slot`` but for ``until``
(and its token), dropped once a grant or renew with that token failed (the next periodic
one is whole); ``grant_follow`` has a key for ``slot`` exactly while a periodic grant to
it is on its way; ``fenced`` is why the node was fenced at the last period (None: it
serves).
"""
from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..errors import ActorError, NodeUnavailable
from ..log import get_logger
from ..net.members import member_keys

if TYPE_CHECKING:
    from .coordinator import Coordinator

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


class Grants:
    """What one node's router tells its workers and its gateway (see the module
    docstring), from the state of its coordinator ``co``."""

    def __init__(self, co: "Coordinator") -> None:
        self.co = co
        #: why the node is fenced, as of the last period (None: it serves)
        self.fenced: str | None = None
        #: worker slot -> (the grant last sent there but for ``until``, its token):
        #: a periodic grant with the same contents is a ``renew`` (see :meth:`_grant`)
        self.grant_memo: dict[int, tuple[dict[str, Any], bytes]] = {}
        #: worker slot -> a periodic grant to it is on its way, and after it: None
        #: (nothing more), else one more, renewing only (True) or looking (False)
        self.grant_follow: dict[int, bool | None] = {}
        #: the grants and key pushes on their way (:meth:`send`): held here, since the
        #: loop keeps only weak references to tasks; cancelled by ``Coordinator.close``
        self.sending: set[asyncio.Task[None]] = set()

    def send(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` (a grant or a key push, each logging its own failure) in the
        background, held in :attr:`sending` until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)

    def granted(self, slot: int) -> dict[int, int]:
        """Shard -> epoch that worker ``slot`` may serve now."""
        co = self.co
        home, me, moving, lost = co.home, co.me, co.moving, co.replicas.repairs.lost
        stale = co.replicas.repairs.stale      # (fenced above our epoch: not until taken back)
        return {s: r.epoch for s, r in co.owned.items()
                if r.owner == me and r.to is None and home[s] == slot and s not in moving
                and lost.get(s) != r.epoch and stale.get(s, 0) <= r.epoch}

    def _grant_base(self, slot: int) -> dict[str, Any]:
        """What a grant to worker ``slot`` says now, but for ``until`` and ``token``."""
        co = self.co
        shards = self.granted(slot)
        base: dict[str, Any] = {
            "shards": shards, "epoch": co.map.epoch if co.map else 0,
            "keys": self.member_keys(), "gateways": self.gateways(), "node": co.me,
            "why": (f"node {co.me} has not renewed its etcd lease in time (lease_ttl "
                    f"{co.ccfg.lease_ttl:g} s): it serves its shards again once a renewal "
                    f"succeeds, and no other node serves them meanwhile")}
        if self._replicated_grants():
            base.update(co.replicas.grants.grant_args(shards))
        return base

    def _replicated_grants(self) -> bool:
        """Grants carry replication arguments (replicas > 1, and the workers know them)."""
        return self.co.ccfg.replicas > 1 and not self.co.replicas.grants.plain_grants

    def _until(self) -> float:
        """The serving deadline a grant or renew gives (0.0: none yet)."""
        until = self.co.membership.fence.serve_until
        return until if until != float("-inf") else 0.0

    async def _grant(self, slot: int, timeout: float | None = None, periodic: bool = False,
                     renew_only: bool = False) -> dict[str, Any]:
        """Tell worker ``slot`` what it may serve (see the module docstring). ``periodic``:
        when the grant is the one last sent there but for ``until``, only ``renew`` it
        (the worker then need not take in thousands of shards' arguments again; it
        answers ``renewed: false`` if it needs the whole grant, which follows at once).
        ``renew_only``: renew without looking whether the grant changed (the periodic
        loop's rounds between two looks: every change in etcd is granted at once by
        ``Coordinator._publish``, and the moves' and replicas' own changes by
        :meth:`grant_all`). The grant a renew names is the last one sent (the worker
        applies them in order, as they arrive, even one whose answer waits for revoked
        shards to drain): so the deadline keeps reaching a worker while such a drain lasts."""
        co = self.co
        timeout = timeout or co.cfg.turn_timeout + GRANT_TIMEOUT_EXTRA
        memo = self.grant_memo.get(slot)
        base: dict[str, Any] | None = None
        if periodic and memo is not None:
            if not renew_only:
                base = self._grant_base(slot)
            if renew_only or memo[0] == base:
                try:
                    renewed = await co.call(co.workers[slot], "renew",
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
            reply: dict[str, Any] = await co.call(co.workers[slot], "grant", args, timeout)
        except ActorError as exc:
            self._forget_grant(slot, token)
            if not replicated or not co.replicas.grants.grant_refused(exc):
                raise
            plain = {k: v for k, v in args.items() if k not in ("peers", "replicas", "ack",
                                                                "ack_timeout")}
            reply = await co.call(co.workers[slot], "grant", plain, timeout)
        if not replicated:
            return reply
        # a worker whose database was lost serves none of its empty copies (it refused
        # them, even in its first grant): they are not granted again, and resigned
        if isinstance(reply, dict) and reply.get("refused"):
            co.replicas.repairs.refused_lost(slot, [int(s) for s in reply["refused"]])
        # shards it refused as granted below a follower's fence: taken back (or followed)
        if isinstance(reply, dict) and isinstance(reply.get("stale"), dict):
            co.replicas.repairs.stale_grant(reply["stale"])
        return reply

    def _forget_grant(self, slot: int, token: bytes) -> None:
        """A grant (or renew) named ``token`` failed: the next periodic one is whole (a
        newer grant sent meanwhile stays remembered)."""
        memo = self.grant_memo.get(slot)
        if memo is not None and memo[1] == token:
            del self.grant_memo[slot]

    async def first_grants(self) -> None:
        """Every local worker has its first grant before the router serves anything
        (a cluster worker serves nothing until then); a worker still starting is asked
        again until ``start_timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.co.cfg.start_timeout
        todo = list(range(len(self.co.workers)))
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
        todo = range(len(self.co.workers)) if slots is None else slots
        replies = await asyncio.gather(*(self._grant(i) for i in todo), return_exceptions=True)
        for i, r in zip(todo, replies):
            if isinstance(r, BaseException):
                if slots is not None:
                    raise r
                log.warning("worker slot %d did not take its shard grant: %s", i, r)

    async def grant_loop(self) -> None:
        """Every GRANT_PERIOD: a grant (mostly a renew) to each worker, the fence logged
        when it changes, the replicas' repairs kicked; every second, the keys to the
        gateway."""
        co = self.co
        loop = asyncio.get_running_loop()
        rounds = 0
        while True:
            await asyncio.sleep(GRANT_PERIOD)
            rounds += 1
            if rounds % 10 == 0:        # (a restarted gateway gets the keys within a second)
                self.send(self.keys_to_gateway())
            why = co.membership.fence.why_not(loop.time())
            if bool(why) != bool(self.fenced):    # (once per change: the text counts seconds)
                if why:
                    log.error("node %s is fenced: %s", co.me, why)
                else:
                    log.info("node %s renewed its etcd lease: serving its shards again", co.me)
            self.fenced = why
            for i in range(len(co.workers)):
                self.send(self.grant_quietly(i, renew_only=rounds % GRANT_LOOK_EVERY != 0))
            repairs = co.replicas.repairs
            if (repairs.lost or repairs.stale) and co.membership.fence.may_serve(loop.time()):
                repairs.kick()   # (lost shards not handed over, fenced ones not taken back)

    async def grant_quietly(self, slot: int, renew_only: bool = False) -> None:
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

    # -- keys ----------------------------------------------------------------------
    def member_keys(self) -> list[str]:
        """The CURVE public keys (Z85) of the other live members: every process of this
        node lets them in (``net/members.py``)."""
        membership = self.co.membership
        return member_keys((m.public_key for m in membership.members.values()),
                           own=membership.me.public_key)

    def gateways(self) -> list[list[Any]]:
        """``[endpoint, public_key]`` of every live member's gateway, this node's too: a
        worker sends each the WebSocket effects of its actors (gateway/fanout.py)."""
        return sorted([m.gateway, m.public_key] for m in self.co.membership.members.values()
                      if m.gateway)

    async def keys_to_gateway(self) -> None:
        """The members' keys to this node's gateway (SHARDS ``keys``): it lets in the
        other nodes' workers that send it effects (net/members.py); with the map's
        version (``ShardMap.version``): a gateway whose map differs fetches it again."""
        co = self.co
        if co.layout.gateway is None:
            return
        try:
            args: dict[str, Any] = {"keys": self.member_keys()}
            if co.map is not None:
                args["map"] = co.map.version()
            await co.call(co.layout.gateway, "keys", args, 1.0)
        except ActorError as exc:
            log.debug("the members' keys did not reach the gateway: %s", exc)
