"""Alarms against real nodes (real processes, LevelDB, ZeroMQ): named alarms, cancel and
replace, reactivation, retry with backoff and drop, durability across kill -9 and node
restarts, at-least-once delivery, rollback with a failed turn, bad input, fire latency.
Semantics under test: the module docstring of ``actorsys/alarms.py``. The tests of the
default config share one node (``alarm_node``)."""
from __future__ import annotations

import os
import signal
import time
from contextlib import nullcontext
from typing import Iterator

import pytest
from helpers import NodeStderr, make_config, module_node

import actorsys
from actorsys.testing.nodes import key_on_slot, wait_until, worker_pids, workers

ALARM_ACTORS = {"Alarmist": "alarm_actors:Alarmist", "AsyncAlarmist": "alarm_actors:AsyncAlarmist",
                "NoHandler": "alarm_actors:NoHandler"}
FAST_RETRY = {"initial": 0.1, "max": 0.4, "attempts": 5}


@pytest.fixture(scope="module")
def alarm_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[actorsys.Node]:
    """The node of the default alarm config, shared by the module's tests (each with
    actors of its own key); a test of another config, or that restarts its node, owns its
    node."""
    cfg = make_config(str(tmp_path_factory.mktemp("alarms") / "data"))
    cfg["actors"].update(ALARM_ACTORS)
    yield from module_node(cfg)


def alarm_config(config, **node):
    cfg = config(**node)
    cfg["actors"].update(ALARM_ACTORS)
    return cfg


def fired_names(ref) -> list[str]:
    return [f["name"] for f in ref.ask("fired")]


def counter(node, slot: int, name: str) -> int:
    """A worker's status counter; 0 while the worker is not answering (restarting)."""
    try:
        return workers(node)[slot].get(name, 0)
    except (actorsys.ActorError, KeyError):
        return 0


