"""A node's membership of its cluster, kept in etcd (WIP, issue 15).

Semantics:

* A node joins by granting itself an etcd **lease** of ``lease_ttl`` seconds and
  writing its record under it, ``/actorsys/<cluster>/nodes/<node_id>`` = JSON
  ``{"endpoint", "public_key", "workers"}``, in one transaction that fails if another
  node holds that id (a second node with the same id is refused at start, not merged).
* It keeps the lease alive (a refresh every ``lease_ttl / 3``). A node that stops
  renewing, because it is dead, frozen or cut off, loses its lease after ``lease_ttl``
  and etcd deletes its record: the others see it leave.
* Every node watches ``/actorsys/<cluster>/nodes/`` and keeps :attr:`Membership.members`,
  the live nodes by id, calling ``on_change`` after each change.
* Leaving (:meth:`Membership.leave`) revokes the lease: the record goes at once.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Callable

import aetcd

from ..config.cluster import ClusterConfig
from .fence import Fence
from ..errors import ConfigError, NodeUnavailable
from ..log import get_logger

log = get_logger("cluster")


@dataclass(frozen=True, slots=True)
class Member:
    """A live node of the cluster, as its record in etcd says."""
    node_id: str
    endpoint: str                  #: its router, tcp://HOST:PORT
    public_key: str | None         #: its CURVE public key (z85), None for insecure nodes
    workers: tuple[str, ...]       #: its worker slots' endpoints


def prefix(cluster: str) -> bytes:
    """Where a cluster's keys live in etcd."""
    return f"/actorsys/{cluster}/".encode()


class Membership:
    """This node's membership (see the module docstring)."""

    def __init__(self, cfg: ClusterConfig, me: Member,
                 on_change: Callable[[dict[str, Member]], None] | None = None) -> None:
        self.cfg, self.me, self.on_change = cfg, me, on_change
        self.nodes_prefix = prefix(cfg.name) + b"nodes/"
        #: the live nodes by id, this one included, as of the last event seen
        self.members: dict[str, Member] = {}
        self._client: aetcd.Client | None = None
        self._lease: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        #: whether this node may serve its shards now (fence.py): moved by each renewal
        self.fence = Fence(cfg.lease_ttl)

    async def join(self) -> None:
        """Connect to etcd (each URL of ``etcd`` in turn), write this node's record under
        a new lease, and start renewing it and watching the others."""
        errors = []
        for url in self.cfg.etcd:
            host, port = url.split("://", 1)[1].rsplit(":", 1)
            client = aetcd.Client(host=host.strip("[]"), port=int(port),
                                  timeout=max(int(self.cfg.lease_ttl), 1))
            try:
                await client.connect()
                await client.status()
            except Exception as exc:          # aetcd raises its own ConnectionFailedError etc.
                errors.append(f"{url}: {exc}")
                await client.close()
                continue
            self._client = client
            break
        if self._client is None:
            raise NodeUnavailable(f"no etcd endpoint of cluster {self.cfg.name!r} answered: "
                                  + "; ".join(errors))
        c = self._client
        sent_at = asyncio.get_running_loop().time()
        self._lease = await c.lease(ttl=max(int(self.cfg.lease_ttl), 1))
        key = self.nodes_prefix + self.me.node_id.encode()
        ok, _ = await c.transaction(
            compare=[c.transactions.version(key) == 0],
            success=[c.transactions.put(key, self._record(), lease=self._lease)],
            failure=[])
        if not ok:
            await self._lease.revoke()
            raise ConfigError(f"node_id {self.me.node_id!r} is already a live member of cluster "
                              f"{self.cfg.name!r} (another node runs with it)", key="cluster.node_id")
        self.fence.renewed(sent_at)
        await self._load()
        self._tasks = [asyncio.create_task(self._keepalive()), asyncio.create_task(self._watch())]

    def _record(self) -> bytes:
        return json.dumps({"endpoint": self.me.endpoint, "public_key": self.me.public_key,
                           "workers": list(self.me.workers)}).encode()

    def _member(self, key: bytes, value: bytes) -> Member | None:
        try:
            d = json.loads(value)
            return Member(key[len(self.nodes_prefix):].decode(), str(d["endpoint"]),
                          d.get("public_key"), tuple(d.get("workers") or ()))
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

    async def _keepalive(self) -> None:
        period = self.cfg.lease_ttl / 3
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(period)
            sent_at = loop.time()
            try:
                await self._lease.refresh()
                self.fence.renewed(sent_at)
            except Exception as exc:
                log.error("could not renew this node's etcd lease (%s): after %g s without "
                          "renewal it loses its membership", exc, self.cfg.lease_ttl)

    async def _watch(self) -> None:
        assert self._client is not None
        events = await self._client.watch_prefix(self.nodes_prefix)
        async for _ev in events:
            await self._load()       # (a reload per event: membership changes are rare)

    async def leave(self) -> None:
        """Stop renewing and watching, and revoke the lease: the record goes at once."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
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
