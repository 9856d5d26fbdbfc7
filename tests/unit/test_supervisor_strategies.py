"""Restart strategies, ordered start and reverse-ordered stop: OTP supervisor_SUITE's
``restart_one_for_one``, ``restart_one_for_all``, ``restart_rest_for_one`` and
``restart_simple_one_for_one`` groups, ``order_of_children``, ``temporary_bystander``
and ``tree``, against a fake child host (no processes)."""
from __future__ import annotations

from test_supervisor_fakehost import FakeHost, ids, in_loop, nested, table, worker

from supervisors.supervisor import ExitWhy


@in_loop
async def test_children_start_in_declared_order_and_stop_in_reverse() -> None:
    """OTP ``order_of_children``: start order as declared (ids not sorted), a restart of
    the middle child under rest_for_one stops the later ones last-first, starts them in
    order; a supervisor stop stops every child in reverse start order."""
    order = ["ch7", "ch3", "ch10", "ch2", "ch5"]
    host = FakeHost(root=table(*(worker(c) for c in order), strategy="rest_for_one"))
    await host.boot()
    assert host.started() == order
    host.clear()
    await host.exit("root", "ch10")
    assert host.stopped() == ["ch5", "ch2"], "the dependants stop last-first"
    assert host.started() == ["ch10", "ch2", "ch5"], "then start again in order"
    host.clear()
    await host.stop_tree()
    assert host.stopped() == list(reversed(order))


@in_loop
async def test_one_for_one_restarts_only_the_child_that_exited() -> None:
    """OTP ``one_for_one``: the dead child alone is restarted, the other keeps running;
    then more than max_restarts (2) restarts make the supervisor give up."""
    host = FakeHost(root=table(worker("child1"), worker("child2"), max_restarts=2))
    await host.boot()
    host.clear()
    await host.exit("root", "child1")
    assert host.journal == [("start", "root", "child1")], "child2 untouched, child1 not stopped again"
    assert host.counts("root") == [2, 2, 0, 2]
    await host.exit("root", "child2")
    assert host.root_exits == []
    await host.exit("root", "child1")
    assert host.root_exits == [("root", ExitWhy.INTENSITY)], "the third restart within the hour"
    assert not host.sup("root").running and host.running == {}


@in_loop
async def test_one_for_one_escalation_when_a_restart_keeps_failing() -> None:
    """OTP ``one_for_one_escalation``: child1 cannot start again; each failed start
    counts as a restart, so the supervisor gives up and stops child2 too."""
    host = FakeHost(root=table(worker("child1"), worker("child2"), max_restarts=4))
    await host.boot()
    host.fail_starts["child1"] = float("inf")
    await host.exit("root", "child1")
    assert host.root_exits == [("root", ExitWhy.INTENSITY)]
    assert [e[0] for e in host.journal].count("start_failed") == 4, "tried again until the limit"
    assert ("stop", "root", "child2", 5000) in host.journal and host.running == {}


@in_loop
async def test_one_for_all_restarts_every_child() -> None:
    """OTP ``one_for_all``: the others stop (reverse order), then all start in order;
    then the intensity (2) is reached."""
    host = FakeHost(root=table(worker("a"), worker("b"), worker("c"), strategy="one_for_all",
                               max_restarts=2))
    await host.boot()
    host.clear()
    await host.exit("root", "b")
    assert host.journal == [("stop", "root", "c", 5000), ("stop", "root", "a", 5000),
                            ("start", "root", "a"), ("start", "root", "b"), ("start", "root", "c")]
    assert host.counts("root") == [3, 3, 0, 3]
    await host.exit("root", "a")
    await host.exit("root", "c")
    assert host.root_exits == [("root", ExitWhy.INTENSITY)]


@in_loop
async def test_one_for_all_escalation() -> None:
    """OTP ``one_for_all_escalation``: child2 cannot start again; the supervisor gives
    up and every child is stopped."""
    host = FakeHost(root=table(worker("child1"), worker("child2"), strategy="one_for_all",
                               max_restarts=4))
    await host.boot()
    host.fail_starts["child2"] = float("inf")
    await host.exit("root", "child1")
    assert host.root_exits == [("root", ExitWhy.INTENSITY)] and host.running == {}


@in_loop
async def test_one_for_all_stops_a_restarted_child_when_another_fails_to_start() -> None:
    """OTP ``one_for_all_other_child_fails_restart``: child1 restarts, child2 fails to;
    the retry of the group stops child1 again, then starts both."""
    host = FakeHost(root=table(worker("child1"), worker("child2"), strategy="one_for_all"))
    await host.boot()
    host.clear()
    host.fail_starts["child2"] = 1
    await host.exit("root", "child1")
    assert host.journal == [("stop", "root", "child2", 5000), ("start", "root", "child1"),
                            ("start_failed", "root", "child2"), ("stop", "root", "child1", 5000),
                            ("start", "root", "child1"), ("start", "root", "child2")]
    assert host.statuses("root") == {"child1": "running", "child2": "running"}


@in_loop
async def test_rest_for_one_restarts_the_child_and_those_after_it() -> None:
    """OTP ``rest_for_one``: child2 exits: child3 stops, child2 and child3 start,
    child1 untouched; then the intensity (2) is reached."""
    host = FakeHost(root=table(worker("child1"), worker("child2"), worker("child3"),
                               strategy="rest_for_one", max_restarts=2))
    await host.boot()
    assert host.counts("root") == [3, 3, 0, 3]
    host.clear()
    await host.exit("root", "child2")
    assert host.journal == [("stop", "root", "child3", 5000), ("start", "root", "child2"),
                            ("start", "root", "child3")]
    assert host.counts("root") == [3, 3, 0, 3]
    await host.exit("root", "child3")
    await host.exit("root", "child2")
    assert host.root_exits == [("root", ExitWhy.INTENSITY)]


