"""actorsys benchmark: the runtime beside a raw pyzmq + msgpack baseline, in one run.

Every measurement runs the actorsys path and a raw baseline over the same number of
hops (one: client -> process over ipc) in the same run, and prints the ratio:

1. ask latency      blocking client, one actor, sequential asks (p50 / p99)
                    vs a blocking DEALER -> ROUTER echo server process, same payload shape
2. pipelined asks   asyncio client keeping ``window`` asks in flight (many actors; also one)
                    vs a raw client keeping the same window in flight against the echo server
3. tells            N tells then one ask to the same actor (so all were processed), from
                    the blocking client (one frame each) and from the asyncio client (one
                    turn of its loop: coalesced into BATCH frames, issue 19)
                    vs N raw one-way sends then one echo (the raw per-message pump)
4. activations      asks to N never-seen keys, pipelined: new actors per second
                    vs the raw pipelined echo rate as the reference
5. crash recovery   kill -9 of the worker hosting an actor with known state -> first ask
                    answered by the new worker with that state intact (p50 / p90 / p99 /
                    max of 30 kills; before each, up to 3,600 other actors on that worker
                    write 1 KiB, so LevelDB's log holds what a kill under load finds)
                    vs kill -9 of the echo server + respawn of a fresh python process ->
                    first successful echo
6. supervised       a supervised child's handler raises -> its supervisor restarts it ->
   restart          the next ask (sent right after the crash reply; it waits for the
                    restart) answers with the committed state; crash + ask, median / max
                    vs two sequential raw echo round trips (the same number of requests)
7. children         start_child then terminate_child of N simple_one_for_one children
                    (N = 1,000 and 10,000): children per second each way, and how far
                    10,000 is from linear (t10k / (10 * t1k); 1.0 = linear)
                    vs the sequential raw echo rate (one request each)

Rows 1 to 3 are also measured against the **durable floor**: the same echo server, but
committing each batch of messages it reads to LevelDB (fsynced under ``--durability
fsync``) before it answers (``rawecho.raw_durable_server``). The raw echo does no durable
work at all; the floor does the least a durable turn can do in Python. actorsys / raw
says what the runtime and durability cost together; actorsys / floor, what the runtime
costs beyond durability; floor / raw, what durability alone costs.

The raw echo server is ``actorsys/testing/rawecho.py`` run as a real separate process
(it loads no actorsys code). Everything the benchmark starts (node, echo servers, temp dirs) is
removed at the end, also on Ctrl-C, SIGTERM or an error; every wait has a deadline.

Usage: ``scripts/bench [--quick] [--durability process|fsync] [--json FILE] [--workers N]``
"""
from __future__ import annotations

import os
import sys
import time

import zmq

import actorsys
from actorsys.testing.bench import (TYPE, Resources, actorsys_pipelined, bench_async_tells, fmt_num,
                                    log, pct, phases, raw_pipelined, run_and_report)
from actorsys.testing.rawecho import ASK, TELL, packb, raw_recv, raw_socket, raw_wait_ready
from bench_recovery import _recovery_summary, bench_recovery

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# ---------------------------------------------------------------------------------------
# measurements


