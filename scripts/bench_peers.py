"""actorsys beside its peers on the Savina micro-benchmarks, in one run (issue 19).

The eight Savina workloads that measure an actor runtime rather than an algorithm (Imam
and Sarkar, "Savina - An Actor Benchmark Suite", AGERE! 2014): Ping Pong, Counting
Actor, Fork-Join throughput, Fork-Join creation, Thread Ring, Chameneos, Big and Bank
Transaction (what each does and how it is checked: ``scripts/savina/workloads.py``), run
on each runtime that is installed, one runtime after the other:

* actorsys   an embedded node: router and 2 worker processes, actors of
             ``scripts/savina_actors.py`` talking by ``self.ref(...).tell`` (and ``await
             ...ask`` in Bank Transaction), every turn committed to LevelDB;
* Pykka      threads in the benchmark's process (``ThreadingActor``), nothing durable;
* Thespian   ``multiprocTCPBase``: an OS process per actor, pickled messages over TCP;
* Ray        an OS process per actor, each message a Ray actor task.

A runtime that is not installed is skipped with a line saying so (the peers come with the
optional ``bench`` extra: ``pip install -e '.[bench]'``; ``scripts/bench --peers``
installs it). Each workload's result is checked (counts, the balances' sum) on every
runtime; a failed check or an error is reported in its cell and makes the exit status 1.

Scaling (stated again in the report, per workload and runtime). Savina's published
parameters are for a many-core JVM. On this 2-core machine every message count is divided
by 20 (Big's by 100), actor counts as published. Thespian and Ray make every actor an OS
process and run a few hundred of these messages per second here, so on them a full run
makes at most 32 (Thespian) and 8 (Ray) actors per workload and a tenth of the work (the
messages per actor set to match; Fork-Join creation: 32 and 8 actors): the rate per unit
is what compares. ``scripts/savina/workloads.py`` holds the numbers.

What is reported: per workload and runtime, the rate (``units / seconds``, the unit
named per workload: round trips, increments, messages, actors, hops, meetings, pings,
transfers) and the seconds (best of ``--rounds``, default 3, a quick run 1: the highest
rate), and the ratio actorsys / peer of the rates: above 1 actorsys is faster, below 1
the peer is. The seconds run from a workload's first message (its actors set up before,
except in Fork-Join creation) until the driver knows the last report arrived.

Everything started (the node, Thespian's admin and actors, Ray's processes, temporary
directories) is stopped and removed at the end, also on an error, Ctrl-C or SIGTERM; each
workload has a deadline (180 s, quick: 30 s).

Usage: ``scripts/bench --peers [--quick] [--runtimes actorsys,pykka,thespian,ray]
[--workloads pingpong,...] [--rounds N] [--markdown] [--json FILE]``
"""
from __future__ import annotations

import importlib.util
import os
import signal
import sys
import time
from typing import Any, Callable

from actorsys.testing.bench import Resources, log, run_and_report
from savina import workloads as W

RUNTIMES = ("actorsys", "pykka", "thespian", "ray")
TITLES = {"actorsys": "actorsys", "pykka": "Pykka", "thespian": "Thespian", "ray": "Ray"}
#: the module a peer needs (its absence skips the peer)
MODULES = {"pykka": "pykka", "thespian": "thespian", "ray": "ray"}


def missing(runtime: str) -> str | None:
    """Why ``runtime`` cannot run here (None: it can)."""
    mod = MODULES.get(runtime)
    if mod is not None and importlib.util.find_spec(mod) is None:
        return f"{mod} is not installed (pip install -e '.[bench]')"
    return None


def make_runner(runtime: str, res: Resources, args: Any) -> Any:
    if runtime == "actorsys":
        from savina.on_actorsys import ActorsysRunner
        return ActorsysRunner(res, args.workers)
    if runtime == "pykka":
        from savina.on_pykka import PykkaRunner
        return PykkaRunner()
    if runtime == "thespian":
        from savina.on_thespian import ThespianRunner
        return ThespianRunner(res.tmp)
    from savina.on_ray import RayRunner
    return RayRunner()


