"""actorsys scaling curves: throughput and p99 latency as client processes and resident
actors grow, actorsys beside the raw pyzmq + msgpack echo in the same run (issue 19).

Two curves, on one node (``--workers`` workers, ``max_resident`` above the largest
count, ``idle_timeout`` an hour, so nothing is passivated while measured):

1. client processes  1, 2, 4, 8, 16 client processes (``--clients``), each a separate OS
                     process (``scripts/bench_curves_client.py``) keeping ``--inflight``
                     asks in flight for ``--seconds``, each ask ``add 1`` to a random one
                     of ``--client-actors`` live actors. The same numbers of raw client
                     processes do the same against the raw echo server
                     (``actorsys/testing/rawecho.py``, one process, one counter per key).
2. resident actors   1k, 10k, 100k, 1M live actors (``--actors``): the node's actors are
                     activated up to the count (asks to never-seen keys, pipelined: the
                     activations/s is reported too), and the raw echo's counters
                     likewise; then ``--actor-clients`` client processes ask random ones
                     of that many, as in 1. The workers' RSS (from node.status()) and the
                     raw echo server's (psutil) are measured at each count. A count whose
                     memory would not fit (from the growth per actor so far, twice over,
                     plus 1 GiB) is skipped, and so are the larger ones, with the reason.

For each point: the asks answered per second of wall time (the first client's start to
the last one's end, one monotonic clock for the machine), and the p50 and p99 of every
ask's send-to-reply time over all the clients. Every ask must be answered (a client
reports its errors, and any error fails the run); after curve 1 the actors' counts must
add up to every ask they answered. Sides alternate which goes first from point to point.

The numbers are printed as two tables and, with matplotlib installed (the ``bench``
extra), plotted to ``clients.png`` and ``actors.png`` in ``--out`` (default
``docs/benchmarks`` for a full run; a ``--quick`` run plots only to an ``--out`` given).
Without matplotlib the plots are skipped with a message, the numbers still reported.

Everything the benchmark starts (the node, the echo server, every client process, temp
dirs) is stopped at the end, also on an error, Ctrl-C or SIGTERM; every loop is bounded
in count and every wait in time.

Usage: ``scripts/bench --curves [--quick] [--clients 1,2,4] [--actors 1000,10000]
[--seconds S] [--inflight W] [--out DIR] [--json FILE]``
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

from actorsys.testing.bench import (TYPE, Resources, actorsys_pipelined, log, pct,
                                    raw_pipelined, run_and_report)
from bench_scale import key_of, worker_stats

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLIENT = os.path.join(HERE, "bench_curves_client.py")
SIDES = ("actorsys", "raw")

FULL = {"clients": [1, 2, 4, 8, 16], "client_actors": 1000, "seconds": 5.0, "inflight": 16,
        "actors": [1000, 10_000, 100_000, 1_000_000], "actor_clients": 4, "window": 1000}
QUICK = {"clients": [1, 2], "client_actors": 100, "seconds": 0.5, "inflight": 4,
         "actors": [100, 1000], "actor_clients": 2, "window": 200}
#: asks one client sends at most in a point (besides --seconds)
MAX_ASKS = 1_000_000
#: client processes in one point at most
MAX_CLIENTS = 64
#: seconds a client process may take to start and connect
READY_WAIT = 60.0
#: a point whose clients have not all reported this long after --seconds fails
REPORT_WAIT = 90.0
#: memory kept free when deciding whether the next count of actors fits (bytes)
MEMORY_MARGIN = 1 << 30


# -- one point: N client processes against one side -------------------------------------


def _read_line(proc: subprocess.Popen[bytes], deadline: float, what: str) -> bytes:
    """One line of ``proc``'s stdout, waiting at most until ``deadline``."""
    assert proc.stdout is not None
    fd, buf = proc.stdout.fileno(), b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"a client process did not report {what} in time")
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"a client process exited (status {proc.wait(5)}) before {what}")
            buf += chunk
    return buf


