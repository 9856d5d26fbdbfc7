"""Progress of long work (issue 17): plain lines off a terminal (a start, one per
LINE_EVERY seconds at most, an end), a bar on one."""
from __future__ import annotations

import io

from actorsys.node import progress
from actorsys.node.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_at_most_every_few_seconds(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    out = io.StringIO()
    with Progress("moving shards", total=10, stream=out, unit=" shards") as p:
        for i in range(10):
            clock.now += 1.0
            p.advance(1, note=f"shard {i}")
    lines = out.getvalue().splitlines()
    assert lines[0] == "moving shards: 0/10 shards started (0.0 s)"
    assert lines[1] == "moving shards: 5/10 shards shard 4 (5.0 s)"
    assert lines[-1] == "moving shards: 10/10 shards done (10.0 s)"
    assert len(lines) == 4          # started, at 5 s, at 10 s, done


def test_a_bar_on_a_terminal_and_lines_above_it():
    out = io.StringIO()
    with Progress("bench", total=3, stream=out, bar=True) as p:
        p.say("ask latency: 300 us")
        p.advance(1, note="ask latency")
    text = out.getvalue()
    assert "ask latency: 300 us" in text and "bench" in text and "1/3" in text
    assert "started" not in text       # (no plain lines when there is a bar)


def test_a_failure_says_where_it_stopped():
    out = io.StringIO()
    try:
        with Progress("listing X", stream=out) as p:
            p.advance(7)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert out.getvalue().splitlines()[-1].startswith("listing X: 7 stopped (KeyboardInterrupt)")


def test_the_bar_leaves_standard_output_alone():
    """`ls --all > keys.txt` on a terminal: the keys go to the file, the bar to stderr
    (rich would otherwise route what the program prints through its console)."""
    import sys
    before = sys.stdout
    with Progress("listing", stream=io.StringIO(), bar=True):
        assert sys.stdout is before
