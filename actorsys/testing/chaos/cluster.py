"""Chaos across a cluster (``scripts/chaos --cluster N``): faults of nodes, then the audit.

:func:`run_cluster` is :func:`.run.run` for a cluster: it starts real etcd and ``N``
nodes (:class:`~actorsys.testing.cluster.Cluster`: network-namespace hosts when this
process may make them, else loopback addresses), waits until they share the shards,
starts the client processes (:mod:`.load`, connected with the list of every router),
injects faults for ``duration`` seconds, stops the clients and audits, as the single-node
run does (:mod:`.audit`: acknowledged <= count <= attempted; ``Tally``'s activation
records tile ``1 .. count``: two activations of one actor at once, on one node or two,
would break that; every acknowledged alarm fired exactly once: with replicas, an alarm
due while its shard's leader is dead fires once, on the new leader). Its parts:

* :mod:`.clusterfaults`: the faults (:data:`~.clusterfaults.KINDS`: kill -9 of a worker,
  a router or a whole node, SIGSTOP or a network cut past its lease, a node joining then
  leaving), one at a time, the first of each kind guaranteed, and the time until the
  node answers again. A network cut needs namespace hosts: on loopback hosts a run says
  so and skips it.
* :mod:`.clusterprobe`: how the faults see the cluster: a node's slots are probed
  through ``Probe`` actors whose shards that node owns, one per worker slot (found from
  the settled shard map, again after each join or leave); statuses, views.
* :mod:`.clusteraudit`: what the audit adds for the cluster at the end: every node
  healthy (its status, over its router: every process up, state ``serving``, not
  fenced) and every shard owned by exactly one node.
* this module: the run, from the cluster's start to the cleanup of everything it
  started, and its result.

With ``replicas`` R > 1 (``scripts/chaos --cluster 3 --replicas 3``: ``[cluster] replicas``
in every node's config, issue 16) every shard has a leader and R - 1 followers, and a
node that dies, is paused or cut off past its lease loses its shards to a follower
(failover) instead of keeping them unavailable until it returns: the run reports
``failover_ms`` beside ``recovery_ms`` (:mod:`.clusterfaults` says what each measures).
The audit is the same (the clients count ShardUnavailable as failed, not lost: with
replicas they are few), and the health adds that no shard is under-replicated or
unavailable. ``faults`` restricts the kinds (a short run of the faults replication is
about).

WebSockets (unless ``ws_sockets`` is 0): every node has a gateway (:func:`gateway_listen`),
and the WebSocket client (:mod:`.wsload`) holds sockets to ``Inbox`` actors on random
nodes' gateways, sending numbered messages through the faults (a socket whose gateway
died or closed it connects again, to a random gateway); the audit checks every number
acknowledged is in its actor's state exactly once, none twice
(:func:`.audit.check_websockets`): with replicas, the delivery mark that makes a batch
delivered again apply once is shard data that fails over with the shard.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from typing import Any

from actorsys.config.layout import free_port
from actorsys.testing.cluster import Cluster
from actorsys.testing.clusternode import ClusterNode

from .audit import ACTORS, gateway_counters
from .clusteraudit import cluster_health, failover_percentiles
from .clusterfaults import KINDS, ClusterInjector
from .clusterprobe import settled
from .load import GO, LineReader
from .run import ChaosParams, Reporter, audit_counts, end_clients, inject_until, send, \
    split_reports, start_clients, stop_clients

#: the lines of each node's log a run with violations keeps in its result
LOG_LINES = 60
#: the gateway's port on a namespace host (each namespace has its ports to itself)
GATEWAY_PORT = 7180


def gateway_listen(c: Cluster, node: ClusterNode) -> str:
    """Node ``node``'s gateway ``HOST:PORT``: :data:`GATEWAY_PORT` on a namespace host, a
    free port (not its router's) on a loopback one. (Called while ``c`` makes the node's
    config: its hosts are known by then.)"""
    host = node.host.address
    if c.can_cut:
        return f"{host}:{GATEWAY_PORT}"
    return f"{host}:{free_port(host, taken=[node.endpoint.rsplit(':', 1)[1]])}"


def chosen_kinds(faults: str | None) -> set[str]:
    """The fault kinds a ``--faults`` list names (None: every kind); ValueError naming an
    unknown one."""
    if faults is None:
        return set(KINDS)
    wanted = {k.strip() for k in faults.split(",") if k.strip()}
    unknown = sorted(wanted - set(KINDS))
    if unknown or not wanted:
        raise ValueError(f"--faults: unknown fault kind(s) {unknown}; known: {', '.join(KINDS)}")
    return wanted


def node_settings(p: ChaosParams) -> dict[str, Any]:
    """The ``[node]`` keys of every node: the kills are deliberate, so no restart limit."""
    node: dict[str, Any] = {"durability": p.durability, "ask_timeout": p.ask_timeout,
                            "max_restarts": 1_000_000, "max_seconds": 1.0}
    if p.max_resident:
        node["max_resident"] = p.max_resident
    if p.idle_timeout:
        node["idle_timeout"] = p.idle_timeout
    return node


def run_cluster(p: ChaosParams, reporter: Reporter) -> dict[str, Any]:
    """One run over a cluster of ``p.cluster`` nodes; the result (as :func:`.run.run`)."""
    rng = random.Random(p.seed)
    workdir = tempfile.mkdtemp(prefix="actorsys-cluster-chaos-", dir=p.tmpdir)
    clients: list[subprocess.Popen[bytes]] = []
    injector: ClusterInjector | None = None
    result: dict[str, Any] = {"params": dataclasses.asdict(p)}
    t_begin = time.monotonic()
    extra: dict[str, Any] = {"node": node_settings(p)}
    if p.replicas > 1:
        extra["cluster"] = {"replicas": p.replicas}
    #: node index -> its gateway's HOST:PORT (every node has one if the run has WebSockets)
    gateways: dict[int, str] = {}

    def node_config(node: ClusterNode) -> dict[str, Any]:
        if not p.ws_sockets:
            return extra
        gateways[node.index] = gateway_listen(cluster, node)
        return {**extra, "gateway": {"listen": gateways[node.index]}}

    cluster = Cluster(workdir, p.cluster, hosts=p.hosts, actors=ACTORS, lease_ttl=p.lease_ttl,
                      workers=p.workers, name="chaos", extra_config=node_config)
    opened = False
    try:
        c = cluster.__enter__()        # closed in the finally block (also on an error)
        opened = True
        for i in range(p.cluster):
            c.wait_ready(i, 60.0)
        c.wait_view(0, settled([node.node_id for node in c.nodes], p.replicas),
                    f"{p.cluster} nodes sharing the shards"
                    + (f", each on {p.replicas} replicas" if p.replicas > 1 else ""), 120.0)
        wanted = chosen_kinds(p.faults)
        kinds = tuple(k for k in KINDS if k in wanted and (k != "cut" or c.can_cut)
                      and (k != "move" or p.join_leave))
        notes = [f"hosts: {'network namespaces' if c.can_cut else 'loopback addresses'} "
                 f"({', '.join(c.endpoints)}); lease_ttl {p.lease_ttl:g} s"
                 + (f"; replicas {p.replicas} (a node's shards fail over)" if p.replicas > 1 else "")]
        if not c.can_cut and "cut" in wanted:
            notes.append("network cut: not available on loopback hosts (needs root and "
                         "network namespaces); that fault kind was skipped")
        if not kinds:
            raise RuntimeError(f"no fault kind left to inject of {sorted(wanted)}")
        result.update(endpoints=c.endpoints, notes=notes)
        injector = ClusterInjector(c, rng, p.recovery_timeout, kinds, p.replicas)
        injector.learn()
        # the WebSocket client uses the gateways of the nodes started now (not a joiner's)
        ws_urls = [f"http://{gateways[i]}" for i in range(p.cluster)] if p.ws_sockets else None
        readers: list[LineReader] = start_clients(p, c.endpoints, rng, clients, ws_urls)
        for proc in clients:
            send(proc, GO)
        t_load = time.monotonic()
        reporter.load_started(p)
        inject_until(p, injector, clients, rng, t_load, reporter)
        t_stop = time.monotonic()
        reports, ws_report = split_reports(stop_clients(p, clients, readers))
        out = audit_counts(p, injector.probe.client, injector, kinds, reports, t_stop - t_load,
                           ws_report)
        if p.replicas > 1:             # from the fault until its node's shards answered elsewhere
            out["failover_ms"] = failover_percentiles(injector.events, kinds)
        healthy, health, problems = cluster_health(c, injector, p.workers)
        if out["websockets"] is not None:
            out["websockets"]["gateways"] = gateway_counters([injector.probe.status(i, 5.0)
                                                              for i in injector.live])
        out["violations"].extend(problems)
        out.update(healthy=healthy, health=health,
                   exit_code=0 if out["lost"] == 0 and not out["violations"] and healthy else 1)
        if out["violations"]:          # what the nodes said (their directories are deleted)
            out["node_logs"] = {node.node_id: c.log_tail(node.index, LOG_LINES) for node in c.nodes}
        result.update(out)
        reporter.finished(result)
        return result
    except KeyboardInterrupt:
        reporter.interrupted()
        result["exit_code"] = 130
        return result
    finally:
        end_clients(clients)
        if injector is not None:
            injector.close()
        if opened:
            cluster.close()
        if not os.environ.get("ACTORSYS_KEEP_CLUSTER_DIR"):   # (Cluster keeps its part then)
            shutil.rmtree(workdir, ignore_errors=True)
        pids = {proc.pid for proc in clients}
        for node in cluster.nodes:
            pids.update(pid for pid, _ in node.seen)
        result["pids"] = sorted(pids)
        result["wall_s"] = round(time.monotonic() - t_begin, 3)
        if p.json:
            with open(p.json, "w") as f:
                json.dump(result, f, indent=1)