@in_loop
async def test_rest_for_one_escalation() -> None:
    """OTP ``rest_for_one_escalation``: child2 (after child1) cannot start again."""
    host = FakeHost(root=table(worker("child1"), worker("child2"), strategy="rest_for_one",
                               max_restarts=4))
    await host.boot()
    host.fail_starts["child2"] = float("inf")
    await host.exit("root", "child1")
    assert host.root_exits == [("root", ExitWhy.INTENSITY)] and host.running == {}


@in_loop
async def test_rest_for_one_retries_only_the_child_that_failed_to_start() -> None:
    """OTP ``rest_for_one_other_child_fails_restart``: child1 restarts, child2 fails to;
    the retry restarts child2 (and those after it), not child1 again."""
    host = FakeHost(root=table(worker("child1"), worker("child2"), strategy="rest_for_one"))
    await host.boot()
    host.clear()
    host.fail_starts["child2"] = 1
    await host.exit("root", "child1")
    assert host.journal == [("stop", "root", "child2", 5000), ("start", "root", "child1"),
                            ("start_failed", "root", "child2"), ("start", "root", "child2")]


@in_loop
async def test_simple_one_for_one_restarts_the_child_alone() -> None:
    """OTP ``simple_one_for_one``: children made by start_child from the template; one
    exits and is restarted alone; then the intensity (2) is reached."""
    host = FakeHost(root=table({"id": "t", "actor": "W"}, strategy="simple_one_for_one",
                               max_restarts=2))
    await host.boot()
    sup = host.sup("root")
    assert sup.which_children() == [] and host.counts("root") == [1, 0, 0, 0]
    k1 = await sup.start_child({"key": "k1"})
    k2 = await sup.start_child({})
    assert k1 == "k1" and isinstance(k2, str) and len(k2) == 32, "a key is made when none is given"
    assert host.counts("root") == [1, 2, 0, 2]
    host.clear()
    await host.exit("root", "k1")
    assert host.journal == [("start", "root", "k1")]
    assert host.counts("root") == [1, 2, 0, 2]
    await host.exit("root", k2)
    await host.exit("root", "k1")
    assert host.root_exits == [("root", ExitWhy.INTENSITY)]


@in_loop
async def test_simple_one_for_one_escalation() -> None:
    """OTP ``simple_one_for_one_escalation``: a child that cannot start again."""
    host = FakeHost(root=table({"id": "t", "actor": "W"}, strategy="simple_one_for_one",
                               max_restarts=4))
    await host.boot()
    sup = host.sup("root")
    await sup.start_child({"key": "bad"})
    await sup.start_child({"key": "good"})
    host.fail_starts["bad"] = float("inf")
    await host.exit("root", "bad")
    assert host.root_exits == [("root", ExitWhy.INTENSITY)] and host.running == {}


@in_loop
async def test_simple_one_for_one_start_arguments_extend_the_template() -> None:
    """OTP ``simple_one_for_one`` start_child(Sup, ExtraArgs): the extra arguments are
    appended to the template's (kwargs merged over the template's)."""
    host = FakeHost(root=table({"id": "t", "actor": "W", "args": [1], "kwargs": {"a": 1, "b": 2}},
                               strategy="simple_one_for_one"))
    await host.boot()
    await host.sup("root").start_child({"key": "k", "args": [2], "kwargs": {"b": 3}})
    spec = host.child("root", "k").spec
    assert (spec.args, spec.kwargs, spec.key, spec.id) == ([1, 2], {"a": 1, "b": 3}, "k", "k")


@in_loop
async def test_a_temporary_bystander_is_not_restarted() -> None:
    """OTP ``temporary_bystander``: a temporary child stopped because a sibling restarts
    (one_for_all, rest_for_one) is not restarted, and its spec is gone."""
    for strategy in ("one_for_all", "rest_for_one"):
        host = FakeHost(root=table(worker("child1"), worker("child2", "temporary"), strategy=strategy))
        await host.boot()
        await host.exit("root", "child1", "normal")
        assert ids(host.sup("root").which_children()) == ["child1"], strategy
        assert host.started().count("child2") == 1 and host.root_exits == []


@in_loop
async def test_a_tree_restarts_only_what_a_strategy_says() -> None:
    """OTP ``tree``: a one_for_all root over two supervisors. A worker's exit restarts it
    alone inside its supervisor; a supervisor that gives up is restarted by the root with
    every sibling (one_for_all), from their specs: run-time children are gone."""
    host = FakeHost(root=table(nested("supchild1", "sup1"), nested("supchild2", "sup2"),
                               strategy="one_for_all"),
                    sup1=table(worker("child1"), worker("child2")),
                    sup2=table(max_restarts=1))
    await host.boot()
    assert host.counts("root") == [2, 2, 2, 0] and host.counts("sup1") == [2, 2, 0, 2]
    sup2 = host.sup("sup2")
    await sup2.start_child(worker("child3"))
    await sup2.start_child(worker("child4"))
    assert host.counts("sup2") == [2, 2, 0, 2]
    host.clear()
    await host.exit("sup2", "child4")
    assert host.journal == [("start", "sup2", "child4")], "only the child that died"
    host.clear()
    await host.exit("sup2", "child3")          # sup2's second restart within the hour: gives up
    assert sup2.running and sup2.which_children() == [], \
        "sup2 started again, fresh: without its run-time children"
    assert host.started() == ["child1", "child2"], "sup1 restarted too (one_for_all)"
    assert host.counts("root") == [2, 2, 2, 0] and host.root_exits == []