def bench_latency(node, res: Resources, raw_ep: str, floor_ep: str, n: int, warmup: int,
                  chunk: int = 100) -> dict:
    """Sequential asks, interleaving actorsys, the raw echo and the durable floor in chunks
    so all three see the same noise."""
    client = node.client()
    ref = client.ref(TYPE, "latency")
    socks = {"raw": raw_socket(res.ctx, raw_ep), "floor": raw_socket(res.ctx, floor_ep)}
    for sock in socks.values():
        raw_wait_ready(sock, time.monotonic() + 10)
    perf = time.perf_counter_ns
    ask = ref.ask

    def raw_ask(sock, rid: int) -> int:
        sock.send(packb([ASK, rid, TYPE, "latency", "add", [1], {}]))
        msg = raw_recv(sock)
        if msg[1] != rid:
            raise RuntimeError(f"raw echo answered request {msg[1]}, expected {rid}")
        return msg[2]

    for i in range(warmup):
        ask("add", 1, timeout=10.0)
        for sock in socks.values():
            raw_ask(sock, i + 1)
    ns: dict[str, list[int]] = {"actorsys": [], "raw": [], "floor": []}
    rid = warmup
    while len(ns["actorsys"]) < n:
        m = min(chunk, n - len(ns["actorsys"]))
        for _ in range(m):
            t = perf()
            ask("add", 1, timeout=10.0)
            ns["actorsys"].append(perf() - t)
        for name, sock in socks.items():
            for i in range(m):
                t = perf()
                raw_ask(sock, rid + i + 1)
                ns[name].append(perf() - t)
        rid += m
    final = ask("get", timeout=10.0)
    if final != warmup + n:
        raise RuntimeError(f"latency actor ended at {final}, expected {warmup + n}")
    for sock in socks.values():
        sock.close(0)

    def summary(v: list[int]) -> dict:
        v.sort()
        return {"p50_us": pct(v, 0.50) / 1e3, "p99_us": pct(v, 0.99) / 1e3,
                "mean_us": sum(v) / len(v) / 1e3, "n": len(v)}

    a, r, f = summary(ns["actorsys"]), summary(ns["raw"]), summary(ns["floor"])
    return {"actorsys": a, "raw": r, "floor": f, "ratio_p50": a["p50_us"] / r["p50_us"],
            "ratio_p99": a["p99_us"] / r["p99_us"], "ratio_p50_floor": a["p50_us"] / f["p50_us"],
            "floor_over_raw_p50": f["p50_us"] / r["p50_us"],
            "target": "ask p50 within 1.2x of raw one-hop echo (issue 19)",
            "meets_target": a["p50_us"] <= 1.2 * r["p50_us"]}


def bench_pipelined(node, res: Resources, raw_ep: str, floor_ep: str, total: int, window: int,
                    actors: int, rounds: int, tag: str, target: float) -> dict:
    keys = [f"{tag}-{i % actors}" for i in range(total)]
    warm = sorted(set(keys))
    a_s, r_s, f_s = [], [], []
    for _ in range(rounds):
        a_s.append(total / actorsys_pipelined(node.endpoint, keys, window, warm_keys=warm))
        r_s.append(total / raw_pipelined(res, raw_ep, keys, window))
        f_s.append(total / raw_pipelined(res, floor_ep, keys, window))
    client = node.client()
    got = sum(client.ref(TYPE, k).ask("get", timeout=10.0) for k in warm)
    if got != total * rounds:
        raise RuntimeError(f"pipelined asks: actors counted {got}, expected {total * rounds}")
    a, r, f = max(a_s), max(r_s), max(f_s)
    return {"actorsys": {"per_s": a, "rounds_per_s": a_s}, "raw": {"per_s": r, "rounds_per_s": r_s},
            "floor": {"per_s": f, "rounds_per_s": f_s},
            "ratio": a / r, "ratio_floor": a / f, "n": total, "window": window, "actors": actors,
            "target": f">= {target}x raw echo's rate (issue 19)", "meets_target": a >= target * r}


def bench_tells(node, res: Resources, raw_ep: str, floor_ep: str, n: int, rounds: int) -> dict:
    client = node.client()
    ref = client.ref(TYPE, "tells")
    sock = raw_socket(res.ctx, raw_ep)
    raw_wait_ready(sock, time.monotonic() + 10)
    a_s, r_s = [], []
    f_s = [raw_pump(res, floor_ep, n, f"floor-tells-{rnd}") for rnd in range(rounds)]
    try:
        for rnd in range(rounds):
            base = ref.ask("get", timeout=10.0)
            tell = ref.tell
            t0 = time.perf_counter()
            for _ in range(n):
                try:
                    tell("add", 1)
                except actorsys.Overloaded:
                    raise RuntimeError("tell queue overflowed (raise the send high-water mark)") from None
            final = ref.ask("get", timeout=60.0)
            el = time.perf_counter() - t0
            if final - base != n:
                raise RuntimeError(f"{n} tells sent, {final - base} processed")
            a_s.append(n / el)

            key = f"tells-{rnd}"
            send = sock.send
            t0 = time.perf_counter()
            for _ in range(n):
                send(packb([TELL, 0, TYPE, key, "add", [1], {}]))
            sock.send(packb([ASK, 1, TYPE, key, "get", [], {}]))
            msg = raw_recv(sock)
            el = time.perf_counter() - t0
            if msg[2] != n:
                raise RuntimeError(f"raw: {n} one-way sends, {msg[2]} processed")
            r_s.append(n / el)
    finally:
        sock.close(0)
    a, r, f = max(a_s), max(r_s), max(f_s)
    return {"actorsys": {"per_s": a, "rounds_per_s": a_s}, "raw": {"per_s": r, "rounds_per_s": r_s},
            "floor": {"per_s": f, "rounds_per_s": f_s},
            "ratio": a / r, "ratio_floor": a / f, "n": n, "target": None, "meets_target": None}


