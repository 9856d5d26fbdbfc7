"""The shard map: which worker slot owns each actor.

``shard_of(type, key)`` hashes an address onto a fixed number of shards (fixed when a
data directory is created); the router owns the map from shards to worker slots and
gives it out with an epoch number. A worker refuses messages for shards it does not own
(``wrong_shard`` with its epoch) and the client refreshes its map.

In a cluster the same map covers every node (``name`` and ``nodes`` are set; both are
absent for a single node, whose map is unchanged):

* ``endpoints`` are every live node's worker endpoints concatenated: slots are global,
  node ``k``'s are ``nodes[k].slots`` = ``[first, count]``;
* ``owner[shard]`` is the global slot serving the shard, or ``-1 - k`` when the shard
  belongs to ``nodes[k]``, which is not alive: :meth:`ShardMap.slot_of` raises
  :class:`~actorsys.errors.ShardUnavailable` naming that node at once (no wait for a
  deadline).

Invariants (checked by :meth:`ShardMap.from_wire`): ``len(owner) == shards``; every
owner is a slot ``0 <= o < len(endpoints)`` or a node ``-len(nodes) <= o < 0``.
On the wire ``owner`` is bytes when every value is 0..255 (a map of 4096 shards is
4 KB), else an array.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..errors import BadRequest, ShardUnavailable


def shard_of(type_name: str, key: str, shards: int) -> int:
    """The shard of an actor address; stable across processes and machines."""
    return zlib.crc32(key.encode("utf-8"), zlib.crc32(type_name.encode("utf-8") + b"\x00")) % shards


class MapNode(NamedTuple):
    """One node of a cluster's map: its id, router endpoint, whether it is alive, and its
    global worker slots ``first .. first + count - 1`` (count 0 for a node that is down)."""
    id: str
    endpoint: str
    alive: bool
    first_slot: int
    slot_count: int

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "endpoint": self.endpoint, "alive": self.alive,
                "slots": [self.first_slot, self.slot_count]}

    @classmethod
    def from_wire(cls, d: Any) -> "MapNode":
        if isinstance(d, MapNode):
            return d
        first, count = d.get("slots") or (0, 0)
        return cls(str(d["id"]), str(d["endpoint"]), bool(d["alive"]), int(first), int(count))


@dataclass
class ShardMap:
    epoch: int
    shards: int
    owner: list[int]          # shard -> global slot, or -1 - k: nodes[k] (down) owns it
    endpoints: list[str]      # slot -> worker endpoint
    nodes: list[MapNode] | None = None   # a cluster's nodes (None: a single node)
    name: str | None = None              # the cluster's name (None: a single node)

    def __post_init__(self) -> None:
        if self.nodes is not None:      # dicts as on the wire are accepted too
            self.nodes = [MapNode.from_wire(n) for n in self.nodes]

    def slot_of(self, type_name: str, key: str) -> int:
        """The global slot serving the actor; ShardUnavailable if its node is down."""
        slot = self.owner[shard_of(type_name, key, self.shards)]
        if slot < 0:
            raise self.unavailable(type_name, key)
        return slot

    def unavailable(self, type_name: str, key: str) -> ShardUnavailable:
        """The error of an actor whose shard belongs to a node that is down."""
        shard = shard_of(type_name, key, self.shards)
        k = -1 - self.owner[shard]
        nodes = self.nodes or []
        if 0 <= k < len(nodes):
            n = nodes[k]
            return ShardUnavailable(
                f"shard {shard} of {type_name}/{key!r} belongs to node {n.id} ({n.endpoint}), "
                f"which is down; it answers again when {n.id} returns")
        return ShardUnavailable(f"shard {shard} of {type_name}/{key!r} belongs to a node "
                                f"that is down (not in the map)")

    def node_of_slot(self, slot: int) -> MapNode | None:
        """The node hosting global ``slot`` (None for a single node's map)."""
        for n in self.nodes or ():
            if n.first_slot <= slot < n.first_slot + n.slot_count:
                return n
        return None

    def to_wire(self, **extra: Any) -> dict[str, Any]:
        """The map as the router and workers send it (``extra``: node limits clients need)."""
        owner = self.owner
        d: dict[str, Any] = {
            "epoch": self.epoch, "shards": self.shards,
            "owner": bytes(owner) if owner and min(owner) >= 0 and max(owner) <= 255 else owner,
            "endpoints": self.endpoints, **extra}
        if self.nodes is not None:
            d["nodes"] = [n.to_wire() for n in self.nodes]
        if self.name is not None:
            d["name"] = self.name
        return d

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> "ShardMap":
        """The map a router sent; BadRequest if it breaks the invariants."""
        try:
            owner = list(d["owner"])
            nodes = d.get("nodes")
            m = cls(epoch=int(d["epoch"]), shards=int(d["shards"]), owner=owner,
                    endpoints=list(d["endpoints"]),
                    nodes=None if nodes is None else list(nodes),
                    name=None if d.get("name") is None else str(d["name"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadRequest(f"malformed shard map ({type(exc).__name__}: {exc})") from None
        n_nodes = len(m.nodes or ())
        if len(owner) != m.shards or (owner and (min(owner) < -n_nodes
                                                 or max(owner) >= len(m.endpoints))):
            raise BadRequest(f"malformed shard map: {len(owner)} owners for {m.shards} shards, "
                             f"{len(m.endpoints)} slots and {n_nodes} nodes")
        return m