def run_point(res: Resources, side: str, endpoint: str, n_clients: int, actors: int,
              p: dict, seed: int) -> dict:
    """``n_clients`` client processes of ``side`` at once; their asks merged (see the
    module docstring)."""
    cmd = [sys.executable, CLIENT, side, endpoint, "--actors", str(actors),
           "--inflight", str(p["inflight"]), "--seconds", str(p["seconds"]),
           "--max-asks", str(MAX_ASKS), "--type", TYPE]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(n_clients):
            procs.append(subprocess.Popen([*cmd, "--seed", str(seed * 1000 + i)], bufsize=0,
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=res.log))
            res.procs.append(procs[-1])
        deadline = time.monotonic() + READY_WAIT + n_clients
        for proc in procs:
            if json.loads(_read_line(proc, deadline, "ready")) != {"ready": True}:
                raise RuntimeError("a client process said something else than ready")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
        deadline = time.monotonic() + p["seconds"] + REPORT_WAIT
        reports = []
        for proc in procs:
            out, _ = proc.communicate(timeout=max(deadline - time.monotonic(), 0.1))
            if proc.returncode != 0:
                raise RuntimeError(f"a {side} client process exited with status {proc.returncode}")
            reports.append(json.loads(out))
    finally:
        for proc in procs:
            res.kill(proc)
    return merge(side, n_clients, reports)


def merge(side: str, n_clients: int, reports: list[dict]) -> dict:
    """The clients' reports as one point; an unanswered ask or an error fails it."""
    asks = sum(r["asks"] for r in reports)
    answered = sum(r["answered"] for r in reports)
    errors: dict[str, int] = {}
    for r in reports:
        for name, n in r["errors"].items():
            errors[name] = errors.get(name, 0) + n
    if errors or answered != asks:
        raise RuntimeError(f"{side}, {n_clients} clients: {answered:,} of {asks:,} asks answered; "
                           f"errors {errors}")
    lat = sorted(x for r in reports for x in r["lat_ns"])
    if not lat:
        raise RuntimeError(f"{side}, {n_clients} clients: no ask was answered")
    wall = max(r["t1"] for r in reports) - min(r["t0"] for r in reports)
    return {"clients": n_clients, "asks": asks, "answered": answered, "seconds": wall,
            "per_s": answered / wall,
            "p50_us": pct(lat, 0.50) / 1e3, "p99_us": pct(lat, 0.99) / 1e3,
            "mean_us": sum(lat) / len(lat) / 1e3}


def both_sides(res: Resources, eps: dict[str, str], n_clients: int, actors: int, p: dict,
               index: int) -> dict:
    """One point on each side, the first side alternating with ``index``."""
    out = {}
    for side in (SIDES if index % 2 == 0 else SIDES[::-1]):
        out[side] = run_point(res, side, eps[side], n_clients, actors, p, seed=index)
    out["ratio"] = out["actorsys"]["per_s"] / out["raw"]["per_s"]
    out["ratio_p99"] = out["actorsys"]["p99_us"] / out["raw"]["p99_us"]
    return out


# -- the two curves ----------------------------------------------------------------------


def make_actors(node, res: Resources, raw_ep: str, made: int, upto: int, window: int) -> float:
    """Actors ``made`` .. ``upto``-1 activated on the node (the seconds it took), and
    their counters on the raw echo server."""
    keys = [key_of(i) for i in range(made, upto)]
    t = actorsys_pipelined(node.endpoint, keys, window, method="add", args=(1,))
    raw_pipelined(res, raw_ep, keys, window)
    return t


def clients_curve(node, res: Resources, eps: dict[str, str], p: dict) -> dict:
    points = []
    for i, n in enumerate(p["clients"]):
        points.append(both_sides(res, eps, n, p["client_actors"], p, i))
        a, r = points[-1]["actorsys"], points[-1]["raw"]
        log(f"{n} client processes: actorsys {a['per_s']:,.0f}/s p99 {a['p99_us'] / 1e3:.2f} ms; "
            f"raw {r['per_s']:,.0f}/s p99 {r['p99_us'] / 1e3:.2f} ms")
    # every answered ask counted once: the actors' counts (1 each from activation) add up
    c = node.client()
    total = sum(c.ask(TYPE, key_of(i), "get", timeout=30.0) for i in range(p["client_actors"]))
    want = p["client_actors"] + sum(pt["actorsys"]["asks"] for pt in points)
    if total != want:
        raise RuntimeError(f"the actors counted {total:,} asks, {want:,} were answered")
    return {"points": points, "actors": p["client_actors"], "counted": total}


