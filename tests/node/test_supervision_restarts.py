"""Restarts, strategies, intensity and auto-shutdown of supervision trees, against real nodes.

Mirrors the restart cases of Erlang/OTP's ``lib/stdlib/test/supervisor_SUITE.erl``
(the test names are given in each docstring): the restart-type x exit-reason matrix,
``temporary_bystander``, ``multiple_restarts`` (the sliding window), each strategy's
base case and escalation, ``*_other_child_fails_restart``, ``tree``, and auto-shutdown
with significant children; plus what is ours: rollback of the crashing turn, restart from
the last LevelDB commit, kill -9 of a worker hosting children, and restart backoff.

Every test owns a node with a ``[supervisors.*]`` config. Children are
``restarts_actors.Worker`` actors: each start and graceful stop is written to a ``Journal``
actor (to check order) and counted in the child's own committed state (to check how
often). When a root supervisor gives up the node stops; what happened before is then read
back from the node's LevelDB files (``committed_state``).
"""
from __future__ import annotations

import os
import signal
import time
from typing import Any, Callable

import msgpack
import plyvel
import pytest

import actorsys
from actorsys.protocol import wire
from actorsys.protocol.shardmap import shard_of
from actorsys.storage.meta import META_FILE
from actorsys.storage.keys import actor_prefix, state_key
from actorsys.testing.nodes import wait_until, worker_pids

ACTOR_TYPES = {"Journal": "restarts_actors:Journal", "Worker": "restarts_actors:Worker"}
SHARDS, WORKERS = 4096, 2          # the node defaults the configs below keep
SETTLE = 15.0                      # deadline for anything the tree does after an event


# -- building configs and nodes -------------------------------------------------------
def child(cid: str, key: str | None = None, **spec: Any) -> dict[str, Any]:
    """A Worker child spec (key defaults to the id; a short timed shutdown)."""
    return {"id": cid, "actor": "Worker", "key": key or cid, "shutdown": 1000, **spec}


def sup_config(config: Callable[..., dict], supervisors: dict[str, Any]) -> dict[str, Any]:
    cfg = config(shutdown_timeout=3.0)
    cfg["actors"].update(ACTOR_TYPES)
    cfg["supervisors"] = supervisors
    return cfg


def keys_on_slot(slot: int, n: int, prefix: str, type_name: str = "Worker") -> list[str]:
    """``n`` keys of ``type_name`` that a fresh node puts on worker ``slot`` (shard % workers;
    the tests check it with ``client.map.slot_of`` once the node runs)."""
    out, i = [], 0
    while len(out) < n:
        k = f"{prefix}{i}"
        if shard_of(type_name, k, SHARDS) % WORKERS == slot:
            out.append(k)
        i += 1
    return out


# -- reading what happened -------------------------------------------------------------
def info(c: actorsys.Client, key: str) -> dict[str, Any]:
    return c.ask("Worker", key, "info")


def lines(c: actorsys.Client) -> list[str]:
    return c.ask("Journal", "main", "lines")


def wait_lines(c: actorsys.Client, expected: list[str], what: str) -> None:
    """Wait until the journal reads exactly ``expected`` (tells arrive asynchronously)."""
    try:
        wait_until(lambda: lines(c) == expected, what, SETTLE)
    except AssertionError:
        assert lines(c) == expected, f"journal after {what}: expected {expected}"


def reset_journal(c: actorsys.Client, expected: list[str]) -> None:
    """Wait for the journal to hold ``expected`` (so no earlier tell is still coming), then clear it."""
    wait_lines(c, expected, "the children's first starts")
    c.ask("Journal", "main", "clear")


def starts_reach(c: actorsys.Client, key: str, n: int, what: str) -> dict[str, Any]:
    """Wait until child ``key`` has started ``n`` times; its messages wait while it is
    restarting, and fail (ActorStopped, WorkerLost, ...) only while it is stopped or its
    worker is being replaced."""
    seen: dict[str, Any] = {}

    def ok() -> bool:
        try:
            seen.update(info(c, key))
        except actorsys.ActorError as exc:
            seen["error"] = repr(exc)
            return False
        return seen["starts"] >= n

    try:
        wait_until(ok, what, SETTLE)
    except AssertionError:
        raise AssertionError(f"{what}: expected child {key} to reach {n} starts; last seen {seen}") from None
    assert seen["starts"] == n, f"{what}: child {key} started {seen['starts']} times, expected {n}"
    return dict(seen)


