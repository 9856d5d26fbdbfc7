"""actorsys cluster benchmark: asks to actors on a remote node of a three-node cluster,
beside a single node over tcp and a raw pyzmq tcp echo over the same hop, in one run.

Hosts are loopback addresses of this machine (127.0.0.11, .12, .13, and .14 for the
node that joins); etcd runs on 127.0.0.1, the single node on 127.0.0.10 and the raw echo
server on 127.0.0.20. The client connects to node n1's router; the measured actors live
on n2 (the map sends each ask straight to n2's worker: one hop, like a single node).

1. remote ask       blocking client, one actor on n2, sequential asks (p50 / p99)
                    vs the same on a single node over tcp, and the raw tcp echo
2. pipelined asks   asyncio client, ``window`` asks in flight over 100 actors on n2
                    vs the single node over tcp, and the raw tcp echo
3. map refresh      the asyncio client fetching the cluster's map from a router (p50)
4. join             a fourth node joins: how long the moves to it take, and the longest
                    wait of a client asking, without pause, an actor that moves to it
                    (its asks are retried by the client through the move)

Targets (issue 15): remote ask p50 within 1.3x of the single node over tcp; map
refresh under 100 ms. Everything started is removed at the end, also on Ctrl-C.

``--replicas R`` (R > 1; issue 16) benchmarks replication instead, in one run: two
three-node clusters (:class:`actorsys.testing.cluster.Cluster` on loopback hosts, each
with its own etcd), one with ``[cluster] replicas = R`` and one without (``replicas =
1``), both up at once so that their measurements interleave and see the same noise:

1. write ask        blocking client, one actor on n2 (its leader), sequential ``add``
                    asks (a write each), p50 / p99, replicated vs unreplicated;
                    beside it the raw floor: the same hand-offs in pyzmq + msgpack
                    processes with no runtime (client -> echo -> client against
                    client -> relay -> follower -> client, loopback tcp), whose ratio
                    is what the hand-offs alone cost on this machine; and the CPU each
                    cluster's processes (by role) and the client's thread spent per
                    write meanwhile (psutil; idle work included: on a machine whose
                    cores the nodes share, it is what the writes wait behind)
2. pipelined writes asyncio client, ``window`` asks in flight over 100 actors led by n2
                    (best of 3; quick: 1), replicated vs unreplicated
3. failover         kill -9 every process of the node leading a probed actor (n2, n3
                    in turn); the time from the kill to the first answer from its new
                    leader (the client asking without pause), p50 and max over
                    ``--kills`` kills; the node is started again and the cluster
                    settled (no shard under-replicated, none moving) before the next

Targets (issue 16): write ask p50 with replication within 2x of unreplicated;
pipelined write throughput at least 50% of unreplicated; failover within ``lease_ttl``
+ 2 s (``--lease-ttl``, 2 s by default).

Usage: ``scripts/bench --cluster 3 [--replicas 3 [--kills N] [--lease-ttl S]] [--quick]
[--json FILE]``
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from typing import Any

import zmq

import actorsys
from actorsys.client import connect_async
from actorsys.config.layout import free_port
from actorsys.testing.bench import (TYPE, Resources, actorsys_pipelined, fmt_num, keys_on, log,
                                    pct, raw_pipelined, run_and_report)
from actorsys.testing.etcd import Etcd
from actorsys.testing.rawecho import ASK, packb, raw_recv, raw_socket, raw_wait_ready
from bench_cluster_replicated import print_replicated, run_replicated

HERE = os.path.dirname(os.path.abspath(__file__))
SETTLE_TIMEOUT = 120.0


def node_config(res: Resources, name: str, host: str, etcd: str | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "node": {"data_dir": os.path.join(res.tmp, name), "workers": 2, "insecure": True,
                 "endpoint": f"tcp://{host}:{free_port(host)}",
                 "python_path": [HERE, os.path.join(os.path.dirname(HERE), "examples")],
                 "shutdown_timeout": 5.0, "start_timeout": 60.0, "ask_timeout": 30.0},
        "actors": {TYPE: "bench_actors:BenchCounter"}}
    if etcd is not None:
        cfg["cluster"] = {"etcd": [etcd], "name": "bench", "node_id": name, "lease_ttl": 5.0,
                          "bootstrap_expect": 3}     # (the three started together; the 4th joins)
    return cfg


def settled(client: actorsys.Client, nodes: int) -> bool:
    """Every one of ``nodes`` live nodes holds shards and no move is under way."""
    view = client.cluster()["nodes"]
    live = [n for n in view if n["alive"]]
    return len(live) == nodes and all(n["shards"] > 0 and not n["moving"] for n in live)


def wait_settled(client: actorsys.Client, nodes: int) -> float:
    t0 = time.monotonic()
    while not settled(client, nodes):
        if time.monotonic() - t0 > SETTLE_TIMEOUT:
            raise TimeoutError(f"the cluster did not settle on {nodes} nodes within "
                               f"{SETTLE_TIMEOUT:g} s: {client.cluster()}")
        time.sleep(0.05)
    return time.monotonic() - t0


def latency(asks: dict[str, Any], raw: Any, n: int, chunk: int = 100) -> dict[str, Any]:
    """Sequential asks through each of ``asks`` (name -> ref) and the raw echo, in chunks
    interleaved so every path sees the same noise; p50/p99 in us."""
    perf = time.perf_counter_ns
    samples: dict[str, list[int]] = {name: [] for name in [*asks, "raw"]}
    rid = 0
    for ref in asks.values():
        for _ in range(100):
            ref.ask("add", 1, timeout=10.0)
    while len(samples["raw"]) < n:
        m = min(chunk, n - len(samples["raw"]))
        for name, ref in asks.items():
            ask, out = ref.ask, samples[name]
            for _ in range(m):
                t = perf()
                ask("add", 1, timeout=10.0)
                out.append(perf() - t)
        for _ in range(m):
            rid += 1
            t = perf()
            raw.send(packb([ASK, rid, TYPE, "latency", "add", [1], {}]))
            if raw_recv(raw)[1] != rid:
                raise RuntimeError("raw echo answered another request")
            samples["raw"].append(perf() - t)
    out = {}
    for name, v in samples.items():
        v.sort()
        out[name] = {"p50_us": pct(v, 0.5) / 1e3, "p99_us": pct(v, 0.99) / 1e3, "n": len(v)}
    return out


async def map_refresh(endpoint: str, n: int) -> dict[str, float]:
    c = await connect_async(endpoint, timeout=30.0)
    try:
        v = []
        for _ in range(n):
            t = time.perf_counter()
            await c.transport.refresh_map()
            v.append(time.perf_counter() - t)
        v.sort()
        return {"p50_ms": pct(v, 0.5) * 1e3, "max_ms": v[-1] * 1e3, "n": n,
                "shards": c.transport.map.shards if c.transport.map else 0}
    finally:
        await c.close()


def join_while_asking(res: Resources, etcd_url: str, client: actorsys.Client) -> dict[str, Any]:
    """Start n4; ask, without pause, an actor whose shard moves to n4; the longest gap
    between two answered asks, and how long until the cluster settled on four nodes."""
    from actorsys.cluster import placement
    from actorsys.protocol.shardmap import shard_of
    live = ["n1", "n2", "n3"]
    key = next(k for k in (f"mover-{i}" for i in range(100_000))
               if placement.owner(shard_of(TYPE, k, 4096), [*live, "n4"]) == "n4")
    ref = client.ref(TYPE, key)
    ref.ask("add", 1)
    cfg = node_config(res, "n4", "127.0.0.14", etcd_url)
    node = actorsys.Node(cfg)
    res.extra_nodes.append(node)
    t0 = time.monotonic()
    node.start()
    gaps, last, asked = [], time.monotonic(), 0
    while not settled(client, 4):
        ref.ask("add", 1, timeout=30.0)
        asked += 1
        now = time.monotonic()
        gaps.append(now - last)
        last = now
        if now - t0 > SETTLE_TIMEOUT:
            raise TimeoutError("n4's join did not settle")
    took = time.monotonic() - t0
    total = ref.ask("get")
    if total != asked + 1:
        raise RuntimeError(f"the moved actor counted {total}, expected {asked + 1}: lost or "
                           f"repeated asks")
    return {"join_s": took, "longest_gap_ms": max(gaps, default=0.0) * 1e3, "asks": asked,
            "moved_to": "n4"}


def run(args: Any, res: Resources) -> dict[str, Any]:
    quick = args.quick
    n_lat = 500 if quick else 5000
    n_pipe = 5000 if quick else 30_000
    meta = {"mode": "quick" if quick else "full", "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0], "libzmq": zmq.zmq_version(), "nodes": 3}
    res.extra_nodes = []     # type: ignore[attr-defined]
    with contextlib.ExitStack() as stack:
        etcd = stack.enter_context(Etcd(os.path.join(res.tmp, "etcd"), "127.0.0.1"))
        # (stopped before etcd: they leave it cleanly)
        stack.callback(lambda: [n.stop() for n in res.extra_nodes])  # type: ignore[attr-defined]
        raw_ep = f"tcp://127.0.0.20:{free_port('127.0.0.20')}"
        res.spawn_echo(raw_ep)
        single = res.start_node(node_config(res, "single", "127.0.0.10", None))
        nodes = []
        t0 = time.monotonic()
        for i in range(3):
            cfg = node_config(res, f"n{i + 1}", f"127.0.0.{11 + i}", etcd.url)
            n = actorsys.Node(cfg)
            res.extra_nodes.append(n)     # type: ignore[attr-defined]
            n.start()
            nodes.append(n)
        client = actorsys.connect(nodes[0].endpoint, timeout=30.0)
        stack.callback(client.close)
        settle = wait_settled(client, 3)
        log(f"three nodes up and settled in {time.monotonic() - t0:.1f} s (moves {settle:.1f} s)")
        client.close()            # (a client made now starts with the settled map)
        client = actorsys.connect(nodes[0].endpoint, timeout=30.0)
        stack.callback(client.close)
        on_n2 = keys_on(client, "n2", 101, "remote")
        single_client = single.client()
        raw = raw_socket(res.ctx, raw_ep)
        stack.callback(lambda: raw.close(0))
        raw_wait_ready(raw, time.monotonic() + 10)
        lat = latency({"remote": client.ref(TYPE, on_n2[0]),
                       "single_tcp": single_client.ref(TYPE, "latency")}, raw, n_lat)
        log("remote ask latency done")
        pipe_keys = [on_n2[1 + i % 100] for i in range(n_pipe)]
        single_keys = [f"pipe-{i % 100}" for i in range(n_pipe)]
        best = {"remote": 0.0, "single_tcp": 0.0, "raw": 0.0}
        for _ in range(1 if quick else 3):
            best["remote"] = max(best["remote"], n_pipe / actorsys_pipelined(
                nodes[0].endpoint, pipe_keys, args.window, warm_keys=sorted(set(pipe_keys))))
            best["single_tcp"] = max(best["single_tcp"], n_pipe / actorsys_pipelined(
                single.endpoint, single_keys, args.window, warm_keys=sorted(set(single_keys))))
            best["raw"] = max(best["raw"], n_pipe / raw_pipelined(res, raw_ep, single_keys,
                                                                  args.window))
        log("pipelined asks done")
        refresh = asyncio.run(map_refresh(nodes[0].endpoint, 50 if quick else 200))
        log("map refresh done")
        join = join_while_asking(res, etcd.url, client)
        log("join done")
        results = {
            "remote_ask": {**lat, "ratio_p50_vs_single_tcp":
                           lat["remote"]["p50_us"] / lat["single_tcp"]["p50_us"],
                           "ratio_p50_vs_raw_tcp": lat["remote"]["p50_us"] / lat["raw"]["p50_us"],
                           "target": "remote ask p50 within 1.3x of a single node over tcp"},
            "pipelined": {"per_s": best, "ratio_remote_vs_single_tcp":
                          best["remote"] / best["single_tcp"],
                          "ratio_remote_vs_raw_tcp": best["remote"] / best["raw"]},
            "map_refresh": {**refresh, "target": "under 100 ms"},
            "join": join,
        }
        results["remote_ask"]["meets_target"] = results["remote_ask"]["ratio_p50_vs_single_tcp"] <= 1.3
        results["map_refresh"]["meets_target"] = refresh["p50_ms"] < 100
    meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return {"meta": meta, "results": results}


def print_report(results: dict[str, Any], meta: dict[str, Any]) -> None:
    lat, pipe = results["remote_ask"], results["pipelined"]
    print(f"\nactorsys cluster benchmark ({meta['mode']}, {meta['nodes']} nodes on loopback "
          f"hosts, {meta['cpus']} cpus, load {meta['loadavg_before']})")
    print(f"  remote ask p50        {lat['remote']['p50_us']:8.1f} us   single node tcp "
          f"{lat['single_tcp']['p50_us']:.1f} us   raw tcp echo {lat['raw']['p50_us']:.1f} us   "
          f"ratio to single {lat['ratio_p50_vs_single_tcp']:.2f}x (target <= 1.3x: "
          f"{'met' if lat['meets_target'] else 'NOT met'})")
    print(f"  remote ask p99        {lat['remote']['p99_us']:8.1f} us   single node tcp "
          f"{lat['single_tcp']['p99_us']:.1f} us")
    print(f"  pipelined asks        {fmt_num(pipe['per_s']['remote'], '/s'):>12}   single node tcp "
          f"{fmt_num(pipe['per_s']['single_tcp'], '/s')}   raw tcp {fmt_num(pipe['per_s']['raw'], '/s')}"
          f"   ratio to single {pipe['ratio_remote_vs_single_tcp']:.2f}x")
    mr = results["map_refresh"]
    print(f"  map refresh p50       {mr['p50_ms']:8.2f} ms   ({mr['shards']} shards; target "
          f"< 100 ms: {'met' if mr['meets_target'] else 'NOT met'})")
    j = results["join"]
    print(f"  a 4th node joins      {j['join_s']:8.2f} s until settled; an actor moving to it "
          f"waited at most {j['longest_gap_ms']:.0f} ms ({j['asks']} asks, none lost)")


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="scripts/bench --cluster 3", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    ap.add_argument("--window", type=int, default=1000, help="asks in flight when pipelining")
    ap.add_argument("--tmpdir", metavar="DIR", default=None)
    ap.add_argument("--replicas", type=int, default=1, metavar="R",
                    help="R > 1: benchmark replication (a cluster with replicas = R beside one "
                         "without: write asks, pipelined writes, failover after kill -9)")
    ap.add_argument("--kills", type=int, default=None, metavar="N",
                    help="with --replicas: node kills to time failover over (default 5; quick 1)")
    ap.add_argument("--lease-ttl", type=float, default=2.0, metavar="S",
                    help="with --replicas: the clusters' lease (failover waits for it)")
    args = ap.parse_args(argv)
    if not 1 <= args.replicas <= 3:
        ap.error("--replicas must be from 1 to 3 (the benchmark's cluster has 3 nodes)")
    if args.replicas == 1 and (args.kills is not None or args.lease_ttl != 2.0):
        ap.error("--kills and --lease-ttl go with --replicas R > 1")
    if args.kills is not None and args.kills < 0:
        ap.error("--kills must be 0 or more")
    if args.replicas > 1:
        return run_and_report(args, run_replicated, print_replicated, what="cluster")
    return run_and_report(args, run, print_report, what="cluster")


if __name__ == "__main__":
    sys.exit(main())
