"""max_resident: the LRU bound on resident actors per worker keeps worker memory bounded."""
from __future__ import annotations

import asyncio

import actorsys

from helpers import ACTORS_DIR


def resident_config(tmp_path, max_resident: int, workers: int = 1) -> dict:
    return {"node": {"data_dir": str(tmp_path / "data"), "workers": workers,
                     "python_path": [ACTORS_DIR], "shutdown_timeout": 5.0,
                     "max_resident": max_resident, "idle_timeout": 3600.0},
            "actors": {"Visitor": "resident_actors:Visitor", "Slow": "resident_actors:Slow"}}


def worker_status(node: actorsys.Node) -> list[dict]:
    return [p for p in node.client().status()["processes"] if p["role"] == "worker"]


def test_resident_actors_per_worker_never_exceed_max_resident(tmp_path):
    with actorsys.Node(resident_config(tmp_path, max_resident=50, workers=2)) as node:
        c = node.client()
        for i in range(400):
            c.ask("Visitor", f"v{i}", "visit")
        workers = worker_status(node)
        assert all(w["resident"] <= 50 for w in workers), \
            f"each worker holds at most max_resident = 50 actors, got {[w['resident'] for w in workers]}"
        assert sum(w["evictions"] for w in workers) >= 400 - 2 * 50, \
            f"at least 300 of 400 actors must have been evicted, status: {workers}"


def test_an_evicted_actor_ran_on_stop_and_comes_back_with_its_state(tmp_path):
    with actorsys.Node(resident_config(tmp_path, max_resident=10)) as node:
        c = node.client()
        first = c.ask("Visitor", "first", "visit")
        for i in range(30):
            c.ask("Visitor", f"other{i}", "visit")
        back = c.ask("Visitor", "first", "visit")
    assert first == {"pid": first["pid"], "starts": 1, "visits": 1}, first
    assert back["stops"] == 1, f"on_stop ran once when 'first' was evicted: {back}"
    assert back["starts"] == 2 and back["visits"] == 2, \
        f"'first' was activated again from its committed state: {back}"


def test_the_least_recently_used_actor_leaves_first(tmp_path):
    with actorsys.Node(resident_config(tmp_path, max_resident=20)) as node:
        c = node.client()
        for i in range(20):
            c.ask("Visitor", f"v{i}", "visit")
        # v0 is the oldest activation but used again now; v1 becomes least recently used
        c.ask("Visitor", "v0", "visit")
        c.ask("Visitor", "newcomer", "visit")     # one over the bound: evicts the LRU one
        v0 = c.ask("Visitor", "v0", "visit")
        v1 = c.ask("Visitor", "v1", "visit")
    assert v0.get("stops", 0) == 0 and v0["starts"] == 1, \
        f"v0 was used recently and must have stayed resident: {v0}"
    assert v1.get("stops") == 1 and v1["starts"] == 2, \
        f"v1 was the least recently used and must have been evicted, then reactivated: {v1}"


def test_a_new_actor_is_never_evicted_while_it_is_made_even_when_nothing_else_can_go(tmp_path):
    """Every resident actor busy: the bound is exceeded rather than the new actor dropped
    (which would leave two activations of one address)."""
    async def scenario(endpoint: str) -> list:
        async with actorsys.connect_async(endpoint) as c:
            busy = c.ask("Slow", "busy", "bump", 1.0)
            await asyncio.sleep(0.2)
            bumps = await asyncio.gather(c.ask("Slow", "x", "bump", 0.3),
                                         c.ask("Slow", "x", "bump", 0.3))
            await busy
            return bumps

    with actorsys.Node(resident_config(tmp_path, max_resident=1)) as node:
        bumps = asyncio.run(scenario(node.endpoint))
        final = node.client().ask("Slow", "x", "get")
    assert final == 2, f"expected both bumps of x applied one after the other, got n = {final}: {bumps}"
    assert bumps[0]["instance"] == bumps[1]["instance"], \
        f"expected one activation of x to run both turns: {bumps}"
