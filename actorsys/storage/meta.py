"""The node's metadata file ``data_dir/node.meta``: shard count, worker count, the shard
owners and the layout version of the data directory. Written atomically and durably;
a changed worker count moves shards between slots before the node starts
(``rebalance.py``).
"""
from __future__ import annotations

import os
from typing import Any

import msgpack

from ..errors import ConfigError

META_FILE = "node.meta"
#: node.meta "listing": the data directory has the listing index (rebalance.py builds it
#: for directories made before it). 2: an actor left with no data is not listed (issue
#: 14); a directory at 1 may list such actors, and has its listing rebuilt once
LISTING_INDEX = 2


def read_meta(data_dir: str) -> dict[str, Any]:
    """``data_dir/node.meta``; ConfigError if it cannot be decoded."""
    path = os.path.join(data_dir, META_FILE)
    with open(path, "rb") as f:
        try:
            meta: dict[str, Any] = msgpack.unpackb(f.read(), raw=False)
        except Exception as exc:
            raise ConfigError(f"corrupt node metadata {path}: {exc}") from None
    return meta


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
