"""Truthful status (issue 20): a worker busy in a long synchronous turn is reported up,
with its pid and the turn it runs, never down; a worker killed is reported down or
restarting until its new process runs, then up with the new pid.

One node for the module, with a restart backoff long enough that a killed worker's slot
is seen waiting for its restart (the status request gives each worker 1 s)."""
from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Iterator

import pytest
from helpers import make_config, module_node

import actorsys
from actorsys.testing.nodes import key_on_slot, wait_until

BACKOFF = 2.5     # seconds a killed worker's restart waits (> the status request's 1 s)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[actorsys.Node]:
    cfg = make_config(str(tmp_path_factory.mktemp("status") / "data"),
                      backoff={"initial": BACKOFF, "max": BACKOFF, "jitter": 0}, max_seconds=60)
    # (a supervision tree, for the tree's status)
    cfg["supervisors"] = {"status": {"children": [{"id": "one", "actor": "Counter", "key": "status-child"}]}}
    yield from module_node(cfg)


def worker(node: actorsys.Node, slot: int) -> dict[str, Any]:
    return next(p for p in node.status()["processes"]
                if p["role"] == "worker" and p["slot"] == slot)


def test_a_worker_in_a_long_sync_turn_is_up_and_busy_with_that_turn(node, own):
    c = node.client()
    key = key_on_slot(c, "Counter", 1, own(""))
    c.ask("Counter", key, "add", 1)
    before = worker(node, 1)
    assert before["answered"] and before["up"] and before["state"] == "up", before
    sleeper = threading.Thread(target=c.ask, args=("Counter", key, "sleep", 3.0),
                               kwargs={"timeout": 10})
    sleeper.start()
    try:
        time.sleep(0.4)               # the turn runs, and the watch has labelled it
        during = worker(node, 1)      # (its worker cannot answer: the router's 1 s passes)
    finally:
        sleeper.join()
    assert during["up"] is True and during["pid"] == before["pid"], during
    assert during["answered"] is False and during["state"] == "busy", during
    busy = during["busy"]
    assert busy["actor"] == f"Counter/{key}" and busy["method"] == "sleep", busy
    assert 1.0 < busy["seconds"] < 3.0, busy
    # the counters of the last answer are kept, and said to be stale
    assert "turns" in during["stale"] and during["turns"] == before["turns"], during
    assert during["stale_seconds"] > 1.0, during
    after = worker(node, 1)
    assert after["answered"] and after["state"] == "up" and after["pid"] == before["pid"], after
    assert "busy" not in after and "stale" not in after, after


def test_a_killed_worker_is_restarting_then_up_with_a_new_pid(node):
    old = worker(node, 0)["pid"]
    os.kill(old, signal.SIGKILL)
    t0 = time.monotonic()
    down = wait_until(lambda: (w := worker(node, 0))["up"] is False and w, "slot 0 reported down", 5)
    assert time.monotonic() - t0 < BACKOFF, "seen down during the backoff"
    assert down["pid"] is None and down["state"] in ("restarting", "down"), down
    back = wait_until(lambda: (w := worker(node, 0))["up"] and w["pid"] != old and w,
                      "slot 0 up with a new pid", 15)
    assert back["pid"] not in (None, old), back
    assert node.client().ask("Counter", key_on_slot(node.client(), "Counter", 0, "after-kill"),
                             "add", 1) == 1


def test_a_stopped_tree_is_up_and_unresponsive_not_down(node):
    """The supervision tree's loop stopped (SIGSTOP): status says its process runs, with
    its pid, and did not answer; it answers again once continued."""
    tree = next(p for p in node.status()["processes"] if p["role"] == "tree")
    assert tree["up"] and tree["pid"]
    os.kill(tree["pid"], signal.SIGSTOP)
    try:
        t = next(p for p in node.status()["processes"] if p["role"] == "tree")
        assert (t["up"], t["pid"], t["state"], t["answered"]) == (True, tree["pid"], "unresponsive", False), t
    finally:
        os.kill(tree["pid"], signal.SIGCONT)
    wait_until(lambda: next(p for p in node.status()["processes"] if p["role"] == "tree").get("answered")
               is not False, "the tree answering again")