def children(c: actorsys.Client, sup: str = "root") -> dict[str, str]:
    """child id -> status, in the supervisor's order."""
    return {ch["id"]: ch["status"] for ch in c.supervisor(sup).which_children()}


def committed_state(data_dir: str, type_name: str, key: str) -> dict[str, Any]:
    """The last committed state of an actor, read from its slot's LevelDB (node stopped)."""
    with open(os.path.join(data_dir, META_FILE), "rb") as f:
        meta = msgpack.unpackb(f.read(), raw=False)
    shard = shard_of(type_name, key, meta["shards"])
    db = plyvel.DB(os.path.join(data_dir, f"slot-{meta['owner'][shard]}"))
    try:
        raw = db.get(state_key(actor_prefix(shard, type_name, key)))
    finally:
        db.close()
    return wire.unpack_stored(raw) if raw else {}


def crash(c: actorsys.Client, key: str) -> None:
    with pytest.raises(actorsys.RemoteError, match="boom"):
        c.ask("Worker", key, "crash")


def kill_worker_of(node: actorsys.Node, key: str) -> int:
    """kill -9 the worker process hosting Worker ``key``; returns its slot."""
    c = node.client()
    slot = c.map.slot_of("Worker", key)
    os.kill(worker_pids(node)[slot], signal.SIGKILL)
    return slot


def wait_node_stops(node: actorsys.Node, status: int, what: str) -> None:
    try:
        code = node.wait(SETTLE + 10)
    except actorsys.NodeUnavailable:
        raise AssertionError(f"{what}: expected the node to stop by itself (status {status}), "
                             f"but it is still running") from None
    assert code == status, (f"{what}: node exited with status {code}, expected {status} "
                            f"(failure: {node.failure!r})")


# -- the restart-type x exit-reason matrix ---------------------------------------------
REASONS = ("normal", "shutdown", "abnormal", "crash", "killed")


def restarted_by_otp(restart: str, reason: str) -> bool:
    """OTP: permanent always; transient unless the exit is normal or shutdown; temporary never."""
    return restart == "permanent" or (restart == "transient" and reason not in ("normal", "shutdown"))


@pytest.mark.parametrize("reason", REASONS)
@pytest.mark.parametrize("restart", ("permanent", "transient", "temporary"))
def test_restart_type_by_exit_reason(config, restart, reason):
    """OTP {permanent,transient,temporary}_{normal,shutdown,abnormal}: self.stop() is a
    normal exit, self.stop("shutdown") a shutdown exit, self.stop("abnormal") and a handler
    crash abnormal ones, and a worker killed with SIGKILL takes its children down with
    reason killed (abnormal). A child not restarted stays in which_children as stopped,
    unless it is temporary: then its spec is removed."""
    cfg = sup_config(config, {"root": {"max_restarts": 5, "max_seconds": 60,
                                       "children": [child("c", restart=restart)]}})
    with actorsys.Node(cfg) as node:
        c = node.client()
        sup = c.supervisor("root")
        assert info(c, "c")["starts"] == 1
        if reason in ("normal", "shutdown", "abnormal"):
            assert c.ask("Worker", "c", "exit", reason) == reason
        elif reason == "crash":
            crash(c, "c")
        else:
            kill_worker_of(node, "c")

        if restarted_by_otp(restart, reason):
            starts_reach(c, "c", 2, f"a {restart} child exiting with {reason}")
            assert children(c) == {"c": "running"}
            assert sup.count_children() == {"specs": 1, "active": 1, "supervisors": 0, "workers": 1}
            return
        if restart == "temporary":
            wait_until(lambda: sup.which_children() == [],
                       f"the temporary child's spec removed after exit {reason}", SETTLE)
            assert sup.count_children() == {"specs": 0, "active": 0, "supervisors": 0, "workers": 0}
        else:
            wait_until(lambda: children(c) == {"c": "stopped"},
                       f"the {restart} child marked stopped after exit {reason}", SETTLE)
            assert sup.count_children() == {"specs": 1, "active": 0, "supervisors": 0, "workers": 1}
        # stopped is final: the child does not run again, its messages fail
        with pytest.raises(actorsys.ActorStopped):
            info(c, "c")


