"""Start, stop, start failures and the runtime API (start_child, terminate_child,
restart_child, delete_child, which_children, count_children) with their OTP error cases:
OTP supervisor_SUITE's ``sup_start``, ``sup_stop``, ``child_adm``, ``child_adm_simple``,
``extra_return`` and ``count_children`` cases, against a fake child host."""
from __future__ import annotations

import asyncio

import pytest
from test_supervisor_fakehost import FakeHost, MemoryStore, ids, in_loop, nested, table, worker

from actorsys.errors import (AlreadyPresent, AlreadyStarted, ChildNotFound, ChildRunning, ConfigError,
                             StartFailed, SupervisorError)
from supervisors.supervisor import Boot, Supervisor


@in_loop
async def test_a_child_that_cannot_start_fails_the_supervisors_start() -> None:
    """OTP ``sup_start_fail`` / ``faulty_application_shutdown``: the children started
    before it stop in reverse order, and the supervisor fails to start, naming it."""
    host = FakeHost(root=table(worker("a"), worker("b"), worker("c"), worker("d")))
    host.fail_starts["c"] = 1
    with pytest.raises(StartFailed, match="supervisor 'root' failed to start child 'c': W/c: on_start"):
        await host.boot()
    assert host.journal == [("start", "root", "a"), ("start", "root", "b"), ("start_failed", "root", "c"),
                            ("stop", "root", "c", 5000), ("stop", "root", "b", 5000),
                            ("stop", "root", "a", 5000)]
    assert not host.sup("root").running and host.running == {}


@in_loop
async def test_an_empty_supervisor_starts_and_stops() -> None:
    """OTP ``sup_start_normal``."""
    host = FakeHost(root=table())
    sup = await host.boot()
    assert sup.running and sup.which_children() == [] and host.counts("root") == [0, 0, 0, 0]
    await host.stop_tree()
    assert not sup.running


@in_loop
async def test_a_start_child_that_fails_leaves_no_child() -> None:
    """OTP ``sup_start_child_returns_error`` (and ``_simple``): start_child answers the
    error and the child is not kept."""
    host = FakeHost(root=table(), simple=table({"id": "t", "actor": "W"}, strategy="simple_one_for_one"))
    await host.boot()
    host.fail_starts.update(child1=1, k=1)
    with pytest.raises(StartFailed):
        await host.sup("root").start_child(worker("child1"))
    with pytest.raises(StartFailed):
        await host.sup("simple").start_child({"key": "k"})
    assert host.sup("root").which_children() == [] and host.sup("simple").which_children() == []
    assert host.index == {} and host.store.dynamic("root") == [], "neither indexed nor persisted"


@in_loop
async def test_a_restart_child_that_fails_leaves_the_child_stopped() -> None:
    """OTP ``sup_start_restart_child_returns_error``: restart_child answers the error and
    the child stays a stopped spec (``[{child1, undefined, worker, []}]``)."""
    host = FakeHost(root=table(worker("child1")))
    await host.boot()
    sup = host.sup("root")
    await sup.terminate_child("child1")
    host.fail_starts["child1"] = 1
    with pytest.raises(StartFailed):
        await sup.restart_child("child1")
    assert host.statuses("root") == {"child1": "stopped"}


@in_loop
async def test_stop_gives_each_child_its_shutdown_in_reverse_order() -> None:
    """OTP ``sup_stop_infinity`` / ``sup_stop_timeout`` / ``sup_stop_brutal_kill``: each
    actor child is stopped with its own shutdown (the host enforces it), last first."""
    host = FakeHost(root=table(worker("a", shutdown=1000), worker("b", shutdown="brutal_kill"),
                               worker("c", shutdown="infinity"), worker("d")))
    await host.boot()
    host.clear()
    await host.stop_tree()
    assert host.journal == [("stop", "root", "d", 5000), ("stop", "root", "c", "infinity"),
                            ("stop", "root", "b", "brutal_kill"), ("stop", "root", "a", 1000)]


@in_loop
async def test_a_nested_supervisor_past_its_shutdown_has_the_rest_of_its_subtree_killed() -> None:
    """OTP ``sup_stop_timeout`` for a supervisor child: the subtree gets the nested
    supervisor's shutdown (1 ms here) in all; what is left then is killed."""
    host = FakeHost(root=table(nested("s", "sub", shutdown=1)),
                    sub=table(worker("a"), worker("b")))
    await host.boot()
    host.hang_stops["b"] = asyncio.Event()            # b's on_stop never ends
    host.clear()
    await host.stop_tree()
    assert host.journal == [("stop", "sub", "b", 5000), ("stop", "sub", "b", "brutal_kill"),
                            ("stop", "sub", "a", "brutal_kill")]
    assert host.running == {}


