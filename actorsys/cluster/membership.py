"""A node's membership of its cluster, kept in etcd.

Semantics:

* A node joins by granting itself an etcd **lease** of ``lease_ttl`` seconds and
  writing its record under it, ``/actorsys/<cluster>/nodes/<node_id>`` = JSON
  ``{"endpoint", "public_key", "workers", "home"}`` (``home``: base64 of the node's
  shard -> local worker slot table, where each shard's data lives on it), in one
  transaction that fails if another node holds that id (a second node with the same
  id is refused at start, not merged).
* It keeps the lease alive (a refresh every ``lease_ttl / 3``, on a thread of its own:
  ``keepalive.py``, so a busy event loop does not make it late). A node that stops
  renewing, because it is dead, frozen or cut off, loses its lease after ``lease_ttl``
  and etcd deletes its record: the others see it leave.
* Every node watches ``/actorsys/<cluster>/nodes/`` and keeps :attr:`Membership.members`,
  the live nodes by id, calling ``on_change`` after each change.
* Leaving (:meth:`Membership.leave`) revokes the lease: the record goes at once.
* ``on_lease(lease id)`` is called after each registration under a new lease, the
  first and every one after a lease expired (the node remembers it: a restarted
  router recognises its own node's record by it).
"""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Callable

import aetcd

from ..config.cluster import ClusterConfig
from ..errors import ConfigError, NodeUnavailable
from ..log import get_logger
from .fence import Fence
from .keepalive import LeaseKeeper

log = get_logger("cluster")


@dataclass(frozen=True, slots=True)
class Member:
    """A live node of the cluster, as its record in etcd says."""
    node_id: str
    endpoint: str                  #: its router, tcp://HOST:PORT
    public_key: str | None         #: its CURVE public key (z85), None for insecure nodes
    workers: tuple[str, ...]       #: its worker slots' endpoints
    #: shard -> the local worker slot that holds that shard's data on this node
    home: bytes = b""
    #: it is leaving the cluster: its shards move away and no shard moves to it
    leaving: bool = False
    #: its gateway's endpoint inside the node (workers of every node send it the
    #: WebSocket effects of its sockets' actors); None: the node has no gateway
    gateway: str | None = None


def prefix(cluster: str) -> bytes:
    """Where a cluster's keys live in etcd."""
    return f"/actorsys/{cluster}/".encode()


