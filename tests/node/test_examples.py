"""The shipped examples run end to end, as the README and docs/ show them."""
from __future__ import annotations

import os
import subprocess
import sys

from helpers import ROOT



def run_example(*path: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", *path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_counter_demo_ends_at_exactly_1000():
    r = run_example("counter.py")
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert "counter = 1000" in r.stdout, r.stdout


def test_the_chat_bot_subscribes_from_python_and_answers():
    """``examples/chat/bot.py``: a Python subscription in the chat room gets the history
    and presence like a page, reads another subscriber's messages and answers them."""
    r = run_example("chat", "bot.py")
    out = r.stdout
    assert r.returncode == 0, f"stdout:\n{out}\nstderr:\n{r.stderr}"
    assert "[echo-bot] in lobby, 0 earlier messages" in out, out
    assert "[echo-bot] here now: ada, echo-bot" in out, "the room lists both in its presence"
    assert "[ada] echo-bot answers: ada, you said 'what can you do?' (4 words)" in out, out
    assert "the room kept: ['ada: hello bot', \"echo-bot: ada, you said 'hello bot'" in out, out
    assert out.strip().endswith("node stopped"), out


def test_supervision_walkthrough_shows_a_crash_a_kill_and_the_restarts():
    r = run_example("supervision", "walkthrough.py")
    out = r.stdout
    assert r.returncode == 0, f"stdout:\n{out}\nstderr:\n{r.stderr}"
    # the crash: the caller sees it, rest_for_one restarts the store and the cache after it
    assert "the caller gets RemoteError: RuntimeError: the store hit a bug" in out, out
    assert "[Store/main] started (start #2, 2 values on disk)" in out, out
    assert "(the crashing turn's write was rolled back)" in out and "half-written" not in out, out
    assert "the cache re-warmed from the restarted store: 2 values" in out, out
    # the kill -9: the node supervisor and the tree bring the store back with its values
    assert "store values: {'greeting': 'hello', 'answer': 42}, started 3 times" in out, out
    assert "supervisor 'root': child 'db' exited (killed)" in r.stderr, r.stderr
    # the finished temporary job is gone, the others run
    tail = out.split("job-0 finished", 1)[1]
    assert "job-0" not in tail.split("count_children", 1)[0] and "job-1" in tail, out
    assert "node stopped" in out


def test_rooms_walkthrough_shows_storage_alarms_listing_rewind_and_destroy():
    r = run_example("rooms", "walkthrough.py")
    out = r.stdout
    assert r.returncode == 0, f"stdout:\n{out}\nstderr:\n{r.stderr}"
    assert "rooms with data: ['games', 'lobby']" in out, out
    assert "lobby digest: 2 messages from 2 people" in out, "the digest alarm fired after passivation"
    assert "lobby after rewind: ['ada: hello everyone', 'bob: hi ada']" in out, "the spam was rewound"
    assert out.strip().endswith("rooms with data: ['lobby']\nnode stopped"), out


def test_the_testing_example_passes_under_the_plugin():
    """``examples/testing``: the example tests of the pytest plugin pass, in a pytest of
    their own loading the plugin as a user's checkout would (``-p``; its conftest names
    it too, and the two do not clash)."""
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-p", "actorsys.testing.plugin", os.path.join("examples", "testing")],
                       cwd=ROOT, capture_output=True, text=True, timeout=170, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"stdout:\n{r.stdout[-6000:]}\nstderr:\n{r.stderr[-3000:]}"
    assert "5 passed" in r.stdout, r.stdout[-3000:]