# -- rollback and restart from the last commit ------------------------------------------
def test_crash_rolls_back_the_turn_and_restart_resumes_from_last_commit(config):
    """A crash discards what the crashing turn wrote; the restarted child is re-activated
    from its last committed snapshot (on_start runs again on that state)."""
    cfg = sup_config(config, {"root": {"children": [child("a")]}})
    with actorsys.Node(cfg) as node:
        c = node.client()
        assert c.ask("Worker", "a", "add", 5) == 5
        assert c.ask("Worker", "a", "add", 2) == 7
        crash(c, "a")                       # sets n = -1000, then raises
        after = starts_reach(c, "a", 2, "the crash of a")
        assert after["n"] == 7, f"expected the committed n = 7 after the restart, got {after['n']}"
        assert children(c) == {"a": "running"}


def test_child_of_a_killed_worker_resumes_from_last_commit(config):
    """kill -9 of the worker hosting a child: the child is restarted (reason killed) on the
    replacement worker from what it had committed."""
    cfg = sup_config(config, {"root": {"children": [child("a")]}})
    with actorsys.Node(cfg) as node:
        c = node.client()
        assert c.ask("Worker", "a", "add", 41) == 41
        kill_worker_of(node, "a")
        after = starts_reach(c, "a", 2, "kill -9 of a's worker")
        assert after["n"] == 41, f"expected the committed n = 41 after the restart, got {after['n']}"
        assert c.ask("Worker", "a", "add", 1) == 42


# -- temporary bystander ----------------------------------------------------------------
@pytest.mark.parametrize("strategy", ("one_for_all", "rest_for_one"))
def test_temporary_bystander_is_stopped_and_not_restarted(config, strategy):
    """OTP temporary_bystander: a temporary child taken down by a sibling's restart under
    one_for_all / rest_for_one is not restarted, and its spec is removed; the supervisor
    survives (restarting the temporary child would not count against its intensity)."""
    cfg = sup_config(config, {"root": {"strategy": strategy, "children": [
        child("p"), child("t", restart="temporary")]}})
    with actorsys.Node(cfg) as node:
        c = node.client()
        reset_journal(c, ["start p", "start t"])
        crash(c, "p")
        starts_reach(c, "p", 2, "p's crash")
        wait_lines(c, ["stop t", "start p"], "p's crash under " + strategy)
        assert children(c) == {"p": "running"}, "the temporary bystander must be removed"
        assert c.supervisor("root").count_children() == {"specs": 1, "active": 1,
                                                         "supervisors": 0, "workers": 1}
        with pytest.raises(actorsys.ActorStopped):
            info(c, "t")


# -- each strategy's base case ----------------------------------------------------------
STRATEGY_CASES = {
    # crash b of [a, b, c]: journal after the crash, starts and graceful stops of a, b, c
    "one_for_one": (["start b"], (1, 2, 1), (0, 0, 0)),
    "one_for_all": (["stop c", "stop a", "start a", "start b", "start c"], (2, 2, 2), (1, 0, 1)),
    "rest_for_one": (["stop c", "start b", "start c"], (1, 2, 2), (0, 0, 1)),
}


@pytest.mark.parametrize("strategy", list(STRATEGY_CASES))
def test_strategy_restarts_the_right_children_in_order(config, strategy):
    """OTP one_for_one / one_for_all / rest_for_one: one_for_one restarts only the crashed
    child; one_for_all stops the others in reverse order and starts all in order;
    rest_for_one does that for the crashed child and those after it only."""
    journal, starts, stops = STRATEGY_CASES[strategy]
    cfg = sup_config(config, {"root": {"strategy": strategy, "max_restarts": 2, "max_seconds": 60,
                                       "children": [child("a"), child("b"), child("c")]}})
    with actorsys.Node(cfg) as node:
        c = node.client()
        reset_journal(c, ["start a", "start b", "start c"])
        crash(c, "b")
        starts_reach(c, "b", 2, f"b's crash under {strategy}")
        wait_lines(c, journal, f"b's crash under {strategy}")
        got = [info(c, k) for k in "abc"]
        assert tuple(i["starts"] for i in got) == starts, f"starts of a, b, c: {got}"
        assert tuple(i["stops"] for i in got) == stops, f"graceful stops of a, b, c: {got}"
        assert children(c) == {"a": "running", "b": "running", "c": "running"}
        assert c.supervisor("root").count_children() == {"specs": 3, "active": 3,
                                                         "supervisors": 0, "workers": 3}


