"""``scripts/bench --all``: every workload, actorsys beside the raw echo and every peer, from
one run, in one Markdown table (issue 19).

One invocation runs, one after the other, each as a process of its own (its output goes to
stderr as it comes):

1. ``scripts/bench.py``: actorsys and the raw pyzmq + msgpack echo (the core workloads);
2. ``scripts/bench_peers.py``: the eight Savina workloads on actorsys, Pykka, Thespian, Ray;
3. ``scripts/bench_peers_core.py``: the core workloads on the peers.

and then prints on stdout the table: rows the workloads, columns actorsys | raw echo | Pykka
| Thespian | Ray, each cell beside actorsys with the ratio actorsys / that cell, and above it
the exact command, the date, the machine (CPUs, their model, the load average before and
after) and the versions. The rows:

* ask latency p50: sequential asks from outside the actor system (actorsys' blocking client;
  the raw echo; Pykka ``ref.ask``; Thespian ``ActorSystem().ask``; Ray ``ray.get(a.msg.remote())``);
* pipelined asks: many in flight (actorsys' asyncio client and the raw echo: a window of
  1,000 kept full, over 100 actors; Pykka ``ask(block=False)`` futures and Ray ObjectRefs: a
  window sent, then its answers collected; Thespian: none, it has no non-blocking ask from
  outside its actors);
* tells: n one-way messages, then one ask to know they were processed (actorsys from the
  asyncio client, beside the raw per-message pump);
* actor creations from outside: actorsys asks to new keys (pipelined), Pykka ``start()``,
  Thespian ``createActor``, Ray ``.remote()``, each actor then asked once; the raw column is
  the raw pipelined echo rate, a reference (no actor is made);
* the eight Savina workloads (raw: none).

Counts differ per runtime (Thespian and Ray make every actor an OS process: fewer messages
and actors; the counts are listed under the table and kept in the JSON). ``--quick``: small
counts everywhere; ``--runtimes``: which peers run (actorsys and the raw echo always do);
``--json FILE``: every step's full results, the table and the facts above it. Each step has a
deadline (it is sent SIGTERM, then killed); on Ctrl-C or SIGTERM the running step is
stopped the same way (each step removes everything it started). The exit status is 1 if a
step or a cell failed.

Usage: ``scripts/bench --all [--quick] [--runtimes actorsys,pykka,thespian,ray] [--json FILE]``
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from typing import Any

import bench_all_table as table

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS = ("pykka", "thespian", "ray")
#: seconds each step may take (full run, quick run)
STEP_TIMEOUT = {"core": (1800, 240), "peers": (3600, 600), "peers_core": (1800, 300)}
#: seconds a step has to clean up after SIGTERM before it is killed
GRACE = 60


def say(msg: str) -> None:
    print(f"bench --all: {msg}", file=sys.stderr, flush=True)


def run_step(name: str, cmd: list[str], timeout: float) -> dict[str, Any]:
    """Run ``cmd`` (its output to stderr) with a deadline; what happened."""
    say(f"{name}: {shlex.join(cmd)}")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno())
    try:
        rc: int | str = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        rc = f"timed out after {timeout:g} s"
        _stop(proc)
    except BaseException:
        _stop(proc)
        raise
    out = {"command": shlex.join(cmd), "rc": rc, "seconds": round(time.monotonic() - t0, 1)}
    say(f"{name}: exit {rc} in {out['seconds']} s")
    return out


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the step cleans up), then SIGKILL after :data:`GRACE` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _load(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            out: dict[str, Any] = json.load(f)
            return out
    except (OSError, ValueError):
        return None


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model,
            "system": f"{platform.system()} {platform.release()} {platform.machine()}"}


def versions() -> dict[str, str]:
    from importlib import metadata

    import zmq
    out = {"python": sys.version.split()[0], "libzmq": zmq.zmq_version()}
    for dist in ("actorsys", "pyzmq", "msgpack", "plyvel", "pykka", "thespian", "ray"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def run(args: Any, argv: list[str], work: str) -> tuple[dict[str, Any], int]:
    quick = ["--quick"] if args.quick else []
    which = 1 if args.quick else 0
    peers = [rt for rt in args.runtimes if rt in PEERS]
    meta: dict[str, Any] = {
        "command": shlex.join(["scripts/bench", "--all", *argv]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if args.quick else "full", "peers": peers,
        "loadavg_before": [round(x, 2) for x in os.getloadavg()], **machine(),
        "versions": versions()}
    t0 = time.monotonic()
    py = sys.executable
    tmp = ["--tmpdir", args.tmpdir] if args.tmpdir else []
    files = {k: os.path.join(work, f"{k}.json") for k in STEP_TIMEOUT}
    steps = {"core": run_step("core", [py, os.path.join(HERE, "bench.py"), *quick,
                                       "--json", files["core"], *tmp],
                              STEP_TIMEOUT["core"][which])}
    steps["peers"] = run_step("peers", [py, os.path.join(HERE, "bench_peers.py"), *quick,
                                        "--runtimes", ",".join(["actorsys", *peers]),
                                        "--json", files["peers"], *tmp],
                              STEP_TIMEOUT["peers"][which])
    if peers:
        steps["peers_core"] = run_step(
            "peers_core", [py, os.path.join(HERE, "bench_peers_core.py"), *quick,
                           "--runtimes", ",".join(peers), "--json", files["peers_core"], *tmp],
            STEP_TIMEOUT["peers_core"][which])
    meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    meta["seconds"] = round(time.monotonic() - t0, 1)
    data = {k: _load(files[k]) for k in steps}
    head, rows, failed = table.build(data, peers)
    failed += [f"step {k}: exit {s['rc']}" for k, s in steps.items() if s["rc"] != 0]
    out = {"meta": meta, "steps": steps, "table": {"head": head, "rows": rows},
           "failed": failed, **data}
    return out, (1 if failed else 0)


def main(argv: list[str] | None = None) -> int:
    import argparse

    def runtimes(v: str) -> list[str]:
        got = [x.strip() for x in v.split(",") if x.strip()]
        bad = [x for x in got if x not in ("actorsys", *PEERS)]
        if bad or not got:
            raise argparse.ArgumentTypeError(
                f"{bad or v!r}: expected some of actorsys, {', '.join(PEERS)}")
        return got

    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="scripts/bench --all", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    ap.add_argument("--runtimes", type=runtimes, default=["actorsys", *PEERS],
                    help="which peers run, comma-separated (actorsys and the raw echo always do; "
                         "default: all; a peer not installed is skipped)")
    ap.add_argument("--json", metavar="FILE", help="also write everything as JSON to FILE")
    ap.add_argument("--tmpdir", metavar="DIR", default=None,
                    help="where each step makes its temporary directory (default: $TMPDIR or /tmp)")
    args = ap.parse_args(argv)

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    with tempfile.TemporaryDirectory(prefix="actorsys-bench-all-") as work:
        try:
            out, rc = run(args, argv, work)
        except KeyboardInterrupt:
            say("interrupted; the running step was stopped")
            return 130
    print(table.render(out))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        say(f"everything written to {args.json}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
