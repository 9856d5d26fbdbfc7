"""actorsys durability benchmark: ``durability = "fsync"`` beside ``"process"`` (issue 19).

Each round starts a two-worker node with each durability in turn (interleaved, so both
see the same noise on a shared machine) and measures, on the bench counter (every ``add``
commits):

* sequential asks: one blocking client, one actor, p50 and p99 of the round trip;
* pipelined asks: the asyncio client keeping ``window`` asks in flight over 100 actors,
  asks per second (best of the rounds).

Reported: both rows and the fsync/process ratios (targets of issue 19: fsync throughput
at least 0.5x of process, fsync sequential p50 within 1.5x of process). The data
directories live under ``--tmpdir`` (default: $TMPDIR or /tmp): on tmpfs an fsync costs
nothing, so point it at a real disk to measure one.

Usage: ``scripts/bench --fsync [--rounds R] [--seq N] [--pipe N] [--window W] [--json FILE]
[--tmpdir DIR]``
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import actorsys
from actorsys.testing.bench import TYPE, actorsys_pipelined
from actorsys.testing.nodes import workers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODES = ("process", "fsync")


def measure(durability: str, args: argparse.Namespace) -> dict[str, float]:
    tmp = tempfile.mkdtemp(prefix="actorsys-fsync-bench-", dir=args.tmpdir)
    cfg = {"node": {"data_dir": os.path.join(tmp, "data"), "workers": 2, "durability": durability,
                    "python_path": [HERE, os.path.join(ROOT, "examples")],
                    "shutdown_timeout": 5.0, "start_timeout": 30.0, "ask_timeout": 30.0},
           "actors": {TYPE: "bench_actors:BenchCounter"}}
    try:
        with actorsys.Node(cfg) as node:
            ref = node.client().ref(TYPE, "sequential")     # (the node's own client)
            for _ in range(min(200, args.seq)):
                ref.ask("add", 1, timeout=10.0)
            ns: list[int] = []
            perf = time.perf_counter_ns
            for _ in range(args.seq):
                t = perf()
                ref.ask("add", 1, timeout=10.0)
                ns.append(perf() - t)
            ns.sort()
            keys = [f"p{i % 100}" for i in range(args.pipe)]
            seconds = actorsys_pipelined(node.endpoint, keys, args.window, warm_keys=keys[:100])
            commits = sum(w["commits"] for w in workers(node).values())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"p50_us": ns[len(ns) // 2] / 1e3, "p99_us": ns[min(len(ns) - 1, int(len(ns) * 0.99))] / 1e3,
            "pipelined_per_s": len(keys) / seconds, "commits": commits}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench --fsync", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--seq", type=int, default=2000, help="sequential asks per round")
    ap.add_argument("--pipe", type=int, default=20_000, help="pipelined asks per round")
    ap.add_argument("--window", type=int, default=1000, help="asks in flight when pipelining")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    ap.add_argument("--tmpdir", metavar="DIR", default=None, help="where the data directories go")
    args = ap.parse_args(argv)
    rounds: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        for mode in (MODES if r % 2 == 0 else MODES[::-1]):
            rounds[mode].append(measure(mode, args))
            print(f"round {r + 1} {mode}: {rounds[mode][-1]}", file=sys.stderr, flush=True)
    out: dict[str, Any] = {"rounds": args.rounds, "loadavg": [round(x, 2) for x in os.getloadavg()]}
    for mode, rs in rounds.items():
        out[mode] = {"p50_us": sorted(x["p50_us"] for x in rs)[len(rs) // 2],
                     "p99_us": sorted(x["p99_us"] for x in rs)[len(rs) // 2],
                     "pipelined_per_s": max(x["pipelined_per_s"] for x in rs), "all": rs}
    p, f = out["process"], out["fsync"]
    out["throughput_ratio"] = f["pipelined_per_s"] / p["pipelined_per_s"]
    out["p50_ratio"] = f["p50_us"] / p["p50_us"]
    print("| durability | sequential ask p50 (us) | p99 (us) | pipelined asks/s (best) |")
    print("|---|---:|---:|---:|")
    for mode in MODES:
        m = out[mode]
        print(f"| {mode} | {m['p50_us']:.0f} | {m['p99_us']:.0f} | {m['pipelined_per_s']:,.0f} |")
    print(f"fsync/process: throughput {out['throughput_ratio']:.2f}x (target >= 0.5x), "
          f"p50 {out['p50_ratio']:.2f}x (target <= 1.5x); {args.rounds} interleaved round(s), "
          f"median p50/p99, best throughput; load average {out['loadavg']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
