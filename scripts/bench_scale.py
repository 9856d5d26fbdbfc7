"""actorsys scale benchmark: a million actors on one node (issue 4).

Measures, on one node with persisted state for every actor:

1. creation        asks to N never-seen keys (default 1,000,000), pipelined: each activation
                   reads storage, runs on_start and commits the actor's state; workers hold at
                   most ``max_resident`` actors (LRU), so most are passivated along the way
2. listing         client.list_actors pages through all N keys (10,000 per page)
3. reactivation    after a node restart (nothing resident), asks to M random existing
                   actors: each reads its state back from LevelDB (target >= 10,000/s)
4. memory          worker RSS growth per resident actor over those M reactivations, minus the
                   in-memory size of the actor's state (goal: under 2 KiB)
5. bounded         then asks to M2 more random actors (more than max_resident per worker):
                   resident count and RSS stay bounded
6. alarm lateness  on the idle node: K alarms, fire time minus due time (target < 50 ms)

Rates are also reported as ratios against the raw pipelined pyzmq echo rate measured in
the same run (scripts/bench.py's baseline), since these machines are shared and noisy.

Usage: ``scripts/bench --scale [--actors N] [--reactivate M] [--max-resident R] [--json FILE]``
"""
from __future__ import annotations

import os
import random
import sys
import time

from actorsys.testing.bench import TYPE, Resources, actorsys_pipelined, log, pct, raw_pipelined

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def worker_stats(node) -> list[dict]:
    st = node.client().status(timeout=30.0)
    return [p for p in st["processes"] if p["role"] == "worker"]


def rss_total(node) -> int:
    return sum(p["rss"] for p in worker_stats(node))


def key_of(i: int) -> str:
    return f"user-{i:07d}"


def run(args, res: Resources) -> dict:
    n, m = args.actors, args.reactivate
    config = {"node": {"data_dir": os.path.join(res.tmp, "data"), "workers": args.workers,
                       "python_path": [HERE, os.path.join(ROOT, "examples")],
                       "shutdown_timeout": 30.0, "start_timeout": 120.0, "ask_timeout": 60.0,
                       "max_resident": args.max_resident, "idle_timeout": 3600.0},
              "actors": {TYPE: "bench_actors:BenchCounter"}}
    raw_ep = f"ipc://{res.ipc_dir}/echo.sock"
    res.spawn_echo(raw_ep)
    raw_keys = [str(i) for i in range(50_000)]
    raw_rate = max(len(raw_keys) / raw_pipelined(res, raw_ep, raw_keys, args.window)
                   for _ in range(2))
    log(f"raw pipelined echo: {raw_rate:,.0f}/s")
    out: dict = {"meta": {"actors": n, "reactivate": m, "workers": args.workers,
                          "max_resident": args.max_resident, "window": args.window,
                          "cpus": os.cpu_count(), "python": sys.version.split()[0],
                          "loadavg_before": [round(x, 2) for x in os.getloadavg()]},
                 "raw_pipelined_per_s": raw_rate}

    node = res.start_node(config)
    keys = [key_of(i) for i in range(n)]
    t = actorsys_pipelined(node.endpoint, keys, args.window, method="add", args=(1,))
    ws = worker_stats(node)
    out["creation"] = {"per_s": n / t, "seconds": t, "ratio": n / t / raw_rate,
                       "resident_after": sum(p["resident"] for p in ws),
                       "evictions": sum(p["evictions"] for p in ws),
                       "worker_rss_mb": [round(p["rss"] / 1e6, 1) for p in ws]}
    log(f"created {n:,} actors in {t:.1f} s ({n / t:,.0f}/s); "
              f"resident {out['creation']['resident_after']:,}, worker RSS "
              f"{out['creation']['worker_rss_mb']} MB")

    c = node.client()
    t0 = time.perf_counter()
    listed, after = 0, None
    while True:
        page = c.list_actors(TYPE, start_after=after, limit=10_000, timeout=60.0)
        listed += len(page)
        if len(page) < 10_000:
            break
        after = page[-1]
    t_list = time.perf_counter() - t0
    if listed != n:
        raise RuntimeError(f"list_actors found {listed:,} actors, expected {n:,}")
    out["listing"] = {"keys": listed, "seconds": t_list, "per_s": listed / t_list}
    log(f"listed {listed:,} keys in {t_list:.1f} s")

    # restart: nothing resident, LevelDB reopened
    node.stop(timeout=60)
    res.node = None
    node = res.start_node(config)
    sample = random.Random(1).sample(range(n), m + args.bounded)
    warm = [key_of(i) for i in sample[:1000]]
    actorsys_pipelined(node.endpoint, warm, args.window, method="get", args=())
    time.sleep(1.0)
    ws0 = worker_stats(node)
    rss0, resident0 = sum(p["rss"] for p in ws0), sum(p["resident"] for p in ws0)
    react = [key_of(i) for i in sample[1000:m]]
    t = actorsys_pipelined(node.endpoint, react, args.window, method="get", args=())
    time.sleep(1.0)
    ws1 = worker_stats(node)
    rss1, resident1 = sum(p["rss"] for p in ws1), sum(p["resident"] for p in ws1)
    grown = resident1 - resident0
    state_bytes = _state_size({"n": 1})
    per_actor = (rss1 - rss0) / max(grown, 1)
    out["reactivation"] = {"per_s": len(react) / t, "seconds": t, "ratio": len(react) / t / raw_rate,
                           "target": ">= 10,000/s", "meets_target": len(react) / t >= 10_000}
    out["memory"] = {"rss_growth_bytes": rss1 - rss0, "resident_growth": grown,
                     "per_resident_actor_bytes": per_actor, "state_in_memory_bytes": state_bytes,
                     "beyond_state_bytes": per_actor - state_bytes, "goal": "< 2 KiB",
                     "meets_goal": per_actor - state_bytes < 2048}
    log(f"reactivated {len(react):,} in {t:.1f} s ({len(react) / t:,.0f}/s); "
              f"{per_actor:,.0f} B RSS per resident actor ({per_actor - state_bytes:,.0f} B beyond "
              f"its {state_bytes} B state)")

    more = [key_of(i) for i in sample[m:]]
    t = actorsys_pipelined(node.endpoint, more, args.window, method="get", args=())
    time.sleep(1.0)
    ws2 = worker_stats(node)
    out["bounded"] = {"asked": len(more), "per_s": len(more) / t,
                      "resident_per_worker": [p["resident"] for p in ws2],
                      "max_resident": args.max_resident,
                      "evictions": sum(p["evictions"] for p in ws2),
                      "worker_rss_mb_before": [round(p["rss"] / 1e6, 1) for p in ws1],
                      "worker_rss_mb_after": [round(p["rss"] / 1e6, 1) for p in ws2],
                      "bounded": all(p["resident"] <= args.max_resident for p in ws2)}
    log(f"asked {len(more):,} more: resident per worker {out['bounded']['resident_per_worker']}, "
              f"RSS {out['bounded']['worker_rss_mb_after']} MB")

    out["alarms"] = _alarm_lateness(node, args.alarms)
    log(f"alarm lateness p50 {out['alarms']['p50_ms']:.1f} ms, max {out['alarms']['max_ms']:.1f} ms")
    out["meta"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def _state_size(state: dict) -> int:
    return sys.getsizeof(state) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in state.items())


