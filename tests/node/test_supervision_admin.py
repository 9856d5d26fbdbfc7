"""The runtime API of a supervisor, mirroring OTP's supervisor_SUITE admin cases
(``child_adm``, ``child_adm_simple``, ``child_specs``, ``count_children``,
``which_children``): start_child, terminate_child, restart_child, delete_child,
count_children and which_children, with OTP's error results as exceptions
(already_started -> AlreadyStarted, already_present -> AlreadyPresent, running ->
ChildRunning, not_found -> ChildNotFound; simple_one_for_one's restart_child and
delete_child -> SupervisorError), from the blocking and the asyncio client, and dynamic
children across a node restart.
"""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

import actorsys
from actorsys.testing.nodes import wait_until
from helpers import ACTORS_DIR


def make_config(tmp_path) -> dict[str, Any]:
    """root (one_for_one): a, the nested supervisor mid, b, and a temporary tmp.
    mid (one_for_one): m1, m2. jobs (simple_one_for_one): Worker template args ["t"]."""
    quick = {"shutdown": 300}
    return {
        "node": {"data_dir": str(tmp_path / "data"), "workers": 2, "python_path": [ACTORS_DIR],
                 "shutdown_timeout": 5.0, "start_timeout": 30.0},
        "actors": {"Worker": "sup_actors:Worker", "Journal": "sup_actors:Journal"},
        "supervisors": {
            "root": {"strategy": "one_for_one", "max_restarts": 5, "children": [
                {"id": "a", "actor": "Worker", "key": "a", "args": [1], **quick},
                {"id": "mid", "supervisor": "mid"},
                {"id": "b", "actor": "Worker", "key": "b", **quick},
                {"id": "tmp", "actor": "Worker", "key": "tmp", "restart": "temporary", **quick},
            ]},
            "mid": {"children": [
                {"id": "m1", "actor": "Worker", "key": "m1", **quick},
                {"id": "m2", "actor": "Worker", "key": "m2", **quick},
            ]},
            "jobs": {"strategy": "simple_one_for_one", "children": [
                {"id": "job", "actor": "Worker", "args": ["t"], "kwargs": {"from": "template"},
                 "restart": "transient", **quick},
            ]},
        },
    }


@pytest.fixture
def tree_node(tmp_path):
    with actorsys.Node(make_config(tmp_path)) as node:
        yield node


def ids_status(sup: actorsys.SupervisorRef) -> list[tuple[str, str]]:
    return [(c["id"], c["status"]) for c in sup.which_children()]


# ---------------------------------------------------------------------------------------
# start_child


def test_start_child_ok_then_already_started_then_already_present(tree_node):
    client = tree_node.client()
    root = client.supervisor("root")
    info = root.start_child({"id": "c", "actor": "Worker", "key": "c", "args": [7, "x"],
                             "kwargs": {"k": 1}, "restart": "transient", "shutdown": 300})
    assert (info["id"], info["status"], info["actor"], info["key"], info["restart"], info["shutdown"]) == \
        ("c", "running", "Worker", "c", "transient", 300), f"expected the new child's info: {info}"
    assert ids_status(root)[-1] == ("c", "running"), f"expected c added last: {ids_status(root)}"
    got = client.ask("Worker", "c", "info")
    assert (got["starts"], got["args"], got["kwargs"]) == (1, [7, "x"], {"k": 1}), \
        f"expected on_start to get the spec's args and kwargs: {got}"
    assert root.count_children() == {"specs": 5, "active": 5, "supervisors": 1, "workers": 4}

    with pytest.raises(actorsys.AlreadyStarted, match="'c'"):
        root.start_child({"id": "c", "actor": "Worker", "key": "c2"})
    with pytest.raises(actorsys.AlreadyStarted, match="'a'"):
        root.start_child({"id": "a", "actor": "Worker", "key": "a"})   # a static child too

    root.terminate_child("c")
    with pytest.raises(actorsys.AlreadyPresent, match="'c'"):
        root.start_child({"id": "c", "actor": "Worker", "key": "c"})
    assert ids_status(root)[-1] == ("c", "stopped"), ids_status(root)
    assert client.ask("Worker", "a", "info")["starts"] == 1, "expected the failed starts to leave a alone"


def test_start_child_of_an_address_another_child_holds_is_refused(tree_node):
    root = tree_node.client().supervisor("root")
    with pytest.raises(actorsys.SupervisorError, match="already child 'm1' of supervisor 'mid'"):
        root.start_child({"id": "thief", "actor": "Worker", "key": "m1"})
    with pytest.raises(actorsys.SupervisorError, match="nested supervisors"):
        root.start_child({"id": "sub", "supervisor": "jobs"})
    assert [c for c, _s in ids_status(root)] == ["a", "mid", "b", "tmp"]


