"""The cluster benchmark's replication half (``scripts/bench --cluster 3 --replicas R``):
two three-node clusters, one with ``[cluster] replicas = R`` and one without, up at once
so that their measurements interleave; write asks beside the raw floor of the same
hand-offs, the CPU per write by role, pipelined writes, and failover after kill -9. What
each measurement does is in ``scripts/bench_cluster.py``'s docstring.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any

import psutil
import zmq

import actorsys
from actorsys.config.layout import free_port
from actorsys.testing.bench import TYPE, Resources, actorsys_pipelined, fmt_num, keys_on, log, pct
from actorsys.testing.rawecho import ASK, packb, raw_recv, raw_socket, raw_wait_ready

HERE = os.path.dirname(os.path.abspath(__file__))
SETTLE_TIMEOUT = 120.0


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