def actors_curve(node, res: Resources, eps: dict[str, str], echo_pid: int, p: dict,
                 made: int, rss0: int) -> dict:
    """Curve 2 over the ``made`` actors there are (``rss0``: the workers' RSS before any)."""
    import psutil
    points, skipped = [], None
    per_actor = 4096.0                  # a guess until the first count is measured
    for i, n in enumerate(p["actors"]):
        need = max(n - made, 0) * per_actor * 2 + MEMORY_MARGIN
        avail = psutil.virtual_memory().available
        if need > avail:
            skipped = {"from": n, "reason": f"{n:,} actors need about {need / 2**30:.1f} GiB "
                       f"free; {avail / 2**30:.1f} GiB is"}
            log(f"skipped {n:,} actors and more: {skipped['reason']}")
            break
        t = make_actors(node, res, eps["raw"], made, n, p["window"]) if n > made else None
        activations = (n - made) / t if t else None
        made = max(made, n)
        ws = worker_stats(node)
        resident, evictions = sum(w["resident"] for w in ws), sum(w["evictions"] for w in ws)
        if resident < n or evictions:
            raise RuntimeError(f"{n:,} actors: {resident:,} resident, {evictions:,} evicted "
                               "(raise max_resident or the memory)")
        pt = both_sides(res, eps, p["actor_clients"], n, p, i)
        rss = sum(w["rss"] for w in worker_stats(node))
        pt.update(actors=n, resident=resident, worker_rss_mb=rss / 1e6,
                  worker_rss_per_actor_b=(rss - rss0) / made,
                  raw_rss_mb=psutil.Process(echo_pid).memory_info().rss / 1e6,
                  activations_per_s=activations)
        per_actor = max(pt["worker_rss_per_actor_b"], 1024.0)
        points.append(pt)
        log(f"{n:,} resident actors: actorsys {pt['actorsys']['per_s']:,.0f}/s p99 "
            f"{pt['actorsys']['p99_us'] / 1e3:.2f} ms, workers {rss / 1e6:,.0f} MB; raw "
            f"{pt['raw']['per_s']:,.0f}/s p99 {pt['raw']['p99_us'] / 1e3:.2f} ms")
    return {"points": points, "clients": p["actor_clients"], "skipped": skipped,
            "worker_rss_mb_before": rss0 / 1e6}


def run(args, res: Resources) -> dict:
    p = dict(QUICK if args.quick else FULL)
    for name in FULL:
        if getattr(args, name, None) is not None:
            p[name] = getattr(args, name)
    p["workers"] = args.workers
    biggest = max([p["client_actors"], *p["actors"]])
    meta = {"mode": "quick" if args.quick else "full", "params": p, "cpus": os.cpu_count(),
            "python": sys.version.split()[0], "date": time.strftime("%Y-%m-%d %H:%M"),
            "loadavg_before": [round(x, 2) for x in os.getloadavg()],
            "bench_dirs": [res.tmp, res.ipc_dir]}
    config = {"node": {"data_dir": os.path.join(res.tmp, "data"), "workers": args.workers,
                       "python_path": [HERE, os.path.join(ROOT, "examples")],
                       "shutdown_timeout": 30.0, "start_timeout": 120.0, "ask_timeout": 60.0,
                       "max_resident": biggest + 1000, "idle_timeout": 3600.0},
              "actors": {TYPE: "bench_actors:BenchCounter"}}
    raw_ep = f"ipc://{res.ipc_dir}/echo.sock"
    echo = res.spawn_echo(raw_ep)
    node = res.start_node(config)
    eps = {"actorsys": node.endpoint, "raw": raw_ep}
    rss0 = sum(w["rss"] for w in worker_stats(node))
    t0 = time.monotonic()
    made = p["client_actors"]
    make_actors(node, res, raw_ep, 0, made, p["window"])
    results = {"clients": clients_curve(node, res, eps, p)}
    log("client processes curve done")
    results["actors"] = actors_curve(node, res, eps, echo.pid, p, made, rss0)
    log("resident actors curve done")
    meta["seconds"] = round(time.monotonic() - t0, 1)
    meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    node.stop(timeout=60)        # 1M resident actors passivate: more than close()'s 20 s
    res.node = None
    out_dir = args.out or (None if args.quick else os.path.join(ROOT, "docs", "benchmarks"))
    meta["plots"] = plots(results, meta, out_dir)
    return {"meta": meta, "results": results}


def plots(results: dict, meta: dict, out_dir: str | None) -> list[str]:
    """The PNG files written (none without matplotlib or an output directory)."""
    if out_dir is None:
        log("no plots: a --quick run plots only to an --out DIR given")
        return []
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log("no plots: matplotlib is not installed (pip install 'actorsys[bench]'); "
            "the numbers are in the tables (and --json)")
        return []
    from bench_curves_plot import plot_actors, plot_clients
    os.makedirs(out_dir, exist_ok=True)
    written = [plot_clients(results["clients"], meta, os.path.join(out_dir, "clients.png"))]
    if results["actors"]["points"]:
        written.append(plot_actors(results["actors"], meta, os.path.join(out_dir, "actors.png")))
    return written


