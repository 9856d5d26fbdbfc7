"""The cluster's shard map as clients get it, built from etcd's view (pure).

A client of a cluster keeps one :class:`~actorsys.protocol.shardmap.ShardMap` for the
whole cluster and still sends every message in one hop to the worker slot that holds the
actor, on whichever host:

* ``nodes``: every node that is alive or owns a shard (leads it; its followers and
  learners are not in the map: clients talk to leaders only), in node-id order, as
  ``{"id", "endpoint", "alive", "slots": [first, count], "public_key"}``;
* ``endpoints``: the live nodes' worker endpoints, concatenated in that order (global
  slot numbers; a dead node has no slots);
* ``owner[shard]``: the global slot of the owner's worker that holds the shard (the
  owner's ``home`` table, published in its membership record), or ``-1 - k`` when the
  shard's owner is ``nodes[k]`` and it is not alive: the client raises
  ``ShardUnavailable`` naming it at once instead of waiting on a dead host;
* ``epoch``: the sum of the shards' ownership epochs, so it grows with every change of
  owner and every node computes the same number from the same records.

A shard being handed off still maps to its old owner until the move ends; its worker
answers ``wrong_shard`` meanwhile and the client retries with a short backoff.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..protocol.shardmap import ShardMap
from . import placement
from .membership import Member
from .ownership import Owned

#: the pseudo-node of shards nobody has claimed yet (a cluster whose first node is starting)
UNCLAIMED = "(no owner yet)"


def build_map(name: str, shards: int, members: Mapping[str, Member],
              owned: Mapping[int, Owned]) -> ShardMap:
    """The client map of the cluster (see the module docstring)."""
    ids = sorted(set(members) | {o.owner for o in owned.values()})
    if len(owned) < shards:
        ids.append(UNCLAIMED)
    nodes: list[dict[str, Any]] = []
    endpoints: list[str] = []
    first: dict[str, int] = {}
    index = {nid: k for k, nid in enumerate(ids)}
    for nid in ids:
        m = members.get(nid)
        if m is not None and len(m.home) == shards:
            first[nid] = len(endpoints)
            endpoints.extend(m.workers)
        nodes.append({"id": nid, "endpoint": m.endpoint if m else None, "alive": nid in first,
                      "slots": [first.get(nid, 0), len(m.workers) if nid in first and m else 0],
                      "public_key": m.public_key if m else None})
    homes = {nid: members[nid].home for nid in first}
    owner = [0] * shards
    unclaimed = -1 - index.get(UNCLAIMED, 0)
    for s in range(shards):
        rec = owned.get(s)
        if rec is None:
            owner[s] = unclaimed
        elif rec.owner in first:
            owner[s] = first[rec.owner] + homes[rec.owner][s]
        else:
            owner[s] = -1 - index[rec.owner]
    epoch = sum(o.epoch for o in owned.values())
    return ShardMap(epoch=epoch, shards=shards, owner=owner, endpoints=endpoints,
                    nodes=nodes, name=name)


def cluster_view(m: ShardMap, owned: Mapping[int, Owned], members: Mapping[str, Member],
                 replicas: int = 1) -> dict[str, Any]:
    """What ``client.cluster()`` returns: ``{"name", "epoch", "replicas",
    "under_replicated", "unavailable", "nodes": [{"id", "endpoint", "alive", "shards",
    "follows", "learning", "moving", "leaving"}]}``: ``shards`` it owns (leads), ``follows``
    how many it holds as a voting follower, ``learning`` as a learner being filled, and of
    its own, ``moving``: how many still belong elsewhere (a move under way or still to
    come: rendezvous placement over the live members that are not leaving). A cluster
    whose live nodes all show ``moving == 0`` is balanced. ``under_replicated``: shards
    with fewer than ``replicas`` live voters (leader and followers); ``unavailable``:
    shards without a live leader (nobody serves them now)."""
    targets = sorted(n for n, mb in members.items() if not mb.leaving)
    count: dict[str, int] = {}
    moving: dict[str, int] = {}
    follows: dict[str, int] = {}
    learning: dict[str, int] = {}
    under = unavailable = 0
    for s, rec in owned.items():
        count[rec.owner] = count.get(rec.owner, 0) + 1
        for f in rec.followers:
            follows[f] = follows.get(f, 0) + 1
        for n in rec.learners:
            learning[n] = learning.get(n, 0) + 1
        if rec.owner not in members:
            unavailable += 1
        if sum(1 for v in rec.voters if v in members) < replicas:
            under += 1
        if rec.owner in members and (rec.to is not None or (
                targets and placement.owner(s, targets) != rec.owner)):
            moving[rec.owner] = moving.get(rec.owner, 0) + 1
    unavailable += m.shards - len(owned)           # (not claimed yet)
    listed = [(n["id"], n["endpoint"], n["alive"]) for n in (m.nodes or ()) if n["id"] != UNCLAIMED]
    # a dead node that leads nothing but still holds copies (a follower whose shards
    # failed over, or a learner) is listed too: it is why those shards are under-replicated
    seen = {i for i, _e, _a in listed}
    listed += [(i, None, False) for i in sorted((follows.keys() | learning.keys()) - seen)]
    return {"name": m.name, "epoch": m.epoch, "replicas": replicas,
            "under_replicated": under, "unavailable": unavailable,
            "nodes": [{"id": i, "endpoint": endpoint, "alive": alive,
                       "shards": count.get(i, 0), "follows": follows.get(i, 0),
                       "learning": learning.get(i, 0), "moving": moving.get(i, 0),
                       "leaving": bool(i in members and members[i].leaving)}
                      for i, endpoint, alive in listed]}