def test_simple_one_for_one_restarts_only_the_crashed_child(config):
    """OTP simple_one_for_one: children started with start_child; a crash restarts only
    that child; count_children reports one spec."""
    cfg = sup_config(config, {"root": {"strategy": "simple_one_for_one", "max_restarts": 2,
                                       "children": [{"id": "w", "actor": "Worker",
                                                     "shutdown": 1000}]}})
    with actorsys.Node(cfg) as node:
        c = node.client()
        sup = c.supervisor("root")
        assert sup.start_child({"key": "a"}) == "a"
        assert sup.start_child({"key": "b"}) == "b"
        reset_journal(c, ["start a", "start b"])
        crash(c, "a")
        starts_reach(c, "a", 2, "a's crash")
        wait_lines(c, ["start a"], "a's crash under simple_one_for_one")
        assert info(c, "b")["starts"] == 1 and info(c, "b")["stops"] == 0
        assert children(c) == {"a": "running", "b": "running"}
        assert sup.count_children() == {"specs": 1, "active": 2, "supervisors": 0, "workers": 2}


# -- escalation -------------------------------------------------------------------------
ESCALATION_STOPS = {   # graceful stops of (a, c) by the end: group restarts plus the final stop
    "one_for_one": (1, 1), "one_for_all": (3, 3), "rest_for_one": (1, 3), "simple_one_for_one": (1, 1),
}


@pytest.mark.parametrize("strategy", list(ESCALATION_STOPS))
def test_escalation_at_the_root_stops_the_node(config, strategy):
    """OTP *_escalation and the restart frequency part of one_for_one / one_for_all /
    simple_one_for_one: max_restarts = 2 crashes within max_seconds are restarted; the
    third makes the supervisor stop its children (reverse order) and give up, which at the
    root stops the node with status 3 and a failure naming the supervisor."""
    sup: dict[str, Any] = {"strategy": strategy, "max_restarts": 2, "max_seconds": 60}
    if strategy == "simple_one_for_one":
        sup["children"] = [{"id": "w", "actor": "Worker", "shutdown": 1000}]
    else:
        sup["children"] = [child("a"), child("b"), child("c")]
    cfg = sup_config(config, {"root": sup})
    with actorsys.Node(cfg) as node:
        c = node.client()
        if strategy == "simple_one_for_one":
            for k in "abc":
                c.supervisor("root").start_child({"key": k})
        for n in (2, 3):
            crash(c, "b")
            starts_reach(c, "b", n, f"crash {n - 1} of b (within intensity)")
        assert set(children(c).values()) == {"running"}
        crash(c, "b")
        wait_node_stops(node, 3, f"a third crash within max_seconds under {strategy}")
        failure = node.failure or ""
        assert "root" in failure and "max restart intensity" in failure, failure
    data = cfg["node"]["data_dir"]
    a, b, cc = (committed_state(data, "Worker", k) for k in "abc")
    assert (a.get("stops", 0), cc.get("stops", 0)) == ESCALATION_STOPS[strategy], (
        f"graceful stops of a and c: {a.get('stops')}, {cc.get('stops')}")
    assert b.get("stops", 0) == 0, "the crashing child never gets on_stop"
    if strategy != "simple_one_for_one":   # simple_one_for_one stops its children all at once
        assert cc["stopped_at"][-1] < a["stopped_at"][-1], "children stop in reverse start order"


# -- the sliding restart window ---------------------------------------------------------
def test_sliding_window_failures_spaced_wider_than_the_period_never_trip(config):
    """OTP multiple_restarts: with max_restarts = 1 within max_seconds = 0.5, crashes
    spaced more than 0.5 s apart are all restarted; two crashes close together are one
    restart too many."""
    a, b = keys_on_slot(0, 2, "w")          # one worker: both crashes leave in one flush
    cfg = sup_config(config, {"root": {"max_restarts": 1, "max_seconds": 0.5,
                                       "children": [child("a", a), child("b", b)]}})
    with actorsys.Node(cfg) as node:
        c = node.client()
        assert c.map.slot_of("Worker", a) == c.map.slot_of("Worker", b) == 0
        for n in (2, 3, 4):
            crash(c, a)
            starts_reach(c, a, n, f"spaced crash {n - 1}")
            # the restart was counted before we saw it: the next one is > 0.7 s later
            time.sleep(0.7)
        assert children(c) == {"a": "running", "b": "running"}
        c.tell("Worker", a, "crash")
        c.tell("Worker", b, "crash")
        wait_node_stops(node, 3, "two crashes close together with max_restarts = 1")
        assert "root" in (node.failure or ""), node.failure


