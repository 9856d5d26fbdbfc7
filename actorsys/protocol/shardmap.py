"""The shard map: which worker slot owns each actor.

``shard_of(type, key)`` hashes an address onto a fixed number of shards (fixed when a
data directory is created); the router owns the map from shards to worker slots and
gives it out with an epoch number. A worker refuses messages for shards it does not own
(``wrong_shard`` with its epoch) and the client refreshes its map.

In a cluster the same map covers every node (``name`` and ``nodes`` are set; both are
absent for a single node, whose map is unchanged):

* ``nodes`` are maps ``{"id", "endpoint", "alive", "slots": [first, count], ...}``;
* ``endpoints`` are every live node's worker endpoints concatenated: slots are global,
  node ``k``'s are ``nodes[k]["slots"]``;
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

import re
import zlib
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest, ShardUnavailable


def shard_of(type_name: str, key: str, shards: int) -> int:
    """The shard of an actor address; stable across processes and machines."""
    return zlib.crc32(key.encode("utf-8"), zlib.crc32(type_name.encode("utf-8") + b"\x00")) % shards


#: a real node id (config/cluster.py); any other "id" in ``nodes`` is a pseudo-node
#: (the cluster's shards no node has claimed yet)
_NODE_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


@dataclass
class ShardMap:
    epoch: int
    shards: int
    owner: list[int]          # shard -> global slot, or -1 - k: nodes[k] (down) owns it
    endpoints: list[str]      # slot -> worker endpoint
    #: a cluster's nodes, ``{"id", "endpoint", "alive", "slots": [first, count], ...}``
    #: (None: a single node)
    nodes: list[dict[str, Any]] | None = None
    name: str | None = None              # the cluster's name (None: a single node)
    #: the workers read BATCH frames (``wire``, "Coalescing"): every map this version
    #: makes says so; a map from a node that does not say so is False, and a client then
    #: sends each message alone
    batches: bool = True

    def version(self) -> list[Any]:
        """``[epoch, crc32 of the worker endpoints]``: two maps of one cluster with the
        same version send every shard to the same place (an owner change bumps the
        epoch; a node that dies, returns, joins or leaves changes the endpoints)."""
        return [self.epoch, zlib.crc32("\n".join(self.endpoints).encode())]

    def slot_of(self, type_name: str, key: str) -> int:
        """The global slot serving the actor; ShardUnavailable if its node is down."""
        slot = self.owner[shard_of(type_name, key, self.shards)]
        if slot < 0:
            raise self.unavailable(type_name, key)
        return slot

    def down_nodes(self) -> dict[str, int]:
        """Node id -> how many shards it owns, of the nodes that own shards and are not
        alive (empty for a single node, and for a cluster with every owner up)."""
        out: dict[str, int] = {}
        nodes = self.nodes or []
        for o in self.owner:
            if o < 0:
                k = -1 - o
                nid = str(nodes[k].get("id")) if 0 <= k < len(nodes) else "?"
                out[nid] = out.get(nid, 0) + 1
        return out

    def unavailable(self, type_name: str, key: str) -> ShardUnavailable:
        """The error of an actor whose shard belongs to a node that is down."""
        shard = shard_of(type_name, key, self.shards)
        k = -1 - self.owner[shard]
        nodes = self.nodes or []
        what = f"shard {shard} of {type_name}/{key!r}"
        if not 0 <= k < len(nodes):
            return ShardUnavailable(f"{what} belongs to a node that is down (not in the map)")
        nid, endpoint = nodes[k].get("id"), nodes[k].get("endpoint")
        if not (isinstance(nid, str) and _NODE_ID.match(nid)):
            return ShardUnavailable(f"{what} is not served: {nid}")
        where = f" ({endpoint})" if endpoint else ""
        return ShardUnavailable(f"{what} belongs to node {nid}{where}, which is down; "
                                f"it answers again when {nid} returns")

    def node_of_slot(self, slot: int) -> dict[str, Any] | None:
        """The node hosting global ``slot`` (None for a single node's map)."""
        for n in self.nodes or ():
            first, count = n.get("slots") or (0, 0)
            if first <= slot < first + count:
                return n
        return None

    def to_wire(self, **extra: Any) -> dict[str, Any]:
        """The map as the router and workers send it (``extra``: node limits clients need)."""
        owner = self.owner
        d: dict[str, Any] = {
            "epoch": self.epoch, "shards": self.shards,
            "owner": bytes(owner) if owner and min(owner) >= 0 and max(owner) <= 255 else owner,
            "endpoints": self.endpoints, **extra}
        if self.batches:
            d["batches"] = True
        if self.nodes is not None:
            d["nodes"] = self.nodes
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
                    nodes=None if nodes is None else [dict(n) for n in nodes],
                    name=None if d.get("name") is None else str(d["name"]),
                    batches=d.get("batches") is True)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadRequest(f"malformed shard map ({type(exc).__name__}: {exc})") from None
        n_nodes = len(m.nodes or ())
        if len(owner) != m.shards or (owner and (min(owner) < -n_nodes
                                                 or max(owner) >= len(m.endpoints))):
            raise BadRequest(f"malformed shard map: {len(owner)} owners for {m.shards} shards, "
                             f"{len(m.endpoints)} slots and {n_nodes} nodes")
        return m
