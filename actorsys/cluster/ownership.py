"""Shard ownership in etcd (WIP, issue 15).

Each shard has one key, ``/actorsys/<cluster>/shards/<shard, 5 digits>`` = JSON
``{"owner": node_id, "epoch": n}``, with no lease: ownership outlives a dead node (its
shards answer ``ShardUnavailable`` until it returns; issue 16 adds failover). Every
change of owner is one etcd transaction that compares the key's ``mod_revision`` with the
one the changer read and bumps ``epoch``: of two nodes changing the same shard, one wins,
and the epoch is the fencing token a worker checks (a turn from a stale epoch is refused).

Claims of unowned shards (a new cluster's first node) go in transactions of
:data:`BATCH` shards (etcd's default limit is 128 operations per transaction).
"""
from __future__ import annotations

import json
from typing import Any, NamedTuple

from .membership import prefix

#: shards claimed per etcd transaction
BATCH = 64


class Owned(NamedTuple):
    """A shard's ownership record, with the revision a change must compare against."""
    owner: str
    epoch: int
    revision: int


class Ownership:
    """The shard keys of one cluster in etcd (``client``: a connected ``aetcd.Client``)."""

    def __init__(self, client: Any, cluster: str) -> None:
        self.client = client
        self.shards_prefix = prefix(cluster) + b"shards/"

    def key(self, shard: int) -> bytes:
        return self.shards_prefix + b"%05d" % shard

    async def read(self) -> dict[int, Owned]:
        """Every owned shard's record."""
        out = {}
        for kv in await self.client.get_prefix(self.shards_prefix):
            d = json.loads(kv.value)
            out[int(kv.key[len(self.shards_prefix):])] = Owned(d["owner"], int(d["epoch"]),
                                                               kv.mod_revision)
        return out

    async def claim(self, shards: list[int], node_id: str) -> list[int]:
        """Make ``node_id`` the owner (epoch 1) of those of ``shards`` nobody owns yet;
        the shards it got."""
        c, got = self.client, []
        value = json.dumps({"owner": node_id, "epoch": 1}).encode()
        for i in range(0, len(shards), BATCH):
            batch = shards[i:i + BATCH]
            ok, _ = await c.transaction(
                compare=[c.transactions.version(self.key(s)) == 0 for s in batch],
                success=[c.transactions.put(self.key(s), value) for s in batch], failure=[])
            if ok:
                got.extend(batch)
                continue
            for s in batch:          # some were taken meanwhile: one at a time
                ok, _ = await c.transaction(
                    compare=[c.transactions.version(self.key(s)) == 0],
                    success=[c.transactions.put(self.key(s), value)], failure=[])
                if ok:
                    got.append(s)
        return got

    async def transfer(self, shard: int, seen: Owned, to: str) -> Owned | None:
        """Give ``shard`` to ``to`` with the next epoch, if its record is still ``seen``
        (None if it changed meanwhile: someone else won)."""
        c = self.client
        epoch = seen.epoch + 1
        key = self.key(shard)
        ok, _ = await c.transaction(
            compare=[c.transactions.mod(key) == seen.revision],
            success=[c.transactions.put(key, json.dumps({"owner": to, "epoch": epoch}).encode())],
            failure=[])
        if not ok:
            return None
        kv = await c.get(key)         # (its revision; a later change shows as it is)
        d = json.loads(kv.value)
        return Owned(d["owner"], int(d["epoch"]), kv.mod_revision)
