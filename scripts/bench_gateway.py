"""actorsys gateway benchmark: HTTP and WebSockets through the gateway beside a raw
aiohttp + pyzmq baseline over the same hops, in one run.

The two paths, each with a TCP hop (HTTP/WebSocket) and a ZeroMQ ipc hop each way::

    actorsys  aiohttp client -> gateway process -> worker (a turn of the actor, its commit)
                             -> gateway process -> client
    baseline  aiohttp client -> raw gateway process -> raw echo process
                             -> raw gateway process -> client

The raw gateway is ``scripts/bench_gateway_raw.py`` run as a process: a
minimal aiohttp server with one DEALER to the raw echo server of the other benchmarks
(``actorsys/testing/rawecho.py``). It forwards every WebSocket frame as it comes (pipelined, no
batching) as an ask ``[1, id, type, key, "add", [1], {"data": frame}]``; the echo counts
it per key and answers ``[10, id, count]``, and the raw gateway sends the frame back to
its socket (or to every socket of its room). The frame travels to the echo process; the
answer carries only the count, the raw gateway keeping the frame until then. An HTTP
body (a JSON array) goes as the ask's ``args`` and the count comes back as the JSON
result. The actor counts every frame (and HTTP ``add``) in ``self.state`` the same way,
so every batch of socket events is a turn that commits.

Measurements (every client in this process: aiohttp's client, asyncio):

1. ws round trip    one socket, sequential send / await the echo (p50 / p99), actorsys and
                    raw interleaved in chunks of 100 so both see the same background load
2. ws pipelined     one socket sends N frames at once and awaits the N echoes: frames/s
3. broadcast        K sockets in one room; one sends M frames (pipelined), every socket
                    receives all M: deliveries/s (M * K / time)
4. http latency     POST /actors/{type}/{key}/add, one keep-alive connection, sequential
                    (p50 / p99), interleaved in chunks like 1.
5. many rooms       R rooms with 2 sockets each; every socket sends F frames pipelined and
                    awaits its F echoes: total frames/s

Ratios are actorsys / raw (latency: above 1 is slower; throughput: below 1 is slower).
Throughputs are the best of ``--rounds`` rounds, actorsys and raw alternating. For the
WebSocket measurements the report also gives the gateway's mean batch size (socket
events per delivered batch, i.e. per turn, from the gateway's counters in node.status()).

Everything the benchmark starts (node, echo server, raw gateway, temp dirs, sockets) is
removed at the end, also on Ctrl-C, SIGTERM or an error; every wait has a deadline.

Usage: ``scripts/bench --gateway [--quick] [--json FILE] [--workers N] [--rounds N]``
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

import zmq

import actorsys
from actorsys.testing.bench import Resources, fmt_num, log, run_and_report
from bench_gateway_clients import (TYPE, Side, all_of, batching, check, close_all, frame,
                                   gateway_counters, latency_result, open_many, order,
                                   pipelined, rate_result)
from bench_gateway_raw import spawn_raw_gateway

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------------------------------
# the actor measured (the node imports it as bench_gateway:GatewayBench)


class GatewayBench(actorsys.Actor):
    """Echoes every frame to its socket, or with ``?mode=all`` broadcasts it to every
    socket of the actor; counts every frame in its state, so each turn commits."""

    def on_connect(self, conn: Any) -> None:
        conn.send("hi")              # the client waits for it: the socket is attached

    def on_message(self, conn: Any, data: Any) -> None:
        self.state["n"] = self.state.get("n", 0) + 1
        if conn.query.get("mode") == "all":
            self.broadcast(data)
        else:
            conn.send(data)

    def add(self, n: int = 1) -> int:
        """The HTTP method measured (as the raw echo's ``add``): count, return the total."""
        self.state["n"] = self.state.get("n", 0) + n
        return self.state["n"]


# ---------------------------------------------------------------------------------------
# measurements


async def bench_ws_rtt(session: Any, sides: list[Side], n: int, warmup: int, chunk: int = 100) -> dict:
    opened: list = []
    perf = time.perf_counter_ns
    samples: dict[str, list[int]] = {s.name: [] for s in sides}

    async def one(ws: Any, i: int) -> int:
        data = frame(i)
        t = perf()
        await ws.send_str(data)
        msg = await ws.receive(timeout=10.0)
        el = perf() - t
        check(msg, data, "round trip")
        return el

    try:
        socks = {s.name: (await open_many(session, [s.ws_url("rtt")], opened))[0] for s in sides}
        before = gateway_counters(sides[0].node)
        for i in range(warmup):
            for s in sides:
                await one(socks[s.name], i)
        i = warmup
        while len(samples["actorsys"]) < n:
            m = min(chunk, n - len(samples["actorsys"]))
            for s in sides:
                ws, out = socks[s.name], samples[s.name]
                for j in range(m):
                    out.append(await one(ws, i + j))
            i += m
        after = gateway_counters(sides[0].node)
    finally:
        await close_all(opened)
    return latency_result(samples) | {"batching": batching(before, after), "frame_bytes": len(frame(0))}


async def bench_ws_pipelined(session: Any, sides: list[Side], n: int, rounds: int) -> dict:
    opened: list = []
    rates: dict[str, list[float]] = {s.name: [] for s in sides}
    try:
        socks = {s.name: (await open_many(session, [s.ws_url("pipe")], opened))[0] for s in sides}
        before = gateway_counters(sides[0].node)
        for rnd in range(rounds):
            for s in order(sides, rnd):
                t = await pipelined(socks[s.name], rnd * n, n, deadline=30.0 + n / 500)
                rates[s.name].append(n / t)
        after = gateway_counters(sides[0].node)
    finally:
        await close_all(opened)
    # both counted every frame (the actor in its state, the echo process per key)
    counts = {}
    for s in sides:
        async with session.post(f"{s.url}/actors/{TYPE}/pipe/add", json=[0]) as r:
            counts[s.name] = await r.json()
    if set(counts.values()) != {n * rounds}:
        raise RuntimeError(f"pipelined: frames counted {counts}, expected {n * rounds} each")
    return rate_result(rates, n=n, batching=batching(before, after))


async def bench_broadcast(session: Any, sides: list[Side], k: int, m: int, rounds: int) -> dict:
    opened: list = []
    rates: dict[str, list[float]] = {s.name: [] for s in sides}
    try:
        socks = {s.name: await open_many(session, [s.ws_url("bcast", "all")] * k, opened) for s in sides}
        before = gateway_counters(sides[0].node)
        for rnd in range(rounds):
            for s in order(sides, rnd):
                group = socks[s.name]
                t = await pipelined(group[0], rnd * m, m, readers=group, deadline=30.0 + m * k / 2000)
                rates[s.name].append(m * k / t)
        after = gateway_counters(sides[0].node)
    finally:
        await close_all(opened)
    return rate_result(rates, sockets=k, frames=m, batching=batching(before, after))


async def bench_http(sides: list[Side], n: int, warmup: int, chunk: int = 100) -> dict:
    import aiohttp
    perf = time.perf_counter_ns
    samples: dict[str, list[int]] = {s.name: [] for s in sides}
    last = {s.name: 0 for s in sides}
    timeout = aiohttp.ClientTimeout(total=10.0)
    headers = {"Content-Type": "application/json"}
    sessions = {s.name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), timeout=timeout)
                for s in sides}

    async def one(s: Side) -> int:
        t = perf()
        async with sessions[s.name].post(f"{s.url}/actors/{TYPE}/http/add", data=b"[1]",
                                         headers=headers) as r:
            body = await r.read()
        el = perf() - t
        if r.status != 200 or json.loads(body) != last[s.name] + 1:
            raise RuntimeError(f"http {s.name}: {r.status} {body[:200]!r}, expected {last[s.name] + 1}")
        last[s.name] += 1
        return el

    try:
        for _ in range(warmup):
            for s in sides:
                await one(s)
        while len(samples["actorsys"]) < n:
            m = min(chunk, n - len(samples["actorsys"]))
            for s in sides:
                out = samples[s.name]
                for _ in range(m):
                    out.append(await one(s))
    finally:
        for sess in sessions.values():
            await sess.close()
    return latency_result(samples) | {"body": "[1]"}


