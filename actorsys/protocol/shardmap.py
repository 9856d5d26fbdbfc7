"""The shard map: which worker slot owns each actor.

``shard_of(type, key)`` hashes an address onto a fixed number of shards (fixed when a
data directory is created); the router owns the map from shards to worker slots and
gives it out with an epoch number. A worker refuses messages for shards it does not own
(``wrong_shard`` with its epoch) and the client refreshes its map.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any


def shard_of(type_name: str, key: str, shards: int) -> int:
    """The shard of an actor address; stable across processes and machines."""
    return zlib.crc32(key.encode("utf-8"), zlib.crc32(type_name.encode("utf-8") + b"\x00")) % shards


@dataclass
class ShardMap:
    epoch: int
    shards: int
    owner: list[int]          # shard -> slot
    endpoints: list[str]      # slot -> worker endpoint
    nodes: list[dict[str, Any]] | None = None    # TEMP (lead): the client slice defines these
    name: str | None = None

    def slot_of(self, type_name: str, key: str) -> int:
        return self.owner[shard_of(type_name, key, self.shards)]

    def to_wire(self, **extra: Any) -> dict[str, Any]:
        """The map as the router and workers send it (``extra``: node limits clients need)."""
        small = self.nodes is None and len(self.endpoints) <= 256
        d = {"epoch": self.epoch, "shards": self.shards, "owner": bytes(self.owner)
             if small else self.owner, "endpoints": self.endpoints, **extra}
        if self.nodes is not None:
            d["nodes"], d["name"] = self.nodes, self.name
        return d

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> "ShardMap":
        owner = list(d["owner"])
        return cls(epoch=int(d["epoch"]), shards=int(d["shards"]), owner=owner,
                   endpoints=list(d["endpoints"]), nodes=d.get("nodes"), name=d.get("name"))
