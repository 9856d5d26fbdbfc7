"""The gateway with many sockets: its memory per open socket, and one actor broadcasting
to 1,000 sockets. Run: ``.venv/bin/python scripts/bench_gateway_sockets.py`` (a probe,
not a ratio benchmark: it prints absolute figures; see BENCHMARKS.md).
"""
import asyncio
import os
import tempfile
import time

import aiohttp

import actorsys

ACTORS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "actors")
tmp = tempfile.TemporaryDirectory(prefix="actorsys-gwsockets-")
cfg = {"node": {"data_dir": tmp.name + "/data", "workers": 2, "python_path": [ACTORS_DIR]},
       "actors": {"Echo": "ws_actors:Echo"},
       "gateway": {"listen": "127.0.0.1:0", "max_connections_per_actor": 2000}}

def gw(node):
    return next(p for p in node.status()["processes"] if p["role"] == "gateway")

with actorsys.Node(cfg) as node:
    url = node.gateway_url
    async def go():
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn) as s:
            rss0 = gw(node)["rss"]
            socks = []
            t = time.perf_counter()
            for r in range(200):
                for i in range(10):
                    ws = await s.ws_connect(f"{url}/ws/Echo/room{r}?name=u{i}")
                    socks.append(ws)
            for ws in socks:
                await ws.receive()
            t_open = time.perf_counter() - t
            await asyncio.sleep(0.5)
            rss1 = gw(node)["rss"]
            print(f"2000 sockets on 200 actors: opened+greeted in {t_open:.2f}s; "
                  f"gateway RSS {rss0/1e6:.1f} -> {rss1/1e6:.1f} MB "
                  f"({(rss1-rss0)/2000/1024:.1f} KiB per socket)")
            for ws in socks:
                await ws.close()
            big = [await s.ws_connect(f"{url}/ws/Echo/big?name=u{i}") for i in range(1000)]
            for ws in big:
                await ws.receive()
            await asyncio.sleep(0.5)
            for ws in big:       # drain 'left' etc
                while True:
                    try:
                        await ws.receive(timeout=0.01)
                    except asyncio.TimeoutError:
                        break
            t = time.perf_counter()
            n = 20
            for k in range(n):
                await big[0].send_str(f"all:m{k}")
            async def drain(ws):
                got = 0
                while got < n:
                    m = await ws.receive(timeout=30)
                    if m.data.startswith("m"):
                        got += 1
            await asyncio.gather(*(drain(ws) for ws in big))
            dt = time.perf_counter() - t
            print(f"broadcast to 1000 sockets: {n} messages -> {n*1000} deliveries in {dt:.2f}s "
                  f"= {n*1000/dt:,.0f} deliveries/s")
            for ws in big:
                await ws.close()
    asyncio.run(asyncio.wait_for(go(), 300))
    print({k: v for k, v in gw(node).items() if k in ("events", "batches", "effects", "slow_closed")})
tmp.cleanup()
