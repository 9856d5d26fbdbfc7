"""The gateway with many sockets: memory per open socket, broadcast rate, and nothing lost
across a worker kill (issue 20: 10,000 concurrent WebSockets on one gateway).

Run alone on the machine (it opens ``--sockets`` descriptors in this process and as many
in the gateway; the soft RLIMIT_NOFILE is raised to fit, up to the hard limit)::

    flock /tmp/actorsys-heavy.lock .venv/bin/python scripts/bench_gateway_sockets.py \\
        --sockets 10000 --rooms 100

What it does, with one aiohttp client process and a node of 2 workers and a gateway:

1. opens ``--sockets`` WebSockets spread over ``--rooms`` ``Echo`` actors (at most 500
   handshakes in flight) and waits for every greeting: the time, and the gateway's RSS
   before and after (memory per socket);
2. broadcast: each room's actor broadcasts ``--broadcasts`` messages to its sockets, all
   rooms at once; the time until every socket has every one (deliveries/s);
3. a stream across a worker kill: every socket sends ``--messages`` numbered frames that
   its actor echoes (one per ``--pace`` seconds); when 30% of the echoes are back,
   worker slot 0 is killed with -9.
   Every socket must then get every echo exactly once and in order, none is closed, and
   each room's durable message count is exactly what its sockets sent (exactly once).

A probe, not a ratio benchmark: it prints absolute figures (BENCHMARKS.md and
RELIABILITY.md record them); ``--json`` writes them to a file. The node test
``tests/node/test_gateway_many_sockets.py`` runs it with 500 sockets.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import sys
import tempfile
import time
from typing import Any

import aiohttp
import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import actorsys  # noqa: E402
from actorsys.testing.nodes import wait_until, workers  # noqa: E402

ACTORS_DIR = os.path.join(ROOT, "tests", "actors")
CONNECTING = 500            # handshakes in flight at once
CLIENT_ADDRESSES = 8        # loopback source addresses the sockets come from (127.0.0.1-8)
DEADLINE = 300.0            # seconds for any one phase


def raise_nofile(need: int) -> int:
    """Raise the soft RLIMIT_NOFILE to at least ``need`` (up to the hard limit; the node's
    processes inherit it); returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        soft = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft < need:
        raise SystemExit(f"needs {need} file descriptors; the hard limit is {hard}")
    return soft


def node_config(data_dir: str, sockets: int) -> dict[str, Any]:
    return {"node": {"data_dir": data_dir, "workers": 2, "python_path": [ACTORS_DIR],
                     "ask_timeout": 30.0},
            "actors": {"Echo": "ws_actors:Echo"},
            "gateway": {"listen": "127.0.0.1:0", "max_connections": sockets + 100,
                        "max_connections_per_actor": sockets,
                        "max_connections_per_address": sockets + 100}}


class Sock:
    """One client socket and what arrived on it."""

    __slots__ = ("ws", "room", "greeted", "echoes", "broadcasts", "closed", "reader")

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, room: str) -> None:
        self.ws, self.room = ws, room
        self.greeted = False
        self.echoes: list[int] = []
        self.broadcasts: list[int] = []
        self.closed: str | None = None
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = msg.data             # (a str an actor sends arrives as is; the rest as JSON)
            if data[:1] == "s":
                self.echoes.append(int(data[1:]))
            elif data[:1] == "m":
                self.broadcasts.append(int(data[1:]))
            elif data.startswith('{"hello"'):
                self.greeted = True
        self.closed = f"{self.ws.close_code}"


