"""What a node checks, remembers and cleans up when it joins a cluster (issue 15).

Steps of ``Coordinator.start`` before the node registers, as functions:

* :func:`check_shard_count`: every node of a cluster has the same shard count,
  ``replicas`` and ``ack``; the first to join writes them (``/actorsys/<cluster>/config``),
  the others compare (:func:`check_cluster_config`: a ConfigError naming both).
* :func:`previous_lease` / :func:`remember_lease`: the id of this node's etcd lease, in
  its data directory (:data:`LEASE_FILE`), written before a record is registered under
  it, so that a restarted router finds (and revokes) its own earlier registration.
* :func:`sweep`: drop this node's stale copies of shards another node owns.

Invariant: :data:`LEASE_FILE` is replaced whole (written aside, then renamed): it holds a
lease id this node registered (or was about to register) under, or is absent.
"""
from __future__ import annotations

import json
import os
from typing import Any

from ..config.cluster import ClusterConfig
from ..errors import ActorError, ConfigError
from ..log import get_logger
from .handoff import Call, drop
from .ownership import Ownership

log = get_logger("cluster")

#: where the id of this node's etcd lease is kept, in the data directory
LEASE_FILE = "cluster.lease"


async def check_shard_count(own: Ownership, ccfg: ClusterConfig, shards: int) -> None:
    """Every node of a cluster has the same shard count, ``replicas`` and ``ack``: the
    first to join writes them (``/actorsys/<cluster>/config`` = JSON ``{"shards",
    "replicas", "ack"}``); another value is a ConfigError naming both. A record
    written before replication existed (no ``replicas``) says 1 and "majority"."""
    c = own.client
    key = own.shards_prefix[:-len(b"shards/")] + b"config"
    mine = {"shards": shards, "replicas": ccfg.replicas, "ack": ccfg.ack}
    value = json.dumps(mine).encode()
    ok, _ = await c.transaction(compare=[c.transactions.version(key) == 0],
                                success=[c.transactions.put(key, value)], failure=[])
    if ok:
        return
    kv = await c.get(key)
    theirs = {**mine, **{"replicas": 1, "ack": "majority"}, **json.loads(kv.value)} \
        if kv is not None else mine
    check_cluster_config(ccfg.name, theirs, mine)


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


def previous_lease(data_dir: str) -> int | None:
    """The lease id this node last remembered (None: none, or unreadable)."""
    try:
        with open(os.path.join(data_dir, LEASE_FILE)) as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def remember_lease(data_dir: str, lease_id: int) -> None:
    """Write the lease this node is about to register under to its data dir: a
    restarted router revokes it if it still holds this node's record."""
    path = os.path.join(data_dir, LEASE_FILE)
    with open(path + ".tmp", "w") as f:
        f.write(str(lease_id))
    os.replace(path + ".tmp", path)


async def sweep(call: Call, workers: list[str], home: bytes, stale: dict[int, int]) -> None:
    """Drop our copies of shards another node owns (``Coordinator.start``): each only if
    no move newer than its record is copying it into this node (the drop carries the
    epochs read)."""
    try:
        await drop(call, workers, home, stale)
    except ActorError as exc:
        log.warning("could not sweep this node's stale copies of %d shards owned "
                    "elsewhere (%s); they are never served", len(stale), exc)
