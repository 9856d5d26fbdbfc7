"""Recurring alarms (cron= and every=) against real nodes (real processes, LevelDB,
ZeroMQ): they fire on their schedule until cancelled, are listed with their next due time,
survive kill -9 and a node restart (the times missed while down fire once), a failing
firing is retried then skipped while the schedule carries on, and bad schedules are
refused at the call. Semantics under test: ``actorsys/storage/schedule.py`` and
``actorsys/storage/alarms.py``; the schedule arithmetic itself is unit-tested
(tests/unit/test_storage_schedule.py, test_storage_alarm_recurring.py)."""
from __future__ import annotations

import datetime
import os
import signal
import time
from typing import Any

import pytest
from helpers import NodeStderr

import actorsys
from actorsys.testing import fire_alarms
from actorsys.testing.nodes import key_on_slot, wait_until, worker_pids, workers

FAST_RETRY = {"initial": 0.1, "max": 0.2, "attempts": 3}


def alarm_config(config: Any, **node: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = config(**node)
    cfg["actors"]["Alarmist"] = "alarm_actors:Alarmist"
    return cfg


def attempt_lines(path: Any) -> list[str]:
    """The side-channel file written by on_alarm: one line per attempt."""
    return path.read_text().splitlines() if path.exists() else []


def restarted(node: actorsys.Node, slot: int, old_pid: int) -> bool:
    try:
        pid = worker_pids(node).get(slot)
    except actorsys.ActorError:
        return False
    return pid is not None and pid != old_pid


def ticks(ref: Any, name: str = "tick") -> list[dict[str, Any]]:
    return [f for f in ref.ask("fired") if f["name"] == name]


def assert_on_schedule(fired: list[dict[str, Any]], first: float, every: float) -> None:
    """Each firing came at or after its time, and left its alarm due at a later time of
    the schedule ``first + k * every``: on the grid (no drift), and never already due
    (missed times fire once, not in a burst)."""
    for f in fired:
        assert f["next"] is not None and f["next"] > f["at"], \
            f"a firing leaves its alarm due in the future (no burst): {f}"
        k = (f["next"] - first) / every
        assert abs(k - round(k)) < 1e-6, f"next due time on the schedule's grid (no drift): {f}"
    assert all(f["at"] >= first - 0.001 for f in fired), "none early"


def test_an_interval_alarm_fires_on_its_schedule_until_cancelled(config):
    with actorsys.Node(alarm_config(config)) as n:
        r = n.client().ref("Alarmist", "every")
        first = r.ask("set_every", 1, "tick", {"n": 1})
        listed = r.ask("pending")["tick"]
        assert listed == {"when": first, "payload": {"n": 1}, "attempt": 0, "every": 1.0}
        fired = wait_until(lambda: len(ticks(r)) >= 3 and ticks(r), "three firings", timeout=20)
        assert_on_schedule(fired, first, 1.0)
        assert [f["payload"] for f in fired] == [{"n": 1}] * len(fired)
        assert r.ask("pending")["tick"]["when"] > fired[-1]["at"], "listed at its next time"
        assert r.ask("cancel", "tick") is True
        count = len(ticks(r))
        time.sleep(2.5)                      # more than two periods: none may come
        assert len(ticks(r)) == count and r.ask("pending") == {}, "cancel stops the recurrence"


def test_setting_the_name_again_replaces_the_schedule(config):
    with actorsys.Node(alarm_config(config)) as n:
        r = n.client().ref("Alarmist", "replace")
        r.ask("set_every", 1, "tick", "every second")
        wait_until(lambda: ticks(r), "a first firing", timeout=15)
        due = r.ask("set_cron", "0 0 1 1 *", "tick", "new year")
        listed = r.ask("pending")["tick"]
        assert listed == {"when": due, "payload": "new year", "attempt": 0, "cron": "0 0 1 1 *",
                          "tz": "UTC"}, "the cron alarm replaced the interval one"
        new_year = datetime.datetime.fromtimestamp(due, datetime.timezone.utc)
        assert (new_year.month, new_year.day, new_year.hour, new_year.minute) == (1, 1, 0, 0)
        count = len(ticks(r))
        time.sleep(2.0)
        assert len(ticks(r)) == count, "the interval alarm is gone with its schedule"


def test_a_recurring_alarm_survives_kill_9_of_its_worker(config):
    with actorsys.Node(alarm_config(config)) as n:
        c = n.client()
        key = key_on_slot(c, "Alarmist", 0, "survivor")
        r = c.ref("Alarmist", key)
        victim = r.ask("pid")
        first = r.ask("set_every", 1, "tick")
        wait_until(lambda: ticks(r), "a first firing", timeout=15)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: restarted(n, 0, victim), "the killed worker to be restarted", timeout=15)
        wait_until(lambda: sum(f["pid"] != victim for f in ticks(r)) >= 2,
                   "two firings in the new worker", timeout=20)
        assert_on_schedule(ticks(r), first, 1.0)