def _alarm_lateness(node, k: int) -> dict:
    """K alarms on distinct actors, due 0.2-1.2 s ahead on an idle node: fire - due."""
    c = node.client()
    dues = {}
    for i in range(k):
        key = f"alarm-{i}"
        dues[key] = c.ask(TYPE, key, "alarm_in", 0.2 + i / k)
    time.sleep(2.0)
    late = []
    for key, due in dues.items():
        fired = c.ask(TYPE, key, "fired")
        if "a0" not in fired:
            raise RuntimeError(f"alarm of {key} did not fire within 2 s of being set")
        late.append((fired["a0"] - due) * 1000)
    late.sort()
    return {"n": k, "p50_ms": pct(late, 0.5), "max_ms": late[-1], "target": "< 50 ms",
            "meets_target": late[-1] < 50}


def print_report(r: dict) -> None:
    cr, re_, mem, bo, al = r["creation"], r["reactivation"], r["memory"], r["bounded"], r["alarms"]
    print()
    print(f"{'measurement':<38}{'actorsys':>14}  {'vs raw echo':>11}  {'target':<16}met")
    label = "creation (%s actors, persisted)" % format(r["meta"]["actors"], ",")
    print(f"{label:<38}{cr['per_s']:>12,.0f}/s  {cr['ratio']:>10.2f}x  {'-':<16}-")
    print(f"{'list_actors, all keys':<38}{r['listing']['per_s']:>12,.0f}/s  {'-':>11}  {'-':<16}-")
    print(f"{'reactivation from disk':<38}{re_['per_s']:>12,.0f}/s  {re_['ratio']:>10.2f}x  "
          f"{'>= 10,000/s':<16}{'yes' if re_['meets_target'] else 'NO'}")
    print(f"{'RSS per resident actor, beyond state':<38}{mem['beyond_state_bytes']:>12,.0f} B  "
          f"{'-':>11}  {'< 2 KiB':<16}{'yes' if mem['meets_goal'] else 'NO'}")
    print(f"{'resident per worker after more asks':<38}{str(bo['resident_per_worker']):>14}  "
          f"{'-':>11}  {'<= %d' % bo['max_resident']:<16}{'yes' if bo['bounded'] else 'NO'}")
    print(f"{'alarm lateness p50 / max (idle)':<38}{al['p50_ms']:>8.1f}/{al['max_ms']:.1f} ms  "
          f"{'-':>11}  {'< 50 ms':<16}{'yes' if al['meets_target'] else 'NO'}")
    print(f"\nraw pipelined echo: {r['raw_pipelined_per_s']:,.0f}/s; creation evicted "
          f"{cr['evictions']:,}; worker RSS after creation {cr['worker_rss_mb']} MB, after the "
          f"bounded phase {bo['worker_rss_mb_after']} MB")


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    ap = argparse.ArgumentParser(prog="scripts/bench --scale", description=__doc__.split("\n\n")[0])
    ap.add_argument("--actors", type=int, default=1_000_000)
    ap.add_argument("--reactivate", type=int, default=100_000)
    ap.add_argument("--bounded", type=int, default=200_000,
                    help="asks to more random actors after the memory measurement")
    ap.add_argument("--max-resident", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--window", type=int, default=1000)
    ap.add_argument("--alarms", type=int, default=50)
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--tmpdir", help="parent of the benchmark's temporary directory")
    args = ap.parse_args(argv)
    if args.reactivate + args.bounded > args.actors or args.reactivate <= 1000:
        ap.error("need 1000 < --reactivate and --reactivate + --bounded <= --actors")
    res = Resources(args.tmpdir)
    try:
        r = run(args, res)
    finally:
        res.close()
    print_report(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