@pytest.mark.parametrize("node_stop", [False, True])
@in_loop
async def test_simple_one_for_one_children_stop_all_at_once_and_are_gone(node_stop: bool) -> None:
    """OTP ``sup_stop_timeout_dynamic`` / ``sup_stop_brutal_kill_dynamic``: all stop
    concurrently (one that hangs does not hold the others back), and a simple supervisor
    keeps no children once stopped; a node stop keeps them for the next start."""
    host = FakeHost(root=table(nested("s", "simple"), max_restarts=0),
                    simple=table({"id": "t", "actor": "W"}, strategy="simple_one_for_one"))
    await host.boot()
    for k in ("k1", "k2", "k3"):
        await host.sup("simple").start_child({"key": k})
    gate = host.hang_stops["k1"] = asyncio.Event()
    host.stopping = node_stop
    stopping = asyncio.ensure_future(host.sup("root").terminate_child("s"))
    await host.until(lambda: len(host.stopped()) == 3)   # while k1's stop hangs
    assert not stopping.done() and sorted(host.stopped()) == ["k1", "k2", "k3"], \
        "all at once, not one after another"
    gate.set()
    await stopping
    assert ids(host.sup("simple").which_children()) == (["k1", "k2", "k3"] if node_stop else [])


@in_loop
async def test_child_adm() -> None:
    """OTP ``child_adm`` and ``extra_return``: the runtime API and its errors on a
    one_for_one supervisor (already_started, not_found, already_present, running)."""
    spec = worker("child1", shutdown=1000)
    host = FakeHost(root=table(spec))
    await host.boot()
    sup: Supervisor = host.sup("root")
    assert ids(sup.which_children()) == ["child1"] and host.counts("root") == [1, 1, 0, 1]
    with pytest.raises(AlreadyStarted):
        await sup.start_child(spec)
    with pytest.raises(ChildNotFound):
        await sup.terminate_child("hej")
    await sup.terminate_child("child1")
    assert host.statuses("root") == {"child1": "stopped"} and host.counts("root") == [1, 0, 0, 1]
    await sup.terminate_child("child1")                 # like deleting what is gone: ok
    with pytest.raises(AlreadyPresent):
        await sup.start_child(spec)
    assert (await sup.restart_child("child1"))["status"] == "running"
    assert host.counts("root") == [1, 1, 0, 1]
    with pytest.raises(ChildRunning):
        await sup.restart_child("child1")
    with pytest.raises(ChildNotFound):
        await sup.restart_child("child2")
    with pytest.raises(ChildRunning):
        await sup.delete_child("child1")
    with pytest.raises(ChildNotFound):
        await sup.delete_child("hej")
    await sup.terminate_child("child1")
    await sup.delete_child("child1")
    assert ("release", "child1") in host.journal, "its address is a plain actor's again"
    with pytest.raises(ChildNotFound):
        await sup.restart_child("child1")
    assert sup.which_children() == [] and host.counts("root") == [0, 0, 0, 0]
    info = await sup.start_child(spec)
    assert info == {"id": "child1", "status": "running", "restart": "permanent", "shutdown": 1000,
                    "significant": False, "type": "worker", "actor": "W", "key": "child1"}
    with pytest.raises(ChildNotFound):
        await sup.terminate_child(["child1"])            # (OTP: a pid is not an id here)
    await host.exit("root", "child1", "abnormal")
    assert host.statuses("root") == {"child1": "running"}, "restarted automatically"


@in_loop
async def test_child_adm_simple() -> None:
    """OTP ``child_adm_simple``: every child is added at run time and named by its key;
    terminate_child removes it; restart_child and delete_child are refused
    (``{error, simple_one_for_one}``). Unlike OTP (ok), terminating a key that is gone
    answers not_found."""
    host = FakeHost(root=table({"id": "child", "actor": "W"}, strategy="simple_one_for_one"))
    await host.boot()
    sup = host.sup("root")
    assert sup.which_children() == [] and host.counts("root") == [1, 0, 0, 0]
    k1 = await sup.start_child(None)
    assert [c["key"] for c in sup.which_children()] == [k1] and host.counts("root") == [1, 1, 0, 1]
    k2 = await sup.start_child({})
    assert host.counts("root") == [1, 2, 0, 2]
    await sup.terminate_child(k1)
    assert ids(sup.which_children()) == [k2] and host.counts("root") == [1, 1, 0, 1]
    with pytest.raises(ChildNotFound):
        await sup.terminate_child(k1)
    with pytest.raises(SupervisorError, match="simple_one_for_one"):
        await sup.restart_child(k2)
    with pytest.raises(SupervisorError, match="simple_one_for_one"):
        await sup.delete_child(k2)
    for bad in ({"key": 3}, {"args": "x"}, {"kwargs": {1: 2}}, {"id": "x"}, [1]):
        with pytest.raises(SupervisorError, match="start_child"):
            await sup.start_child(bad)