async def bench_rooms(session: Any, sides: list[Side], rooms: int, f: int, rounds: int) -> dict:
    import asyncio
    opened: list = []
    rates: dict[str, list[float]] = {s.name: [] for s in sides}
    total = 2 * rooms * f
    deadline = 30.0 + total / 500
    try:
        socks = {s.name: await open_many(session, [s.ws_url(f"room-{i // 2}") for i in range(2 * rooms)],
                                         opened) for s in sides}
        before = gateway_counters(sides[0].node)
        for rnd in range(rounds):
            for s in order(sides, rnd):
                t0 = time.perf_counter()
                await all_of([asyncio.ensure_future(pipelined(ws, rnd * f, f, deadline=deadline))
                              for ws in socks[s.name]], deadline + 5, "many rooms")
                rates[s.name].append(total / (time.perf_counter() - t0))
        after = gateway_counters(sides[0].node)
    finally:
        await close_all(opened)
    return rate_result(rates, rooms=rooms, sockets=2 * rooms, frames_per_socket=f,
                       batching=batching(before, after))


async def measure(sides: list[Side], p: dict) -> dict:
    import asyncio

    import aiohttp
    results: dict = {}
    timeout = aiohttp.ClientTimeout(total=None, connect=10.0)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        steps = [
            ("ws_rtt", lambda: bench_ws_rtt(session, sides, p["rtt_n"], p["rtt_warmup"])),
            ("ws_pipelined", lambda: bench_ws_pipelined(session, sides, p["pipe_n"], p["rounds"])),
            ("broadcast", lambda: bench_broadcast(session, sides, p["bcast_k"], p["bcast_m"], p["rounds"])),
            ("http_latency", lambda: bench_http(sides, p["http_n"], p["http_warmup"])),
            ("many_rooms", lambda: bench_rooms(session, sides, p["rooms"], p["room_frames"], p["rounds"])),
        ]
        for name, step in steps:
            t0 = time.monotonic()
            results[name] = await asyncio.wait_for(step(), p["step_deadline"])
            log(f"{name.replace('_', ' ')} done ({time.monotonic() - t0:.1f} s)")
    return results