# ---------------------------------------------------------------------------------------
# terminate_child


def test_terminate_child_stops_it_and_keeps_its_spec(tree_node):
    client = tree_node.client()
    root = client.supervisor("root")
    client.ask("Worker", "b", "add", 5)
    root.terminate_child("b")
    assert ids_status(root) == [("a", "running"), ("mid", "running"), ("b", "stopped"), ("tmp", "running")]
    assert root.count_children() == {"specs": 4, "active": 3, "supervisors": 1, "workers": 3}
    # its on_stop ran (a timed shutdown)
    wait_until(lambda: "stop b" in client.ask("Journal", "main", "lines"), "b's on_stop ('stop b') "
               "in the Journal")
    # a message to a terminated child fails (Erlang: noproc)
    with pytest.raises(actorsys.ActorStopped, match="supervisor 'root' stopped it \\(child 'b'\\)"):
        client.ask("Worker", "b", "info")
    # terminating a stopped child is ok (OTP returns ok)
    root.terminate_child("b")
    assert ids_status(root)[2] == ("b", "stopped")


def test_terminate_child_not_found(tree_node):
    root = tree_node.client().supervisor("root")
    with pytest.raises(actorsys.ChildNotFound, match="no child 'nope'"):
        root.terminate_child("nope")


def test_terminate_child_removes_a_temporary_childs_spec(tree_node):
    client = tree_node.client()
    root = client.supervisor("root")
    root.terminate_child("tmp")
    assert [c for c, _s in ids_status(root)] == ["a", "mid", "b"], \
        f"expected the temporary child's spec removed: {ids_status(root)}"
    assert root.count_children()["specs"] == 3
    with pytest.raises(actorsys.ChildNotFound):
        root.restart_child("tmp")
    with pytest.raises(actorsys.ChildNotFound):
        root.terminate_child("tmp")


def test_terminate_a_nested_supervisor_stops_its_subtree(tree_node):
    client = tree_node.client()
    root, mid = client.supervisor("root"), client.supervisor("mid")
    root.terminate_child("mid")
    assert ids_status(root)[1] == ("mid", "stopped")
    assert ids_status(mid) == [("m1", "stopped"), ("m2", "stopped")], \
        f"expected mid's children stopped with it: {ids_status(mid)}"
    assert root.count_children() == {"specs": 4, "active": 3, "supervisors": 1, "workers": 3}
    with pytest.raises(actorsys.ActorStopped):
        client.ask("Worker", "m1", "info")
    info = root.restart_child("mid")
    assert (info["id"], info["status"], info["type"]) == ("mid", "running", "supervisor"), info
    assert ids_status(mid) == [("m1", "running"), ("m2", "running")]
    assert client.ask("Worker", "m2", "info")["starts"] == 2, "expected m2 started again"


# ---------------------------------------------------------------------------------------
# restart_child


def test_restart_child(tree_node):
    client = tree_node.client()
    root = client.supervisor("root")
    client.ask("Worker", "a", "add", 3)
    with pytest.raises(actorsys.ChildRunning, match="'a'"):
        root.restart_child("a")
    root.terminate_child("a")
    info = root.restart_child("a")
    assert (info["id"], info["status"]) == ("a", "running"), f"expected a running again: {info}"
    got = client.ask("Worker", "a", "info")
    assert got["starts"] == 2 and got["args"] == [1], f"expected on_start again with the spec's args: {got}"
    assert got["n"] == 3, f"expected a back from its last committed state (n=3): {got}"
    assert ids_status(root)[0] == ("a", "running")
    with pytest.raises(actorsys.ChildNotFound, match="no child 'nope'"):
        root.restart_child("nope")


# ---------------------------------------------------------------------------------------
# delete_child


def test_delete_child(tree_node):
    client = tree_node.client()
    root = client.supervisor("root")
    with pytest.raises(actorsys.ChildRunning, match="terminate it first"):
        root.delete_child("b")
    with pytest.raises(actorsys.ChildNotFound, match="no child 'nope'"):
        root.delete_child("nope")
    client.ask("Worker", "b", "add", 2)
    root.terminate_child("b")
    root.delete_child("b")
    assert [c for c, _s in ids_status(root)] == ["a", "mid", "tmp"], \
        f"expected b's spec gone: {ids_status(root)}"
    assert root.count_children() == {"specs": 3, "active": 3, "supervisors": 1, "workers": 2}
    for call in (root.restart_child, root.delete_child, root.terminate_child):
        with pytest.raises(actorsys.ChildNotFound):
            call("b")
    # b is a plain actor again: it answers, from its last committed state
    assert client.ask("Worker", "b", "add", 1) == 3, "expected b to answer as a plain actor"
    # and the id can be used for a new child
    assert root.start_child({"id": "b", "actor": "Worker", "key": "b2"})["status"] == "running"