def attempt_lines(path) -> list[tuple[float, int]]:
    """The side-channel file written by on_alarm: one (time, pid) per attempt."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [(float(t), int(p)) for t, p in (line.split() for line in f if line.strip())]


def restarted(node, slot: int, old_pid: int) -> bool:
    try:
        pid = worker_pids(node).get(slot)
    except actorsys.ActorError:
        return False
    return pid is not None and pid != old_pid


# -- named alarms: list, cancel, replace, fire in due order ------------------------------

def test_many_named_alarms_list_cancel_replace_and_fire_once_each(alarm_node):
    with nullcontext(alarm_node) as n:
        r = n.client().ref("Alarmist", "many")
        # delays leave ~1.5 s for the asks below on a loaded 2-core machine
        absolute = time.time() + 2.8
        dues = r.ask("set_many", [[2.0, "a", {"n": 1}], [3.0, "b", "old"], [3.5, "c", [1, 2]],
                                  [4.0, "d", None], [absolute, "abs", "epoch"]])
        assert dues["abs"] == pytest.approx(absolute, abs=1e-6), \
            f"expected a `when` >= 1e9 to be taken as an epoch time, got due {dues['abs']} for {absolute}"
        assert dues["a"] < dues["b"] < dues["c"] < dues["d"], f"expected delays to order the dues: {dues}"

        listed = r.ask("pending")
        assert sorted(listed) == ["a", "abs", "b", "c", "d"], f"expected all five alarms listed: {listed}"
        for name, rec in listed.items():
            assert rec["when"] == pytest.approx(dues[name], abs=1e-6) and rec["attempt"] == 0, \
                f"expected alarm {name} listed with its due time and attempt 0: {rec}"
        assert listed["a"]["payload"] == {"n": 1} and listed["c"]["payload"] == [1, 2] \
            and listed["d"]["payload"] is None, f"expected the payloads listed: {listed}"

        assert r.ask("cancel", "c") is True, "expected cancel_alarm of a set alarm to return True"
        assert r.ask("cancel", "c") is False, "expected a second cancel_alarm to return False"
        assert r.ask("cancel", "nope") is False, "expected cancel_alarm of an unknown name to return False"
        new_b = r.ask("set", dues["a"] + 0.4, "b", "new")   # an epoch time: after a, before abs
        listed = r.ask("pending")
        assert sorted(listed) == ["a", "abs", "b", "d"], f"expected c gone, b still there: {listed}"
        assert listed["b"]["payload"] == "new" and listed["b"]["when"] == pytest.approx(new_b, abs=1e-6), \
            f"expected setting b again to replace it: {listed['b']}"

        # d is due after c would have been: once d fired, c had its chance
        wait_until(lambda: "d" in fired_names(r), "alarm d to fire")
        fired = r.ask("fired")
        names = [f["name"] for f in fired]
        assert names == ["a", "b", "abs", "d"], \
            f"expected a, b (replaced), abs, d to fire once each in due order, and c never: {names}"
        by_name = {f["name"]: f for f in fired}
        assert by_name["b"]["payload"] == "new", f"expected b to fire with its new payload: {by_name['b']}"
        assert by_name["a"]["payload"] == {"n": 1} and by_name["abs"]["payload"] == "epoch"
        due_of = {"a": dues["a"], "b": new_b, "abs": absolute, "d": dues["d"]}
        for name, f in by_name.items():
            assert f["at"] >= due_of[name] - 0.001, f"expected alarm {name} not to fire before its time: {f}"
        assert r.ask("pending") == {}, "expected no alarm left once they all fired"


def test_async_on_alarm_fires(alarm_node):
    with nullcontext(alarm_node) as n:
        r = n.client().ref("AsyncAlarmist", "async")
        r.ask("set", 0.2, "tick", 42)
        wait_until(lambda: r.ask("async_fired") == 1, "the async on_alarm to run")
        assert [(f["name"], f["payload"]) for f in r.ask("fired")] == [("tick", 42)], \
            "expected the async on_alarm to commit its state change once"
        assert r.ask("pending") == {}, "expected the alarm gone after its async turn committed"


def test_on_alarm_can_set_its_own_name_again(alarm_node):
    with nullcontext(alarm_node) as n:
        r = n.client().ref("Alarmist", "recurring")
        r.ask("set", 0.05, "every", {"repeat": 3})
        wait_until(lambda: len(r.ask("fired")) == 3, "the recurring alarm to fire three times")
        payloads = [f["payload"]["repeat"] for f in r.ask("fired")]
        assert payloads == [3, 2, 1], f"expected each firing to set the next one: {payloads}"
        assert r.ask("pending") == {}, "expected the last firing to leave no alarm set"


# -- reactivation ------------------------------------------------------------------------

def test_alarm_reactivates_a_passivated_actor(config):
    with actorsys.Node(alarm_config(config, idle_timeout=0.2)) as n:
        c = n.client()
        key = key_on_slot(c, "Alarmist", 0, "sleepy")
        r = c.ref("Alarmist", key)
        r.ask("set", 1.5, "wake", "up")
        before = workers(n)[0]
        # do not ask the actor meanwhile (that would reactivate it): watch the counters
        wait_until(lambda: counter(n, 0, "passivations") > before["passivations"],
                   "the idle actor to be passivated")
        assert counter(n, 0, "alarms_fired") == before["alarms_fired"], \
            "expected the actor to be passivated before its alarm came due"
        wait_until(lambda: counter(n, 0, "alarms_fired") > before["alarms_fired"], "the alarm to fire")
        wait_until(lambda: counter(n, 0, "activations") > before["activations"],
                   "the alarm to activate the actor again")
        fired = r.ask("fired")
        assert [(f["name"], f["payload"]) for f in fired] == [("wake", "up")], f"expected one firing: {fired}"
        assert fired[0]["starts"] == 2, \
            f"expected on_alarm to run in a new activation (on_start run twice): {fired[0]}"


# -- retries -----------------------------------------------------------------------------

def test_raising_on_alarm_is_retried_with_backoff_until_it_succeeds(config, tmp_path):
    side = tmp_path / "attempts.txt"
    with actorsys.Node(alarm_config(config, alarm_retry=FAST_RETRY)) as n:
        c = n.client()
        key = key_on_slot(c, "Alarmist", 1, "retry")
        r = c.ref("Alarmist", key)
        before = workers(n)[1]
        r.ask("set", 0.2, "flaky", {"file": str(side), "fail_until": 4})
        seen_attempts = set()

        def done() -> bool:
            rec = r.ask("pending").get("flaky")
            if rec is not None:
                seen_attempts.add(rec["attempt"])
            return "flaky" in fired_names(r)

        wait_until(done, "the alarm to succeed on its 4th attempt")
        lines = attempt_lines(side)
        assert len(lines) == 4, f"expected 3 failed attempts and 1 success, got {len(lines)}: {lines}"
        gaps = [b[0] - a[0] for a, b in zip(lines, lines[1:])]
        print(f"\nretry gaps (s): {[round(g, 3) for g in gaps]} (backoff 0.1, 0.2, 0.4)")
        for gap, delay in zip(gaps, (0.1, 0.2, 0.4)):
            assert gap >= delay * 0.9, f"expected each retry at least its backoff delay later: {gaps}"
        assert seen_attempts & {1, 2, 3}, \
            f"expected alarms() to show the attempt count rising while retrying, saw {seen_attempts}"
        assert max(seen_attempts) <= 3, f"expected at most 3 recorded failures: {seen_attempts}"
        assert [f["name"] for f in r.ask("fired")] == ["flaky"], "expected exactly one committed firing"
        assert r.ask("rolled_back") is False, "expected the failed turns' state changes rolled back"
        assert r.ask("pending") == {}, "expected the alarm gone after it succeeded"
        after = workers(n)[1]
        assert after["alarms_failed"] - before["alarms_failed"] == 3, \
            f"expected 3 failures counted: {after['alarms_failed']} vs {before['alarms_failed']}"
        assert after["alarms_dropped"] == before["alarms_dropped"], "expected nothing dropped"


def test_alarm_failing_every_attempt_is_dropped_and_reported(config, tmp_path, capfd):
    side = tmp_path / "attempts.txt"
    with actorsys.Node(alarm_config(config, alarm_retry=FAST_RETRY)) as n:
        c = n.client()
        key = key_on_slot(c, "Alarmist", 0, "doomed")
        r = c.ref("Alarmist", key)
        before = workers(n)[0]
        r.ask("set", 0.1, "doomed", {"file": str(side), "fail_until": 1000})
        wait_until(lambda: counter(n, 0, "alarms_dropped") > before["alarms_dropped"],
                   "the alarm to be dropped after its last attempt")
        assert len(attempt_lines(side)) == 5, \
            f"expected exactly `attempts` = 5 attempts before the drop: {attempt_lines(side)}"
        assert r.ask("pending") == {}, "expected a dropped alarm gone from alarms()"
        assert r.ask("fired") == [] and r.ask("rolled_back") is False, \
            "expected none of the failed attempts to commit"
        # it is not handed out again: a later alarm on the same actor fires, the dropped one does not
        r.ask("set", 0.5, "after", None)
        wait_until(lambda: fired_names(r) == ["after"], "a later alarm to fire")
        assert len(attempt_lines(side)) == 5, "expected no attempt after the drop"
    err = capfd.readouterr().err
    assert "alarm 'doomed'" in err and "dropped after 5 failed attempts" in err \
        and "alarm attempt 5 fails on purpose" in err, \
        f"expected the worker to say on stderr that it dropped the alarm, got:\n{err[-3000:]}"


# -- durability --------------------------------------------------------------------------

def test_alarm_survives_worker_kill_9(alarm_node):
    with nullcontext(alarm_node) as n:
        c = n.client()
        key = key_on_slot(c, "Alarmist", 0, "survivor")
        r = c.ref("Alarmist", key)
        victim = r.ask("pid")
        r.ask("set", 1.5, "later", "still here")
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: restarted(n, 0, victim), "the killed worker to be restarted", timeout=15)
        wait_until(lambda: counter(n, 0, "alarms_fired") >= 1, "the alarm to fire in the new worker")
        fired = r.ask("fired")
        assert [(f["name"], f["payload"]) for f in fired] == [("later", "still here")], \
            f"expected the alarm set before kill -9 to fire once after the restart: {fired}"
        assert fired[0]["pid"] != victim, "expected it to fire in the restarted worker"
        assert r.ask("pending") == {}


def test_alarms_survive_node_restart_and_missed_ones_fire_on_start(config):
    cfg = alarm_config(config)
    with actorsys.Node(cfg) as n:
        r = n.client().ref("Alarmist", "restart")
        dues = r.ask("set_many", [[1.0, "missed", 1], [3.0, "later", 2]])
        assert n.stop() == 0, "expected a clean stop"
        stopped_at = time.time()
    print(f"\nnode stopped {dues['missed'] - stopped_at:.3f} s before the alarm's due time")
    if stopped_at >= dues["missed"]:
        pytest.skip("the node took longer to stop than the alarm's delay (overloaded machine)")
    # the node is down while "missed" comes due
    while time.time() < dues["missed"] + 0.3:
        time.sleep(0.05)
    restarted_at = time.time()
    with actorsys.Node(cfg) as n:
        r = n.client().ref("Alarmist", "restart")
        wait_until(lambda: fired_names(r) == ["missed", "later"], "both alarms to fire after the restart")
        fired = {f["name"]: f for f in r.ask("fired")}
        assert fired["missed"]["at"] >= restarted_at, "expected the missed alarm to fire after the restart"
        assert fired["later"]["at"] >= dues["later"] - 0.001, "expected the later alarm not to fire early"
        assert r.ask("pending") == {}


def test_on_alarm_that_kills_its_worker_fires_again_after_restart(alarm_node, tmp_path):
    side = tmp_path / "attempts.txt"
    with nullcontext(alarm_node) as n:
        c = n.client()
        key = key_on_slot(c, "Alarmist", 1, "suicidal")
        r = c.ref("Alarmist", key)
        victim = r.ask("pid")
        r.ask("set", 0.2, "once", {"file": str(side), "kill_once": True})
        wait_until(lambda: restarted(n, 1, victim), "the worker killed by on_alarm to be restarted",
                   timeout=15)
        wait_until(lambda: len(attempt_lines(side)) >= 2, "the alarm to be delivered again")
        wait_until(lambda: fired_names(r) == ["once"], "the second delivery to commit")
        lines = attempt_lines(side)
        assert len(lines) == 2 and lines[0][1] == victim and lines[1][1] != victim, \
            f"expected one attempt in the killed worker and one in its successor: {lines}"
        assert r.ask("pending") == {}, "expected the alarm gone once its turn committed"


def test_an_alarm_that_kills_its_worker_every_time_is_dropped_after_its_attempts(config, tmp_path):
    side = tmp_path / "attempts.txt"
    retry = {"initial": 0.2, "max": 0.4, "attempts": 3}
    err = NodeStderr(tmp_path / "node-stderr.log")      # (not capfd: see NodeStderr)
    with err.node(alarm_config(config, alarm_retry=retry)) as n:
        c = n.client()
        key = key_on_slot(c, "Alarmist", 1, "poison")
        r = c.ref("Alarmist", key)
        r.ask("set", 0.1, "poison", {"file": str(side), "kill_always": True})
        wait_until(lambda: len(attempt_lines(side)) >= 3, "three deliveries, each killing the worker",
                   timeout=30)
        err.wait_for("dropped after 3 failed attempts", "the worker to drop the alarm and say so")
        assert r.ask("pending") == {}, "expected the poisonous alarm gone after its attempts"
        time.sleep(1.0)          # longer than the backoff: no fourth delivery may come
        assert len(attempt_lines(side)) == 3, \
            f"expected exactly 3 attempts, each counted before on_alarm ran: {attempt_lines(side)}"
        assert r.ask("pid") > 0, "expected the node still serving after the crashes"


def test_an_alarm_can_be_given_as_an_aware_datetime_but_not_a_naive_one(alarm_node):
    with nullcontext(alarm_node) as n:
        r = n.client().ref("Alarmist", "dated")
        due = r.ask("set_in_utc", 0.2, "dated")
        assert abs(due - (time.time() + 0.2)) < 5, f"expected the datetime's epoch time: {due}"
        with pytest.raises(actorsys.RemoteError, match="timezone-aware") as err:
            r.ask("set_in_utc", 0.2, "naive", True)
        assert err.value.remote_type == "TypeError"
        wait_until(lambda: fired_names(r) == ["dated"], "the datetime alarm to fire")


def test_an_alarm_set_again_while_the_old_one_comes_due_fires_at_its_new_time(alarm_node):
    """The old alarm comes due while the async turn that set it again still runs: its
    lease must not hide the new one."""
    with nullcontext(alarm_node) as n:
        r = n.client().ref("Alarmist", "reset")
        r.ask("set", 1.0, "a", "old")
        new_due = r.ask("set_then_wait", 3.0, "a", 1.5)   # due after the old one's lease (2 s)
        fired = wait_until(lambda: r.ask("fired"), "the alarm set again to fire", timeout=15)
        assert [(f["name"], f["payload"]) for f in fired] == [("a", None)], \
            f"expected the new alarm to fire once: {fired}"
        assert fired[0]["at"] >= new_due, "expected it to fire at its new time, not the old one"
        assert r.ask("pending") == {}, "expected nothing left pending"


def test_an_alarm_dropped_with_a_stopped_childs_mailbox_comes_back_after_its_lease(config):
    retry = {"initial": 0.3, "max": 1.0, "attempts": 6}
    cfg = alarm_config(config, alarm_retry=retry, turn_timeout=30.0)
    cfg["supervisors"] = {"root": {"children": [
        {"id": "c0", "actor": "Alarmist", "key": "c0", "shutdown": 10000}]}}
    with actorsys.Node(cfg) as n:
        c = n.client()
        r, sup = c.ref("Alarmist", "c0"), c.supervisor("root")
        due = r.ask("set", 0.3, "a", "kept")
        r.tell("hold", 1.5)                 # busy across the due time: the alarm queues
        while time.time() < due + 0.3:
            time.sleep(0.05)
        sup.terminate_child("c0", timeout=20)   # drops the queued alarm turn
        sup.restart_child("c0", timeout=20)
        wait_until(lambda: fired_names(r) == ["a"],
                   "the dropped alarm to fire again once its lease ended", timeout=15)


# -- rollback and bad input --------------------------------------------------------------

def test_alarm_set_in_a_failing_turn_is_not_set(alarm_node):
    with nullcontext(alarm_node) as n:
        r = n.client().ref("Alarmist", "rollback")
        with pytest.raises(actorsys.RemoteError) as err:
            r.ask("set_then_raise", 0.2, "ghost")
        assert err.value.remote_type == "RuntimeError"
        assert r.ask("pending") == {} and r.ask("poisoned") is False, \
            "expected the failed turn's alarm and state change both discarded"
        r.ask("set", 0.5, "real", None)        # due after the ghost would have been
        wait_until(lambda: "real" in fired_names(r), "the committed alarm to fire")
        assert fired_names(r) == ["real"], "expected the alarm of the failed turn never to fire"


BAD_CALLS = [
    ("set", ["soon", "x"]),          # when not a number
    ("set", [None, "x"]),
    ("set", [True, "x"]),            # a bool is not a time
    ("set", [0.1, 5]),               # name not a string
    ("set", [0.1, None]),
    ("cancel", [5]),
]


def test_bad_alarm_arguments_raise_type_error(alarm_node):
    with nullcontext(alarm_node) as n:
        r = n.client().ref("Alarmist", "bad")
        for method, args in BAD_CALLS:
            with pytest.raises(actorsys.RemoteError) as err:
                r.ask(method, *args)
            assert err.value.remote_type == "TypeError", \
                f"expected TypeError for {method}{args}, got {err.value.remote_type}: {err.value}"
        for when, why in ((1e15, "too far in the future"), (float("nan"), "must be finite"),
                          (float("inf"), "must be finite")):
            with pytest.raises(actorsys.RemoteError, match=why) as err:
                r.ask("set", when, "x")
            assert err.value.remote_type == "ValueError", err.value
        assert r.ask("pending") == {}, "expected nothing set by the rejected calls"
        with pytest.raises(actorsys.RemoteError, match="does not define on_alarm") as err:
            n.client().ask("NoHandler", "x", "set", 0.1)
        assert err.value.remote_type == "TypeError", "an alarm nobody can handle is refused at once"
        r.ask("set", 0.05, "ok", "fine")
        wait_until(lambda: fired_names(r) == ["ok"], "the actor to keep working after the bad calls")


# -- latency -----------------------------------------------------------------------------

def test_fire_latency_on_an_idle_node(alarm_node):
    with nullcontext(alarm_node) as n:
        r = n.client().ref("Alarmist", "latency")
        dues = r.ask("set_many", [[0.3 + 0.1 * i, f"t{i}", None] for i in range(5)])
        wait_until(lambda: len(r.ask("fired")) == 5, "all five alarms to fire")
        lat = {f["name"]: f["at"] - dues[f["name"]] for f in r.ask("fired")}
        print(f"\nalarm fire latency (ms): {[round(v * 1000, 2) for v in lat.values()]}")
        assert all(v >= -0.001 for v in lat.values()), f"expected no alarm to fire early: {lat}"
        assert all(v < 2.0 for v in lat.values()), f"expected each alarm within 2 s of its time: {lat}"
