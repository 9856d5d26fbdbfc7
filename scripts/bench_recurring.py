"""actorsys recurring-alarm benchmark: tens of thousands of interval alarms on one node
(issue 18: Durable Objects' agents schedule cron and interval tasks by the tens of
thousands).

``A`` actors each set ``K`` named alarms with ``every=E`` seconds (``N = A * K`` in all),
then the node runs for ``D`` seconds. Every firing is a turn that commits (the actor
counts it and how late it ran). Reported:

* the drain rate: all ``N`` alarms are set within a moment, so every ``E`` seconds they
  come due together; ``N`` over the latest firing's lateness is how fast the node works
  off such a burst (each firing a committed turn), also as a ratio to the raw pipelined
  pyzmq echo measured in the same run (the machine is shared and noisy);
* missed firings: those due at least 2 s before the end that did not run;
* lateness (run time minus due time) p50, p99 and max, over at most 2,000 firings kept
  per actor.

Usage: ``scripts/bench --recurring [--actors A] [--per-actor K] [--every E] [--duration D]
[--json FILE]``
"""
from __future__ import annotations

import json
import math
import os
import time

import actorsys
from actorsys.testing.bench import Resources, actorsys_pipelined, log, pct, raw_pipelined

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TYPE = "Recurring"


def run(args, res: Resources) -> dict:
    raw_ep = f"ipc://{res.ipc_dir}/echo.sock"
    res.spawn_echo(raw_ep)
    raw_keys = [str(i) for i in range(50_000)]
    raw_rate = max(len(raw_keys) / raw_pipelined(res, raw_ep, raw_keys, 1000) for _ in range(2))
    log(f"raw pipelined echo: {raw_rate:,.0f}/s")
    config = {"node": {"data_dir": os.path.join(res.tmp, "data"), "workers": args.workers,
                       "python_path": [HERE, os.path.join(ROOT, "examples")],
                       "shutdown_timeout": 30.0, "start_timeout": 120.0, "ask_timeout": 120.0},
              "actors": {TYPE: "bench_actors:Recurring"}}
    n = args.actors * args.per_actor
    with actorsys.Node(config) as node:
        keys = [f"agent-{i}" for i in range(args.actors)]
        t0 = time.time()
        actorsys_pipelined(node.endpoint, keys, 64, method="schedule",
                           args=(args.per_actor, args.every), type_name=TYPE)
        log(f"set {n:,} alarms (every {args.every:g} s) on {args.actors:,} actors "
            f"in {time.time() - t0:.1f} s")
        time.sleep(args.duration)
        end = time.time()
        c = node.client()
        fired = expected = 0
        late: list[float] = []
        for key in keys:
            r = c.ask(TYPE, key, "report", timeout=120.0)
            for name, first in r["first"].items():
                due_by_end = max(0, math.floor((end - 2.0 - first) / args.every) + 1)
                expected += due_by_end
                fired += min(r["fired"].get(name, 0), due_by_end)
            late += r["late"]
        for key in keys:
            c.ask(TYPE, key, "cancel_all", timeout=120.0)
    late.sort()
    drain = n / late[-1] if late and late[-1] > 0 else float("inf")
    out = {"alarms": n, "actors": args.actors, "every_s": args.every, "duration_s": args.duration,
           "scheduled_per_s": n / args.every, "due_by_end": expected, "fired_of_due": fired,
           "missed": expected - fired, "drain_per_s": drain,
           "ratio_to_raw_echo": drain / raw_rate, "raw_pipelined_per_s": raw_rate,
           "late_ms": {"p50": pct(late, 0.5) * 1000, "p99": pct(late, 0.99) * 1000,
                       "max": late[-1] * 1000, "kept": len(late)} if late else None,
           "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="scripts/bench --recurring", description=__doc__.split("\n\n")[0])
    ap.add_argument("--actors", type=int, default=200)
    ap.add_argument("--per-actor", type=int, default=100)
    ap.add_argument("--every", type=float, default=10.0)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--tmpdir", help="parent of the benchmark's temporary directory")
    args = ap.parse_args(argv)
    if args.every < 1 or args.duration < 2 * args.every:
        ap.error("need --every >= 1 and --duration >= 2 * --every")
    res = Resources(args.tmpdir)
    try:
        r = run(args, res)
    finally:
        res.close()
    lm = r["late_ms"] or {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    print(f"\n{r['alarms']:,} interval alarms (every {r['every_s']:g} s) on {r['actors']:,} actors, "
          f"{r['duration_s']:g} s: {r['fired_of_due']:,} of {r['due_by_end']:,} due firings ran "
          f"({r['missed']:,} missed); each burst of {r['alarms']:,} due together drained at "
          f"{r['drain_per_s']:,.0f} firings/s ({r['ratio_to_raw_echo']:.2f}x the raw echo's "
          f"{r['raw_pipelined_per_s']:,.0f}/s); late p50 {lm['p50']:.0f} ms, p99 {lm['p99']:.0f} ms, "
          f"max {lm['max']:.0f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0 if r["missed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