def test_delete_a_stopped_nested_supervisor(tree_node):
    client = tree_node.client()
    root = client.supervisor("root")
    root.terminate_child("mid")
    root.delete_child("mid")
    assert root.count_children() == {"specs": 3, "active": 3, "supervisors": 0, "workers": 3}
    assert [c["type"] for c in root.which_children()] == ["worker"] * 3


# ---------------------------------------------------------------------------------------
# count_children / which_children


def test_count_and_which_children_with_a_nested_supervisor(tree_node):
    client = tree_node.client()
    root, mid = client.supervisor("root"), client.supervisor("mid")
    assert root.count_children() == {"specs": 4, "active": 4, "supervisors": 1, "workers": 3}
    assert mid.count_children() == {"specs": 2, "active": 2, "supervisors": 0, "workers": 2}
    kids = root.which_children()
    assert kids[1] == {"id": "mid", "type": "supervisor", "supervisor": "mid", "status": "running",
                       "restart": "permanent", "shutdown": "infinity", "significant": False}, kids[1]
    assert kids[0] == {"id": "a", "type": "worker", "actor": "Worker", "key": "a", "status": "running",
                       "restart": "permanent", "shutdown": 300, "significant": False}, kids[0]
    assert kids[3]["restart"] == "temporary"
    root.terminate_child("a")
    root.terminate_child("mid")
    assert root.count_children() == {"specs": 4, "active": 2, "supervisors": 1, "workers": 3}, \
        "expected active to drop by the two terminated children, specs unchanged"


def test_unknown_supervisor_is_supervisor_not_found(tree_node):
    nope = tree_node.client().supervisor("nope")
    for call in (nope.which_children, nope.count_children):
        with pytest.raises(actorsys.SupervisorNotFound, match="nope"):
            call()
    with pytest.raises(actorsys.SupervisorNotFound):
        nope.start_child({"id": "x", "actor": "Worker", "key": "x"})
    with pytest.raises(actorsys.SupervisorNotFound):
        nope.terminate_child("x")


# ---------------------------------------------------------------------------------------
# simple_one_for_one (OTP child_adm_simple)


def test_simple_one_for_one_admin(tree_node):
    client = tree_node.client()
    jobs = client.supervisor("jobs")
    assert jobs.which_children() == [] and jobs.count_children() == \
        {"specs": 1, "active": 0, "supervisors": 0, "workers": 0}, "expected no children at first"
    k1 = jobs.start_child({"key": "job-1", "args": [2, 3], "kwargs": {"extra": True}})
    assert k1 == "job-1", f"expected start_child to return the given key, got {k1!r}"
    k2 = jobs.start_child()
    k3 = jobs.start_child({"args": [9]})
    assert isinstance(k2, str) and k2 and len({k1, k2, k3}) == 3, \
        f"expected fresh distinct keys when none is given: {k1!r}, {k2!r}, {k3!r}"
    got = client.ask("Worker", k1, "info")
    assert got["args"] == ["t", 2, 3], f"expected start args appended to the template's: {got}"
    assert got["kwargs"] == {"from": "template", "extra": True}, f"expected merged kwargs: {got}"
    assert client.ask("Worker", k2, "info")["args"] == ["t"]
    kids = jobs.which_children()
    assert [(c["id"], c["key"], c["status"], c["restart"]) for c in kids] == \
        [(k, k, "running", "transient") for k in (k1, k2, k3)], f"expected the children by key: {kids}"
    assert jobs.count_children() == {"specs": 1, "active": 3, "supervisors": 0, "workers": 3}
    with pytest.raises(actorsys.AlreadyStarted):
        jobs.start_child({"key": k1})
    with pytest.raises(actorsys.SupervisorError, match="key, args, kwargs"):
        jobs.start_child({"id": "x", "actor": "Worker", "key": "x"})   # a full spec is not for s141

    jobs.terminate_child(k2)
    assert [c["id"] for c in jobs.which_children()] == [k1, k3], "expected the terminated child removed"
    assert jobs.count_children() == {"specs": 1, "active": 2, "supervisors": 0, "workers": 2}
    with pytest.raises(actorsys.ActorStopped):
        client.ask("Worker", k2, "info")
    with pytest.raises(actorsys.ChildNotFound):
        jobs.terminate_child(k2)
    for call in (jobs.restart_child, jobs.delete_child):
        with pytest.raises(actorsys.SupervisorError, match="simple_one_for_one") as info:
            call(k1)
        assert not isinstance(info.value, (actorsys.ChildNotFound, actorsys.ChildRunning)), info.value
    # the key is free again: a new child under it
    assert jobs.start_child({"key": k2}) == k2
    assert client.ask("Worker", k2, "info")["starts"] == 2


