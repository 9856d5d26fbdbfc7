"""The ``[cluster]`` table: a node that is one of a cluster of nodes, whose membership
and shard ownership live in etcd (issue 15). Validated into a :class:`ClusterConfig`.

No ``[cluster]`` table: a single node, exactly as before, with no etcd. With one:

* ``etcd``: one or more etcd client URLs, ``http://HOST:PORT`` (required).
* ``name``: the cluster's name; nodes of other clusters never mix (their keys in etcd
  live under ``/actorsys/<name>/``). Letters, digits, ``-``, ``_`` and ``.``.
* ``node_id``: this node's id, unique in the cluster and stable (the data directory
  remembers it; a data directory of another node id is a ConfigError at start).
  Same characters as ``name``.
* ``lease_ttl``: seconds; a node that stops renewing its etcd lease for this long
  loses its shards to the others (1 to 600).
* ``replicas``: how many nodes hold a copy of each shard (1 to 7; default 1: no
  replication, each shard lives on its owner alone). With more, a shard has a leader
  (its owner) and followers that hold every acknowledged write; one takes over when the
  leader dies (docs/cluster.md, "Replicated shards"). Cluster-wide: every node must say
  the same (the first node records it in etcd; another value stops a node at start).
* ``ack``: which of a shard's voting replicas must hold a write before it is
  acknowledged: ``"majority"`` (default) or ``"all"``. Cluster-wide, like ``replicas``.
* ``bootstrap_expect``: how many nodes form a new cluster (1 to 1000; default 1). While
  no shard has an owner yet, the first node waits until this many are live before it
  claims the shards, each for the node placement puts it on, so that nodes started
  together move nothing (Consul's ``bootstrap_expect``). It matters only once, when
  the cluster forms; a node joining later takes its share by moves.
* ``bootstrap_timeout``: seconds that wait lasts at most, from the first node's start
  (1 to 3600; default 60); then it claims for the nodes that are live, with a warning.

A cluster node must be reachable by the others: ``[node] endpoint`` is a tcp endpoint
(``tcp://HOST:PORT``, not a wildcard host), with CURVE keys or ``insecure = true``.
"""
from __future__ import annotations

import importlib.util
import re
from typing import Any, NamedTuple

from ..errors import ConfigError
from .defaults import CLUSTER
from .source import Source

_URL = re.compile(r"^https?://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_WILDCARD_HOSTS = ("*", "0.0.0.0", "[::]")
#: the most copies of a shard ``replicas`` may ask for
MAX_REPLICAS = 7
#: the values of ``ack``
ACKS = ("majority", "all")


class ClusterConfig(NamedTuple):
    """The validated ``[cluster]`` table (see the module docstring)."""
    etcd: list[str]         #: etcd client URLs, at least one
    name: str               #: the cluster's name: its keys live under /actorsys/<name>/
    node_id: str            #: this node's id, unique in the cluster
    lease_ttl: float        #: seconds without renewal before this node loses its shards
    #: copies of each shard, leader included (1: no replication); cluster-wide
    replicas: int = 1
    #: "majority" | "all": the voters a replicated write waits for; cluster-wide
    ack: str = "majority"
    #: live nodes a new cluster's first claim waits for (1: none)
    bootstrap_expect: int = 1
    #: seconds that wait lasts at most, from the node's start
    bootstrap_timeout: float = 60.0


def parse_cluster(table: Any, src: Source, endpoint: str | None) -> ClusterConfig:
    """Validate the [cluster] table of a node whose router endpoint is ``endpoint``."""
    def fail(problem: str, key: str | None) -> ConfigError:
        return src.fail(problem, "cluster" if key else None, key or "cluster")

    if not isinstance(table, dict):
        raise fail("[cluster] must be a table", None)
    for key in table:
        if key not in CLUSTER:
            raise fail(f"unknown key (expected one of: {', '.join(CLUSTER)})", key)
    for key in ("etcd", "name", "node_id"):
        if key not in table:
            raise fail(f"missing: a cluster node needs [cluster] {key}", key)
    etcd = table["etcd"]
    if isinstance(etcd, str):
        etcd = [etcd]
    if not (isinstance(etcd, list) and etcd and all(isinstance(u, str) for u in etcd)):
        raise fail("must be a list of etcd client URLs such as \"http://10.0.0.1:2379\"", "etcd")
    for url in etcd:
        m = _URL.match(url)
        if m is None or int(m.group(2)) > 65535:
            raise fail(f"an etcd client URL is http://HOST:PORT, got {url!r:.80}", "etcd")
    for key in ("name", "node_id"):
        value = table[key]
        if not (isinstance(value, str) and _NAME.match(value)):
            raise fail(f"must be 1 to 64 letters, digits, '-', '_' or '.', got {value!r:.80}", key)
    ttl = table.get("lease_ttl", CLUSTER["lease_ttl"].fresh())
    if type(ttl) not in (int, float) or not 1 <= ttl <= 600:
        raise fail(f"must be a number of seconds from 1 to 600, got {ttl!r:.80}", "lease_ttl")
    replicas = table.get("replicas", CLUSTER["replicas"].fresh())
    if type(replicas) is not int or not 1 <= replicas <= MAX_REPLICAS:
        raise fail(f"must be an integer from 1 to {MAX_REPLICAS} (copies of each shard; 1: no "
                   f"replication), got {replicas!r:.80}", "replicas")
    ack = table.get("ack", CLUSTER["ack"].fresh())
    if ack not in ACKS:
        raise fail(f"must be \"majority\" or \"all\" (the replicas a write waits for), got "
                   f"{ack!r:.80}", "ack")
    expect = table.get("bootstrap_expect", CLUSTER["bootstrap_expect"].fresh())
    if type(expect) is not int or not 1 <= expect <= 1000:
        raise fail(f"must be an integer from 1 to 1000 (the nodes a new cluster waits for "
                   f"before its first claim), got {expect!r:.80}", "bootstrap_expect")
    wait = table.get("bootstrap_timeout", CLUSTER["bootstrap_timeout"].fresh())
    if type(wait) not in (int, float) or not 1 <= wait <= 3600:
        raise fail(f"must be a number of seconds from 1 to 3600, got {wait!r:.80}",
                   "bootstrap_timeout")
    if endpoint is None or not endpoint.startswith("tcp://"):
        raise src.fail("a cluster node must be reachable by the others: set [node] endpoint to "
                       "\"tcp://HOST:PORT\" (with CURVE keys, or insecure = true)", "node", "endpoint")
    host = endpoint[6:].rsplit(":", 1)[0]
    if host in _WILDCARD_HOSTS:
        raise src.fail(f"a cluster node's endpoint is the address the others reach it at, not a "
                       f"wildcard ({host}): name this host's address", "node", "endpoint")
    if importlib.util.find_spec("aetcd") is None:      # (found, not imported: no gRPC here)
        raise fail("a cluster node needs the etcd client, which is not installed: "
                   "pip install 'actorsys[cluster]' (or scripts/setup cluster)", None)
    return ClusterConfig(list(etcd), table["name"], table["node_id"], float(ttl), replicas, ack,
                         expect, float(wait))
