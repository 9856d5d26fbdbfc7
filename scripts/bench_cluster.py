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
import socket
import sys
import time
from typing import Any

import psutil
import zmq

import actorsys
from actorsys.client import connect_async
from actorsys.testing.bench import (TYPE, Resources, actorsys_pipelined, fmt_num, log, pct,
                                    raw_pipelined, run_and_report)
from actorsys.testing.etcd import Etcd
from actorsys.testing.rawecho import ASK, packb, raw_recv, raw_socket, raw_wait_ready

HERE = os.path.dirname(os.path.abspath(__file__))
SETTLE_TIMEOUT = 120.0


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def node_config(res: Resources, name: str, host: str, etcd: str | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "node": {"data_dir": os.path.join(res.tmp, name), "workers": 2, "insecure": True,
                 "endpoint": f"tcp://{host}:{free_port(host)}",
                 "python_path": [HERE, os.path.join(os.path.dirname(HERE), "examples")],
                 "shutdown_timeout": 5.0, "start_timeout": 60.0, "ask_timeout": 30.0},
        "actors": {TYPE: "bench_actors:BenchCounter"}}
    if etcd is not None:
        cfg["cluster"] = {"etcd": [etcd], "name": "bench", "node_id": name, "lease_ttl": 5.0}
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


def keys_on(client: actorsys.Client, node_id: str, n: int, tag: str) -> list[str]:
    """``n`` keys of the benchmark type whose shard is owned by ``node_id``."""
    m = client.map
    nodes = m.nodes or []
    k = next(i for i, x in enumerate(nodes) if x["id"] == node_id)
    first, count = nodes[k]["slots"]
    out, i = [], 0
    while len(out) < n and i < 1_000_000:
        key = f"{tag}-{i}"
        slot = m.owner[actorsys_shard(m, key)]
        if first <= slot < first + count:
            out.append(key)
        i += 1
    return out


def actorsys_shard(m: Any, key: str) -> int:
    from actorsys.protocol.shardmap import shard_of
    return shard_of(TYPE, key, m.shards)


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


# -- replication (--replicas R) ------------------------------------------------------------


def view_settled(replicas: int) -> Any:
    """A view predicate: three live nodes, each leading shards, none moving; with
    replicas, none under-replicated or unavailable."""
    def ok(view: Any) -> bool:
        live = [n for n in view["nodes"] if n["alive"]]
        if replicas > 1 and (view.get("under_replicated") != 0 or view.get("unavailable") != 0):
            return False
        return len(live) == 3 and all(n["shards"] > 0 and not n["moving"] for n in live)
    return ok


WARM_ASKS = 100


def write_latency(refs: dict[str, Any], n: int, chunk: int = 100) -> dict[str, Any]:
    """Sequential ``add`` asks through each of ``refs`` (name -> ref), in interleaved
    chunks (after :data:`WARM_ASKS` each); p50/p99 in us, and the CPU seconds the
    calling thread spent in each one's asks (``client_cpu_s``)."""
    perf, cpu = time.perf_counter_ns, time.thread_time
    samples: dict[str, list[int]] = {name: [] for name in refs}
    spent = dict.fromkeys(refs, 0.0)
    for name, ref in refs.items():
        c0 = cpu()
        for _ in range(WARM_ASKS):
            ref.ask("add", 1, timeout=10.0)
        spent[name] += cpu() - c0
    done = 0
    while done < n:
        m = min(chunk, n - done)
        for name, ref in refs.items():
            ask, out = ref.ask, samples[name]
            c0 = cpu()
            for _ in range(m):
                t = perf()
                ask("add", 1, timeout=10.0)
                out.append(perf() - t)
            spent[name] += cpu() - c0
        done += m
    result = {}
    for name, v in samples.items():
        v.sort()
        result[name] = {"p50_us": pct(v, 0.5) / 1e3, "p99_us": pct(v, 0.99) / 1e3, "n": len(v),
                        "client_cpu_s": spent[name]}
    return result


