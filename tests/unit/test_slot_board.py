"""The slot board (actorsys/protocol/board.py) and what the router's status makes of it
for a worker that did not answer (actorsys/node/slots.py): real shared memory, real
processes for the pids."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from actorsys.node.slots import SlotStatus, note
from actorsys.protocol.board import LABEL_MAX, SlotBoard


def test_a_label_is_read_only_for_the_turn_it_was_written_for():
    b = SlotBoard(2)
    b.beats[3] = 100.0                          # slot 1: a sync turn since 100
    assert b.read(1).actor is None              # not labelled yet
    b.write_label(1, 99.0, "Counter/k", "sleep")
    assert b.read(1).actor is None, "a label of an earlier turn is not this one's"
    b.write_label(1, 100.0, "Counter/k", "sleep")
    v = b.read(1)
    assert (v.turn, v.actor, v.method) == (100.0, "Counter/k", "sleep")
    b.beats[3] = 0.0                            # the turn ended
    assert b.read(1).actor is None and b.read(0) == (0, 0.0, 0.0, 0.0, None, None)


def test_a_long_label_is_cut_to_fit_its_record():
    b = SlotBoard(1)
    b.beats[1] = 5.0
    b.write_label(0, 5.0, "T/" + "k" * 2000, "m" * 500)
    v = b.read(0)
    assert v.actor is not None and v.method == "m" * 100
    assert len(v.actor.encode()) + len(v.method.encode()) + 1 <= LABEL_MAX
    with pytest.raises(IndexError):
        b.read(1)


def test_an_unanswering_worker_that_runs_is_up_busy_and_keeps_its_stale_counters():
    b = SlotBoard(1)
    st = SlotStatus(b)
    now = time.monotonic()
    me = os.getpid()
    b.forked(0, me, now - 10)
    b.beats[0] = now - 2                         # beat before the turn
    answered = st.answered(0, {"role": "worker", "slot": 0, "pid": me, "turns": 7})
    assert answered["answered"] and answered["state"] == "up"
    b.beats[1] = now - 1.5
    b.write_label(0, now - 1.5, "Counter/k", "sleep")
    w = st.unanswered(0, "worker slot 0 did not answer within 1 s")
    assert w["up"] and w["pid"] == me and w["state"] == "busy" and not w["answered"], w
    assert w["busy"]["actor"] == "Counter/k" and w["busy"]["method"] == "sleep"
    assert 1.5 <= w["busy"]["seconds"] < 5, w
    assert w["turns"] == 7 and w["stale"] == ["turns"] and w["stale_seconds"] >= 0, w
    assert w["role"] == "worker" and w["state"] == "busy", "its own fields are not the stale ones"
    assert "busy for" in note(w) and "Counter/k 'sleep'" in note(w) and "counters are from" in note(w)
    b.beats[1] = 0.0                             # no turn, no beat for 2 s: a blocked loop
    w = st.unanswered(0, "no answer")
    assert w["up"] and w["state"] == "unresponsive" and w["heartbeat_age"] >= 2, w


def test_an_unanswering_worker_whose_process_is_gone_or_not_started_is_down():
    b = SlotBoard(1)
    st = SlotStatus(b)
    assert st.unanswered(0, "x")["state"] == "restarting"          # no pid: waits for a restart
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()                                                        # (reaped: the pid is gone)
    b.forked(0, p.pid, time.monotonic())
    w = st.unanswered(0, "x")
    assert (w["up"], w["pid"], w["state"]) == (False, None, "down"), w
    b.forked(0, os.getpid(), b.beats[0] + 1)                        # forked after its last beat
    w = st.unanswered(0, "x")
    assert (w["up"], w["state"]) == (False, "starting"), w
    assert st.answered(0, {"pid": 1})["up"] and SlotStatus(None).unanswered(0, "x")["up"] is False


def test_an_unanswering_tree_or_gateway_is_up_while_the_process_that_answered_runs():
    b = SlotBoard(2)
    st = SlotStatus(b)
    assert st.peer_unanswered("tree", "x")["state"] == "down"        # never forked
    b.peer_forked("tree", os.getpid(), time.monotonic())
    t = st.peer_unanswered("tree", "no answer within 1 s")
    assert (t["up"], t["pid"], t["state"]) == (False, os.getpid(), "starting"), t
    st.peer_answered("tree", {"role": "tree", "pid": os.getpid()})
    t = st.peer_unanswered("tree", "no answer within 1 s")
    assert (t["up"], t["pid"], t["state"], t["answered"]) == (True, os.getpid(), "unresponsive", False)
    assert note(t) == f"supervision tree (pid {os.getpid()}): up but not answering (no answer within 1 s)"
    assert b.peer("gateway") == (0, 0.0) and b.read(1).pid == 0, "records apart"
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    b.peer_forked("gateway", p.pid, time.monotonic())                # a gone process
    g = st.peer_unanswered("gateway", "x")
    assert (g["up"], g["pid"], g["state"]) == (False, None, "down"), g
    b.peer_gone("tree")
    assert st.peer_unanswered("tree", "x")["state"] == "down"
    # a router restarted since has not heard it answer: its age says it started
    b.peer_forked("tree", os.getpid(), time.monotonic() - 100.0)
    t = SlotStatus(b, start_timeout=30.0).peer_unanswered("tree", "x")
    assert (t["up"], t["state"]) == (True, "unresponsive"), t


def test_top_shows_a_busy_worker_as_busy_and_a_silent_one_as_silent():
    from actorsys.node import top

    assert str(top._up({"up": True, "answered": True})) == "yes"
    assert str(top._up({"up": True, "answered": False, "state": "busy",
                        "busy": {"seconds": 2.4}})) == "busy 2s"
    assert str(top._up({"up": True, "answered": False, "state": "unresponsive"})) == "silent"
    assert str(top._up({"up": False, "state": "restarting"})) == "NO"
