"""scripts/bench_gateway_sockets.py at a test's size: 500 WebSockets on 10 actors of one
gateway, a broadcast from every actor, and a stream of echoes from every socket across
kill -9 of a worker: every echo arrives once and in order, no socket is closed, and each
actor's durable message count is exactly what was sent. (The script's own run, 10,000
sockets, is in BENCHMARKS.md and RELIABILITY.md; speed is not asserted here.)"""
from __future__ import annotations

import asyncio
import importlib.util
import os

import pytest

import actorsys
from helpers import SCRIPTS_DIR


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_gateway_sockets", os.path.join(SCRIPTS_DIR, "bench_gateway_sockets.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.timeout(120)
def test_500_sockets_broadcast_and_lose_nothing_across_a_worker_kill(tmp_path):
    bench = _bench()
    bench.raise_nofile(500 + 1000)
    with actorsys.Node(bench.node_config(str(tmp_path / "data"), 500)) as node:
        # (frames sent without pause: the worker is busy, so the kill finds batches in flight)
        out = asyncio.run(bench.measure(node, sockets=500, rooms=10, messages=8, broadcasts=3,
                                        pace=0.0))
        print(out)
    assert out["echoes"] == 4000 and out["deliveries_per_s"] > 0
    assert 0 < out["echoes_at_kill"] < 4000, out
    assert out["gateway_counters"]["dropped_events"] == 0, out
