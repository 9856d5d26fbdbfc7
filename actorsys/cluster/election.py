"""The election of a cluster's one supervision tree, kept in etcd (issue 15).

Semantics:

* One key, ``/actorsys/<cluster>/tree`` = JSON ``{"node_id", "endpoint", "public_key"}``
  (``endpoint``: the holder's tree endpoint; ``public_key``: its CURVE key, z85, or
  None), written under a **lease of the campaigner's own** of ``lease_ttl`` seconds
  (whole seconds, as etcd grants them: 2.5 is 2). The tree is a process apart from the
  router, whose membership lease it cannot renew.
* Campaigning is one transaction: ``version(key) == 0`` -> put. Of any number of
  campaigners exactly one wins; the others read the holder and **watch** the key. When
  it goes (the holder resigned, or its lease expired because it died, froze or lost
  etcd), every campaigner tries again at once: a clean resign hands over at once, a dead
  holder within ``lease_ttl`` (+ the watch's latency).
* A record left by this same node (same ``node_id``) under another lease is the one of
  this node's previous tree process (killed, restarted by the node supervisor; node ids
  are unique among live nodes): it is taken over at once, by a transaction that compares
  the record's ``mod_revision`` and puts it under the new lease, rather than waited out
  (its ``create_revision``, the fencing token, stays: the dead process writes no more).
* The holder holds it while it renews its lease (every ``lease_ttl / 3``), and believes
  it holds it only until its last successful renewal's send time + ``lease_ttl`` * 0.9:
  past that it calls itself deposed (``on_change``) before etcd can give the key to
  another, so two trees never both act as holder (given clocks that run at the same
  rate). A holder that sees its record gone or replaced is deposed too.
* ``holder`` is the record last seen (None: nobody holds it, or etcd is unreachable);
  ``leader`` whether it is this campaigner's, fenced as above; ``revision`` the
  ``create_revision`` of this campaigner's record while it is the leader: a fencing
  token a holder's writes compare (``supervisors/etcdstore.py``).
* :meth:`Election.resign` deletes the record if it is still this campaigner's and
  revokes the lease.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any, Callable

import aetcd

from ..log import get_logger
from .membership import prefix

log = get_logger("cluster.election")

#: the share of lease_ttl a holder trusts its lease for after a renewal's send time
TRUST = 0.9
#: seconds between attempts when etcd does not answer
RETRY = 0.5


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds the tree, as its record says."""
    node_id: str
    endpoint: str                 #: its supervision tree's endpoint
    public_key: str | None        #: its CURVE public key (z85), None for insecure nodes
    revision: int                 #: the record's create_revision
    lease: int                    #: the lease id the record lives under


#: seconds a watch's cancellation (or a task's end) is waited for: etcd may not answer
WATCH_CANCEL_TIMEOUT = 2.0


def tree_key(cluster: str) -> bytes:
    """The election's key."""
    return prefix(cluster) + b"tree"


