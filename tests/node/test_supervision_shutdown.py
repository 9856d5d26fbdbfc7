"""Shutdown of supervised children against real nodes (OTP supervisor_SUITE's shutdown
cases): the three shutdown modes, a child that hangs past its timeout, start and stop
order (also of a nested supervisor and across a node stop), simple_one_for_one children
stopped with their supervisor, the tree process killed with kill -9, and the scaling of
start_child/terminate_child.

Journal lines are told after the noting turn commits; tells from one worker to the
Journal arrive in order, so "restart the child and wait for its next 'start' line" is a
barrier: every line that child wrote before is in the Journal by then.
"""
from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest

import actorsys
from actorsys.testing.nodes import supervised_config, wait_until

SUP_ACTORS = {
    "Journal": "sup_actors:Journal",
    "Worker": "sup_actors:Worker",
    "SlowStop": "sup_actors:SlowStop",
    "StopWriter": "process_actors:StopWriter",
    "HangStop": "process_actors:HangStop",
    "Job": "process_actors:Job",
}


def sup_config(config, supervisors: dict[str, Any], **node: Any) -> dict[str, Any]:
    return supervised_config(config, SUP_ACTORS, supervisors, **node)


def journal(c: actorsys.Client) -> list[str]:
    return c.ask("Journal", "main", "lines", timeout=10)


def wait_lines(c: actorsys.Client, line: str, count: int = 1, timeout: float = 10.0) -> list[str]:
    """Wait until the Journal holds ``line`` at least ``count`` times; returns the lines."""
    return wait_until(lambda: (lines := journal(c)).count(line) >= count and lines,
                      f"{count} x {line!r} in the Journal", timeout)


def status_of(sup: actorsys.SupervisorRef, cid: str) -> str:
    return next(ch["status"] for ch in sup.which_children() if ch["id"] == cid)


def tree_process(node: actorsys.Node) -> dict[str, Any] | None:
    return next((p for p in node.status()["processes"] if p["role"] == "tree"), None)


# ---------------------------------------------------------------------------------------
# the three shutdown modes (terminate_child)


def test_timed_shutdown_runs_on_stop_and_commits_its_writes(config):
    sups = {"root": {"children": [{"id": "w", "actor": "StopWriter", "key": "w1", "shutdown": 2000}]}}
    with actorsys.Node(sup_config(config, sups)) as node:
        c = node.client()
        root = c.supervisor("root")
        wait_lines(c, "start w1")
        assert c.ask("StopWriter", "w1", "stops") == 0, "on_stop has not run yet"
        root.terminate_child("w", timeout=15)
        assert status_of(root, "w") == "stopped", root.which_children()
        with pytest.raises(actorsys.ActorStopped):
            c.ask("StopWriter", "w1", "stops", timeout=5)
        root.restart_child("w", timeout=15)
        lines = wait_lines(c, "start w1", 2)
        assert lines == ["start w1", "stop w1", "start w1"], \
            f"expected on_stop to run between the two starts with shutdown = 2000, got {lines}"
        assert c.ask("StopWriter", "w1", "stops") == 1, \
            "the state write made in on_stop should have been committed"


def test_brutal_kill_does_not_run_on_stop(config):
    sups = {"root": {"children": [{"id": "w", "actor": "StopWriter", "key": "w1",
                                   "shutdown": "brutal_kill"}]}}
    with actorsys.Node(sup_config(config, sups)) as node:
        c = node.client()
        root = c.supervisor("root")
        wait_lines(c, "start w1")
        root.terminate_child("w", timeout=15)
        assert status_of(root, "w") == "stopped", root.which_children()
        root.restart_child("w", timeout=15)
        lines = wait_lines(c, "start w1", 2)    # barrier: anything on_stop told is in by now
        assert "stop w1" not in lines, f"brutal_kill must not run on_stop, Journal: {lines}"
        assert c.ask("StopWriter", "w1", "stops") == 0, "on_stop's write must not exist"
        assert c.ask("StopWriter", "w1", "info")["starts"] == 2


def test_infinity_shutdown_waits_for_a_slow_on_stop_to_finish(config):
    sups = {"root": {"children": [{"id": "s", "actor": "SlowStop", "key": "s1",
                                   "shutdown": "infinity"}]}}
    with actorsys.Node(sup_config(config, sups)) as node:
        c = node.client()
        root = c.supervisor("root")
        c.ask("SlowStop", "s1", "set_stop_delay", 1.0)
        t0 = time.monotonic()
        root.terminate_child("s", timeout=30)
        took = time.monotonic() - t0
        assert took >= 0.9, f"terminate_child returned after {took:.2f} s, before on_stop's 1 s sleep"
        assert status_of(root, "s") == "stopped", root.which_children()
        root.restart_child("s", timeout=15)
        lines = wait_lines(c, "start s1", 2)
        assert lines == ["start s1", "stopping s1", "stop s1", "start s1"], \
            f"expected the slow on_stop to complete under shutdown = infinity, got {lines}"