def cluster_roles(c: Any) -> dict[int, str]:
    """pid -> role of every process of a :class:`~actorsys.testing.cluster.Cluster`: its
    nodes' (``worker``, ``router``, ...; ``supervisor`` for the rest) and its etcd's."""
    roles: dict[int, str] = {}
    for i in range(len(c.nodes)):
        roles.update(dict.fromkeys(c.pids(i), "supervisor"))
        with c.connect(i) as client:
            roles.update({p["pid"]: p["role"] for p in client.status()["processes"] if p.get("pid")})
    if c.etcd is not None and c.etcd.proc is not None:
        roles[c.etcd.proc.pid] = "etcd"
    return roles


def cpu_seconds(pids: Any) -> dict[int, float]:
    """User + system CPU seconds of each live process (all its threads) so far."""
    out: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
    return out


def cpu_per_write(roles: dict[int, str], before: dict[int, float], after: dict[int, float],
                  writes: int, client_s: float) -> dict[str, float]:
    """CPU microseconds per write of a cluster's processes by role, over a phase of
    ``writes`` sequential writes (their idle work in that time included: it competes
    for the same cores), and the client's calling thread's; ``total``: their sum."""
    by: dict[str, float] = {}
    for pid, role in roles.items():
        if pid in before and pid in after:
            by[role] = by.get(role, 0.0) + after[pid] - before[pid]
    out = {role: s / writes * 1e6 for role, s in sorted(by.items())}
    out["client thread"] = client_s / writes * 1e6
    out["total"] = sum(out.values())
    return out


def failover_once(c: Any, client: actorsys.Client, victim: int, tag: str, replicas: int,
                  timeout: float) -> float:
    """kill -9 node ``victim``, ask an actor of a shard it led without pause until its
    new leader answers: the seconds from the kill; then start it again and wait until
    the cluster settled."""
    client.refresh_map()
    key = keys_on(client, c.nodes[victim].node_id, 1, tag)[0]
    ref = client.ref(TYPE, key)
    ref.ask("add", 1, timeout=10.0)
    t0 = time.monotonic()
    c.kill_node(victim)
    while True:
        try:
            ref.ask("add", 1, timeout=1.0)
            took = time.monotonic() - t0
            break
        except (actorsys.ShardUnavailable, actorsys.WorkerLost, actorsys.AskTimeout,
                actorsys.NodeUnavailable):
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"no answer from a new leader of {c.nodes[victim].node_id}'s "
                                   f"shards within {timeout:g} s of its kill") from None
            time.sleep(0.005)
    c.start_node(victim)
    c.wait_ready(victim, 60)
    c.wait_view(0, view_settled(replicas), f"the cluster settled after {c.nodes[victim].node_id} "
                f"returned", SETTLE_TIMEOUT)
    return took


def raw_floor(res: Resources, n: int, chunk: int = 100) -> dict[str, float]:
    """The same hand-offs with no runtime in them, on loopback tcp: raw asks to an echo
    server (the unreplicated write's two: client, server, client) and through a relay and
    a follower (the replicated write's three: client, leader, follower, client), in
    interleaved chunks; p50 in us of each and their ratio. The floor of the ratio on this
    machine: what the hand-offs alone cost, before any work of the runtime's."""
    host = "127.0.0.1"
    echo, relay, fol, fol_clients = (f"tcp://{host}:{free_port(host)}" for _ in range(4))
    res.spawn_echo(echo)
    res.spawn_echo(fol, "--follower", fol_clients)
    res.spawn_echo(relay, "--relay", fol)
    ident = b"bench-chain-client"
    one = raw_socket(res.ctx, echo)
    to_relay = raw_socket(res.ctx, relay, identity=ident)
    from_fol = raw_socket(res.ctx, fol_clients, identity=ident)
    socks = (one, to_relay, from_fol)
    try:
        deadline = time.monotonic() + 30.0
        for sock in socks:
            raw_wait_ready(sock, deadline)
        perf = time.perf_counter_ns
        samples: dict[str, list[int]] = {"r1": [], "chain": []}
        rid = 0
        for warm in (True, False):
            done = 0
            while done < (200 if warm else n):
                m = min(chunk, (200 if warm else n) - done)
                for name, out_sock, in_sock in (("r1", one, one), ("chain", to_relay, from_fol)):
                    out = samples[name]
                    for _ in range(m):
                        rid += 1
                        t = perf()
                        out_sock.send(packb([ASK, rid, TYPE, "floor", "add", [1], {}]))
                        raw_recv(in_sock)
                        if not warm:
                            out.append(perf() - t)
                done += m
        p50 = {k: pct(sorted(v), 0.5) / 1e3 for k, v in samples.items()}
        return {"r1_p50_us": p50["r1"], "chain_p50_us": p50["chain"],
                "ratio_p50": p50["chain"] / p50["r1"]}
    finally:
        for sock in socks:
            sock.close(0)