def test_recurring_alarms_survive_a_node_restart_and_missed_times_fire_once(config):
    """Down for several periods of an every=1 alarm: it fires once at the restart, then
    on its grid; a cron alarm set before the stop is still due at its minute, and its
    firing (fired now, on this node started for testing, rather than waiting up to a
    minute) moves it to the next minute."""
    cfg = alarm_config(config, testing=True)
    with actorsys.Node(cfg) as n:
        r = n.client().ref("Alarmist", "restart")
        first = r.ask("set_every", 1, "tick")
        minute = r.ask("set_cron", "* * * * *", "minute")
        wait_until(lambda: ticks(r), "a first firing", timeout=15)
        assert n.stop() == 0, "expected a clean stop"
    down_since = time.time()
    time.sleep(3.5)                                         # three or more times are missed
    with actorsys.Node(cfg) as n:
        r = n.client().ref("Alarmist", "restart")
        before = len([f for f in ticks(r) if f["at"] < down_since])
        wait_until(lambda: len(ticks(r)) >= before + 3, "firings after the restart", timeout=20)
        after = [f for f in ticks(r) if f["at"] >= down_since]
        assert after[0]["at"] >= down_since + 3.5, "nothing fired while the node was down"
        assert_on_schedule(ticks(r), first, 1.0)            # (once at the restart: no burst)
        r.ask("cancel", "tick")
        # (a minute boundary the test's own run crossed fired it on its own: due a minute on)
        natural = len(ticks(r, "minute"))
        listed = r.ask("pending")["minute"]
        natural_after = len(ticks(r, "minute"))
        assert listed["cron"] == "* * * * *" and minute % 60 == 0 and listed["when"] in (
            minute + 60 * natural, minute + 60 * natural_after), \
            f"the cron alarm kept its schedule across the restart: {listed}, set for {minute}"
        assert fire_alarms(r, "minute") == ["minute"]
        fired = ticks(r, "minute")
        assert len(fired) == natural_after + 1 and fired[-1]["next"] == listed["when"] + 60, \
            f"fired once, then due at the next minute: {fired}, set for {minute}"


def test_a_failing_firing_is_retried_then_skipped_and_the_schedule_carries_on(config, tmp_path):
    side = tmp_path / "attempts.txt"
    err = NodeStderr(tmp_path / "node-stderr.log")
    with err.node(alarm_config(config, alarm_retry=FAST_RETRY)) as n:
        c = n.client()
        key = key_on_slot(c, "Alarmist", 1, "flaky")
        r = c.ref("Alarmist", key)
        first = r.ask("set_every", 1, "tick", {"file": str(side), "fail_until": 4})
        err.wait_for("firing of recurring alarm 'tick' of Alarmist/.* dropped after 3 failed attempts",
                     "the worker to give up the first firing and say so", timeout=20)
        fired = wait_until(lambda: len(ticks(r)) >= 2 and ticks(r), "the next times to fire",
                           timeout=20)
        assert len(attempt_lines(side)) >= 5, "three failed attempts, then the next times"
        assert_on_schedule(fired, first, 1.0)
        assert r.ask("rolled_back") is False, "the failed attempts' changes were rolled back"
        assert workers(n)[1]["alarms_dropped"] == 1, "one firing dropped, not the alarm"
        assert "tick" in r.ask("pending")


BAD = [
    ({"cron": "*/5 * * * * *"}, "ValueError", "has 6 fields"),
    ({"cron": "61 * * * *"}, "ValueError", "bad cron expression"),
    ({"cron": "0 0 30 2 *"}, "ValueError", "never comes due"),
    ({"cron": 5}, "TypeError", "is a string"),
    ({"cron": "* * * * *", "tz": "Atlantis/Capital"}, "ValueError", "unknown time zone"),
    ({"every": 0}, "ValueError", "at least 1 second"),
    ({"every": -5}, "ValueError", "at least 1 second"),
    ({"every": 0.01}, "ValueError", "at least 1 second"),
    ({"every": "30"}, "TypeError", "period in seconds"),
    ({"when": 5, "cron": "* * * * *"}, "TypeError", "exactly one of"),
    ({"every": 5, "cron": "* * * * *"}, "TypeError", "exactly one of"),
    ({}, "TypeError", "exactly one of"),
    ({"every": 5, "tz": "UTC"}, "TypeError", "tz= goes with cron="),
]


def test_bad_schedules_are_refused_at_the_call_and_set_nothing(config):
    with actorsys.Node(alarm_config(config)) as n:
        r = n.client().ref("Alarmist", "bad")
        due = r.ask("set_every", 3600, "x", "kept")
        for how, remote_type, says in BAD:
            with pytest.raises(actorsys.RemoteError, match=says) as exc:
                r.ask("set_how", how, "x")
            assert exc.value.remote_type == remote_type, f"{how}: {exc.value}"
        assert r.ask("pending") == {"x": {"when": due, "payload": "kept", "attempt": 0, "every": 3600.0}}, \
            "each refused call failed its turn: the alarm it would have replaced stands"
        assert worker_pids(n), "the node still serves"
