"""Restart intensity and its sliding window, escalation, failed restarts and backoff:
OTP supervisor_SUITE's ``multiple_restarts``, ``hanging_restart_loop`` and the
``*_escalation`` cases (the intensity part), plus this project's backoff, against a fake
child host with a mock clock in milliseconds."""
from __future__ import annotations

import pytest
from test_supervisor_fakehost import FakeHost, in_loop, nested, table, worker

from actorsys.config.supervision import Backoff
from actorsys.errors import AlreadyStarted, ChildRunning
from supervisors.supervisor import ExitWhy

SECOND = 1000     # the mock clock counts milliseconds


@in_loop
async def test_restarts_spread_out_in_time_never_reach_the_intensity() -> None:
    """OTP ``multiple_restarts``: intensity 1 within 1 s; a restart every 2.1 s forever
    is fine, because a restart leaves the window after max_seconds."""
    host = FakeHost(root=table(worker("child1", shutdown="brutal_kill"), max_restarts=1, max_seconds=1))
    await host.boot()
    for _ in range(4):
        await host.exit("root", "child1")
        await host.advance(2.1 * SECOND)
    assert host.root_exits == [] and host.started().count("child1") == 5
    await host.sup("root").terminate_child("child1")
    await host.sup("root").delete_child("child1")


@in_loop
async def test_the_window_slides_old_restarts_stop_counting() -> None:
    """OTP's intensity (``add_restart``: restarts at or after now - period count): with
    2 restarts within 10 s, restarts at 0, 6 and 10 s are 3 within 10 s (the one at 0
    is exactly 10 s old and still counts) -> give up; at 0, 6 and 10.001 s they are not."""
    for last, gives_up in ((10 * SECOND, True), (10 * SECOND + 1, False)):
        host = FakeHost(root=table(worker("a"), max_restarts=2, max_seconds=10))
        await host.boot()
        await host.exit("root", "a")                 # t = 0
        await host.advance(6 * SECOND)
        await host.exit("root", "a")                 # t = 6 s
        await host.advance(last - 6 * SECOND)
        await host.exit("root", "a")                 # t = 10 s (or just after)
        assert bool(host.root_exits) is gives_up, f"third restart at {last} ms"
        if not gives_up:
            await host.exit("root", "a")             # 6, 10.001, 10.001: three within 10 s
            assert host.root_exits == [("root", ExitWhy.INTENSITY)]


@in_loop
async def test_max_restarts_zero_gives_up_at_the_first_exit() -> None:
    """OTP intensity 0: no restart is allowed at all."""
    host = FakeHost(root=table(worker("a"), worker("b"), max_restarts=0))
    await host.boot()
    host.clear()
    await host.exit("root", "a")
    assert host.root_exits == [("root", ExitWhy.INTENSITY)]
    assert host.journal == [("stop", "root", "b", 5000), ("stop", "root", "a", 5000)], \
        "every child stops, the dead one too (its worker fails what waited for it); nothing starts"
    assert not host.sup("root").running


@in_loop
async def test_a_nested_supervisor_that_gives_up_is_an_exit_its_parent_handles() -> None:
    """OTP ``*_escalation``: a supervisor past its intensity exits with reason shutdown;
    a permanent parent restarts it, a transient one keeps it stopped (shutdown is a
    normal exit), and a top-level one reports to the host."""
    for restart, restarted in (("permanent", True), ("transient", False)):
        host = FakeHost(root=table(nested("s", "sub", restart=restart), worker("w")),
                        sub=table(worker("a"), max_restarts=0))
        await host.boot()
        host.clear()
        await host.exit("sub", "a")
        assert host.root_exits == [], "the root handles it by its spec"
        assert host.statuses("root") == {"s": "running" if restarted else "stopped", "w": "running"}
        assert host.started() == (["a"] if restarted else []), restart
    host = FakeHost(root=table(nested("s", "sub"), max_restarts=0), sub=table(worker("a"), max_restarts=0))
    await host.boot()
    await host.exit("sub", "a")
    assert host.root_exits == [("root", ExitWhy.INTENSITY)], "up to the top: the host stops the node"