def raw_pump(res: Resources, endpoint: str, n: int, key: str) -> float:
    """``n`` one-way sends to the raw server at ``endpoint``, then one ask: the rate."""
    sock = raw_socket(res.ctx, endpoint)
    try:
        raw_wait_ready(sock, time.monotonic() + 10)
        send = sock.send
        t0 = time.perf_counter()
        for _ in range(n):
            send(packb([TELL, 0, TYPE, key, "add", [1], {}]))
        send(packb([ASK, 1, TYPE, key, "get", [], {}]))
        msg = raw_recv(sock)
        el = time.perf_counter() - t0
        if msg[2] != n:
            raise RuntimeError(f"raw: {n} one-way sends, {msg[2]} processed")
        return n / el
    finally:
        sock.close(0)


def bench_activations(node, n: int, window: int, rounds: int, raw_rate: float) -> dict:
    a_s = []
    for rnd in range(rounds):
        keys = [f"new-{rnd}-{i}" for i in range(n)]
        a_s.append(n / actorsys_pipelined(node.endpoint, keys, window, method="get", args=()))
    status = node.client().status(timeout=10.0)
    resident = sum(p.get("resident", 0) for p in status["processes"] if p["role"] == "worker")
    if resident < n * rounds:
        raise RuntimeError(f"activations: {resident} actors resident, expected >= {n * rounds}")
    a = max(a_s)
    return {"actorsys": {"per_s": a, "rounds_per_s": a_s, "resident_after": resident},
            "raw": {"per_s": raw_rate, "what": "raw pipelined echo rate (reference)"},
            "ratio": a / raw_rate, "n": n, "window": window,
            "target": ">= 50,000 activations/s (issue 19)", "meets_target": a >= 50_000}


def bench_supervised_restart(node, repeats: int, raw_p50_us: float) -> dict:
    """Crash a supervised child; time until the next ask returns its committed state."""
    import statistics

    client = node.client()
    ref = client.ref(TYPE, "supervised")
    expected = ref.ask("add", 7, timeout=10.0)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        try:
            ref.ask("crash", timeout=10.0)
            raise RuntimeError("the crash handler did not raise")
        except actorsys.RemoteError:
            pass
        value = ref.ask("get", timeout=10.0)   # waits in the mailbox until the restart
        samples.append((time.perf_counter() - t0) * 1e6)
        if value != expected:
            raise RuntimeError(f"the restarted child answered {value}, expected {expected}")
        time.sleep(0.01)
    starts = [c for c in client.supervisor("bench").which_children() if c["id"] == "child"]
    if not starts or starts[0]["status"] != "running":
        raise RuntimeError(f"the supervised child is not running after the restarts: {starts}")
    samples.sort()
    a_p50 = statistics.median(samples)
    return {"actorsys": {"p50_us": a_p50, "max_us": samples[-1], "n": repeats},
            "raw": {"p50_us": 2 * raw_p50_us, "what": "two sequential raw echo round trips"},
            "ratio": a_p50 / (2 * raw_p50_us)}