@in_loop
async def test_start_child_refuses_bad_specs_nested_supervisors_and_supervised_addresses() -> None:
    """OTP ``child_specs``: a bad spec is refused with the reason (here a ConfigError
    naming the key); beyond OTP, start_child makes actor children only, and an actor
    address has one supervisor."""
    host = FakeHost(root=table(worker("a")), other=table())
    await host.boot()
    sup = host.sup("other")
    with pytest.raises(ConfigError, match="invalid restart type 'prmanent'"):
        await sup.start_child(worker("b", "prmanent"))
    with pytest.raises(ConfigError, match="invalid shutdown -10"):
        await sup.start_child(worker("b", shutdown=-10))
    with pytest.raises(ConfigError):
        await sup.start_child("hej")
    with pytest.raises(SupervisorError, match="nested supervisors"):
        await sup.start_child(nested("s", "root"))
    with pytest.raises(SupervisorError, match="already child 'a' of supervisor 'root'"):
        await sup.start_child({"id": "mine", "actor": "W", "key": "a"})
    assert sup.which_children() == []


@in_loop
async def test_count_children_counts_supervisors_workers_and_active_ones() -> None:
    """OTP ``tree`` / ``count_children_supervisor``: [specs, active, supervisors, workers]
    ([3,2,3,0] with one of three nested supervisors terminated)."""
    host = FakeHost(root=table(nested("s1", "sup1"), nested("s2", "sup2"),
                               nested("s3", "sup3", restart="transient")),
                    sup1=table(worker("a"), worker("b")), sup2=table(), sup3=table())
    await host.boot()
    await host.sup("root").terminate_child("s3")
    assert host.counts("root") == [3, 2, 3, 0]
    assert host.counts("sup1") == [2, 2, 0, 2] and host.counts("sup2") == [0, 0, 0, 0]
    kinds = {c["id"]: (c["type"], c.get("supervisor")) for c in host.sup("root").which_children()}
    assert kinds["s1"] == ("supervisor", "sup1")


@in_loop
async def test_deleting_a_nested_supervisor_releases_its_whole_subtree() -> None:
    """OTP ``child_adm`` (delete_child) for a supervisor child: its actors become plain
    actors again and the supervisor is gone from the host's registry."""
    host = FakeHost(root=table(nested("s", "sub")), sub=table(worker("a"), worker("b")))
    await host.boot()
    await host.sup("root").terminate_child("s")
    await host.sup("root").delete_child("s")
    assert [e for e in host.journal if e[0] == "release"] == [("release", "a"), ("release", "b")]
    assert "sub" not in host.sups and host.index == {}
    assert host.store.is_deleted("root", "s"), "a declared child stays deleted until the node restarts"


# -- what outlives the host process (beyond OTP: the config is the spec) -------------
@in_loop
async def test_run_time_children_come_back_at_node_start_but_temporary_ones() -> None:
    """Beyond OTP: children added by start_child are restored at the next node start,
    in the order they were added, except temporary ones; a restart of the host process
    keeps those too, and keeps the children stopped at run time stopped."""
    store = MemoryStore()
    host = FakeHost(store, root=table(worker("a")))
    await host.boot()
    sup = host.sup("root")
    await sup.start_child(worker("p"))
    await sup.start_child(worker("t", "temporary"))
    await sup.terminate_child("a")
    for boot, expect, stopped in ((Boot.HOST_RESTART, ["a", "p", "t"], {"a"}),
                                  (Boot.NODE_START, ["a", "p"], set())):
        if boot is Boot.NODE_START:
            store.stopped.clear()          # (a node start applies the config afresh)
        again = FakeHost(store, root=table(worker("a")))
        await again.boot(boot)
        assert ids(again.sup("root").which_children()) == expect, boot
        assert {c for c, s in again.statuses("root").items() if s == "stopped"} == stopped, boot


@in_loop
async def test_a_run_time_child_that_cannot_come_back_is_dropped_not_fatal() -> None:
    """Beyond OTP: a restored run-time child whose start fails is dropped (and said so);
    a declared one failing still fails the start."""
    store = MemoryStore()
    host = FakeHost(store, root=table(worker("a")))
    await host.boot()
    await host.sup("root").start_child(worker("d"))
    again = FakeHost(store, root=table(worker("a")))
    again.fail_starts["d"] = 1
    await again.boot()
    assert ids(again.sup("root").which_children()) == ["a"] and store.dynamic("root") == []