def run_replicated(args: Any, res: Resources) -> dict[str, Any]:
    from actorsys.testing.cluster import Cluster
    quick, replicas = args.quick, args.replicas
    n_lat = 300 if quick else 3000
    n_pipe = 3000 if quick else 20_000
    kills = args.kills if args.kills is not None else (1 if quick else 5)
    meta = {"mode": "quick" if quick else "full", "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0], "libzmq": zmq.zmq_version(), "nodes": 3,
            "replicas": replicas, "lease_ttl": args.lease_ttl, "kills": kills}
    names = {1: "r1", replicas: f"r{replicas}"}
    clusters: dict[int, Any] = {}
    with contextlib.ExitStack() as stack:
        try:
            for r in (1, replicas):
                extra: dict[str, Any] = {"node": {"ask_timeout": 30.0}}
                if r > 1:
                    extra["cluster"] = {"replicas": r}
                c = Cluster(res.tmp, 3, "loopback", actors={TYPE: "bench_actors:BenchCounter"},
                            python_path=[HERE, os.path.join(os.path.dirname(HERE), "examples")],
                            lease_ttl=args.lease_ttl, name=f"bench-{names[r]}", workers=2,
                            extra_config=extra, log_level="warning")
                clusters[r] = stack.enter_context(c)
            t0 = time.monotonic()
            for r, c in clusters.items():
                for i in range(3):
                    c.wait_ready(i, 60)
                c.wait_view(0, view_settled(r), f"{names[r]} settled", SETTLE_TIMEOUT)
            log(f"both clusters up and settled in {time.monotonic() - t0:.1f} s")
            clients = {}
            for r, c in clusters.items():
                clients[r] = actorsys.connect(c.endpoints, timeout=30.0)
                stack.callback(clients[r].close)
            keys = {r: keys_on(clients[r], "n2", 101, "remote") for r in clusters}
            roles = {r: cluster_roles(c) for r, c in clusters.items()}
            before = {r: cpu_seconds(roles[r]) for r in clusters}
            lat = write_latency({names[r]: clients[r].ref(TYPE, keys[r][0]) for r in clusters}, n_lat)
            cpu = {names[r]: cpu_per_write(roles[r], before[r], cpu_seconds(roles[r]),
                                           n_lat + WARM_ASKS, lat[names[r]]["client_cpu_s"])
                   for r in clusters}
            floor = raw_floor(res, n_lat)
            log("write ask latency and its raw floor done")
            best = {names[r]: 0.0 for r in clusters}
            for _ in range(1 if quick else 3):
                for r, c in clusters.items():
                    pipe = [keys[r][1 + i % 100] for i in range(n_pipe)]
                    best[names[r]] = max(best[names[r]], n_pipe / actorsys_pipelined(
                        c.endpoints[0], pipe, args.window, warm_keys=sorted(set(pipe))))
            log("pipelined writes done")
            c = clusters[replicas]
            times = [failover_once(c, clients[replicas], 1 + k % 2, f"failover-{k}", replicas,
                                   args.lease_ttl + 30.0) for k in range(kills)]
            log("failovers done")
        except BaseException:
            for r, c in clusters.items():
                for i in range(len(c.nodes)):
                    print(f"bench: the end of {names[r]}'s {c.nodes[i].node_id}'s log:\n"
                          f"{c.log_tail(i, 20)}", file=sys.stderr)
            raise
    times.sort()
    rname = names[replicas]
    results: dict[str, Any] = {
        "write_ask": {**lat, "ratio_p50": lat[rname]["p50_us"] / lat["r1"]["p50_us"],
                      "target": "replicated ask p50 within 2x of unreplicated"},
        "raw_floor": floor,
        "cpu_per_write_us": {**cpu, "ratio": cpu[rname]["total"] / cpu["r1"]["total"]},
        "pipelined": {"per_s": best, "ratio": best[rname] / best["r1"],
                      "target": "replicated throughput at least 50% of unreplicated"},
        "failover": {"p50_s": pct(times, 0.5) if times else None, "max_s": times[-1] if times else None,
                     "n": len(times), "all_s": times,
                     "target": f"within lease_ttl + 2 s = {args.lease_ttl + 2:g} s"},
    }
    results["write_ask"]["meets_target"] = results["write_ask"]["ratio_p50"] <= 2.0
    results["pipelined"]["meets_target"] = results["pipelined"]["ratio"] >= 0.5
    results["failover"]["meets_target"] = bool(times) and times[-1] <= args.lease_ttl + 2.0
    meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return {"meta": meta, "results": results}