# -- a group restart in which another child fails ---------------------------------------
FAILS_ONCE_JOURNAL = {
    # crash a of [a, b, c]; b's first restart fails, then the retry starts from b's group
    "one_for_all": ["stop c", "stop b", "start a", "stop a", "start a", "start b", "start c"],
    "rest_for_one": ["stop c", "stop b", "start a", "start b", "start c"],
}


@pytest.mark.parametrize("max_restarts", (2, 1))
@pytest.mark.parametrize("strategy", list(FAILS_ONCE_JOURNAL))
def test_group_restart_in_which_another_child_fails_once(config, tmp_path, strategy, max_restarts):
    """OTP one_for_all_other_child_fails_restart / rest_for_one_other_child_fails_restart:
    while a group is restarted after a's crash, b fails to start once. That failure counts
    as one more restart and is retried (one_for_all: the restarted a is stopped and the
    whole group started again; rest_for_one: from b on). With max_restarts = 2 the group
    recovers; with max_restarts = 1 the retry is one restart too many and the root gives up."""
    flag = tmp_path / "b-fails-once"
    cfg = sup_config(config, {"root": {"strategy": strategy, "max_restarts": max_restarts,
                                       "max_seconds": 60, "children": [
        child("a"), child("b", kwargs={"fail_once_file": str(flag)}), child("c")]}})
    with actorsys.Node(cfg) as node:
        c = node.client()
        reset_journal(c, ["start a", "start b", "start c"])
        flag.write_text("fail b's next start")
        crash(c, "a")
        if max_restarts == 1:
            wait_node_stops(node, 3, "a crash plus b's failed restart with max_restarts = 1")
            assert not flag.exists(), "b's restart was attempted (and failed)"
            assert "root" in (node.failure or ""), node.failure
            return
        starts_reach(c, "c", 2, "the group restart after b's failed start")
        assert not flag.exists(), "b's restart was attempted (and failed)"
        wait_lines(c, FAILS_ONCE_JOURNAL[strategy], f"a's crash and b's failed start ({strategy})")
        expect_a = 3 if strategy == "one_for_all" else 2
        got = {k: info(c, k)["starts"] for k in "abc"}
        assert got == {"a": expect_a, "b": 2, "c": 2}, f"starts after the retried group restart: {got}"
        assert children(c) == {"a": "running", "b": "running", "c": "running"}


def test_group_restart_with_a_child_that_keeps_failing_escalates(config):
    """OTP one_for_all_escalation: under one_for_all, b refuses every start. After a's
    crash each failed start of b counts as a restart and the group is retried (a is stopped
    and started again each time) until max_restarts is used up; then the root gives up."""
    max_restarts = 3
    cfg = sup_config(config, {"root": {"strategy": "one_for_all", "max_restarts": max_restarts,
                                       "max_seconds": 60,
                                       "children": [child("a"), child("b"), child("c")]}})
    with actorsys.Node(cfg) as node:
        c = node.client()
        c.ask("Worker", "b", "fail_next_start", True)   # committed: b fails every later start
        crash(c, "a")
        wait_node_stops(node, 3, "a group restart whose child b never starts")
        assert "root" in (node.failure or ""), node.failure
    data = cfg["node"]["data_dir"]
    a, b, cc = (committed_state(data, "Worker", k) for k in "abc")
    # restart 1 (a's crash) and each retry 2..max_restarts start a once; b's failure at
    # restart max_restarts + 1 exceeds the intensity
    assert a["starts"] == 1 + max_restarts, f"a started {a['starts']} times"
    assert a["stops"] == max_restarts, f"a stopped {a['stops']} times"   # retries + the give-up
    assert b["starts"] == 1, "b's failed starts are rolled back"
    assert b["stops"] == 1 and cc["starts"] == 1 and cc["stops"] == 1, (b, cc)


# -- nested trees -----------------------------------------------------------------------
def nested_config(config: Callable[..., dict], sub_restart: str) -> dict[str, Any]:
    return sup_config(config, {
        "root": {"max_restarts": 1, "max_seconds": 60, "children": [
            child("x"), {"id": "sub", "supervisor": "sub", "restart": sub_restart}]},
        "sub": {"max_restarts": 1, "max_seconds": 60, "children": [child("a"), child("b")]},
    })


