"""The gateway benchmark's client side: the server under test (:class:`Side`: actorsys's
gateway or the raw baseline), opening and reading WebSockets with deadlines, pipelined
sends, and the summaries of what was measured (latency percentiles, best-of-rounds
rates, the gateway's batching). ``scripts/bench_gateway.py`` runs the measurements.
"""
from __future__ import annotations

import time
from typing import Any

from actorsys.testing.bench import pct

#: the actor type the benchmark talks to (``bench_gateway.GatewayBench``)
TYPE = "GwBench"
PAD = "x" * 56                      # frames are 64 characters: an index and padding


def frame(i: int) -> str:
    return f"{i:08d}{PAD}"


class Side:
    """One server under test: its base URL and, for actorsys, how to read its counters."""

    def __init__(self, name: str, url: str, node: Any = None) -> None:
        self.name, self.url, self.node = name, url, node

    def ws_url(self, key: str, mode: str | None = None) -> str:
        return f"{self.url}/ws/{TYPE}/{key}" + (f"?mode={mode}" if mode else "")


def gateway_counters(node: Any) -> dict:
    for p in node.status()["processes"]:
        if p["role"] == "gateway":
            return p
    raise RuntimeError("the node's status lists no gateway process")


def batching(before: dict, after: dict) -> dict:
    events = after["events"] - before["events"]
    batches = after["batches"] - before["batches"]
    return {"events": events, "batches": batches,
            "events_per_batch": events / batches if batches else None,
            "redeliveries": after["redeliveries"] - before["redeliveries"],
            "slow_closed": after["slow_closed"] - before["slow_closed"]}


def check(msg: Any, want: str, where: str) -> None:
    """``msg`` must be the text frame ``want``."""
    from aiohttp import WSMsgType
    if msg.type != WSMsgType.TEXT or msg.data != want:
        extra = msg.data if msg.type != WSMsgType.TEXT else repr(msg.data[:20])
        raise RuntimeError(f"{where}: expected frame {want[:8]!r}..., got {msg.type.name} {extra} "
                           f"{msg.extra or ''}".rstrip())


async def open_ws(session: Any, url: str, timeout: float = 15.0) -> Any:
    """A WebSocket whose server has attached it (its "hi" arrived)."""
    import asyncio

    import aiohttp
    # ws_close: a close interrupting a measurement reads what is still in flight, at most this long
    ws = await asyncio.wait_for(session.ws_connect(url, max_msg_size=1 << 20,
                                                   timeout=aiohttp.ClientWSTimeout(ws_close=3.0)),
                                timeout)
    check(await ws.receive(timeout=timeout), "hi", f"hello on {url}")
    return ws


async def all_of(tasks: list, timeout: float, what: str) -> list:
    """Wait for every task; their results in order. At the first error or the deadline
    the others are cancelled (and awaited), and the error raised."""
    import asyncio
    try:
        done, pending = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            t.result()
        if pending:
            raise TimeoutError(f"{what}: {len(pending)} of {len(tasks)} not done within {timeout:.0f} s")
        return [t.result() for t in tasks]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks, timeout=5.0)


async def open_many(session: Any, urls: list[str], into: list, parallel: int = 20) -> list:
    """Open a WebSocket to each URL (``parallel`` at a time), in order; each is also
    appended to ``into`` as soon as it is open, for the caller to close."""
    import asyncio
    gate = asyncio.Semaphore(parallel)
    out: list = [None] * len(urls)

    async def one(i: int, url: str) -> None:
        async with gate:
            ws = await open_ws(session, url)
            into.append(ws)
            out[i] = ws
    await all_of([asyncio.ensure_future(one(i, u)) for i, u in enumerate(urls)],
                 30.0 + len(urls) / 10, "opening sockets")
    return out


async def close_all(sockets: list) -> None:
    import asyncio
    if sockets:
        await asyncio.wait([asyncio.ensure_future(asyncio.wait_for(ws.close(), 5.0)) for ws in sockets],
                           timeout=10.0)


async def pipelined(ws: Any, start: int, n: int, readers: list | None = None,
                    deadline: float = 60.0) -> float:
    """``ws`` sends frames start..start+n-1 at once; every socket in ``readers`` (default
    ``[ws]``) must receive all of them, in order. Returns the seconds taken."""
    import asyncio
    readers = [ws] if readers is None else readers

    async def read(r: Any) -> None:
        for i in range(start, start + n):
            check(await r.receive(timeout=10.0), frame(i), "pipelined echo")

    t0 = time.perf_counter()
    tasks = [asyncio.ensure_future(read(r)) for r in readers]
    try:
        for i in range(start, start + n):
            await ws.send_str(frame(i))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks, timeout=5.0)
        raise
    await all_of(tasks, deadline, f"sockets receiving {n} frames")
    return time.perf_counter() - t0


def summary(ns: list[int]) -> dict:
    ns = sorted(ns)
    return {"p50_us": pct(ns, 0.50) / 1e3, "p99_us": pct(ns, 0.99) / 1e3,
            "mean_us": sum(ns) / len(ns) / 1e3, "n": len(ns)}


def latency_result(samples: dict[str, list[int]]) -> dict:
    a, r = summary(samples["actorsys"]), summary(samples["raw"])
    return {"actorsys": a, "raw": r, "ratio_p50": a["p50_us"] / r["p50_us"],
            "ratio_p99": a["p99_us"] / r["p99_us"]}


def rate_result(rates: dict[str, list[float]], **more: Any) -> dict:
    a, r = max(rates["actorsys"]), max(rates["raw"])
    return {"actorsys": {"per_s": a, "rounds_per_s": rates["actorsys"]},
            "raw": {"per_s": r, "rounds_per_s": rates["raw"]}, "ratio": a / r, **more}


def order(sides: list[Side], rnd: int) -> list[Side]:
    """Alternate which side goes first from round to round."""
    return sides if rnd % 2 == 0 else sides[::-1]
