"""What metrics cost (issue 17): two nodes side by side in one run, one with metrics off
(the default) and one with ``[node] metrics`` on and scraped once a second (as
Prometheus would), measured interleaved so that both see the same noise:

1. ask latency      blocking client, sequential asks to one actor, in interleaved chunks
                    (p50 / p99 of each node, and on / off)
2. pipelined asks   asyncio client, ``window`` asks in flight across 100 actors, rounds
                    alternating between the nodes (the median round of each, and on / off:
                    on this VM the best of a few rounds moves 10% between two runs of
                    the same node, the median about half that)

Target: metrics on within 5% of off, on both. The scrapes' count and time are reported.

Usage: ``scripts/bench --metrics [--quick] [--json FILE] [--rounds N]``
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import subprocess
import time

from actorsys.testing.bench import (TYPE, Resources, actorsys_pipelined, fmt_num, log, pct,
                                    phases, run_and_report)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
#: seconds between two scrapes of the node with metrics on
SCRAPE_EVERY = 1.0


#: the scraper: another process, as Prometheus is (a thread would share the GIL with
#: the measuring client); one line per scrape on stdout, its milliseconds or "failed"
SCRAPER = """
import sys, time, urllib.request
url, every = sys.argv[1], float(sys.argv[2])
while True:
    time.sleep(every)
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            r.read()
        print(f"{(time.perf_counter() - t0) * 1e3:.3f}", flush=True)
    except OSError:
        print("failed", flush=True)
"""


def scraper(res: Resources, url: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start the scraper process (killed by ``res.close``); returns it and its output file."""
    path = os.path.join(res.tmp, "scrapes.txt")
    with open(path, "wb") as out:
        p = subprocess.Popen([sys.executable, "-c", SCRAPER, url, str(SCRAPE_EVERY)],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=res.log)
    res.procs.append(p)
    return p, path


def latency(nodes: dict[str, object], n: int, warmup: int, chunk: int = 100) -> dict:
    refs = {name: node.client().ref(TYPE, "latency") for name, node in nodes.items()}
    for ref in refs.values():
        for _ in range(warmup):
            ref.ask("add", 1, timeout=10.0)
    perf = time.perf_counter_ns
    samples: dict[str, list[int]] = {name: [] for name in refs}
    order = list(refs.items())
    while len(samples["off"]) < n:
        m = min(chunk, n - len(samples["off"]))
        order.reverse()              # (each node goes first every other chunk)
        for name, ref in order:
            ask, out = ref.ask, samples[name]
            for _ in range(m):
                t = perf()
                ask("add", 1, timeout=10.0)
                out.append(perf() - t)
    out = {}
    for name, v in samples.items():
        v.sort()
        out[name] = {"p50_us": pct(v, 0.5) / 1e3, "p99_us": pct(v, 0.99) / 1e3, "n": len(v)}
    out["ratio_p50"] = out["on"]["p50_us"] / out["off"]["p50_us"]
    out["ratio_p99"] = out["on"]["p99_us"] / out["off"]["p99_us"]
    out["meets_target"] = out["ratio_p50"] <= 1.05
    return out


def pipelined(nodes: dict[str, object], total: int, window: int, rounds: int) -> dict:
    keys = [f"pipe-{i % 100}" for i in range(total)]
    warm = sorted(set(keys))
    rates: dict[str, list[float]] = {name: [] for name in nodes}
    order = list(nodes.items())
    for _ in range(rounds):
        order.reverse()
        for name, node in order:
            rates[name].append(total / actorsys_pipelined(node.endpoint, keys, window, warm_keys=warm))
    out = {name: {"per_s": statistics.median(v), "best_per_s": max(v), "rounds_per_s": v}
           for name, v in rates.items()}
    out["ratio"] = out["on"]["per_s"] / out["off"]["per_s"]
    out["meets_target"] = out["ratio"] >= 0.95
    return out


def run(args: argparse.Namespace, res: Resources) -> dict:
    quick = args.quick
    p = {"latency_n": 500 if quick else 5000, "latency_warmup": 100 if quick else 500,
         "pipe_n": 5000 if quick else 30_000, "window": args.window,
         "rounds": 1 if quick else args.rounds}
    meta = {"mode": "quick" if quick else "full", "cpus": os.cpu_count(), "params": p,
            "loadavg_before": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0]}

    def config(name: str, **node: object) -> dict:
        return {"node": {"data_dir": os.path.join(res.tmp, name), "workers": 2,
                         "python_path": [HERE, os.path.join(ROOT, "examples")],
                         "shutdown_timeout": 5.0, "ask_timeout": 30.0, **node},
                "actors": {TYPE: "bench_actors:BenchCounter"}}
    nodes = {"off": res.start_node(config("off")),
             "on": res.start_node(config("on", metrics="127.0.0.1:0"), another=True)}
    proc, scrapes = scraper(res, nodes["on"].metrics_url)
    log(f"two nodes up (metrics off, and on scraped every {SCRAPE_EVERY:g} s); measuring")
    t0 = time.monotonic()
    try:
        with phases(2):
            results = {"ask_latency": latency(nodes, p["latency_n"], p["latency_warmup"])}
            log("ask latency done")
            results["pipelined_asks"] = pipelined(nodes, p["pipe_n"], p["window"], p["rounds"])
            log("pipelined asks done")
    finally:
        res.kill(proc)
    with open(scrapes) as f:
        lines = f.read().split()
    times = sorted(float(x) / 1e3 for x in lines if x != "failed")
    results["scrapes"] = {"n": len(times), "failures": lines.count("failed"),
                          "p50_ms": pct(times, 0.5) * 1e3 if times else None,
                          "max_ms": times[-1] * 1e3 if times else None}
    meta["seconds"] = round(time.monotonic() - t0, 1)
    meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return {"meta": meta, "results": results}


def report(results: dict, meta: dict) -> None:
    lat, pipe, sc = results["ask_latency"], results["pipelined_asks"], results["scrapes"]
    print(f"\nactorsys metrics cost ({meta['mode']}, 2 workers per node, {meta['cpus']} cpus, "
          f"load {meta['loadavg_before']})")
    print(f"  ask p50        off {fmt_num(lat['off']['p50_us'], 'us')}   on "
          f"{fmt_num(lat['on']['p50_us'], 'us')}   on/off {lat['ratio_p50']:.3f} "
          f"(target <= 1.05: {'met' if lat['meets_target'] else 'NOT met'})")
    print(f"  ask p99        off {fmt_num(lat['off']['p99_us'], 'us')}   on "
          f"{fmt_num(lat['on']['p99_us'], 'us')}   on/off {lat['ratio_p99']:.3f}")
    print(f"  pipelined      off {fmt_num(pipe['off']['per_s'], '/s')}   on "  # (medians)
          f"{fmt_num(pipe['on']['per_s'], '/s')}   on/off {pipe['ratio']:.3f} "
          f"(target >= 0.95: {'met' if pipe['meets_target'] else 'NOT met'})")
    print(f"  scrapes        {sc['n']} during the run, {sc['failures']} failed, "
          f"p50 {sc['p50_ms'] or 0:.1f} ms, max {sc['max_ms'] or 0:.1f} ms")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench --metrics", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    ap.add_argument("--window", type=int, default=1000, help="asks in flight when pipelining")
    ap.add_argument("--rounds", type=int, default=8, help="pipelined rounds per node; the median counts")
    ap.add_argument("--tmpdir", metavar="DIR", default=None)
    return run_and_report(ap.parse_args(argv), run, report)


if __name__ == "__main__":
    sys.exit(main())