def test_child_hanging_past_its_shutdown_is_killed_and_on_stop_never_finishes(config, tmp_path):
    sups = {"root": {"children": [{"id": "h", "actor": "HangStop", "key": "h1", "shutdown": 300}]}}
    with actorsys.Node(sup_config(config, sups)) as node:
        c = node.client()
        root = c.supervisor("root")
        stop_delay = 3.0
        c.ask("HangStop", "h1", "set_stop", stop_delay, str(tmp_path))
        t0 = time.monotonic()
        # a deadline well below on_stop's 3 s: AskTimeout here means it waited for on_stop
        root.terminate_child("h", timeout=2.5)
        assert status_of(root, "h") == "stopped", root.which_children()
        assert (tmp_path / "h1.stopping").exists(), "on_stop should have begun before the kill"
        with pytest.raises(actorsys.ActorStopped):
            c.ask("HangStop", "h1", "info", timeout=5)
        root.restart_child("h", timeout=15)
        wait_lines(c, "start h1", 2)
        # past the moment the killed on_stop would have finished had it not been cancelled
        time.sleep(max(0.0, t0 + stop_delay + 0.5 - time.monotonic()))
        assert not (tmp_path / "h1.stopped").exists(), "the killed on_stop must never finish"
        lines = journal(c)
        # the killed on_stop's turn is discarded, tells included: not even "stopping" is told
        assert lines == ["start h1", "start h1"], \
            f"expected no line from the on_stop killed after 300 ms, got {lines}"
        assert c.ask("HangStop", "h1", "info")["starts"] == 2, "the restarted child runs"


# ---------------------------------------------------------------------------------------
# start and stop order


ORDER_SUPS = {
    "root": {"strategy": "one_for_one", "children": [
        {"id": "a", "actor": "Worker", "key": "a", "shutdown": 2000},
        {"id": "b", "actor": "Worker", "key": "b", "shutdown": 2000},
        {"id": "inner", "supervisor": "inner"},
        {"id": "c", "actor": "Worker", "key": "c", "shutdown": 2000},
    ]},
    "inner": {"strategy": "one_for_one", "children": [
        {"id": "x", "actor": "Worker", "key": "x", "shutdown": 2000},
        {"id": "y", "actor": "Worker", "key": "y", "shutdown": 2000},
    ]},
}
STARTS = ["start a", "start b", "start x", "start y", "start c"]
STOPS = ["stop c", "stop y", "stop x", "stop b", "stop a"]


def test_children_start_in_declared_order_and_stop_in_reverse_at_node_stop(config):
    cfg = sup_config(config, ORDER_SUPS)
    with actorsys.Node(cfg) as node:
        c = node.client()
        lines = wait_until(lambda: len(ls := journal(c)) >= 5 and ls, "5 starts in the Journal")
        assert lines == STARTS, f"expected declared order (nested supervisor in place), got {lines}"
    # the Journal is persisted state: read what the first node's stop wrote from a second node
    with actorsys.Node(cfg) as node:
        c = node.client()
        lines = wait_until(lambda: len(ls := journal(c)) >= 15 and ls,
                           "the first run's 10 lines and the second run's 5 starts")
    assert lines[:10] == STARTS + STOPS, \
        f"expected the node stop to stop children in reverse order (nested too), got {lines[:10]}"
    assert lines[10:] == STARTS, f"expected the second node to start them in order again: {lines}"


def test_nested_supervisor_stops_its_children_in_reverse_and_restarts_them_in_order(config):
    with actorsys.Node(sup_config(config, ORDER_SUPS)) as node:
        c = node.client()
        root = c.supervisor("root")
        wait_until(lambda: len(journal(c)) >= 5, "5 starts in the Journal")
        c.ask("Journal", "main", "clear")
        root.terminate_child("inner", timeout=15)
        assert status_of(root, "inner") == "stopped", root.which_children()
        assert [ch["status"] for ch in c.supervisor("inner").which_children()] == ["stopped"] * 2
        root.restart_child("inner", timeout=15)
        lines = wait_until(lambda: len(ls := journal(c)) >= 4 and ls, "2 stops and 2 starts")
        assert lines == ["stop y", "stop x", "start x", "start y"], \
            f"expected the nested supervisor's children stopped y, x then started x, y: {lines}"
        assert c.supervisor("inner").count_children()["active"] == 2


