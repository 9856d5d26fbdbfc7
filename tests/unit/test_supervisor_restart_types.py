"""Restart types against normal, shutdown and abnormal exits: OTP supervisor_SUITE's
``normal_termination``, ``shutdown_termination`` and ``abnormal_termination`` groups and
``do_not_save_child_specs_for_temporary_children``, against a fake child host."""
from __future__ import annotations

import pytest
from test_supervisor_fakehost import FakeHost, in_loop, table, worker

from actorsys.config.supervision import Restart
from actorsys.errors import AlreadyPresent, AlreadyStarted
from supervisors.child import restarts_after

# (OTP case, restart type, exit reason, restarted?)
CASES = [
    ("permanent_normal", "permanent", "normal", True),
    ("transient_normal", "transient", "normal", False),
    ("temporary_normal", "temporary", "normal", False),
    ("permanent_shutdown", "permanent", "shutdown", True),
    ("transient_shutdown", "transient", "shutdown", False),
    ("temporary_shutdown", "temporary", "shutdown", False),
    ("permanent_abnormal", "permanent", "RuntimeError: boom", True),
    ("transient_abnormal", "transient", "RuntimeError: boom", True),
    ("temporary_abnormal", "temporary", "RuntimeError: boom", False),
    ("transient_abnormal (worker lost)", "transient", "killed", True),
]


@pytest.mark.parametrize("case, restart, reason, restarted", CASES, ids=[c[0] for c in CASES])
@in_loop
async def test_restart_type_decides_whether_an_exit_restarts(case: str, restart: str, reason: str,
                                                             restarted: bool) -> None:
    """OTP ``permanent_normal`` ... ``temporary_abnormal`` (see CASES): a permanent child
    is always restarted, a transient one after an abnormal exit only, a temporary one
    never; a child not restarted stays as a stopped spec, but a temporary one is gone."""
    assert restarts_after(Restart(restart), reason) is restarted
    host = FakeHost(root=table(worker("child1", restart)))
    await host.boot()
    host.clear()
    await host.exit("root", "child1", reason)
    if restarted:
        assert host.journal == [("start", "root", "child1")]
        assert host.statuses("root") == {"child1": "running"} and host.counts("root") == [1, 1, 0, 1]
    elif restart == "temporary":
        assert host.sup("root").which_children() == [] and host.counts("root") == [0, 0, 0, 0]
    else:
        assert host.statuses("root") == {"child1": "stopped"} and host.counts("root") == [1, 0, 0, 1]
        assert host.store.is_stopped("root", "child1"), "kept stopped across a tree restart"
    assert host.root_exits == [], "one exit is within any intensity"


@in_loop
async def test_a_transient_child_stopped_by_a_normal_exit_can_be_restarted_by_hand() -> None:
    """OTP ``transient_shutdown``: after a shutdown exit, restart_child starts it; a
    second normal exit leaves it stopped again."""
    host = FakeHost(root=table(worker("child1", "transient")))
    await host.boot()
    await host.exit("root", "child1", "shutdown")
    info = await host.sup("root").restart_child("child1")
    assert info["status"] == "running"
    await host.exit("root", "child1", "normal")
    assert host.counts("root") == [1, 0, 0, 1]


@pytest.mark.parametrize("how", ["killed", "normal", "abnormal", "supervisor"])
@in_loop
async def test_specs_of_temporary_children_are_not_saved(how: str) -> None:
    """OTP ``do_not_save_child_specs_for_temporary_children`` (each strategy, each way of
    ending): a permanent child is restarted (start_child: already started), a transient
    one too unless the exit was normal or by the supervisor (already present), a
    temporary one is forgotten (start_child starts it again)."""
    for strategy in ("one_for_one", "one_for_all", "rest_for_one"):
        host = FakeHost(root=table(strategy=strategy))
        await host.boot()
        sup = host.sup("root")
        for cid, restart in (("child1", "permanent"), ("child2", "transient"), ("child3", "temporary")):
            spec = worker(cid, restart)
            await sup.start_child(spec)
            if how == "supervisor":
                await sup.terminate_child(cid)
            else:
                await host.exit("root", cid, {"abnormal": "RuntimeError: x"}.get(how, how))
            if restart == "temporary":
                assert (await sup.start_child(spec))["status"] == "running", (strategy, how)
            elif how == "supervisor" or (restart == "transient" and how == "normal"):
                with pytest.raises(AlreadyPresent):
                    await sup.start_child(spec)
                assert (await sup.restart_child(cid))["status"] == "running"
            else:
                with pytest.raises(AlreadyStarted):
                    await sup.start_child(spec)


@in_loop
async def test_an_exit_notice_about_an_earlier_incarnation_is_ignored() -> None:
    """Beyond OTP (whose exit signals carry the pid): a worker's late EXIT about an
    incarnation already restarted must not restart the child a second time."""
    host = FakeHost(root=table(worker("child1")))
    await host.boot()
    old = host.child("root", "child1").inc
    await host.exit("root", "child1")
    host.clear()
    await host.sup("root").on_exit(host.child("root", "child1"), "crash", old)
    assert host.journal == [] and host.statuses("root") == {"child1": "running"}