def make_sub_give_up(c: actorsys.Client, starts_before: int) -> None:
    """Crash a twice: the second crash exceeds sub's intensity (max_restarts = 1)."""
    crash(c, "a")
    starts_reach(c, "a", starts_before + 1, "a's first crash (within sub's intensity)")
    crash(c, "a")


def test_nested_supervisor_that_gives_up_is_restarted_with_its_subtree(config):
    """OTP tree: a sub-supervisor that exceeds its intensity stops its children and exits;
    the root restarts it (permanent) with a fresh restart history, which starts its whole
    subtree again. When that happens once more than the root's own intensity allows, the
    root gives up and the node stops with status 3."""
    cfg = nested_config(config, "permanent")
    with actorsys.Node(cfg) as node:
        c = node.client()
        reset_journal(c, ["start x", "start a", "start b"])
        make_sub_give_up(c, 1)
        starts_reach(c, "b", 2, "sub's restart by the root")
        starts_reach(c, "a", 3, "sub's restart by the root")
        # a's own restart, then sub stopping b (a is already dead) and starting a, b again
        wait_lines(c, ["start a", "stop b", "start a", "start b"], "sub giving up")
        assert children(c) == {"x": "running", "sub": "running"}
        assert children(c, "sub") == {"a": "running", "b": "running"}
        x = info(c, "x")
        assert (x["starts"], x["stops"]) == (1, 0), f"x is not touched by sub's restart: {x}"
        make_sub_give_up(c, 3)              # sub's history was reset: two crashes again
        wait_node_stops(node, 3, "sub giving up a second time (root max_restarts = 1)")
        assert "root" in (node.failure or ""), node.failure
    x = committed_state(cfg["node"]["data_dir"], "Worker", "x")
    assert x["stops"] == 1, "the root stopped x when it gave up"


def test_transient_nested_supervisor_that_gives_up_is_not_restarted(config):
    """OTP: a supervisor that gives up exits with reason shutdown, which a transient
    parent spec treats as normal: the sub-supervisor stays stopped, the root runs on."""
    cfg = nested_config(config, "transient")
    with actorsys.Node(cfg) as node:
        c = node.client()
        make_sub_give_up(c, 1)
        wait_until(lambda: children(c) == {"x": "running", "sub": "stopped"},
                   "sub stopped and not restarted", SETTLE)
        assert children(c, "sub") == {"a": "stopped", "b": "stopped"}
        with pytest.raises(actorsys.ActorStopped):
            info(c, "b")
        assert info(c, "x")["starts"] == 1


# -- auto_shutdown ----------------------------------------------------------------------
def test_auto_shutdown_any_significant(config):
    """auto_shutdown = any_significant: a significant transient child that crashes is
    restarted as usual; when it exits normally, the supervisor stops its other children
    and shuts down, which at the root stops the node with status 0 and no failure."""
    cfg = sup_config(config, {"root": {"auto_shutdown": "any_significant", "children": [
        child("a"), child("s", restart="transient", significant=True)]}})
    with actorsys.Node(cfg) as node:
        c = node.client()
        crash(c, "s")
        starts_reach(c, "s", 2, "the significant child's crash")
        assert children(c) == {"a": "running", "s": "running"}
        assert c.ask("Worker", "s", "exit", "normal") == "normal"
        wait_node_stops(node, 0, "the significant child's normal exit")
        assert node.failure is None
    a = committed_state(cfg["node"]["data_dir"], "Worker", "a")
    assert a["stops"] == 1, "the supervisor stopped a when it shut down"


def test_auto_shutdown_all_significant(config):
    """auto_shutdown = all_significant: only after the last significant child has exited
    (here s1 normally, then the temporary s2 by a crash) does the supervisor shut down."""
    cfg = sup_config(config, {"root": {"auto_shutdown": "all_significant", "children": [
        child("a"), child("s1", restart="transient", significant=True),
        child("s2", restart="temporary", significant=True)]}})
    with actorsys.Node(cfg) as node:
        c = node.client()
        assert c.ask("Worker", "s1", "exit", "normal") == "normal"
        wait_until(lambda: children(c) == {"a": "running", "s1": "stopped", "s2": "running"},
                   "s1 stopped, the supervisor still running", SETTLE)
        assert info(c, "a")["stops"] == 0
        crash(c, "s2")
        wait_node_stops(node, 0, "the last significant child's exit")
        assert node.failure is None


