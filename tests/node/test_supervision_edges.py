"""Edges of the supervision tree found in review: a supervisor that is not running, a child
that never starts, a tree restart with a stopped subtree, deleting a subtree, a stray
SIGTERM to the tree, backoff under rest_for_one, a nested supervisor's own shutdown,
bad start_child arguments and requests whose caller has given up."""
from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
import zmq

import actorsys
from actorsys.protocol import wire
from actorsys.testing.nodes import wait_until
from helpers import ACTORS_DIR

QUICK = {"shutdown": 300}


def sup_config(tmp_path, supervisors: dict[str, Any], **node: Any) -> dict[str, Any]:
    settings = {"data_dir": str(tmp_path / "data"), "workers": 2, "python_path": [ACTORS_DIR],
                "shutdown_timeout": 5.0, "start_timeout": 30.0, **node}
    return {"node": settings, "supervisors": supervisors,
            "actors": {"Worker": "sup_actors:Worker", "Journal": "sup_actors:Journal",
                       "SlowStop": "sup_actors:SlowStop"}}


NESTED = {"root": {"children": [{"id": "mid", "supervisor": "mid"},
                                {"id": "z", "actor": "Worker", "key": "z", **QUICK}]},
          "mid": {"children": [{"id": "a", "actor": "Worker", "key": "a", "args": [42], **QUICK}]}}


def statuses(sup: actorsys.SupervisorRef) -> dict[str, str]:
    return {c["id"]: c["status"] for c in sup.which_children()}


def tree_pid(node: actorsys.Node) -> int | None:
    return next((p["pid"] for p in node.status()["processes"] if p["role"] == "tree" and p["up"]), None)


def test_a_stopped_supervisor_refuses_changes_but_still_reports(tmp_path):
    with actorsys.Node(sup_config(tmp_path, NESTED)) as node:
        c = node.client()
        root, mid = c.supervisor("root"), c.supervisor("mid")
        root.terminate_child("mid")
        assert statuses(mid) == {"a": "stopped"}, "which_children of a stopped supervisor reports"
        for call in (lambda: mid.start_child({"id": "b", "actor": "Worker", "key": "b"}),
                     lambda: mid.restart_child("a"), lambda: mid.terminate_child("a")):
            with pytest.raises(actorsys.SupervisorNotFound, match="'mid' is not running"):
                call()
        assert "b" not in statuses(mid), "the refused start_child must not add a child"
        root.restart_child("mid")
        assert statuses(mid) == {"a": "running"}


def test_a_child_that_never_starts_escalates_without_exhausting_the_stack(tmp_path):
    """Each failed start is one more restart, retried through the event queue; far more
    retries than Python's recursion limit still end in a clean give-up."""
    sups = {"root": {"max_restarts": 1500, "max_seconds": 600,
                     "children": [{"id": "w", "actor": "Worker", "key": "w", **QUICK}]}}
    with actorsys.Node(sup_config(tmp_path, sups)) as node:
        c = node.client()
        c.ask("Worker", "w", "fail_next_start")
        with pytest.raises(actorsys.RemoteError):
            c.ask("Worker", "w", "crash")
        assert node.wait(120) == 3, "expected the root to give up and the node to stop with 3"
        assert "reached max restart intensity" in (node.failure or ""), node.failure


def test_tree_restart_keeps_a_stopped_subtree_stopped(tmp_path):
    with actorsys.Node(sup_config(tmp_path, NESTED)) as node:
        c = node.client()
        root = c.supervisor("root")
        root.terminate_child("mid")
        old = tree_pid(node)
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: tree_pid(node) not in (None, old), "a new tree process")
        wait_until(lambda: statuses(c.supervisor("root")).get("z") == "running", "the tree to be back")
        assert statuses(root) == {"mid": "stopped", "z": "running"}
        with pytest.raises(actorsys.ActorStopped):
            c.ask("Worker", "a", "info")   # still supervised, still stopped: not released
        root.restart_child("mid")
        info = c.ask("Worker", "a", "info")
        assert info["args"] == [42], f"expected on_start with the spec's args, got {info}"


def test_deleting_a_nested_supervisor_releases_its_actors(tmp_path):
    with actorsys.Node(sup_config(tmp_path, NESTED)) as node:
        c = node.client()
        root = c.supervisor("root")
        c.ask("Worker", "a", "add", 5)
        root.terminate_child("mid")
        root.delete_child("mid")
        assert c.ask("Worker", "a", "info")["n"] == 5, "expected a plain actor with its state"
        with pytest.raises(actorsys.SupervisorNotFound):
            c.supervisor("mid").which_children()
        root.start_child({"id": "a2", "actor": "Worker", "key": "a", **QUICK})
        assert statuses(root)["a2"] == "running"


def test_a_stray_sigterm_to_the_tree_restarts_it_and_the_node_runs_on(tmp_path):
    with actorsys.Node(sup_config(tmp_path, NESTED)) as node:
        c = node.client()
        starts = c.ask("Worker", "z", "info")["starts"]
        old = tree_pid(node)
        os.kill(old, signal.SIGTERM)
        wait_until(lambda: tree_pid(node) not in (None, old), "the tree to be restarted")
        with pytest.raises(actorsys.NodeUnavailable):
            node.wait(0.5)                  # the node did not stop
        wait_until(lambda: statuses(c.supervisor("root")) == {"mid": "running", "z": "running"},
                   "the restarted tree to start its children again")
        assert c.ask("Worker", "z", "info")["starts"] >= starts