async def connect(cfg: ClusterConfig) -> tuple[aetcd.Client, str]:
    """A client of the first of ``cfg.etcd`` that answers, each call bounded by the
    lease's ttl, and its ``host:port`` (as aetcd writes its channel's target);
    NodeUnavailable naming every URL tried if none does."""
    errors = []
    for url in cfg.etcd:
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        client = aetcd.Client(host=host.strip("[]"), port=int(port),
                              timeout=max(int(cfg.lease_ttl), 1))
        try:
            await client.connect()
            await client.status()
        except Exception as exc:          # aetcd raises its own ConnectionFailedError etc.
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
            await client.close()
            continue
        return client, f"{host.strip('[]')}:{port}"
    raise NodeUnavailable(f"no etcd endpoint of cluster {cfg.name!r} answered: " + "; ".join(errors))


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` (but the current one) and wait until they ended."""
    me = asyncio.current_task()
    for t in tasks:
        if t is not me:
            t.cancel()
    for t in tasks:
        if t is not me:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass


class Membership:
    """This node's membership (see the module docstring)."""

    def __init__(self, cfg: ClusterConfig, me: Member,
                 on_change: Callable[[dict[str, Member]], None] | None = None) -> None:
        self.cfg, self.me, self.on_change = cfg, me, on_change
        #: called with the lease id after each registration under a new lease
        self.on_lease: Callable[[int], None] | None = None
        #: called with a new lease's id before the record is written under it (the node
        #: remembers it first: a run killed between the two would otherwise find its own
        #: record under a lease it does not know, and take itself for a twin)
        self.on_lease_granted: Callable[[int], None] | None = None
        self.nodes_prefix = prefix(cfg.name) + b"nodes/"
        #: the live nodes by id, this one included, as of the last event seen
        self.members: dict[str, Member] = {}
        self._client: aetcd.Client | None = None
        self._target = ""        #: the etcd endpoint connected to, host:port
        self._lease: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        #: renews the lease (a thread) from the first registration until leave
        self._keeper: LeaseKeeper | None = None
        self._rejoining: asyncio.Task[None] | None = None
        #: the ttl of the lease in etcd: whole seconds (etcd's unit), lease_ttl rounded down
        self.ttl = max(int(cfg.lease_ttl), 1)
        #: whether this node may serve its shards now (fence.py): moved by each renewal;
        #: counted from the lease's real ttl (lease_ttl 2.9 is a 2 s lease in etcd)
        self.fence = Fence(float(self.ttl))

    async def join(self, previous_lease: int | None = None) -> None:
        """:meth:`connect`, then :meth:`register`."""
        await self.connect()
        await self.register(previous_lease)

    async def connect(self) -> None:
        """Connect to etcd (each URL of ``etcd`` in turn, each call bounded by the lease's
        ttl); NodeUnavailable naming every URL tried if none answers."""
        self._client, self._target = await connect(self.cfg)

    async def register(self, previous_lease: int | None = None) -> None:
        """Write this node's record under a new lease, and start renewing it and watching
        the others. A live record of this node_id is a ConfigError (another node runs with
        it), unless it is under ``previous_lease``: this node's own previous run, killed
        before its lease expired, whose lease is revoked first."""
        if not await self._register():
            key = self.nodes_prefix + self.me.node_id.encode()
            kv = await self.client.get(key)
            if previous_lease and kv is not None and kv.lease == previous_lease:
                log.info("this node's previous run still held its etcd lease: revoking it")
                await self.client.revoke_lease(previous_lease)
            if not await self._register():
                raise ConfigError(f"node_id {self.me.node_id!r} is already a live member of "
                                  f"cluster {self.cfg.name!r} (another node runs with it)",
                                  key="cluster.node_id")
        await self._load()
        self._start_renewing()
        self._tasks = [asyncio.create_task(self._watch())]

    async def mark_leaving(self) -> None:
        """Say in this node's record that it is leaving (the others then move no shard
        to it)."""
        self.me = dataclasses.replace(self.me, leaving=True)
        key = self.nodes_prefix + self.me.node_id.encode()
        await self.client.put(key, self._record(), lease=self._lease)

    @property
    def lease_id(self) -> int | None:
        """The id of this node's current lease (None before joining)."""
        return None if self._lease is None else int(self._lease.id)

    @property
    def client(self) -> aetcd.Client:
        """The connected etcd client (after :meth:`join`)."""
        assert self._client is not None, "join first"
        return self._client

    async def _register(self) -> bool:
        """A new lease and this node's record under it, if no live node holds the id."""
        c = self.client
        sent_at = asyncio.get_running_loop().time()
        lease = await c.lease(ttl=self.ttl)
        if self.on_lease_granted is not None:
            self.on_lease_granted(int(lease.id))
        key = self.nodes_prefix + self.me.node_id.encode()
        ok, _ = await c.transaction(
            compare=[c.transactions.version(key) == 0],
            success=[c.transactions.put(key, self._record(), lease=lease)],
            failure=[])
        if not ok:
            await lease.revoke()
            return False
        self._lease = lease
        self.fence.renewed(sent_at)
        if self.on_lease is not None:
            self.on_lease(int(lease.id))
        return True

    def _record(self) -> bytes:
        return json.dumps({"endpoint": self.me.endpoint, "public_key": self.me.public_key,
                           "workers": list(self.me.workers),
                           "home": base64.b64encode(self.me.home).decode(),
                           "leaving": self.me.leaving, "gateway": self.me.gateway}).encode()

    def _member(self, key: bytes, value: bytes) -> Member | None:
        try:
            d = json.loads(value)
            return Member(key[len(self.nodes_prefix):].decode(), str(d["endpoint"]),
                          d.get("public_key"), tuple(d.get("workers") or ()),
                          base64.b64decode(d.get("home") or ""), bool(d.get("leaving")),
                          str(d["gateway"]) if d.get("gateway") else None)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring a malformed member record %r: %s", key[:200], exc)
            return None

    async def _load(self) -> None:
        assert self._client is not None
        members = {}
        for kv in await self._client.get_prefix(self.nodes_prefix):
            m = self._member(kv.key, kv.value)
            if m is not None:
                members[m.node_id] = m
        self._set(members)

    def _set(self, members: dict[str, Member]) -> None:
        if members != self.members:
            self.members = members
            if self.on_change is not None:
                self.on_change(dict(members))

    def _start_renewing(self) -> None:
        """Renew the lease on a thread of its own (``keepalive.py``: the loop may be busy)."""
        self._keeper = LeaseKeeper(self._target, int(self._lease.id), self.cfg.lease_ttl,
                                   self.ttl / 3, float(self.ttl), asyncio.get_running_loop(),
                                   self.fence.renewed, self._expired)

    def stop_renewing(self) -> None:
        """Stop renewing the lease, as a frozen process would (tests)."""
        if self._keeper is not None:
            self._keeper.stop()
            self._keeper = None

    def _expired(self) -> None:
        """(On the loop.) etcd says the lease expired: join again under a new one."""
        if self._rejoining is None or self._rejoining.done():
            self._rejoining = asyncio.get_running_loop().create_task(self._rejoin())

    async def _rejoin(self) -> None:
        log.error("this node's etcd lease expired (no renewal reached etcd for %g s): "
                  "joining again under a new lease", self.cfg.lease_ttl)
        said = ""
        while self._keeper is not None:
            try:
                if await self._register():
                    self._keeper.use(int(self._lease.id))
                    return
                why = f"another node now runs with node_id {self.me.node_id!r}"
            except Exception as exc:
                why = str(exc)
            if why != said:              # (tried every ttl / 3; each cause logged once)
                said = why
                log.error("could not join again under a new lease (%s); trying again every "
                          "%g s", why, self.ttl / 3)
            await asyncio.sleep(self.ttl / 3)

    async def _watch(self) -> None:
        """Keep :attr:`members` current; a watch that breaks (etcd restarted, cut off) is
        made again, after a reload, every second until it holds."""
        while True:
            try:
                events = await self.client.watch_prefix(self.nodes_prefix)
                await self._load()       # (after the watch began: no event is missed)
                async for _ev in events:
                    await self._load()   # (a reload per event: membership changes are rare)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("watching the cluster's members in etcd failed (%s: %s); "
                            "watching again in 1 s", type(exc).__name__, exc)
                await asyncio.sleep(1.0)

    async def leave(self) -> None:
        """Stop renewing and watching, and revoke the lease: the record goes at once."""
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            await asyncio.to_thread(keeper.stop)
        await cancel_all(self._tasks + ([self._rejoining] if self._rejoining else []))
        self._tasks = []
        if self._lease is not None:
            try:
                await self._lease.revoke()
            except Exception as exc:
                log.warning("could not revoke this node's etcd lease (%s): its record goes "
                            "when the lease expires", exc)
            self._lease = None
        if self._client is not None:
            await self._client.close()
            self._client = None
