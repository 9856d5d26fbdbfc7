"""Hot actors and ``actorsys top`` against a real node (issue 17): ``client.top`` names
the busy actors by key with their slot; ``actorsys top --once`` prints a frame for
scripts; the live view runs in a real terminal (tmux) and redraws as the load moves."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from typing import Any, Iterator

import pytest
from helpers import make_config

import actorsys
from actorsys.testing.nodes import wait_until

ACTORSYS = os.path.join(os.path.dirname(sys.executable), "actorsys")


@pytest.fixture
def busy_node(tmp_path) -> Iterator[tuple[actorsys.Node, Any]]:
    """A node with metrics on and a supervision tree, and ``load(keys)``: a thread asking
    those Counter keys in a loop until the test ends (or the next ``load``)."""
    cfg = make_config(str(tmp_path / "data"), metrics="127.0.0.1:0")
    cfg["actors"].update({"Journal": "restarts_actors:Journal", "Worker": "restarts_actors:Worker"})
    cfg["supervisors"] = {"root": {"children": [{"id": "w1", "actor": "Worker", "key": "w1"}]}}
    stop = threading.Event()
    threads: list[threading.Thread] = []
    with actorsys.Node(cfg) as n:
        c = n.client()

        def load(keys: list[str]) -> None:
            stop.set()
            for t in threads:
                t.join(10)
            stop.clear()

            def run() -> None:
                i = 0
                while not stop.is_set():
                    c.ref("Counter", keys[i % len(keys)]).ask("add", 1)
                    i += 1
            threads.append(threading.Thread(target=run, daemon=True))
            threads[-1].start()
        try:
            yield n, load
        finally:
            stop.set()
            for t in threads:
                t.join(10)


def test_top_names_the_busy_actors_by_key_with_their_slot(busy_node):
    node, load = busy_node
    c = node.client()
    c.ref("Counter", "quiet").ask("add", 1)
    for _ in range(3):
        with pytest.raises(actorsys.RemoteError):
            c.ref("Counter", "failing").ask("add_then_fail", 1)
    load(["hot-a", "hot-b"])
    time.sleep(1.5)
    top = c.top(3, "turns")
    assert [h["key"] for h in top[:2]] == sorted(h["key"] for h in top[:2])
    assert {h["key"] for h in top[:2]} == {"hot-a", "hot-b"}
    for h in top[:2]:
        assert h["type"] == "Counter" and h["turns_per_s"] > 10 and 0 < h["busy"] < 1
        assert h["slot"] in (0, 1) and h["errors"] == 0
    errors = c.top(1, "errors")
    assert errors[0]["key"] == "failing" and errors[0]["errors"] == 3
    with pytest.raises(ValueError, match="by is one of"):
        c.top(3, "loudest")
    with pytest.raises(ValueError, match="n is 1..1000"):
        c.top(0)


def test_top_once_prints_one_frame_with_rates(busy_node):
    node, load = busy_node
    load(["once-hot"])
    wait_until(lambda: node.client().top(1), "a hot actor", 10)
    out = subprocess.run([ACTORSYS, "top", "--once", "-e", node.endpoint], capture_output=True,
                         text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for want in ("processes", "group commits (last interval)", "hot actors", "once-hot",
                 "supervision tree", "w1", "running"):
        assert want in text, f"{want!r} not in:\n{text}"
    worker_rows = [line for line in text.splitlines() if line.startswith("│ worker")]
    assert len(worker_rows) == 2
    rates = [int(line.split("│")[8].strip().replace(",", "") or 0) for line in worker_rows
             if line.split("│")[8].strip() not in ("-", "")]
    assert max(rates) > 10, worker_rows              # turns/s of the loaded worker


def test_live_top_in_a_real_terminal_follows_the_load(busy_node):
    node, load = busy_node
    load(["first-hot"])
    sock = f"actorsys-test-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", sock]
    # (the pane stays after the command ends, so that what it printed can be read; rich
    # reads COLUMNS and LINES, which pytest sets to its own terminal's: the pane's count)
    subprocess.run([*tmux, "new-session", "-d", "-x", "180", "-y", "60",
                    f"env -u COLUMNS -u LINES {ACTORSYS} top -e {node.endpoint}; "
                    f"echo top ended: $?; sleep 60"],
                   check=True, timeout=10)
    try:
        def screen() -> str:
            return subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True,
                                  timeout=10).stdout

        try:
            wait_until(lambda: "first-hot" in screen(), "the live view to show first-hot", 20)
        except AssertionError:
            raise AssertionError(f"the terminal shows:\n{screen()}") from None
        load(["second-hot"])      # the view redraws in place as the load moves
        wait_until(lambda: "second-hot" in screen(), "the live view to show second-hot", 20)
        assert screen().count("processes") == 1, "a frame is redrawn in place, not appended"
        subprocess.run([*tmux, "send-keys", "C-c"], check=True, timeout=10)
        wait_until(lambda: "top ended: 0" in screen(), "top to end on Ctrl-C, status 0", 10)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=10)