def test_terminate_child_of_a_significant_child_does_not_shut_down(config):
    """terminate_child of a significant child is not an exit of its own: no auto_shutdown.
    Restarted with restart_child, the same child's normal exit does shut the node down."""
    cfg = sup_config(config, {"root": {"auto_shutdown": "any_significant", "children": [
        child("a"), child("s", restart="transient", significant=True)]}})
    with actorsys.Node(cfg) as node:
        c = node.client()
        sup = c.supervisor("root")
        sup.terminate_child("s")
        # terminate_child is handled whole before the next request: an auto-shutdown
        # would already have stopped the supervisor
        assert children(c) == {"a": "running", "s": "stopped"}
        assert sup.count_children()["active"] == 1
        assert info(c, "a")["stops"] == 0
        assert sup.restart_child("s")["status"] == "running"
        assert c.ask("Worker", "s", "exit", "normal") == "normal"
        wait_node_stops(node, 0, "the significant child's own normal exit")


# -- backoff ----------------------------------------------------------------------------
def test_backoff_delays_restarts_exponentially(config):
    """backoff = {initial = 0.3, max = 1, jitter = 0}: right after a crash the child is
    "restarting" in which_children (its messages wait), then "running"; the n-th restart
    within the period starts no earlier than 0.3 * 2**(n-1) s after the crash."""
    cfg = sup_config(config, {"root": {"max_restarts": 3, "max_seconds": 60,
                                       "backoff": {"initial": 0.3, "max": 1, "jitter": 0},
                                       "children": [child("a")]}})
    with actorsys.Node(cfg) as node:
        c = node.client()
        for n, delay in ((2, 0.3), (3, 0.6)):
            t0 = time.monotonic_ns()
            crash(c, "a")
            wait_until(lambda: children(c) == {"a": "restarting"},
                       f"a shown as restarting during its {delay} s backoff", SETTLE)
            starts_reach(c, "a", n, f"a's restart after {delay} s of backoff")
            assert children(c) == {"a": "running"}
            # (the journal's line is a tell from a's on_start: it may land a moment later)
            def journaled(n: int = n) -> list[int] | None:
                at = [t for t, line in c.ask("Journal", "main", "entries") if line == "start a"]
                return at if len(at) >= n else None
            started = wait_until(journaled, f"the journal's line of a's start {n}", SETTLE)
            assert len(started) == n, started
            assert started[-1] - t0 >= delay * 1e9, (
                f"restart {n - 1} began {(started[-1] - t0) / 1e9:.3f} s after the crash; "
                f"the backoff is {delay} s")


# -- a killed worker under one_for_all --------------------------------------------------
def test_killed_worker_under_one_for_all_restarts_every_child(config):
    """kill -9 of the worker hosting two children of a one_for_all supervisor whose other
    two children live on the other worker: the survivors are stopped (reverse order) and
    all four start again in order. The two deaths at once are one restart (the second
    exit belongs to an incarnation the group restart already replaced), so the default
    max_restarts = 1 is enough."""
    journal_slot = shard_of("Journal", "main", SHARDS) % WORKERS
    lost, kept = keys_on_slot(1 - journal_slot, 2, "lost"), keys_on_slot(journal_slot, 2, "kept")
    order = [lost[0], kept[0], lost[1], kept[1]]
    cfg = sup_config(config, {"root": {"strategy": "one_for_all",
                                       "children": [child(k) for k in order]}})
    with actorsys.Node(cfg) as node:
        c = node.client()
        assert c.map.slot_of("Journal", "main") == journal_slot
        assert [c.map.slot_of("Worker", k) for k in order] == [1 - journal_slot, journal_slot] * 2
        reset_journal(c, [f"start {k}" for k in order])
        kill_worker_of(node, lost[0])
        for k in order:
            starts_reach(c, k, 2, "the group restart after kill -9")
        wait_lines(c, [f"stop {kept[1]}", f"stop {kept[0]}", *[f"start {k}" for k in order]],
                   "kill -9 of the worker hosting " + ", ".join(lost))
        assert set(children(c).values()) == {"running"}
        assert [info(c, k)["stops"] for k in order] == [0, 1, 0, 1]
