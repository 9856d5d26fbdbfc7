"""The gateway benchmark's baseline: a minimal aiohttp server forwarding every WebSocket
frame and HTTP body to the raw echo process (``actorsys/testing/rawecho.py``) over one
ZeroMQ DEALER, and sending the answers back: the same hops as the actorsys gateway, with
no runtime. ``scripts/bench_gateway.py`` starts it as a process (:func:`spawn_raw_gateway`:
this file run as ``bench_gateway_raw.py PORT ENDPOINT``); see that file's docstring for
what travels where.
"""
from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import time
from collections import deque
from typing import Any

import zmq

from actorsys.testing.bench import Resources
from actorsys.testing.rawecho import ASK, die_with_parent, packb, raw_socket, raw_wait_ready, unpackb
from bench_gateway_clients import TYPE


class RawSocket:
    """A client's WebSocket in the raw gateway, with its queue of frames to write."""

    __slots__ = ("ws", "unsent", "writer")

    def __init__(self, ws: Any) -> None:
        self.ws, self.unsent, self.writer = ws, deque(), None


class RawGateway:
    """WebSocket frames and HTTP bodies -> asks to the echo server -> replies back."""

    def __init__(self, endpoint: str) -> None:
        import asyncio
        self.loop = asyncio.get_running_loop()
        self.ctx = zmq.Context()
        self.sock = raw_socket(self.ctx, endpoint)
        raw_wait_ready(self.sock, time.monotonic() + 20)
        self.ids = itertools.count(1)
        self.pending: dict[int, tuple] = {}       # request id -> (kind, target, data)
        self.rooms: dict[str, dict[int, RawSocket]] = {}
        self.scheduled = False
        self.loop.add_reader(self.sock.FD, self.drain)

    # zmq: one DEALER, its edge-triggered FD drained from the event loop
    def ask(self, key: str, args: list, kwargs: dict, then: tuple) -> None:
        rid = next(self.ids)
        self.pending[rid] = then
        self.sock.send(packb([ASK, rid, TYPE, key, "add", args, kwargs]), zmq.NOBLOCK)
        self.kick()

    def kick(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.drain)

    def drain(self) -> None:
        self.scheduled = False
        events, recv, n = self.sock.getsockopt, self.sock.recv, 0
        while n < 512 and events(zmq.EVENTS) & zmq.POLLIN:
            msg = unpackb(recv(zmq.NOBLOCK))
            n += 1
            then = self.pending.pop(msg[1], None)
            if then is None:
                continue
            kind, target, data = then
            if kind == "s":                          # echo to the sender
                self.push(target, data)
            elif kind == "b":                        # to every socket of the room
                for s in list(target.values()):
                    self.push(s, data)
            elif not target.done():                  # an HTTP request's future
                target.set_result(msg[2])
        if n >= 512:
            self.kick()

    # WebSocket writes: a queue and a writer task per socket (as the gateway does)
    def push(self, s: RawSocket, data: "str | bytes") -> None:
        s.unsent.append(data)
        if s.writer is None:
            s.writer = self.loop.create_task(self.write(s))

    async def write(self, s: RawSocket) -> None:
        try:
            while s.unsent and not s.ws.closed:
                data = s.unsent.popleft()
                if isinstance(data, str):
                    await s.ws.send_str(data)
                else:
                    await s.ws.send_bytes(data)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            s.writer = None

    # aiohttp handlers
    async def http(self, request: Any) -> Any:
        import asyncio

        from aiohttp import web
        body = await request.read()
        value = json.loads(body) if body.strip() else []
        args, kwargs = (value, {}) if isinstance(value, list) else ([], value)
        fut = self.loop.create_future()
        self.ask(request.match_info["key"], args, kwargs, ("f", fut, None))
        result = await asyncio.wait_for(fut, 30.0)
        return web.Response(text=json.dumps(result), content_type="application/json")

    async def websocket(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web
        key = request.match_info["key"]
        ws = web.WebSocketResponse(max_msg_size=64 * 1024, heartbeat=30.0)
        await ws.prepare(request)
        s = RawSocket(ws)
        room = self.rooms.setdefault(key, {})
        room[id(s)] = s
        self.push(s, "hi")
        kind, target = ("b", room) if request.query.get("mode") == "all" else ("s", s)
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self.ask(key, [1], {"data": msg.data}, (kind, target, msg.data))
        finally:
            room.pop(id(s), None)
            if not room:
                self.rooms.pop(key, None)
            if s.writer is not None:
                s.writer.cancel()
        return ws

    def close(self) -> None:
        self.loop.remove_reader(self.sock.FD)
        self.sock.close(0)
        self.ctx.term()


async def _raw_gateway(port: int, endpoint: str, parent: int) -> None:
    import asyncio

    from aiohttp import web
    gw = RawGateway(endpoint)
    app = web.Application(client_max_size=64 * 1024)
    app.router.add_post("/actors/{type}/{key}/{method}", gw.http)
    app.router.add_get("/ws/{type}/{key}", gw.websocket)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
    await site.start()
    print(f"listening {runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    try:
        while not stop.is_set() and os.getppid() == parent:
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
    finally:
        await runner.cleanup()
        gw.close()


def raw_gateway(port: int, endpoint: str) -> None:
    """The baseline server process; prints ``listening PORT`` once it serves."""
    import asyncio
    die_with_parent()
    asyncio.run(_raw_gateway(port, endpoint, os.getppid()))


def spawn_raw_gateway(res: Resources, endpoint: str, timeout: float = 30.0) -> int:
    """Start the raw gateway process (killed by ``res.close()``); returns its port."""
    import select
    import subprocess
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "0", endpoint],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=res.log)
    res.procs.append(p)
    deadline = time.monotonic() + timeout
    buf = b""
    try:
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the raw gateway did not start within {timeout:.0f} s")
            if select.select([p.stdout], [], [], remaining)[0]:
                chunk = os.read(p.stdout.fileno(), 256)
                if not chunk:
                    raise RuntimeError(f"the raw gateway exited (code {p.wait(5)})")
                buf += chunk
    finally:
        p.stdout.close()
    return int(buf.split()[1])


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: bench_gateway_raw.py PORT ENDPOINT (started by scripts/bench_gateway.py)")
    raw_gateway(int(sys.argv[1]), sys.argv[2])
