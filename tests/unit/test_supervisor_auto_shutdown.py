"""Auto shutdown with significant children (never / any_significant / all_significant):
OTP supervisor_SUITE's ``significant`` group, against a fake child host."""
from __future__ import annotations

import pytest
from test_supervisor_fakehost import FakeHost, in_loop, nested, table, worker

from actorsys.errors import ConfigError
from supervisors.supervisor import ExitWhy

MODES = ["never", "any_significant", "all_significant"]


@pytest.mark.parametrize("auto", MODES)
@pytest.mark.parametrize("restart", ["temporary", "transient"])
@in_loop
async def test_exits_of_non_significant_children_never_shut_down(auto: str, restart: str) -> None:
    """OTP ``nonsignificant_temporary`` / ``nonsignificant_transient``: terminated by the
    supervisor, killed, abnormal or normal, a non-significant child never triggers it."""
    host = FakeHost(root=table(auto_shutdown=auto, max_restarts=5))
    await host.boot()
    sup = host.sup("root")
    for how in ("supervisor", "killed", "RuntimeError: x", "normal"):
        if "child1" not in sup.by_id:
            await sup.start_child(worker("child1", restart))
        elif host.statuses("root")["child1"] == "stopped":
            await sup.restart_child("child1")
        if how == "supervisor":
            await sup.terminate_child("child1")
        else:
            await host.exit("root", "child1", how)
        assert sup.running and host.root_exits == [], how


@in_loop
async def test_temporary_significant_children() -> None:
    """OTP ``significant_temporary``: any_significant shuts down when a significant
    temporary child exits in any way (killed, abnormal, normal) but not when terminated
    by the supervisor; all_significant when the last significant one has exited."""
    kids = (worker("child1", "temporary", significant=True), worker("child2", "temporary", significant=True),
            worker("child3", "temporary"))
    host = FakeHost(root=table(*kids, auto_shutdown="any_significant", max_restarts=5))
    await host.boot()
    await host.sup("root").terminate_child("child1")
    assert host.root_exits == [] and host.sup("root").running
    for how in ("killed", "RuntimeError: x", "normal"):
        host = FakeHost(root=table(*kids, auto_shutdown="any_significant", max_restarts=5))
        await host.boot()
        await host.exit("root", "child1", how)
        assert host.root_exits == [("root", ExitWhy.AUTO_SHUTDOWN)], how
        assert host.running == {}, "every child stopped with it"
    host = FakeHost(root=table(*kids, auto_shutdown="all_significant", max_restarts=5))
    await host.boot()
    await host.exit("root", "child1", "normal")
    assert host.root_exits == [] and set(host.running) == {("W", "child2"), ("W", "child3")}
    await host.exit("root", "child2", "normal")
    assert host.root_exits == [("root", ExitWhy.AUTO_SHUTDOWN)] and host.running == {}


@in_loop
async def test_transient_significant_children() -> None:
    """OTP ``significant_transient``: an abnormal exit (or a kill) restarts the child and
    shuts nothing down; a normal exit does (any_significant), or the last one does
    (all_significant); terminate_child never does."""
    kids = (worker("child1", "transient", significant=True), worker("child2", "transient", significant=True),
            worker("child3", "transient"))
    host = FakeHost(root=table(*kids, auto_shutdown="any_significant", max_restarts=5))
    await host.boot()
    sup = host.sup("root")
    await sup.terminate_child("child1")
    await sup.restart_child("child1")
    await host.exit("root", "child1", "killed")
    await host.exit("root", "child1", "RuntimeError: x")
    assert host.root_exits == [] and host.statuses("root")["child1"] == "running"
    await host.exit("root", "child1", "normal")
    assert host.root_exits == [("root", ExitWhy.AUTO_SHUTDOWN)] and host.running == {}
    host = FakeHost(root=table(*kids, auto_shutdown="all_significant", max_restarts=5))
    await host.boot()
    await host.exit("root", "child1", "normal")
    assert host.root_exits == []
    await host.exit("root", "child2", "shutdown")
    assert host.root_exits == [("root", ExitWhy.AUTO_SHUTDOWN)]


def test_auto_shutdown_is_refused_with_simple_one_for_one() -> None:
    """OTP ``significant_simple``: a bad combination, refused at start (here: the config);
    ``never`` is fine. Also OTP ``child_specs_map``'s bad combinations: a significant child
    of a supervisor that never shuts down, and a permanent significant child."""
    for auto in ("any_significant", "all_significant"):
        with pytest.raises(ConfigError, match="bad combination"):
            FakeHost(root=table({"id": "t", "actor": "W"}, strategy="simple_one_for_one",
                                auto_shutdown=auto))
    FakeHost(root=table({"id": "t", "actor": "W"}, strategy="simple_one_for_one", auto_shutdown="never"))
    with pytest.raises(ConfigError, match="bad combination"):
        FakeHost(root=table(worker("a", "transient", significant=True)))
    with pytest.raises(ConfigError, match="bad combination"):
        FakeHost(root=table(worker("a", "permanent", significant=True), auto_shutdown="any_significant"))


@pytest.mark.parametrize("strategy, stopped", [("one_for_one", ["child2"]),
                                               ("one_for_all", ["child2", "child3", "child1"]),
                                               ("rest_for_one", ["child2", "child3"])])
@pytest.mark.parametrize("auto", ["any_significant", "all_significant"])
@in_loop
async def test_significant_bystanders_restarted_by_a_strategy_shut_nothing_down(
        strategy: str, stopped: list[str], auto: str) -> None:
    """OTP ``significant_bystander``: a non-significant sibling is killed; the
    significant children its restart stops and starts again do not trigger auto shutdown."""
    host = FakeHost(root=table(worker("child1", "transient", significant=True),
                               worker("child2", "transient"),
                               worker("child3", "transient", significant=True),
                               strategy=strategy, auto_shutdown=auto, max_restarts=5))
    await host.boot()
    host.clear()
    await host.exit("root", "child2", "killed")
    assert [c for c in ("child1", "child2", "child3") if c in host.started()] == sorted(stopped)
    assert host.root_exits == [] and len(host.running) == 3


@in_loop
async def test_auto_shutdown_escalates_through_a_significant_supervisor() -> None:
    """OTP ``significant_escalation``: worker C is significant in supervisor B, B is a
    significant child of A; C's normal exit shuts B down, and B's exit shuts A down. When
    B is not significant in A, A keeps running."""
    for significant in (True, False):
        host = FakeHost(a=table(nested("b", "b", restart="transient", significant=significant),
                                auto_shutdown="any_significant"),
                        b=table(worker("c", "transient", significant=True), auto_shutdown="any_significant"))
        await host.boot()
        await host.exit("b", "c", "normal")
        assert not host.sup("b").running
        if significant:
            assert host.root_exits == [("a", ExitWhy.AUTO_SHUTDOWN)]
        else:
            assert host.root_exits == [] and host.sup("a").running
            assert host.statuses("a") == {"b": "stopped"}, "transient: shutdown is a normal exit"