# ---------------------------------------------------------------------------------------
# the same API from the asyncio client


def test_admin_api_through_the_asyncio_client(tree_node):
    async def go() -> None:
        async with actorsys.connect_async(tree_node.endpoint) as client:
            root = client.supervisor("root")
            assert isinstance(root, actorsys.AsyncSupervisorRef)
            assert [c["id"] for c in await root.which_children()] == ["a", "mid", "b", "tmp"]
            assert await root.count_children() == {"specs": 4, "active": 4, "supervisors": 1, "workers": 3}
            info = await root.start_child({"id": "c", "actor": "Worker", "key": "c", "args": [4]})
            assert info["status"] == "running", info
            assert (await client.ask("Worker", "c", "info"))["args"] == [4]
            with pytest.raises(actorsys.AlreadyStarted):
                await root.start_child({"id": "c", "actor": "Worker", "key": "c"})
            with pytest.raises(actorsys.ChildRunning):
                await root.restart_child("c")
            with pytest.raises(actorsys.ChildRunning):
                await root.delete_child("c")
            await root.terminate_child("c")
            with pytest.raises(actorsys.ActorStopped):
                await client.ask("Worker", "c", "info")
            with pytest.raises(actorsys.AlreadyPresent):
                await root.start_child({"id": "c", "actor": "Worker", "key": "c"})
            assert (await root.restart_child("c"))["status"] == "running"
            assert (await client.ask("Worker", "c", "info"))["starts"] == 2
            await root.terminate_child("c")
            await root.delete_child("c")
            assert (await client.ask("Worker", "c", "info"))["args"] == [], "expected a plain actor now"
            for call in (root.terminate_child, root.restart_child, root.delete_child):
                with pytest.raises(actorsys.ChildNotFound):
                    await call("c")
            jobs = client.supervisor("jobs")
            key = await jobs.start_child({"args": [1]})
            assert (await client.ask("Worker", key, "info"))["args"] == ["t", 1]
            assert (await jobs.count_children())["active"] == 1
            with pytest.raises(actorsys.SupervisorError):
                await jobs.restart_child(key)
            await jobs.terminate_child(key)
            assert await jobs.which_children() == []
            with pytest.raises(actorsys.SupervisorNotFound):
                await client.supervisor("nope").count_children()

    asyncio.run(asyncio.wait_for(go(), 60))


# ---------------------------------------------------------------------------------------
# dynamic children across a node restart


def test_dynamic_children_survive_a_node_restart(tmp_path):
    cfg = make_config(tmp_path)
    with actorsys.Node(cfg) as node:
        client = node.client()
        root, jobs = client.supervisor("root"), client.supervisor("jobs")
        root.start_child({"id": "perm", "actor": "Worker", "key": "perm", "args": [5], "shutdown": 300})
        root.start_child({"id": "temp", "actor": "Worker", "key": "temp", "restart": "temporary",
                          "shutdown": 300})
        root.start_child({"id": "gone", "actor": "Worker", "key": "gone", "shutdown": 300})
        root.terminate_child("gone")
        root.delete_child("gone")                    # deleted: must not come back
        job = jobs.start_child({"key": "job-1", "args": [1]})
        client.ask("Worker", "perm", "add", 4)
        client.ask("Worker", job, "add", 6)
        assert [c for c, _s in ids_status(root)] == ["a", "mid", "b", "tmp", "perm", "temp"]

    with actorsys.Node(cfg) as node:
        client = node.client()
        root, jobs = client.supervisor("root"), client.supervisor("jobs")
        assert ids_status(root) == [("a", "running"), ("mid", "running"), ("b", "running"),
                                    ("tmp", "running"), ("perm", "running")], \
            f"expected the permanent dynamic child back and the temporary one gone: {ids_status(root)}"
        perm = client.ask("Worker", "perm", "info")
        assert (perm["starts"], perm["args"], perm["n"]) == (2, [5], 4), \
            f"expected perm started again with its args, from its committed state: {perm}"
        assert ids_status(jobs) == [("job-1", "running")], \
            f"expected the simple_one_for_one child back: {ids_status(jobs)}"
        got = client.ask("Worker", "job-1", "info")
        assert (got["args"], got["n"]) == (["t", 1], 6), f"expected job-1 with its args and state: {got}"
        assert root.count_children() == {"specs": 5, "active": 5, "supervisors": 1, "workers": 4}
        # the temporary child's actor is a plain actor now (it answers; no ActorStopped)
        assert client.ask("Worker", "temp", "add", 1) == 1
        assert client.ask("Worker", "gone", "add", 1) == 1
        # and it is still a dynamic child: it can be terminated and restarted as before
        root.terminate_child("perm")
        assert root.restart_child("perm")["status"] == "running"
