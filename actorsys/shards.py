"""The shard map: which worker slot owns each actor.

``shard_of(type, key)`` hashes an address onto a fixed number of shards (fixed when a
data directory is created); the router owns the map from shards to worker slots and
gives it out with an epoch number. A worker refuses messages for shards it does not own
(``wrong_shard`` with its epoch) and the client refreshes its map.
"""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import Any

import msgpack

from .errors import ConfigError

META_FILE = "node.meta"
#: node.meta "listing": the data directory has the listing index (rebalance.py builds it
#: for directories made before it)
LISTING_INDEX = 1


def shard_of(type_name: str, key: str, shards: int) -> int:
    """The shard of an actor address; stable across processes and machines."""
    return zlib.crc32(key.encode("utf-8"), zlib.crc32(type_name.encode("utf-8") + b"\x00")) % shards


@dataclass
class ShardMap:
    epoch: int
    shards: int
    owner: list[int]          # shard -> slot
    endpoints: list[str]      # slot -> worker endpoint

    def slot_of(self, type_name: str, key: str) -> int:
        return self.owner[shard_of(type_name, key, self.shards)]

    def to_wire(self, **extra: Any) -> dict[str, Any]:
        """The map as the router and workers send it (``extra``: node limits clients need)."""
        return {"epoch": self.epoch, "shards": self.shards, "owner": bytes(self.owner)
                if len(self.endpoints) <= 256 else self.owner, "endpoints": self.endpoints, **extra}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> "ShardMap":
        owner = list(d["owner"])
        return cls(epoch=int(d["epoch"]), shards=int(d["shards"]), owner=owner,
                   endpoints=list(d["endpoints"]))


def read_meta(data_dir: str) -> dict[str, Any]:
    """``data_dir/node.meta``; ConfigError if it cannot be decoded."""
    path = os.path.join(data_dir, META_FILE)
    with open(path, "rb") as f:
        try:
            return msgpack.unpackb(f.read(), raw=False)
        except Exception as exc:
            raise ConfigError(f"corrupt node metadata {path}: {exc}") from None


def write_meta(data_dir: str, meta: dict[str, Any]) -> None:
    """Replace ``data_dir/node.meta`` atomically and durably (tmp file, fsync, rename)."""
    path = os.path.join(data_dir, META_FILE)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(msgpack.packb(meta))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(data_dir)           # the rename itself survives a power cut


def fsync_dir(path: str) -> None:
    """Make the renames in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_or_create_meta(data_dir: str, shards: int, workers: int) -> dict[str, Any]:
    """Read ``data_dir/node.meta``, creating it on first start.

    The shard count is fixed at creation. A different worker count on an existing data
    directory moves shards between slots before the node starts (``rebalance.py``); so
    does an unfinished move left by a node killed while moving.
    """
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    path = os.path.join(data_dir, META_FILE)
    if os.path.exists(path):
        meta = read_meta(data_dir)
        if meta["shards"] != shards:
            raise ConfigError(
                f"data directory {data_dir} was created with shards = {meta['shards']}; "
                f"the config says {shards} (the shard count cannot change)", key="node.shards")
        from .rebalance import rebalance
        return rebalance(data_dir, meta, workers)
    meta = {"shards": shards, "workers": workers, "epoch": 1,
            "owner": [s % workers for s in range(shards)], "listing": LISTING_INDEX}
    write_meta(data_dir, meta)
    return meta
