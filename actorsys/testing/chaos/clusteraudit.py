"""The cluster chaos run's audit of the cluster itself, once the load stopped.

The per-actor audit (acknowledged <= count <= attempted, activation records, alarms,
WebSockets) is the single-node run's (:func:`.run.audit_counts`); this module adds what
only a cluster has:

* :func:`cluster_health`: every node of the cluster now healthy (its status, over its
  router: every process up, state ``serving``, not fenced) and every shard owned by
  exactly one node (every node's view agrees on each node's count, the counts sum to
  the shard count, nothing is moving, and each node's workers are granted exactly the
  shards it owns); with replicas also no shard under-replicated or unavailable;
* :func:`failover_percentiles`: with replicas, the ``failover_ms`` of the faults whose
  node lost its shards to a follower (:data:`.clusterfaults.REPLICATED_KINDS`).

Both only read: the nodes' statuses and views, and the injector's events.
"""
from __future__ import annotations

from typing import Any

from actorsys.testing.cluster import Cluster

from .audit import percentiles
from .clusterfaults import REPLICATED_KINDS, ClusterInjector
from .clusterprobe import settled


def cluster_health(c: Cluster, injector: ClusterInjector, workers: int) -> tuple[bool, str, list[str]]:
    """(healthy, what was seen, violations): every node's status over its router (every
    process up, serving, not fenced) and the ownership (see the module docstring)."""
    problems: list[str] = []
    owned: dict[str, int] = {}
    for i in injector.live:
        node = c.nodes[i]
        st = injector.probe.status(i, 5.0)
        if st is None or not node.running:
            problems.append(f"{node.node_id}: no status over its router"
                            f"{'' if node.running else ' (its supervisor exited)'}")
            continue
        procs = st["processes"]
        down = [f"{p['role']} {p.get('slot') if p.get('slot') is not None else ''}".strip()
                for p in procs if not p.get("up")]
        slots = sorted(p["slot"] for p in procs if p["role"] == "worker" and p.get("up"))
        cl = st.get("cluster") or {}
        if down or slots != list(range(workers)) or cl.get("state") != "serving" or cl.get("fenced"):
            problems.append(f"{node.node_id} unhealthy: processes down {down or 'none'}, workers up "
                            f"{slots}, state {cl.get('state')}, fenced {cl.get('fenced')}")
        owned[node.node_id] = int(cl.get("shards_owned", -1))
        granted = sum(int(p.get("granted") or 0) for p in procs if p["role"] == "worker")
        if granted != owned[node.node_id]:
            problems.append(f"{node.node_id} owns {owned[node.node_id]} shards but its workers are "
                            f"granted {granted}")
    shards = injector.probe.client.map.shards
    if owned and sum(owned.values()) != shards:
        problems.append(f"the nodes own {sum(owned.values())} shards between them, not {shards}: {owned}")
    for i in injector.live:
        node = c.nodes[i]
        try:
            view = c.view(i, timeout=5.0)
        except RuntimeError as exc:
            problems.append(f"{node.node_id}: {exc}")
            continue
        counts = {n["id"]: n["shards"] for n in view["nodes"] if n["shards"]}
        if counts != owned or not settled(injector.live_ids, injector.replicas)(view):
            problems.append(f"{node.node_id}'s view {view['nodes']} disagrees with what the nodes "
                            f"own {owned} or is not settled")
    what = (f"{len(injector.live)} nodes serving, every process up, {shards} shards owned "
            f"once ({', '.join(f'{k} {v}' for k, v in owned.items())}), none moving"
            + (f", each on {injector.replicas} live replicas (none under-replicated or "
               f"unavailable)" if injector.replicas > 1 else ""))
    return not problems, (what if not problems else "; ".join(problems)), problems


def failover_percentiles(events: list[dict[str, Any]], kinds: tuple[str, ...]) -> dict[str, Any]:
    """The percentiles of ``failover_ms`` (from the fault until its node's shards answered
    elsewhere): overall, and per kind of :data:`.clusterfaults.REPLICATED_KINDS` in ``kinds``."""
    out: dict[str, Any] = {"overall": percentiles([ev["failover_ms"] for ev in events
                                                   if "failover_ms" in ev])}
    for kind in REPLICATED_KINDS:
        if kind in kinds:
            out[kind] = percentiles([ev["failover_ms"] for ev in events
                                     if ev["kind"] == kind and "failover_ms" in ev])
    return out