async def interruptible(coro: Any) -> Any:
    """Run ``coro``; SIGTERM or SIGHUP cancel it (as asyncio does for Ctrl-C), so its
    ``finally`` blocks close the sockets, then raise KeyboardInterrupt."""
    import asyncio
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    got: list[int] = []
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}

    def stop(signum: int) -> None:
        got.append(signum)
        task.cancel()

    for s in saved:
        loop.add_signal_handler(s, stop, s)
    try:
        return await coro
    except asyncio.CancelledError:
        if got:
            raise KeyboardInterrupt(f"signal {got[0]}") from None
        raise
    finally:
        for s, handler in saved.items():
            loop.remove_signal_handler(s)
            signal.signal(s, handler)


# ---------------------------------------------------------------------------------------
# report


def print_report(results: dict, meta: dict) -> None:
    rows = []

    def row(name: str, a: float, r: float, unit: str, ratio: float, batch: dict | None) -> None:
        per = batch and batch["events_per_batch"]
        rows.append((name, fmt_num(a, unit), fmt_num(r, unit), f"{ratio:.2f}x",
                     f"{per:.1f}" if per else "-"))

    for key, label, _note in (("ws_rtt", "ws round trip", None), ("http_latency", "http POST", None)):
        v = results[key]
        b = v.get("batching")
        row(f"{label} p50", v["actorsys"]["p50_us"], v["raw"]["p50_us"], "us", v["ratio_p50"], b)
        row(f"{label} p99", v["actorsys"]["p99_us"], v["raw"]["p99_us"], "us", v["ratio_p99"], None)
    v = results["ws_pipelined"]
    row(f"ws pipelined (n={v['n']:,}) frames", v["actorsys"]["per_s"], v["raw"]["per_s"], "/s",
        v["ratio"], v["batching"])
    v = results["broadcast"]
    row(f"broadcast (k={v['sockets']}, m={v['frames']:,}) deliveries", v["actorsys"]["per_s"],
        v["raw"]["per_s"], "/s", v["ratio"], v["batching"])
    v = results["many_rooms"]
    row(f"many rooms (r={v['rooms']}x2, f={v['frames_per_socket']}) frames", v["actorsys"]["per_s"],
        v["raw"]["per_s"], "/s", v["ratio"], v["batching"])

    head = ("measurement", "actorsys", "raw baseline", "ratio", "events/batch")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    print()
    print(f"actorsys gateway benchmark: {meta['mode']} run, {meta['workers']} workers, "
          f"{meta['cpus']} CPUs, load average {meta['loadavg_before']} -> {meta['loadavg_after']}")
    print("raw baseline = aiohttp server -> pyzmq DEALER -> raw echo process (ROUTER) -> back, the "
          "same hops as client -> gateway -> worker -> gateway -> client")
    print(f"throughputs are the best of {meta['rounds']} round(s); latencies interleave both in "
          f"chunks of 100; frames are {results['ws_rtt']['frame_bytes']}-byte text")
    print()
    for r in [head, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    print()
    parts = []
    for key in ("ws_rtt", "ws_pipelined", "broadcast", "many_rooms"):
        b = results[key]["batching"]
        parts.append(f"{key} {b['events']:,} events / {b['batches']:,} batches")
    print("gateway counters: " + "; ".join(parts))
    odd = {k: {n: results[k]["batching"][n] for n in ("redeliveries", "slow_closed")
               if results[k]["batching"][n]} for k in ("ws_rtt", "ws_pipelined", "broadcast", "many_rooms")}
    odd = {k: v for k, v in odd.items() if v}
    if odd:
        print(f"gateway anomalies: {odd}")


# ---------------------------------------------------------------------------------------
# main


def run(args: Any, res: Resources) -> dict:
    import asyncio

    import aiohttp
    quick = args.quick
    p = {"rtt_n": 300 if quick else 3000, "rtt_warmup": 50 if quick else 300,
         "pipe_n": 2000 if quick else 10_000,
         "bcast_k": 50, "bcast_m": 300 if quick else 2000,
         "http_n": 300 if quick else 3000, "http_warmup": 50 if quick else 300,
         "rooms": 200, "room_frames": 10 if quick else 100,
         "rounds": 1 if quick else args.rounds,
         "step_deadline": 40.0 if quick else 300.0}
    meta = {"mode": "quick" if quick else "full", "workers": args.workers, "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0], "pyzmq": zmq.__version__, "aiohttp": aiohttp.__version__,
            "rounds": p["rounds"], "params": p, "bench_dirs": [res.tmp, res.ipc_dir]}
    config = {"node": {"data_dir": os.path.join(res.tmp, "data"), "workers": args.workers,
                       "python_path": [HERE], "shutdown_timeout": 5.0, "start_timeout": 30.0,
                       "ask_timeout": 30.0},
              "actors": {TYPE: "bench_gateway:GatewayBench"},
              # (every bench client is one address: the per-address cap, a defence against
              # one host's flood, would cap the bench instead; the total cap stays)
              "gateway": {"listen": "127.0.0.1:0", "max_connections_per_address": 10_000}}
    raw_ep = f"ipc://{res.ipc_dir}/echo.sock"
    res.spawn_echo(raw_ep)
    t_start = time.monotonic()
    raw_port = spawn_raw_gateway(res, raw_ep)
    node = res.start_node(config)
    sides = [Side("actorsys", node.gateway_url, node), Side("raw", f"http://127.0.0.1:{raw_port}")]
    meta["urls"] = {s.name: s.url for s in sides}
    log(f"node and raw gateway up in {time.monotonic() - t_start:.2f} s; measuring ({meta['mode']} run)")
    results = asyncio.run(interruptible(measure(sides, p)))
    meta["gateway"] = {k: v for k, v in gateway_counters(node).items() if isinstance(v, int)}
    meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    meta["seconds"] = round(time.monotonic() - t_start, 1)
    return {"meta": meta, "results": results}


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="scripts/bench --gateway", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke run in well under a minute")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    ap.add_argument("--workers", type=int, default=2, help="worker processes of the node (default 2)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of each throughput measurement in a full run; the best counts")
    ap.add_argument("--tmpdir", metavar="DIR", default=None,
                    help="where the node's temporary data directory is made (default: $TMPDIR or /tmp)")
    return run_and_report(ap.parse_args(argv), run, print_report,
                                "node/echo/raw gateway")


if __name__ == "__main__":
    sys.exit(main())