def db_and_cache(backoff_s: float) -> dict[str, Any]:
    """rest_for_one: db, then cache that depends on it; restarts wait ``backoff_s``."""
    return {"root": {"strategy": "rest_for_one", "max_restarts": 5,
                     "backoff": {"initial": backoff_s, "max": backoff_s, "jitter": 0.0},
                     "children": [{"id": "db", "actor": "Worker", "key": "db", **QUICK},
                                  {"id": "cache", "actor": "Worker", "key": "cache", **QUICK}]}}


def test_rest_for_one_stops_dependants_during_the_backoff(tmp_path):
    with actorsys.Node(sup_config(tmp_path, db_and_cache(4.0))) as node:
        c = node.client()
        root = c.supervisor("root")
        with pytest.raises(actorsys.RemoteError):
            c.ask("Worker", "db", "crash")
        # the crash reply can arrive before the tree has handled the exit: wait for it
        wait_until(lambda: statuses(root) == {"db": "restarting", "cache": "restarting"},
                   "db and its dependant cache both waiting out the backoff", timeout=3.0)
        with pytest.raises(actorsys.ActorStopped):
            c.ask("Worker", "cache", "info")   # no dependant runs without what it depends on
        with pytest.raises(actorsys.ChildRunning, match="restarting"):
            root.restart_child("cache")        # nor can it be started by hand meanwhile
        wait_until(lambda: statuses(root) == {"db": "running", "cache": "running"}, "the restart")
        assert c.ask("Worker", "cache", "info")["starts"] == 2


def test_terminating_the_child_whose_restart_is_pending_still_restarts_its_group(tmp_path):
    with actorsys.Node(sup_config(tmp_path, db_and_cache(1.0))) as node:
        c = node.client()
        root = c.supervisor("root")
        with pytest.raises(actorsys.RemoteError):
            c.ask("Worker", "db", "crash")
        wait_until(lambda: statuses(root)["db"] == "restarting", "db's pending restart")
        root.terminate_child("db")
        wait_until(lambda: statuses(root) == {"db": "stopped", "cache": "running"},
                   "cache started when db's restart came due, db left stopped")


def test_deleted_children_stay_deleted_across_a_tree_restart(tmp_path):
    with actorsys.Node(sup_config(tmp_path, NESTED)) as node:
        c = node.client()
        root = c.supervisor("root")
        root.terminate_child("z")
        root.delete_child("z")
        old = tree_pid(node)
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: tree_pid(node) not in (None, old), "a new tree process")
        wait_until(lambda: statuses(c.supervisor("root")) == {"mid": "running"},
                   "the restarted tree without the deleted child")
        assert c.ask("Worker", "z", "info")["starts"] >= 1, "z answers as a plain actor"


def test_a_nested_supervisors_shutdown_bounds_its_whole_subtree(tmp_path):
    sups = {"root": {"children": [{"id": "mid", "supervisor": "mid", "shutdown": 500}]},
            "mid": {"children": [{"id": "s", "actor": "SlowStop", "key": "s",
                                  "shutdown": "infinity"}]}}
    with actorsys.Node(sup_config(tmp_path, sups)) as node:
        c = node.client()
        c.ask("SlowStop", "s", "set_stop_delay", 30.0)
        t0 = time.monotonic()
        c.supervisor("root").terminate_child("mid", timeout=20)
        took = time.monotonic() - t0
        assert took < 15, f"expected the subtree killed after mid's 500 ms, took {took:.1f} s"
        assert statuses(c.supervisor("mid")) == {"s": "stopped"}


@pytest.mark.parametrize("arg,fragment", [
    ({"args": 5}, "args must be a list"),
    ({"kwargs": [1]}, "kwargs must be a map"),
    ({"key": 5}, "key must be a string"),
])
def test_bad_simple_start_child_arguments_are_answered_at_once(tmp_path, arg, fragment):
    sups = {"jobs": {"strategy": "simple_one_for_one",
                     "children": [{"id": "j", "actor": "Worker", **QUICK}]}}
    with actorsys.Node(sup_config(tmp_path, sups)) as node:
        jobs = node.client().supervisor("jobs")
        with pytest.raises(actorsys.SupervisorError, match=fragment):
            jobs.start_child(arg, timeout=5)
        assert jobs.count_children()["active"] == 0


def test_a_request_past_its_deadline_is_not_carried_out(tmp_path):
    """A start_child that reaches the tree after its caller gave up (the tree was busy or
    restarting) must not start a child the caller believes was never started."""
    sups = {"jobs": {"strategy": "simple_one_for_one",
                     "children": [{"id": "j", "actor": "Worker", **QUICK}]}}
    with actorsys.Node(sup_config(tmp_path, sups)) as node:
        client = node.client()
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(client.tree_endpoint)
            sock.send(wire.pack([wire.SUP, 1, "jobs", "start_child", {"key": "late"}, time.time() - 1]))
            sock.send(wire.pack([wire.SUP, 2, "jobs", "count_children", None, time.time() + 10]))
            assert sock.poll(10_000), "expected an answer to the second request"
            reply = wire.unpack(sock.recv())
            assert reply[1] == 2, f"the expired request must get no answer, got {reply}"
            assert reply[2]["active"] == 0, f"the expired start_child must not run: {reply}"
        finally:
            sock.close(0)
            ctx.term()