def bench_children(node, sizes: tuple[int, ...], raw_p50_us: float) -> dict:
    """start_child then terminate_child of N simple_one_for_one children, sequentially."""
    client = node.client()
    jobs = client.supervisor("jobs")
    out: dict = {"sizes": {}}
    for n in sizes:
        keys = [f"child-{n}-{i}" for i in range(n)]
        t0 = time.perf_counter()
        for k in keys:
            jobs.start_child({"key": k}, timeout=30.0)
        t_start = time.perf_counter() - t0
        count = jobs.count_children()
        if count["active"] != n:
            raise RuntimeError(f"children: {count['active']} active after starting {n}")
        t0 = time.perf_counter()
        for k in keys:
            jobs.terminate_child(k, timeout=30.0)
        t_stop = time.perf_counter() - t0
        if jobs.count_children()["active"] != 0:
            raise RuntimeError("children: some still active after terminate_child of all")
        out["sizes"][n] = {"start_per_s": n / t_start, "terminate_per_s": n / t_stop,
                           "start_s": t_start, "terminate_s": t_stop}
    small, big = min(sizes), max(sizes)
    t_small = out["sizes"][small]["start_s"] + out["sizes"][small]["terminate_s"]
    t_big = out["sizes"][big]["start_s"] + out["sizes"][big]["terminate_s"]
    out["linearity"] = t_big / (t_small * big / small)
    out["raw_per_s"] = 1e6 / raw_p50_us
    out["target"] = f"{big:,} within 10x of linear from {small:,}"
    out["meets_target"] = out["linearity"] <= 10
    return out


def bench_raw_recovery(res: Resources, endpoint: str, repeats: int) -> dict:
    """kill -9 the echo server, start a fresh python echo process, time to the first echo."""
    samples = []
    proc = res.spawn_echo(endpoint)
    sock = raw_socket(res.ctx, endpoint)
    try:
        raw_wait_ready(sock, time.monotonic() + 20)
        for _ in range(repeats):
            time.sleep(0.05)
            t0 = time.perf_counter()
            proc.kill()
            proc.wait(5)
            res.procs.remove(proc)
            proc = res.spawn_echo(endpoint)
            raw_wait_ready(sock, time.monotonic() + 30, resend=0.02)
            samples.append((time.perf_counter() - t0) * 1e3)
            time.sleep(0.2)
    finally:
        sock.close(0)
        res.kill(proc)
    return _recovery_summary(samples)


# ---------------------------------------------------------------------------------------
# report


