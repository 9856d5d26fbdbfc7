"""Crash recovery against write throughput, one checkout at a time (issue 19).

For an A/B in one sitting (these machines are noisy; interleave the runs):

    git worktree add /tmp/base main
    for i in 1 2 3; do
      .venv/bin/python scripts/bench_recovery_ab.py --json ab.jsonl /tmp/base
      .venv/bin/python scripts/bench_recovery_ab.py --json ab.jsonl .
      .venv/bin/python scripts/bench_recovery_ab.py --json ab.jsonl . --buffer 4MiB
    done
    .venv/bin/python scripts/bench_recovery_ab.py --summary ab.jsonl

Each run starts a two-worker node from that checkout (``--buffer``: its node key
``leveldb_write_buffer``) and measures on it the pipelined ask rate (50,000 ``add`` over
100 actors, window 1,000), the activation rate (10,000 new actors), the rate of 30,000
new actors storing 1 KiB each (about 34 MB through LevelDB: its write buffer fills many
times, so the flushes and compactions a smaller buffer adds are inside the measurement)
and ``--samples`` crash recoveries (this checkout's scripts/bench_recovery.py:
up to ``--fill`` new actors on the killed slot commit 1 KiB each, and ``--quiet`` seconds
after the last write the worker is killed). ``--summary`` prints, per label, recovery
p50/p90/p99/max over all its samples, the LevelDB open times (a checkout whose workers
log them), the log sizes at the kill and the median write rates.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def measure(args: argparse.Namespace) -> dict:
    root = os.path.abspath(args.root)
    sys.path[:0] = [root, HERE]    # that checkout's actorsys; this checkout's bench_recovery.py
    import bench_recovery as bench
    from actorsys.testing.bench import Resources, actorsys_pipelined
    node_cfg = {"data_dir": "", "workers": 2,
                "python_path": [HERE, os.path.join(os.path.dirname(HERE), "examples")]}
    if args.buffer:
        node_cfg["leveldb_write_buffer"] = args.buffer
    res = Resources()
    try:
        node_cfg["data_dir"] = os.path.join(res.tmp, "data")
        node = res.start_node({"node": node_cfg, "actors": {bench.TYPE: "bench_actors:BenchCounter"}})
        keys = [f"pipe-{i % 100}" for i in range(50_000)]
        pipe = 50_000 / actorsys_pipelined(node.endpoint, keys, 1000, warm_keys=keys[:100])
        new = [f"new-{i}" for i in range(10_000)]
        act = 10_000 / actorsys_pipelined(node.endpoint, new, 1000, method="get", args=())
        big = [f"big-{i}" for i in range(30_000)]
        put = 30_000 / actorsys_pipelined(node.endpoint, big, 1000, method="put", args=(1024,))
        rec = bench.bench_recovery(node, res, args.samples, args.fill, quiet=args.quiet)
    finally:
        res.close()
    label = args.label or f"{args.root}{' ' + args.buffer if args.buffer else ''} quiet={args.quiet:g}"
    return {"label": label, "pipe": pipe, "act": act, "put": put, "rec": rec,
            "loadavg": os.getloadavg()}


def summary(path: str) -> None:
    from actorsys.testing.bench import pct
    runs: dict[str, list[dict]] = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            runs.setdefault(r["label"], []).append(r)
    for label, rs in runs.items():
        s = sorted(x for r in rs for x in r["rec"]["samples_ms"])
        o = sorted(x for r in rs for x in r["rec"]["open_ms"] if x is not None)
        lk = [x for r in rs for x in r["rec"]["log_kib"]]
        opened = f"open p50 {statistics.median(o):.1f} max {o[-1]:.1f} ms" if o else "open: not logged"
        print(f"{label}: {len(rs)} runs; recovery n={len(s)} p50 {statistics.median(s):.1f} "
              f"p90 {pct(s, .9):.1f} p99 {pct(s, .99):.1f} max {s[-1]:.1f} ms; {opened}; "
              f"log at kill median {statistics.median(lk):.0f} max {max(lk)} KiB; medians: "
              f"pipelined {statistics.median(r['pipe'] for r in rs):,.0f}/s, "
              f"activations {statistics.median(r['act'] for r in rs):,.0f}/s, "
              f"1 KiB activations {statistics.median(r['put'] for r in rs):,.0f}/s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", nargs="?", help="the checkout to measure")
    ap.add_argument("--buffer", help="node key leveldb_write_buffer (a checkout that has it)")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--fill", type=int, default=3600)
    ap.add_argument("--quiet", type=float, default=0.05, help="seconds from the last write to the kill")
    ap.add_argument("--label", help="the run's name in the summary (default: root, buffer, quiet)")
    ap.add_argument("--json", metavar="FILE", help="append the run's results to FILE (JSON lines)")
    ap.add_argument("--summary", metavar="FILE", help="print the summary of the runs in FILE")
    args = ap.parse_args()
    if args.summary:
        summary(args.summary)
        return 0
    if not args.root:
        ap.error("which checkout?")
    r = measure(args)
    rec = r["rec"]
    print(f"{r['label']}: pipelined {r['pipe']:,.0f}/s, activations {r['act']:,.0f}/s, "
          f"1 KiB activations {r['put']:,.0f}/s, recovery p50 {rec['median_ms']:.1f} "
          f"p99 {rec['p99_ms']:.1f} ms, open {rec['open_ms']} ms, log {rec['log_kib']} KiB", flush=True)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