@in_loop
async def test_a_child_whose_restart_keeps_failing_reports_restarting() -> None:
    """OTP ``hanging_restart_loop``: while its restart is failing and tried again the
    child reports ``restarting`` (not active); restart_child and delete_child refuse
    (OTP: ``{error, restarting}``); terminate_child stops it and the pending retry then
    leaves it alone; restart_child starts it once it can. Unlike OTP, start_child of its
    spec answers already_started (OTP: already_present)."""
    host = FakeHost(root=table(worker("child1", shutdown="brutal_kill"), max_restarts=8, max_seconds=10))
    await host.boot()
    sup = host.sup("root")
    host.fail_starts["child1"] = float("inf")
    ch = host.child("root", "child1")
    await sup.on_exit(ch, "crash", ch.inc)           # the first retry is queued, not yet run
    assert host.statuses("root") == {"child1": "restarting"} and host.counts("root") == [1, 0, 0, 1]
    with pytest.raises(AlreadyStarted):
        await sup.start_child(worker("child1", shutdown="brutal_kill"))
    with pytest.raises(ChildRunning, match="restarting"):
        await sup.restart_child("child1")
    with pytest.raises(ChildRunning, match="restarting"):
        await sup.delete_child("child1")
    await sup.terminate_child("child1")
    await host.settle()
    assert host.statuses("root") == {"child1": "stopped"}
    assert [e[0] for e in host.journal].count("start_failed") == 1, "the retry found it stopped"
    host.fail_starts["child1"] = 0
    assert (await sup.restart_child("child1"))["status"] == "running"
    assert host.root_exits == []


# -- backoff (beyond OTP) ----------------------------------------------------------------
def test_backoff_doubles_from_initial_up_to_max_spread_by_jitter() -> None:
    """Beyond OTP: the n-th restart within the window waits initial * 2**(n-1), capped at
    max, times a factor within 1 +- jitter."""
    b = Backoff(initial=0.1, max=1.0, jitter=0.0)
    assert [b.delay(n, 0.5) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    j = Backoff(initial=1.0, max=1.0, jitter=0.2)
    assert j.delay(1, 0.0) == pytest.approx(0.8) and j.delay(1, 0.5) == pytest.approx(1.0)
    assert 1.0 < j.delay(1, 0.999) < 1.2
    assert Backoff(initial=1.0, max=60.0).delay(10_000, 0.5) == 60.0, "no overflow far out"


@in_loop
async def test_backoff_delays_each_restart_and_the_child_reports_restarting() -> None:
    """Beyond OTP: with backoff {initial 100 ms, max 400 ms}, restarts within the window
    wait 100, 200, 400, 400 ms; meanwhile the child reports ``restarting``."""
    host = FakeHost(root=table(worker("a"), max_restarts=10, max_seconds=60,
                               backoff={"initial": 0.1, "max": 0.4, "jitter": 0}))
    await host.boot()
    for delay in (100, 200, 400, 400):
        host.clear()
        await host.exit("root", "a")
        assert host.statuses("root") == {"a": "restarting"} and host.journal == []
        await host.advance(delay - 1)
        assert host.journal == [], f"started before its {delay} ms backoff"
        await host.advance(1)
        assert host.journal == [("start", "root", "a")] and host.statuses("root") == {"a": "running"}


@in_loop
async def test_backoff_stops_the_dependants_at_once_and_starts_them_after_the_delay() -> None:
    """Beyond OTP: under rest_for_one, the children after the dead one never run without
    it: they stop at once, and start with it when its backoff is over."""
    host = FakeHost(root=table(worker("db"), worker("cache"), worker("web"), strategy="rest_for_one",
                               backoff={"initial": 1, "max": 1, "jitter": 0}))
    await host.boot()
    host.clear()
    await host.exit("root", "cache")
    assert host.journal == [("stop", "root", "web", 5000)]
    assert host.statuses("root") == {"db": "running", "cache": "restarting", "web": "restarting"}
    await host.advance(SECOND)
    assert host.started() == ["cache", "web"]


@in_loop
async def test_backoff_delay_shrinks_again_as_restarts_leave_the_window() -> None:
    """Beyond OTP: the n in initial * 2**(n-1) counts the restarts within the window only."""
    host = FakeHost(root=table(worker("a"), max_restarts=10, max_seconds=5,
                               backoff={"initial": 0.1, "max": 10, "jitter": 0}))
    await host.boot()
    await host.exit("root", "a")
    await host.advance(100)
    await host.exit("root", "a")                     # the second within 5 s: 200 ms
    await host.advance(199)
    assert host.statuses("root") == {"a": "restarting"}
    await host.advance(1)
    await host.advance(10 * SECOND)                  # both leave the window
    host.clear()
    await host.exit("root", "a")
    await host.advance(100)
    assert host.started() == ["a"], "back to the initial delay"


@in_loop
async def test_a_child_terminated_during_its_backoff_is_not_started_when_it_is_due() -> None:
    """Beyond OTP: terminate_child wins over a pending restart; so does a supervisor stop."""
    host = FakeHost(root=table(worker("a"), worker("b"), backoff={"initial": 1, "max": 1, "jitter": 0}))
    await host.boot()
    await host.exit("root", "a")
    await host.exit("root", "b")
    await host.sup("root").terminate_child("a")
    await host.stop_tree()
    host.clear()
    await host.advance(5 * SECOND)
    assert host.journal == [] and host.statuses("root") == {"a": "stopped", "b": "stopped"}