# -- report ------------------------------------------------------------------------------


def print_report(results: dict, meta: dict) -> None:
    p = meta["params"]
    print(f"\nclient processes ({p['inflight']} asks in flight each, {p['seconds']:g} s, asks to "
          f"{results['clients']['actors']:,} actors; {p['workers']} workers, {meta['cpus']} CPUs)")
    print(f"{'clients':>7}  {'actorsys':>11}  {'raw':>11}  {'ratio':>5}  "
          f"{'actorsys p50/p99':>17}  {'raw p50/p99':>17}")
    for pt in results["clients"]["points"]:
        a, r = pt["actorsys"], pt["raw"]
        print(f"{pt['actorsys']['clients']:>7}  {a['per_s']:>9,.0f}/s  {r['per_s']:>9,.0f}/s  "
              f"{pt['ratio']:>4.2f}x  {_ms(a):>17}  {_ms(r):>17}")
    cur = results["actors"]
    print(f"\nresident actors ({cur['clients']} client processes, {p['inflight']} asks in flight "
          f"each, {p['seconds']:g} s; workers' RSS {cur['worker_rss_mb_before']:,.0f} MB before)")
    print(f"{'actors':>9}  {'actorsys':>11}  {'raw':>11}  {'ratio':>5}  {'actorsys p50/p99':>17}  "
          f"{'raw p50/p99':>17}  {'workers RSS':>11}  {'raw RSS':>8}  {'activations':>11}")
    for pt in cur["points"]:
        a, r = pt["actorsys"], pt["raw"]
        act = f"{pt['activations_per_s']:,.0f}/s" if pt["activations_per_s"] else "-"
        print(f"{pt['actors']:>9,}  {a['per_s']:>9,.0f}/s  {r['per_s']:>9,.0f}/s  "
              f"{pt['ratio']:>4.2f}x  {_ms(a):>17}  {_ms(r):>17}  {pt['worker_rss_mb']:>8,.0f} MB  "
              f"{pt['raw_rss_mb']:>5,.0f} MB  {act:>11}")
    if cur["skipped"]:
        print(f"skipped from {cur['skipped']['from']:,} actors: {cur['skipped']['reason']}")
    print(f"\nevery ask answered; the actors counted {results['clients']['counted']:,} asks in "
          f"curve 1. load average {meta['loadavg_before']} before, {meta['loadavg_after']} after; "
          f"{meta['seconds']} s")
    for path in meta["plots"]:
        print(f"plot written: {path}")


def _ms(side: dict) -> str:
    return f"{side['p50_us'] / 1e3:.2f}/{side['p99_us'] / 1e3:.2f} ms"


def _counts(text: str) -> list[int]:
    import argparse
    try:
        out = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of counts: {text!r}") from None
    if not out or min(out) < 1 or out != sorted(set(out)):
        raise argparse.ArgumentTypeError(f"counts must be positive and ascending: {text!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="scripts/bench --curves", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke run of seconds")
    ap.add_argument("--clients", type=_counts, help="client process counts (default 1,2,4,8,16)")
    ap.add_argument("--client-actors", type=int, help="actors the client curve asks (default 1000)")
    ap.add_argument("--actors", type=_counts,
                    help="resident actor counts (default 1000,10000,100000,1000000)")
    ap.add_argument("--actor-clients", type=int, help="client processes of the actor curve (default 4)")
    ap.add_argument("--seconds", type=float, help="seconds of each point (default 5)")
    ap.add_argument("--inflight", type=int, help="asks in flight per client process (default 16)")
    ap.add_argument("--window", type=int, help="asks in flight activating actors (default 1000)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes of the node (default 2)")
    ap.add_argument("--out", metavar="DIR", help="where the PNG plots go (default docs/benchmarks; "
                    "a --quick run plots only when given)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    ap.add_argument("--tmpdir", metavar="DIR", help="parent of the benchmark's temporary directory")
    args = ap.parse_args(argv)
    for name in ("client_actors", "actor_clients", "inflight", "window", "workers"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if max([*(args.clients or []), args.actor_clients or 0]) > MAX_CLIENTS:
        ap.error(f"at most {MAX_CLIENTS} client processes")
    if args.seconds is not None and not 0 < args.seconds <= 600:
        ap.error("--seconds must be in (0, 600]")
    return run_and_report(args, run, print_report, what="node/echo/client process")


if __name__ == "__main__":
    sys.exit(main())