def quietly(fn: Callable[[], None]) -> None:
    """Run a runtime's stop with Ctrl-C and SIGTERM held off (a second one must not cut it short)."""
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        fn()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def measure(runner: Any, name: str, mode: str, rounds: int) -> dict[str, Any]:
    """``rounds`` runs of one workload; the best rate, every round's, and the check."""
    p = W.params(name, mode, runner.name)
    units = W.units(name, p)
    out: dict[str, Any] = {"params": p, "units": units, "rounds_s": [], "problem": None}
    for _ in range(rounds):
        r = runner.run(name, p, time.monotonic() + W.DEADLINE[mode])
        out["rounds_s"].append(r["seconds"])
        out["facts"] = r["facts"]
        problem = W.check(name, p, r["facts"])
        if problem is not None:
            out["problem"] = f"check failed: {problem}"
            break
    best = min(out["rounds_s"])
    out.update(seconds=best, per_s=units / best)
    return out


def run_runtime(runtime: str, res: Resources, args: Any, mode: str) -> dict[str, Any]:
    runner = make_runner(runtime, res, args)
    out: dict[str, Any] = {"describe": runner.describe(), "workloads": {}}
    t0 = time.monotonic()
    try:
        try:
            runner.start()
        except Exception as exc:              # (reported, and the next runtime runs)
            out["problem"] = f"did not start: {type(exc).__name__}: {exc}"
            log(f"{TITLES[runtime]} {out['problem']}")
            return out
        log(f"{TITLES[runtime]} up in {time.monotonic() - t0:.1f} s: {runner.describe()}")
        for name in args.workloads:
            try:
                r = measure(runner, name, mode, args.rounds)
            except Exception as exc:          # (a peer's failure is reported, not fatal)
                r = {"problem": f"{type(exc).__name__}: {exc}",
                     "params": W.params(name, mode, runtime)}
            out["workloads"][name] = r
            if r["problem"] is None:
                log(f"{TITLES[runtime]} {name}: {r['per_s']:,.0f} {W.TABLE[name].unit}/s "
                    f"({r['seconds']:.2f} s, {r['params']})")
            else:
                log(f"{TITLES[runtime]} {name}: {r['problem']}")
    finally:
        t1 = time.monotonic()
        quietly(runner.stop)
        log(f"{TITLES[runtime]} stopped in {time.monotonic() - t1:.1f} s")
    out["seconds"] = round(time.monotonic() - t0, 1)
    return out


def run(args: Any, res: Resources) -> dict[str, Any]:
    mode = "quick" if args.quick else "full"
    if args.quick:
        args.rounds = 1
    meta = {"mode": mode, "rounds": args.rounds, "cpus": os.cpu_count(),
            "python": sys.version.split()[0], "workers": args.workers,
            "loadavg_before": [round(x, 2) for x in os.getloadavg()],
            "published": {n: W.TABLE[n].published for n in args.workloads},
            "runtimes": args.runtimes, "workloads": args.workloads,
            "bench_dirs": [res.tmp, res.ipc_dir]}
    results: dict[str, Any] = {}
    for runtime in args.runtimes:
        why = missing(runtime)
        if why is not None:
            log(f"{TITLES[runtime]}: skipped, {why}")
            results[runtime] = {"skipped": why}
            continue
        results[runtime] = run_runtime(runtime, res, args, mode)
    meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return {"meta": meta, "results": results, "ratios": ratios(results)}


