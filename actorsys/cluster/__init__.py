"""The cluster layer (issue 15): a node's membership and its shards' ownership in etcd.

Used by the node's router process only (``actorsys.node``); it may import the layers
below the runtime (config, net, protocol, errors, log). A client process never loads it
(nor the etcd client and gRPC under it): import-linter's contracts in pyproject.toml.

Modules, by concern:

* ``coordinator.py``: a node's cluster life (join, serve, leave), owning the parts below;
  ``join.py``: the steps of a join (the cluster's config checked, the lease id kept, stale
  copies swept);
* ``membership.py`` (``keepalive.py``, ``fence.py``): this node's lease and the live
  members; ``election.py``: the election of the cluster's one supervision tree;
* ``ownership.py``: the shards' records in etcd; ``records.py``: this node's copy of
  them, kept current, and the count of changes;
* ``grants.py``: what the router grants its workers (and the keys to its gateway);
* ``placement.py``: rendezvous hashing; ``rebalance.py``: the loop that places this
  node's shards; ``moves.py`` and ``handoff.py``: moving a shard, with or without its data;
* ``replicas.py``: replicated shards (``replicas`` > 1), the leader's pass, with its
  parts: ``replica_plans.py`` (pure decisions), ``replica_asks.py``, ``replica_grants.py``,
  ``replica_writes.py``, ``replica_transfers.py``, ``replica_repair.py``,
  ``replica_following.py`` and ``failover.py``;
* ``clustermap.py``: the map clients get, and ``client.cluster()``'s view.
"""
from .membership import Member, Membership

__all__ = ["Member", "Membership"]
