"""Replication's SHARDS commands (issue 16, ``replication.py``; present only when the
cluster's replicas > 1):

* a **grant** may carry ``"peers": [[node_id, endpoint, public_key or nil], ...]``,
  ``"replicas": {shard: [[peer_index, voter], ...]}``, ``"ack": "majority" | "all"`` and
  ``"ack_timeout": seconds``: the granted shards' followers and learners, to which this
  worker streams its commits (a grant without them replicates nothing).
* **append** ``{"batches": [[shard, epoch, prev_epoch, prev_seq, seq, items], ...],
  "replies"?: [[routing_id, reply], ...]}`` -> ``{"held": {shard: [e, s]}, "behind":
  {shard: [e, s]}, "refused": {shard: fence}, "delivered"?: [i, ...], "unreachable"?:
  [i, ...]}`` (the leader's replies this follower sent on once it held every batch:
  ``repl_follower.py``);
  **snapshot** ``{"shard", "epoch", "id", "first", "last", "items"}``; **position**
  ``{"shards", "fence"?}`` -> ``{"positions", "fences"}`` (fences raised and synced first):
  a follower's, refused for shards served here (``storage/replica.py``).
* **replication** ``{"shards"}`` -> ``{shard: {"epoch", "seq", "held": {node_id: seq},
  "streaming": [node_id, ...]}}``: a leader's view of its followers (``streaming``: those
  sent each batch as it commits, not being caught up from the log).

An ``append`` answered ``refused`` (a newer leader) makes this worker stop serving that
shard at once, as a revocation would, and remember the newer epoch (:meth:`ShardCommands.
stop_serving`).

(These functions are methods of :class:`~.grants.ShardCommands`.)"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import BadRequest

if TYPE_CHECKING:
    from .grants import ShardCommands
    from .replication import Replication


def stop_serving(self: ShardCommands, shard: int, fence: int) -> None:
    """A newer leader (epoch ``fence``) holds ``shard``: revoke it here at once (its
    actors passivate; queued messages get WrongShard) and never take a grant of it
    with an older epoch back."""
    g = self.grants
    self.changed = True                  # (the router's next grant is a full one: see renew)
    g.shards.pop(shard, None)
    g.highest[shard] = max(g.highest.get(shard, 0), fence)
    self.drains.revoke({shard})


def _repl(self: ShardCommands) -> Replication:
    if self.replication is None:
        raise BadRequest(f"worker slot {self.grants.slot} has no replication")
    return self.replication


def append(self: ShardCommands, args: dict[str, Any]) -> dict[str, Any]:
    return _repl(self).follower.append(args)


def snapshot(self: ShardCommands, args: dict[str, Any]) -> dict[str, Any]:
    return _repl(self).follower.snapshot(args)


def position(self: ShardCommands, args: dict[str, Any]) -> dict[str, Any]:
    return _repl(self).follower.position(args)


def replication(self: ShardCommands, args: dict[str, Any]) -> dict[int, Any]:
    return _repl(self).replication(args)