def print_replicated(results: dict[str, Any], meta: dict[str, Any]) -> None:
    r, lat, pipe, fo = meta["replicas"], results["write_ask"], results["pipelined"], results["failover"]
    rn = f"r{r}"
    met = {True: "met", False: "NOT met"}
    print(f"\nactorsys replicated cluster benchmark ({meta['mode']}, 3 nodes on loopback hosts, "
          f"replicas {r} vs 1, lease_ttl {meta['lease_ttl']:g} s, {meta['cpus']} cpus, "
          f"load {meta['loadavg_before']})")
    print(f"  write ask p50         {lat[rn]['p50_us']:8.1f} us   unreplicated {lat['r1']['p50_us']:.1f} us"
          f"   ratio {lat['ratio_p50']:.2f}x (target <= 2x: {met[lat['meets_target']]})")
    print(f"  write ask p99         {lat[rn]['p99_us']:8.1f} us   unreplicated {lat['r1']['p99_us']:.1f} us")
    if "cpu_per_write_us" in results:
        cw = results["cpu_per_write_us"]

        def parts(c: dict[str, float]) -> str:
            return ", ".join(f"{k} {v:,.0f}" for k, v in c.items() if k != "total")
        print(f"  cpu per write         {cw[rn]['total']:8,.0f} us   unreplicated {cw['r1']['total']:,.0f} us"
              f"   ratio {cw['ratio']:.2f}x (all processes, idle work included)")
        print(f"      replicated:   {parts(cw[rn])}")
        print(f"      unreplicated: {parts(cw['r1'])}")
    if "raw_floor" in results:
        fl = results["raw_floor"]
        print(f"  raw floor p50         {fl['chain_p50_us']:8.1f} us   one hop {fl['r1_p50_us']:.1f} us"
              f"   ratio {fl['ratio_p50']:.2f}x (pyzmq + msgpack: the same hand-offs, no runtime)")
    print(f"  pipelined writes      {fmt_num(pipe['per_s'][rn], '/s'):>12}   unreplicated "
          f"{fmt_num(pipe['per_s']['r1'], '/s')}   ratio {pipe['ratio']:.2f} (target >= 0.5: "
          f"{met[pipe['meets_target']]})")
    if fo["n"]:
        print(f"  failover (kill -9)    p50 {fo['p50_s']:.2f} s   max {fo['max_s']:.2f} s over {fo['n']} "
              f"kill(s), to the first answer from the new leader (target <= "
              f"{meta['lease_ttl'] + 2:g} s: {met[fo['meets_target']]})")
    else:
        print("  failover (kill -9)    not measured (--kills 0)")


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