async def until(cond: Any, what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def gateway(node: actorsys.Node) -> dict[str, Any]:
    return next(p for p in node.status()["processes"] if p["role"] == "gateway")


async def measure(node: actorsys.Node, sockets: int, rooms: int, messages: int,
                  broadcasts: int, kill: bool = True, pace: float = 0.05) -> dict[str, Any]:
    """The three phases of the module docstring against a running node; returns the
    figures. ``pace``: seconds between two frames of one socket in phase 3."""
    url, out = node.gateway_url, {"sockets": sockets, "rooms": rooms}
    me = psutil.Process()
    names = [f"room{r}" for r in range(rooms)]
    # (the sockets come from CLIENT_ADDRESSES loopback addresses, as from as many hosts:
    # the gateway gives one address at most half the descriptors it has for connections)
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(
        limit=0, local_addr=(f"127.0.0.{a + 1}", 0))) for a in range(CLIENT_ADDRESSES)]
    async with contextlib.AsyncExitStack() as stack:
        for one in sessions:
            await stack.enter_async_context(one)
        rss0, client0 = gateway(node)["rss"], me.memory_info().rss
        gate = asyncio.Semaphore(CONNECTING)

        async def open_one(i: int) -> Sock:
            async with gate:
                room = names[i % rooms]
                s = sessions[i % CLIENT_ADDRESSES]
                ws = await asyncio.wait_for(s.ws_connect(f"{url}/ws/Echo/{room}?name=u{i}",
                                                         max_msg_size=0), 60)
                return Sock(ws, room)

        t = time.perf_counter()
        socks = await asyncio.gather(*(open_one(i) for i in range(sockets)))
        await until(lambda: all(k.greeted for k in socks), "every greeting")
        out["open_s"] = time.perf_counter() - t
        await asyncio.sleep(1.0)
        rss1 = gateway(node)["rss"]
        out["gateway_rss_mb"] = [rss0 / 1e6, rss1 / 1e6]
        out["gateway_kib_per_socket"] = (rss1 - rss0) / sockets / 1024
        out["client_kib_per_socket"] = (me.memory_info().rss - client0) / sockets / 1024

        # broadcast: every room at once, each to its own sockets
        heads = socks[:rooms]           # socket i is in room i % rooms
        t = time.perf_counter()
        for k in range(broadcasts):
            for h in heads:
                await h.ws.send_str(f"all:m{k}")
        await until(lambda: all(len(k.broadcasts) >= broadcasts for k in socks), "every broadcast")
        dt = time.perf_counter() - t
        out["broadcast_s"] = dt
        out["deliveries_per_s"] = sockets * broadcasts / dt
        bad = [k.broadcasts for k in socks if k.broadcasts != list(range(broadcasts))]
        assert not bad, f"{len(bad)} sockets got broadcasts out of order or twice: {bad[:3]}"

        # a stream of echoes across kill -9 of worker slot 0
        client = node.client()
        killed: dict[str, Any] = {}

        async def killer() -> None:
            await until(lambda: sum(len(k.echoes) for k in socks) >= 0.3 * sockets * messages,
                        "30% of the echoes")
            old = workers(node)[0]["pid"]
            os.kill(old, signal.SIGKILL)
            t0 = time.perf_counter()
            killed["echoes_at_kill"] = sum(len(k.echoes) for k in socks)
            await asyncio.to_thread(wait_until, lambda: workers(node)[0]["up"] and
                                    workers(node)[0]["pid"] != old, "worker slot 0 back", 60)
            killed["restart_s"] = time.perf_counter() - t0      # (as status sees it)
            killed["echoes_when_back"] = sum(len(k.echoes) for k in socks)

        async def sender(k: Sock) -> None:
            for i in range(messages):
                await k.ws.send_str(f"s{i}")
                await asyncio.sleep(pace)

        t = time.perf_counter()
        kill_task = asyncio.get_running_loop().create_task(killer()) if kill else None
        await asyncio.gather(*(sender(k) for k in socks))
        await until(lambda: all(len(k.echoes) >= messages or k.closed for k in socks),
                    "every echo")
        out["stream_s"] = time.perf_counter() - t
        out["echoes_per_s"] = sockets * messages / out["stream_s"]
        if kill_task is not None:
            await kill_task
            out.update(killed)
        await asyncio.sleep(0.5)        # (a duplicate would arrive now)
        closed = [k.closed for k in socks if k.closed]
        assert not closed, f"{len(closed)} sockets closed during the stream: {closed[:5]}"
        wrong = [k.echoes for k in socks if k.echoes != list(range(messages))]
        assert not wrong, f"{len(wrong)} sockets got echoes missing, twice or out of order: {wrong[:3]}"
        per_room = {n: 0 for n in names}
        for k in socks:
            per_room[k.room] += messages
        counts = {n: client.ask("Echo", n, "counts")["messages"] for n in names}
        off = {n: (counts[n], per_room[n] + broadcasts) for n in names
               if counts[n] != per_room[n] + broadcasts}
        assert not off, f"rooms whose durable count is not what was sent (got, sent): {off}"
        out["echoes"] = sockets * messages
        g = gateway(node)
        out["gateway_rss_end_mb"] = g["rss"] / 1e6
        out["gateway_counters"] = {k: g.get(k) for k in ("events", "batches", "effects",
                                                         "slow_closed", "redeliveries", "duplicates",
                                                         "dropped_events", "failed_events")}
        t = time.perf_counter()
        await asyncio.gather(*(k.ws.close() for k in socks))
        out["close_s"] = time.perf_counter() - t
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sockets", type=int, default=10_000)
    p.add_argument("--rooms", type=int, default=100)
    p.add_argument("--messages", type=int, default=20,
                   help="frames each socket sends in phase 3, one per 50 ms")
    p.add_argument("--broadcasts", type=int, default=10, help="broadcasts by each room in phase 2")
    p.add_argument("--pace", type=float, default=0.05,
                   help="seconds between two frames of one socket in phase 3")
    p.add_argument("--no-kill", action="store_true", help="phase 3 without the worker kill")
    p.add_argument("--json", help="write the figures to this file")
    a = p.parse_args()
    limit = raise_nofile(a.sockets + 1000)       # (per process: this one and the gateway)
    with tempfile.TemporaryDirectory(prefix="actorsys-gwsockets-") as tmp, \
            actorsys.Node(node_config(tmp + "/data", a.sockets)) as node:
        out = asyncio.run(measure(node, a.sockets, a.rooms, a.messages, a.broadcasts,
                                  kill=not a.no_kill, pace=a.pace))
    out["nofile"] = limit
    print(json.dumps(out, indent=1))
    print(f"{a.sockets} sockets on {a.rooms} actors: opened and greeted in {out['open_s']:.1f} s; "
          f"gateway RSS {out['gateway_rss_mb'][0]:.1f} -> {out['gateway_rss_mb'][1]:.1f} MB "
          f"({out['gateway_kib_per_socket']:.1f} KiB per socket; client "
          f"{out['client_kib_per_socket']:.1f} KiB); broadcast {out['deliveries_per_s']:,.0f} "
          f"deliveries/s; {out['echoes']} echoes across a worker kill, none lost or doubled "
          f"(worker back in {out.get('restart_s', 0):.2f} s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
