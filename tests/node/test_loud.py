"""Loud failures (issue 14): a worker logs every failed turn with its traceback, every
dropped tell with its reason, rate-limited per actor type, and warns of a turn that
blocks its event loop longer than slow_turn while it still runs. The node's processes
write their standard error to a file of the test's (see :class:`helpers.NodeStderr`)."""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from helpers import NodeStderr

import actorsys
from actorsys.config.defaults import LOG_BURST
from actorsys.testing.nodes import wait_until

LOUD = {"Flaky": "loud:Flaky", "Blocker": "loud:Blocker"}


@pytest.fixture
def err(tmp_path: Path) -> Iterator[NodeStderr]:
    """The node's standard error; its end is copied to the test's own at teardown (shown
    with a failure)."""
    e = NodeStderr(tmp_path / "node-stderr.log")
    yield e
    sys.stderr.write(e.read()[-20000:])


@pytest.fixture
def loud_config(config):
    def make(**node: Any) -> dict[str, Any]:
        cfg = config(**node)
        cfg["actors"].update(LOUD)
        return cfg
    return make


def test_a_tell_whose_handler_raises_is_logged_with_its_traceback(loud_config, err):
    with err.node(loud_config()) as node:
        node.client().ref("Flaky", "t1").tell("boom", 7)
        m = err.wait_for(r"ERROR worker\[\d\] .* tell 'boom' of Flaky/t1 failed: ValueError: boom 7",
                         "the failed tell in the worker's log")
    after = err.read()[m.end():]
    assert "Traceback (most recent call last)" in after and 'raise ValueError(f"boom {n}")' in after, \
        f"expected the handler's traceback after the line: {after[:2000]}"


def test_a_tell_refused_by_the_worker_is_logged_with_its_reason(loud_config, err):
    with err.node(loud_config()) as node:
        client = node.client()
        client.ref("Flaky", "t2").tell("no_such_method", 1)
        err.wait_for(r"WARNING worker\[\d\] .* dropped a tell 'no_such_method' to Flaky/t2: "
                     r"UnknownMethod: actor type 'Flaky' has no method 'no_such_method'",
                     "the dropped tell (unknown method) in the log")
        client.ref("NoSuchType", "x").tell("m")
        err.wait_for(r"dropped a tell 'm' to NoSuchType/x: UnknownActorType",
                     "the dropped tell (unknown type) in the log")


def test_an_unsupervised_actor_crashing_on_ask_is_logged_once(loud_config, err):
    with err.node(loud_config()) as node:
        ref = node.client().ref("Flaky", "a1")
        with pytest.raises(actorsys.RemoteError, match="boom 1"):
            ref.ask("boom", 1)
        with pytest.raises(actorsys.RemoteError, match="async boom"):
            ref.ask("aboom")
        err.wait_for(r"ERROR .* ask 'boom' of Flaky/a1 failed: ValueError: boom 1",
                     "the failed ask in the log")
        err.wait_for(r"ERROR .* ask 'aboom' of Flaky/a1 failed: KeyError: 'async boom'",
                     "the failed async ask")
        assert ref.ask("ok") == "ok"
    text = err.read()
    assert text.count("of Flaky/a1 failed") == 2, f"expected each failure logged once: {text}"


def test_a_crash_loop_logs_a_bounded_number_of_lines_and_how_many_it_left_out(loud_config, err):
    with err.node(loud_config()) as node:
        ref = node.client().ref("Flaky", "loop")
        for i in range(1000):
            ref.tell("boom", i)
        assert ref.ask("ok", timeout=60) == "ok"      # after every tell before it (one mailbox)
        err.read()
    text = err.read()                                 # the summary is written as the worker stops
    failed = [line for line in text.splitlines() if "of Flaky/loop failed" in line]
    assert len(failed) == LOG_BURST, f"expected {LOG_BURST} logged failures, got {len(failed)}"
    assert text.count("Traceback (most recent call last)") == LOG_BURST
    assert f"suppressed {1000 - LOG_BURST} more failed turns of type 'Flaky' in the last" in text, \
        f"expected one summary line: {text[-3000:]}"