def test_simple_one_for_one_children_all_stop_when_their_supervisor_stops(config):
    sups = {
        "root": {"children": [{"id": "jobs", "supervisor": "jobs"}]},
        "jobs": {"strategy": "simple_one_for_one",
                 "children": [{"id": "job", "actor": "Worker", "restart": "temporary", "shutdown": 2000}]},
    }
    with actorsys.Node(sup_config(config, sups)) as node:
        c = node.client()
        jobs = c.supervisor("jobs")
        keys = [jobs.start_child({"key": f"j{i}"}) for i in range(6)]
        assert keys == [f"j{i}" for i in range(6)]
        assert jobs.count_children()["active"] == 6
        c.supervisor("root").terminate_child("jobs", timeout=30)
        assert jobs.count_children()["active"] == 0, jobs.which_children()
        for k in keys:
            with pytest.raises(actorsys.ActorStopped):
                c.ask("Worker", k, "info", timeout=5)
        lines = wait_until(lambda: all(f"stop {k}" in (ls := journal(c)) for k in keys) and ls,
                           "a 'stop' line from every simple_one_for_one child")
        assert sorted(line for line in lines if line.startswith("stop")) == \
            sorted(f"stop {k}" for k in keys), lines


# ---------------------------------------------------------------------------------------
# the tree process itself killed


def test_killed_tree_process_is_restarted_and_adopts_its_running_children(config):
    sups = {
        "root": {"children": [
            {"id": "a", "actor": "Worker", "key": "a", "shutdown": 2000},
            {"id": "b", "actor": "Worker", "key": "b", "shutdown": 2000},
            {"id": "jobs", "supervisor": "jobs"},
        ]},
        "jobs": {"strategy": "simple_one_for_one",
                 "children": [{"id": "job", "actor": "Worker", "restart": "permanent", "shutdown": 2000}]},
    }
    with actorsys.Node(sup_config(config, sups)) as node:
        c = node.client()
        root, jobs = c.supervisor("root"), c.supervisor("jobs")
        assert jobs.start_child({"key": "j1"}) == "j1"
        assert c.ask("Worker", "a", "add", 5) == 5
        root.terminate_child("b", timeout=15)
        old = tree_process(node)
        assert old and old["state"] == "running", old
        os.kill(old["pid"], signal.SIGKILL)
        new = wait_until(lambda: (t := tree_process(node)) and t.get("pid") not in (None, old["pid"])
                         and t.get("state") == "running" and t, "a new supervision tree process running",
                         timeout=20)
        assert new["pid"] != old["pid"]
        # the runtime API answers again, and knows what ran and what was stopped
        by_id = {ch["id"]: ch["status"] for ch in root.which_children(timeout=10)}
        assert by_id == {"a": "running", "b": "stopped", "jobs": "running"}, by_id
        assert [ch["id"] for ch in jobs.which_children()] == ["j1"]
        a, j1 = c.ask("Worker", "a", "info"), c.ask("Worker", "j1", "info")
        assert (a["starts"], a["n"]) == (1, 5), f"child a should have been adopted, not restarted: {a}"
        assert j1["starts"] == 1, f"the dynamic child should have been adopted, not restarted: {j1}"
        with pytest.raises(actorsys.ActorStopped):
            c.ask("Worker", "b", "info", timeout=5)
        root.restart_child("b", timeout=15)
        assert c.ask("Worker", "b", "info")["starts"] == 2
        assert jobs.start_child({"key": "j2"}) == "j2"
        assert c.ask("Worker", "j2", "info")["starts"] == 1


# ---------------------------------------------------------------------------------------
# scaling


def test_start_and_stop_of_10000_simple_one_for_one_children_scales_linearly(config):
    sups = {
        "root": {"children": [{"id": "jobs", "supervisor": "jobs"}]},
        "jobs": {"strategy": "simple_one_for_one",
                 "children": [{"id": "job", "actor": "Job", "restart": "temporary"}]},
    }
    with actorsys.Node(sup_config(config, sups)) as node:

        async def cycle(n: int, tag: str) -> float:
            async with actorsys.connect_async(node.endpoint, timeout=60) as ac:
                jobs = ac.supervisor("jobs")
                sem = asyncio.Semaphore(64)

                async def one(i: int) -> None:
                    async with sem:
                        key = await jobs.start_child({"key": f"{tag}-{i}"})
                        await jobs.terminate_child(key)

                t0 = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(n)))
                return time.perf_counter() - t0

        asyncio.run(cycle(200, "warm"))
        t1k = asyncio.run(cycle(1_000, "a"))
        t10k = asyncio.run(cycle(10_000, "b"))
        print(f"\nstart+terminate of simple_one_for_one children: 1,000 in {t1k:.2f} s, "
              f"10,000 in {t10k:.2f} s ({t10k / t1k:.1f}x)")
        c = node.client()
        count = c.supervisor("jobs").count_children()
        assert count == {"specs": 1, "active": 0, "supervisors": 0, "workers": 0}, count
        with pytest.raises(actorsys.ActorStopped):
            c.ask("Job", "b-9999", "starts", timeout=5)
        assert t10k <= 10 * 10 * t1k, \
            f"10,000 children took {t10k:.2f} s, more than 10x linear from 1,000 ({t1k:.2f} s)"