class Election:
    """One campaigner (see the module docstring). ``on_change(holder, leader)`` is called
    (in the event loop) after every change of either."""

    def __init__(self, client: aetcd.Client, cluster: str, node_id: str, endpoint: str,
                 public_key: str | None, lease_ttl: float,
                 on_change: Callable[[Holder | None, bool], None] | None = None) -> None:
        #: whole seconds, as etcd grants leases (a fraction trusted would outlive the lease)
        self.lease_ttl = max(int(lease_ttl), 1)
        self.client, self.node_id = client, node_id
        self.on_change = on_change
        self.key = tree_key(cluster)
        self._value = json.dumps({"node_id": node_id, "endpoint": endpoint,
                                  "public_key": public_key}).encode()
        self.holder: Holder | None = None
        self._leader = False
        self._lease: Any = None
        self._trusted_until = 0.0          # loop time: the holder's fence
        self._fence: asyncio.TimerHandle | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- state ------------------------------------------------------------------------
    @property
    def leader(self) -> bool:
        """Whether this campaigner holds the tree now (fenced by its lease's renewals)."""
        return self._leader and asyncio.get_running_loop().time() < self._trusted_until

    @property
    def revision(self) -> int | None:
        """The fencing token of this campaigner's record while it leads."""
        return self.holder.revision if self.leader and self.holder is not None else None

    def _set(self, holder: Holder | None) -> None:
        leader = (holder is not None and self._lease is not None and holder.lease == self._lease.id
                  and asyncio.get_running_loop().time() < self._trusted_until)
        if holder == self.holder and leader == self._leader:
            return
        self.holder, self._leader = holder, leader
        if leader and holder is not None:
            log.info("this node holds the cluster's supervision tree (revision %d)", holder.revision)
        elif holder is not None:
            log.info("node %s holds the cluster's supervision tree", holder.node_id)
        if self.on_change is not None:
            self.on_change(holder, leader)

    def _parse(self, kv: Any) -> Holder | None:
        try:
            d = json.loads(kv.value)
            return Holder(str(d["node_id"]), str(d["endpoint"]), d.get("public_key"),
                          int(kv.create_revision), int(kv.lease))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring a malformed tree record %r: %s", kv.value[:200], exc)
            return None

    # -- campaign ---------------------------------------------------------------------
    async def start(self) -> None:
        """Grant the lease and start campaigning (and renewing, and watching)."""
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        self._lease = await self.client.lease(ttl=self.lease_ttl)
        self._renewed(sent_at)
        self._tasks = [asyncio.create_task(self._campaign()), asyncio.create_task(self._keepalive())]

    async def _try(self) -> Any:
        """One attempt: take the key if free (or left by this node's previous process);
        the key's record after it (None if gone meanwhile)."""
        c = self.client
        ok, _ = await c.transaction(
            compare=[c.transactions.version(self.key) == 0],
            success=[c.transactions.put(self.key, self._value, lease=self._lease)], failure=[])
        kv = await c.get(self.key)
        if kv is not None and not ok:
            h = self._parse(kv)
            if h is not None and h.node_id == self.node_id and h.lease != self._lease.id:
                log.info("taking over the tree record of this node's previous tree process")
                await c.transaction(
                    compare=[c.transactions.mod(self.key) == kv.mod_revision],
                    success=[c.transactions.put(self.key, self._value, lease=self._lease)],
                    failure=[])
                kv = await c.get(self.key)
        return kv

    async def _campaign(self) -> None:
        while True:
            try:
                kv = await self._try()
                if kv is None:
                    continue              # gone between the transaction and the read
                self._set(self._parse(kv))
                watch = await self.client.watch(self.key, start_revision=kv.mod_revision + 1)
                try:
                    async for ev in watch:
                        if ev.kind == "DELETE":
                            break
                        self._set(self._parse(ev.kv))
                finally:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(watch.cancel(), WATCH_CANCEL_TIMEOUT)
                self._set(None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:        # etcd unreachable: try again (the fence deposes)
                log.warning("tree election: etcd: %s: %s", type(exc).__name__, exc)
                self._set(None if not self.leader else self.holder)
                await asyncio.sleep(RETRY)
                if "lease not found" in str(exc):      # (it expired: campaign under a new one)
                    with contextlib.suppress(Exception):
                        self._lease = await self.client.lease(ttl=self.lease_ttl)

    def _renewed(self, sent_at: float) -> None:
        loop = asyncio.get_running_loop()
        self._trusted_until = sent_at + self.lease_ttl * TRUST
        if self._fence is not None:
            self._fence.cancel()
        self._fence = loop.call_at(self._trusted_until, self._fenced)

    def _fenced(self) -> None:
        self._fence = None
        if self._leader:
            log.error("could not renew the tree's etcd lease for %g s: this node no longer "
                      "acts as the cluster's supervision tree", self.lease_ttl * TRUST)
            self._leader = False
            if self.on_change is not None:
                self.on_change(self.holder, False)

    async def _keepalive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            sent_at = loop.time()
            try:
                r = await self._lease.refresh()
            except Exception as exc:
                log.warning("could not renew the tree's etcd lease: %s", exc)
                continue
            if r is not None and getattr(r, "TTL", 1) <= 0:
                log.error("the tree's etcd lease expired; campaigning under a new one")
                self._lease = await self.client.lease(ttl=self.lease_ttl)
            self._renewed(sent_at)

    def stop_renewing(self) -> None:
        """Stop renewing the lease, as a frozen process would (tests; a node that lets
        its lease run out)."""
        for t in self._tasks[1:]:
            t.cancel()
        del self._tasks[1:]

    async def resign(self) -> None:
        """Stop campaigning; delete the record if it is this campaigner's; revoke the lease."""
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        if tasks:       # (bounded: a task stuck in the etcd client must not hold the resign)
            await asyncio.wait(tasks, timeout=WATCH_CANCEL_TIMEOUT)
        if self._fence is not None:
            self._fence.cancel()
            self._fence = None
        self._leader = False
        if self._lease is not None:
            c = self.client
            try:
                kv = await c.get(self.key)
                if kv is not None and kv.lease == self._lease.id:
                    await c.transaction(compare=[c.transactions.mod(self.key) == kv.mod_revision],
                                        success=[c.transactions.delete(self.key)], failure=[])
                await self._lease.revoke()
            except Exception as exc:
                log.warning("could not resign the tree election (%s): the record goes when "
                            "its lease expires", exc)
            self._lease = None