@pytest.mark.parametrize("method,hint", [
    ("async_block", "An async handler blocks between awaits"),
    ("sync_block", "A sync turn running past turn_timeout"),
])
def test_a_turn_blocking_the_loop_is_logged_while_it_still_runs(loud_config, err, tmp_path,
                                                                  method, hint):
    marker = str(tmp_path / "let-go")
    with err.node(loud_config(slow_turn=0.5)) as node:
        ref = node.client().ref("Blocker", "b1")
        ref.tell(method, marker)
        # the handler blocks until the marker exists: the warning comes while it runs
        m = err.wait_for(rf"WARNING worker\[\d\] .* slow turn: Blocker/b1 tell '{method}' has blocked "
                         rf"worker slot \d's event loop for (\d+\.\d) s and still runs", "the warning")
        assert not os.path.exists(marker)
        assert 0.5 <= float(m.group(1)) < 3.0, m.group(0)
        assert hint in err.text[m.start():], err.text[m.start():]
        open(marker, "w").close()
        err.wait_for(rf"slow turn: Blocker/b1 tell '{method}' blocked worker slot \d's event loop "
                     r"for about \d+\.\d s in all", "the line when it ends")
        assert ref.ask("polite", 0) == 0
    assert err.read().count("slow turn: Blocker/b1") == 2, "expected one warning and one end line"


def test_time_sleep_in_an_async_handler_is_warned_of_and_a_polite_await_is_not(loud_config, err):
    with err.node(loud_config(slow_turn=0.5)) as node:
        ref = node.client().ref("Blocker", "b2")
        assert ref.ask("polite", 1.0) == 1.0
        assert ref.ask("async_sleep", 1.5) == 1.5
        m = err.wait_for(r"slow turn: Blocker/b2 ask 'async_sleep' blocked worker slot \d's event loop "
                         r"for about (\d+\.\d) s in all", "the end line")
        assert 1.4 <= float(m.group(1)) < 3.0, m.group(0)
    text = err.read()
    assert "ask 'async_sleep' has blocked" in text
    assert "polite" not in text, f"an await is not a blocked loop: {text}"


def test_slow_turn_zero_turns_the_warning_off(loud_config, err):
    with err.node(loud_config(slow_turn=0)) as node:
        assert node.client().ref("Blocker", "b3").ask("async_sleep", 0.6) == 0.6
    assert "slow turn" not in err.read()


def test_a_turn_abandoned_at_shutdown_is_logged(loud_config, err):
    """A node stopped while an async turn awaits past shutdown_timeout: the turn is
    cancelled with the worker, uncommitted; the worker says so (which actors)."""
    with err.node(loud_config(shutdown_timeout=1.5)) as node:
        c = node.client()
        c.ref("Blocker", "long").tell("polite", 60.0)
        wait_until(lambda: any(p.get("resident") for p in node.status()["processes"]
                               if p["role"] == "worker"), "the long turn to start")
    err.wait_for(r"WARNING worker\[\d\] .*stops with 1 turn\(s\) still running past shutdown_timeout "
                 r"\(1\.5 s\), abandoned uncommitted .*: Blocker/long", "the abandoned turn in the log")


def test_a_worker_killed_as_hung_first_writes_where_it_was(loud_config, err):
    """A loop blocked past heartbeat_timeout: its supervisor has the worker write every
    thread's stack to the log (faulthandler, on a signal), then kills it."""
    with err.node(loud_config(heartbeat_timeout=2.0)) as node:
        ref = node.client().ref("Blocker", "stall")
        with pytest.raises(actorsys.WorkerLost):
            ref.ask("async_sleep", 30.0, timeout=30.0)
        err.wait_for(r"missed its heartbeats .* killing it", "the kill")
    text = err.read()
    assert re.search(r'File ".*loud\.py", line \d+ in async_sleep', text), text[-3000:]


def test_log_json_events_carry_the_actor_slot_and_epoch(config, tmp_path, monkeypatch):
    """--log-json (ACTORSYS_LOG_JSON, which an embedded node passes on): a failed turn's
    line is one JSON object with the actor's type, key and method, its shard, the slot
    and the epoch, as keys a log shipper can index."""
    monkeypatch.setenv("ACTORSYS_LOG_JSON", "1")
    err = NodeStderr(tmp_path / "stderr.log")
    with err.node(config()) as n:
        with pytest.raises(actorsys.RemoteError):
            n.client().ref("Counter", "json-k").ask("add_then_fail", 1)
        err.wait_for(r'"actor_key": "json-k"', "the failed turn's JSON line")
    line = next(json.loads(x) for x in err.read().splitlines() if '"json-k"' in x)
    assert line["level"] == "ERROR" and line["role"] == "worker[%d]" % line["slot"]
    assert (line["actor_type"], line["actor_key"], line["actor_method"]) == ("Counter", "json-k",
                                                                             "add_then_fail")
    assert isinstance(line["shard"], int) and line["epoch"] == 1
