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


#: what a meta returned carries about this run only, never written to ``node.meta``
_NOT_STORED = ("created_now", "cluster_joined_now")


def load_or_create_meta(data_dir: str, shards: int, workers: int) -> dict[str, Any]:
    """Read ``data_dir/node.meta``, creating it on first start.

    The shard count is fixed at creation. A different worker count on an existing data
    directory moves shards between slots before the node starts (``rebalance.py``); so
    does an unfinished move left by a node killed while moving. A meta created now says
    ``created_now`` (not stored): a slot with no database is then new, not lost
    (``lost.py``).
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
    return {**meta, "created_now": True}


def cluster_identity(data_dir: str, meta: dict[str, Any], cluster: dict[str, Any]) -> dict[str, Any]:
    """A cluster node's data directory remembers its cluster name and node id: the first
    start in a cluster records them; a later start with another name or id is a
    ConfigError (a data directory holds one node's shards; reusing it under another id
    would serve them twice or lose them). Returns the meta to start with;
    ``cluster_joined_now`` (not stored) says the directory was not a member before (its
    data, from single-node runs, is then never swept)."""
    want = {"name": cluster["name"], "node_id": cluster["node_id"]}
    have = meta.get("cluster")
    if have is None:
        meta = {**meta, "cluster": want}
        write_meta(data_dir, {k: v for k, v in meta.items() if k not in _NOT_STORED})
        return {**meta, "cluster_joined_now": True}
    for k, key in (("name", "cluster.name"), ("node_id", "cluster.node_id")):
        if have.get(k) != want[k]:
            raise ConfigError(
                f"data directory {data_dir} belongs to {k.replace('_', ' ')} {have.get(k)!r}; "
                f"the config says {want[k]!r} (use that {k.replace('_', ' ')}, or another "
                f"data directory)", key=key)
    return meta