def print_report(results: dict, meta: dict) -> None:
    rows = []

    def row(name, a, r, unit, ratio, target, ok, floor=None):
        f_ratio = a / floor if floor else None
        rows.append((name, fmt_num(a, unit), fmt_num(r, unit) if r is not None else "-",
                     f"{ratio:.2f}x" if ratio is not None else "-",
                     fmt_num(floor, unit) if floor is not None else "-",
                     f"{f_ratio:.2f}x" if f_ratio is not None else "-", target or "-",
                     "-" if ok is None else ("yes" if ok else "NO")))

    lat = results["ask_latency"]
    row("ask latency p50", lat["actorsys"]["p50_us"], lat["raw"]["p50_us"], "us", lat["ratio_p50"],
        "<= 1.2x raw", lat["meets_target"], lat["floor"]["p50_us"])
    row("ask latency p99", lat["actorsys"]["p99_us"], lat["raw"]["p99_us"], "us", lat["ratio_p99"],
        None, None, lat["floor"]["p99_us"])
    for name, label, target in (("pipelined_asks", "pipelined asks", ">= 0.75x raw"),
                                ("pipelined_asks_one_actor", "pipelined asks, 1 actor", ">= 0.8x raw")):
        p = results[name]
        row(f"{label} (w={p['window']})", p["actorsys"]["per_s"], p["raw"]["per_s"], "/s",
            p["ratio"], target, p["meets_target"], p["floor"]["per_s"])
    t = results["tells"]
    row(f"tells, blocking client (n={t['n']:,})", t["actorsys"]["per_s"], t["raw"]["per_s"], "/s",
        t["ratio"], None, None, t["floor"]["per_s"])
    t = results["tells_async"]
    row(f"tells, asyncio client (n={t['n']:,})", t["actorsys"]["per_s"], t["raw"]["per_s"], "/s",
        t["ratio"], ">= 1.0x raw", t["meets_target"], results["tells"]["floor"]["per_s"])
    act = results["activations"]
    row(f"activations (n={act['n']:,})", act["actorsys"]["per_s"], act["raw"]["per_s"], "/s",
        act["ratio"], ">= 50,000/s", act["meets_target"])
    rec = results["recovery"]
    row("crash recovery median", rec["actorsys"]["median_ms"], rec["raw"]["median_ms"], "ms",
        rec["ratio_median"], "< 300 ms", rec["actorsys"]["median_ms"] < 300)
    row("crash recovery p90", rec["actorsys"]["p90_ms"], rec["raw"]["p90_ms"], "ms",
        rec["actorsys"]["p90_ms"] / rec["raw"]["p90_ms"], None, None)
    row("crash recovery p99", rec["actorsys"]["p99_ms"], rec["raw"]["p99_ms"], "ms",
        rec["actorsys"]["p99_ms"] / rec["raw"]["p99_ms"], "< 50 ms", rec["actorsys"]["p99_ms"] < 50)
    row("crash recovery max", rec["actorsys"]["max_ms"], rec["raw"]["max_ms"], "ms",
        rec["actorsys"]["max_ms"] / rec["raw"]["max_ms"], "< 300 ms", rec["meets_target"])
    sr = results.get("supervised_restart")
    if sr:
        row("supervised crash+restart+ask p50", sr["actorsys"]["p50_us"], sr["raw"]["p50_us"], "us",
            sr["ratio"], None, None)
        row("supervised crash+restart+ask max", sr["actorsys"]["max_us"], None, "us", None, None, None)
    ch = results.get("children")
    if ch:
        for n, v in ch["sizes"].items():
            row(f"start_child (n={int(n):,})", v["start_per_s"], ch["raw_per_s"], "/s",
                v["start_per_s"] / ch["raw_per_s"], None, None)
            row(f"terminate_child (n={int(n):,})", v["terminate_per_s"], ch["raw_per_s"], "/s",
                v["terminate_per_s"] / ch["raw_per_s"], None, None)
        rows.append(("children: 10k vs linear from 1k", f"{ch['linearity']:.2f}x", "-", "-", "-",
                     "-", "<= 10x", "yes" if ch["meets_target"] else "NO"))

    head = ("measurement", "actorsys", "raw echo", "ratio", "durable floor", "ratio", "target", "met")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    print()
    print(f"actorsys benchmark: {meta['mode']} run, durability={meta['durability']}, "
          f"{meta['workers']} workers, {meta['cpus']} CPUs, load average {meta['loadavg_before']} "
          f"-> {meta['loadavg_after']}")
    print("raw echo = pyzmq DEALER -> ROUTER echo process over ipc, msgpack payloads of the "
          "same shape (one hop, like actorsys' client -> worker)")
    print("durable floor = that echo committing each batch it reads to LevelDB before it answers "
          f"(durability={meta['durability']}): the least a durable turn costs in Python, no runtime")
    print("throughputs are the best of "
          f"{meta['rounds']} round(s); activations are compared with the raw pipelined echo rate")
    print()
    for r in [head, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    ra = rec["actorsys"]
    print()
    print(f"recovery samples (ms): actorsys {[round(x, 1) for x in ra['samples_ms']]}, "
          f"tries {ra['attempts']}, errors seen {ra['errors_seen'] or 'none'}; "
          f"raw {[round(x, 1) for x in rec['raw']['samples_ms']]}")
    print(f"recovery: up to {ra['fill']:,} actors of {ra['fill_bytes']} bytes written before each "
          f"kill; LevelDB log at the kill (KiB) {ra['log_kib']}; the new worker's LevelDB open "
          f"(ms) {ra['open_ms']}")


# ---------------------------------------------------------------------------------------
# main


def run(args, res: Resources) -> dict:
    quick = args.quick
    p = {
        "latency_n": 500 if quick else 5000, "latency_warmup": 100 if quick else 500,
        "pipe_n": 5000 if quick else 50_000, "window": args.window, "pipe_actors": 100,
        "pipe1_n": 3000 if quick else 20_000,
        "tells_n": 5000 if quick else 50_000,
        "act_n": 2000 if quick else 10_000,
        "recovery_n": 2 if quick else 30, "recovery_fill": 200 if quick else 3600,
        "sup_n": 50 if quick else 500,
        "children": (100, 1000) if quick else (1000, 10_000),
        "rounds": 1 if quick else args.rounds,
    }
    meta = {"mode": "quick" if quick else "full", "durability": args.durability,
            "workers": args.workers, "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0], "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version(),
            "rounds": p["rounds"], "params": p,
            "tmpdir": os.path.dirname(res.tmp), "bench_dirs": [res.tmp, res.ipc_dir]}

    config = {"node": {"data_dir": os.path.join(res.tmp, "data"), "workers": args.workers,
                       "durability": args.durability, "python_path": [HERE, os.path.join(ROOT, "examples")],
                       "shutdown_timeout": 5.0, "start_timeout": 30.0, "ask_timeout": 30.0},
              "actors": {TYPE: "bench_actors:BenchCounter"},
              "supervisors": {
                  "bench": {"max_restarts": 1_000_000, "max_seconds": 1,
                            "children": [{"id": "child", "actor": TYPE, "key": "supervised"}]},
                  "jobs": {"strategy": "simple_one_for_one",
                           "children": [{"id": "job", "actor": TYPE, "restart": "temporary"}]}}}
    raw_ep = f"ipc://{res.ipc_dir}/echo.sock"
    res.spawn_echo(raw_ep)
    floor_ep = f"ipc://{res.ipc_dir}/floor.sock"
    res.spawn_echo(floor_ep, "--durable-fsync" if args.durability == "fsync" else "--durable",
                   os.path.join(res.tmp, "floor"))
    t_start = time.monotonic()
    node = res.start_node(config)
    meta["node_endpoint"] = node.endpoint
    log(f"node up in {time.monotonic() - t_start:.2f} s; measuring ({meta['mode']} run)")

    with phases(7):
        return measure(node, res, raw_ep, floor_ep, p, meta, t_start)


def measure(node, res: Resources, raw_ep: str, floor_ep: str, p: dict, meta: dict,
            t_start: float) -> dict:
    """The seven measurements of the module docstring, in order."""
    results: dict = {}
    results["ask_latency"] = bench_latency(node, res, raw_ep, floor_ep, p["latency_n"],
                                           p["latency_warmup"])
    log("ask latency done")
    results["pipelined_asks"] = bench_pipelined(node, res, raw_ep, floor_ep, p["pipe_n"], p["window"],
                                                p["pipe_actors"], p["rounds"], "pipe", 0.75)
    results["pipelined_asks_one_actor"] = bench_pipelined(node, res, raw_ep, floor_ep, p["pipe1_n"],
                                                          p["window"], 1, p["rounds"], "pipe1", 0.8)
    log("pipelined asks done")
    results["tells"] = bench_tells(node, res, raw_ep, floor_ep, p["tells_n"], p["rounds"])
    results["tells_async"] = bench_async_tells(node, p["tells_n"], p["rounds"],
                                               results["tells"]["raw"]["per_s"])
    log("tells done")
    results["activations"] = bench_activations(node, p["act_n"], p["window"], p["rounds"],
                                               results["pipelined_asks"]["raw"]["per_s"])
    log("activations done")
    a = bench_recovery(node, res, p["recovery_n"], p["recovery_fill"])
    r = bench_raw_recovery(res, f"ipc://{res.ipc_dir}/echo-restart.sock", p["recovery_n"])
    results["recovery"] = {"actorsys": a, "raw": r, "ratio_median": a["median_ms"] / r["median_ms"],
                           "target": "recovery < 300 ms (every sample)",
                           "meets_target": a["max_ms"] < 300}
    log("crash recovery done")
    results["supervised_restart"] = bench_supervised_restart(
        node, p["sup_n"], results["ask_latency"]["raw"]["p50_us"])
    log("supervised restart done")
    results["children"] = bench_children(node, p["children"], results["ask_latency"]["raw"]["p50_us"])
    log("children done")
    meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    meta["seconds"] = round(time.monotonic() - t_start, 1)
    return {"meta": meta, "results": results}


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke run in well under 30 s")
    ap.add_argument("--durability", choices=("process", "fsync"), default="process")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    ap.add_argument("--workers", type=int, default=2, help="worker processes of the node (default 2)")
    ap.add_argument("--window", type=int, default=1000, help="asks in flight when pipelining")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of each throughput measurement in a full run; the best counts")
    ap.add_argument("--tmpdir", metavar="DIR", default=None,
                    help="where the node's temporary data directory is made (default: $TMPDIR or /tmp)")
    return run_and_report(ap.parse_args(argv), run, print_report)


if __name__ == "__main__":
    sys.exit(main())
