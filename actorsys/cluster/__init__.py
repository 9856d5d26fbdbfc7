"""The cluster layer (issue 15): a node's membership and its shards' ownership in etcd.

Used by the node's router process only (``actorsys.node``); it may import the layers
below the runtime (config, net, protocol, errors, log). A client process never loads it
(nor the etcd client and gRPC under it): import-linter's contracts in pyproject.toml.
"""
from .membership import Member, Membership

__all__ = ["Member", "Membership"]
