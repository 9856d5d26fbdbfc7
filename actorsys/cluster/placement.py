"""Where each shard should live: rendezvous (highest-random-weight) hashing of the
shard over the live nodes (issue 15; :func:`ranked` orders a shard's replicas, issue 16).

Every node computes the same placement from the same member list, with no coordination;
the ownership transactions in etcd (one writer wins per shard and epoch) make it so.
When a node joins, only the shards it now wins move to it (about 1/n of them); when one
leaves, only its shards move, spread over the others. Pure.
"""
from __future__ import annotations

import hashlib
from collections import Counter


def _weight(shard: int, node_id: str) -> bytes:
    return hashlib.blake2b(f"{shard}\0{node_id}".encode(), digest_size=8).digest()


def owner(shard: int, nodes: list[str]) -> str:
    """The node that should own ``shard`` among ``nodes`` (at least one)."""
    if not nodes:
        raise ValueError("no node to place a shard on")
    return max(nodes, key=lambda n: (_weight(shard, n), n))


def ranked(shard: int, nodes: list[str]) -> list[str]:
    """``nodes`` in rendezvous order for ``shard``: the first is :func:`owner`'s pick, and
    removing a node leaves the others' order unchanged (a shard's replicas are the first
    ``replicas`` of it; the leader should be the first)."""
    return sorted(nodes, key=lambda n: (_weight(shard, n), n), reverse=True)


def placement(shards: int, nodes: list[str]) -> list[str]:
    """The owner of every shard ``0 .. shards - 1``."""
    return [owner(s, nodes) for s in range(shards)]


def spread(owners: list[str]) -> Counter[str]:
    """How many shards each node owns."""
    return Counter(owners)
