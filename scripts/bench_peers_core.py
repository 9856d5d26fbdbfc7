"""The core benchmark's workloads on the peers (Pykka, Thespian, Ray), for ``scripts/bench
--all`` (``scripts/bench_all.py``), which runs it after ``scripts/bench.py`` (actorsys and
the raw echo) and ``scripts/bench_peers.py`` (the Savina workloads).

Sequential ask latency, pipelined asks, tells then one ask, and actor creations, from the
benchmark's main thread (what each is on each peer, and the counts: ``scripts/savina/core.py``).
The peers run one after the other; one that is not installed is skipped with a line saying
so, one whose workload fails has the failure in its result (exit status 1). Everything
started (Thespian's admin and actors, Ray's processes, temporary directories) is stopped and
removed at the end, also on an error, Ctrl-C or SIGTERM.

Usage: ``scripts/bench_peers_core.py [--quick] [--runtimes pykka,thespian,ray] [--json FILE]``
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

from actorsys.testing.bench import Resources, log, run_and_report
from bench_peers import TITLES, make_runner, missing, quietly
from savina import core

PEERS = ("pykka", "thespian", "ray")
_failed: list[str] = []


def run_peer(runtime: str, res: Resources, args: Any, mode: str) -> dict[str, Any]:
    runner = make_runner(runtime, res, args)
    p = core.params(runtime, mode)
    out: dict[str, Any] = {"describe": runner.describe(), "params": p, "workloads": {}}
    try:
        try:
            runner.start()
        except Exception as exc:              # (reported, and the next peer runs)
            out["problem"] = f"did not start: {type(exc).__name__}: {exc}"
            log(f"{TITLES[runtime]} {out['problem']}")
            return out
        for name in core.WORKLOADS:
            try:
                r = core.run(runner, name, p, mode)
            except Exception as exc:          # (a peer's failure is reported, not fatal)
                r = {"problem": f"{type(exc).__name__}: {exc}"}
            out["workloads"][name] = r
            log(f"{TITLES[runtime]} {name}: {r}")
    finally:
        quietly(runner.stop)
        log(f"{TITLES[runtime]} stopped")
    return out


def run(args: Any, res: Resources) -> dict[str, Any]:
    mode = "quick" if args.quick else "full"
    meta = {"mode": mode, "cpus": os.cpu_count(), "runtimes": args.runtimes,
            "loadavg_before": [round(x, 2) for x in os.getloadavg()],
            "bench_dirs": [res.tmp, res.ipc_dir]}
    t0 = time.monotonic()
    results: dict[str, Any] = {}
    for runtime in args.runtimes:
        why = missing(runtime)
        if why is not None:
            log(f"{TITLES[runtime]}: skipped, {why}")
            results[runtime] = {"skipped": why}
            continue
        results[runtime] = run_peer(runtime, res, args, mode)
    meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    meta["seconds"] = round(time.monotonic() - t0, 1)
    return {"meta": meta, "results": results}


def print_report(results: dict[str, Any], meta: dict[str, Any]) -> None:
    print(f"\ncore workloads on the peers, {meta['mode']} run")
    for rt, r in results.items():
        if "skipped" in r:
            print(f"  {TITLES[rt]}: skipped, {r['skipped']}")
            continue
        if "problem" in r:
            _failed.append(f"{TITLES[rt]}: {r['problem']}")
            print(f"  {TITLES[rt]}: FAILED, {r['problem']}")
            continue
        for name, w in r["workloads"].items():
            if w is None:
                cell = "- (no way to do it from outside)"
            elif w.get("problem"):
                _failed.append(f"{TITLES[rt]} {name}: {w['problem']}")
                cell = f"FAILED, {w['problem']}"
            elif "p50_us" in w:
                cell = f"p50 {w['p50_us']:,.1f} us, p99 {w['p99_us']:,.1f} us (n={w['n']:,})"
            else:
                cell = f"{w['per_s']:,.0f}/s (n={w['n']:,})"
            print(f"  {TITLES[rt]} {name}: {cell}")


def main(argv: list[str] | None = None) -> int:
    import argparse

    def peers(v: str) -> list[str]:
        got = [x.strip() for x in v.split(",") if x.strip()]
        bad = [x for x in got if x not in PEERS]
        if bad or not got:
            raise argparse.ArgumentTypeError(f"{bad or v!r}: expected some of {', '.join(PEERS)}")
        return got

    ap = argparse.ArgumentParser(prog="scripts/bench_peers_core.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    ap.add_argument("--runtimes", type=peers, default=list(PEERS),
                    help="which peers, comma-separated (default: all; those not installed are skipped)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    ap.add_argument("--tmpdir", metavar="DIR", default=None,
                    help="where the temporary directory is made (default: $TMPDIR or /tmp)")
    args = ap.parse_args(argv)
    args.workers = 2                          # (make_runner's actorsys node: never made here)
    report: Callable[[dict[str, Any], dict[str, Any]], None] = print_report
    rc = run_and_report(args, run, report, what="benchmark process")
    return rc or (1 if _failed else 0)


if __name__ == "__main__":
    sys.exit(main())