def ratios(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """peer -> workload -> actorsys rate / peer rate (> 1: actorsys is faster)."""
    mine = results.get("actorsys", {}).get("workloads", {})
    out: dict[str, dict[str, float]] = {}
    for runtime, r in results.items():
        if runtime == "actorsys" or "workloads" not in r:
            continue
        out[runtime] = {n: mine[n]["per_s"] / w["per_s"] for n, w in r["workloads"].items()
                        if w.get("problem") is None and mine.get(n, {}).get("problem", "x") is None}
    return out


# -- the report -----------------------------------------------------------------------------

_failed: list[str] = []


def _params(p: dict[str, int]) -> str:
    return " ".join(f"{k}={v:,}" for k, v in p.items())


def _table(head: list[str], rows: list[list[str]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
        return
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def print_report(results: dict[str, Any], meta: dict[str, Any], markdown: bool = False) -> None:
    ratio = ratios(results)
    ran = [rt for rt in meta["runtimes"] if "workloads" in results[rt] and "problem" not in results[rt]]
    print()
    print(f"Savina micro-benchmarks, {meta['mode']} run (best of {meta['rounds']}), "
          f"{meta['cpus']} CPUs, load average {meta['loadavg_before']} -> {meta['loadavg_after']}")
    for rt in meta["runtimes"]:
        r = results[rt]
        if "problem" in r:
            _failed.append(f"{TITLES[rt]}: {r['problem']}")
        print(f"  {TITLES[rt]}: " + (f"skipped, {r['skipped']}" if "skipped" in r else
                                     f"FAILED, {r['problem']}" if "problem" in r else r["describe"]))
    print("rate = units/s (best round); actorsys/peer = actorsys' rate / the peer's: above 1 "
          "actorsys is faster\n")

    head = ["workload (unit)", "published"] + [f"{TITLES[rt]} params" for rt in ran]
    rows = []
    for n in meta["workloads"]:
        w = W.TABLE[n]
        rows.append([f"{w.title} ({w.unit})", _params(w.published)]
                    + [_params(results[rt]["workloads"][n]["params"]) for rt in ran])
    _table(head, rows, markdown)
    print()

    head = ["workload", "actorsys" if "actorsys" in ran else ""]
    peers = [rt for rt in ran if rt != "actorsys"]
    for rt in peers:
        head += [TITLES[rt], f"actorsys/{TITLES[rt]}"]
    rows = []
    for n in meta["workloads"]:
        row = [W.TABLE[n].title]
        for rt in ran:
            w = results[rt]["workloads"][n]
            if w.get("problem") is not None:
                _failed.append(f"{TITLES[rt]} {n}: {w['problem']}")
                cell = "FAILED"
            else:
                cell = f"{w['per_s']:,.0f}/s ({w['seconds']:.2f} s)"
            row.append(cell)
            if rt != "actorsys":
                x = ratio.get(rt, {}).get(n)
                row.append("-" if x is None else f"{x:.2f}x")
        if "actorsys" not in ran:
            row.insert(1, "-")
        rows.append(row)
    _table(head, rows, markdown)
    for f in _failed:
        print(f"FAILED {f}")


def main(argv: list[str] | None = None) -> int:
    import argparse

    def names(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
        def parse(v: str) -> list[str]:
            got = [x.strip() for x in v.split(",") if x.strip()]
            bad = [x for x in got if x not in allowed]
            if bad or not got:
                raise argparse.ArgumentTypeError(f"{bad or v!r}: expected some of {', '.join(allowed)}")
            return got
        return parse

    ap = argparse.ArgumentParser(prog="scripts/bench --peers", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    ap.add_argument("--runtimes", type=names(RUNTIMES), default=list(RUNTIMES),
                    help="which runtimes, comma-separated (default: all; those not installed are skipped)")
    ap.add_argument("--workloads", type=names(W.WORKLOADS), default=list(W.WORKLOADS),
                    help="which workloads, comma-separated (default: all eight)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="runs of each workload in a full run (a quick run makes one); the best rate counts")
    ap.add_argument("--workers", type=int, default=2, help="worker processes of the actorsys node")
    ap.add_argument("--markdown", action="store_true", help="print the tables in Markdown")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    ap.add_argument("--tmpdir", metavar="DIR", default=None,
                    help="where the temporary directory is made (default: $TMPDIR or /tmp)")
    args = ap.parse_args(argv)
    if not 1 <= args.rounds <= 20:
        ap.error("--rounds is 1..20")

    def report(results: dict[str, Any], meta: dict[str, Any]) -> None:
        print_report(results, meta, args.markdown)

    rc = run_and_report(args, run, report, what="benchmark process")
    return rc or (1 if _failed else 0)


if __name__ == "__main__":
    sys.exit(main())
