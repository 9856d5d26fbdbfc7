"""The hot actors of a worker (issue 17), with time driven by the test: rates over the
last minute, the window roll, the bound on memory, and each order."""
from __future__ import annotations

import pytest

from actorsys.runtime import hot
from actorsys.runtime.hot import HotActors


def test_rates_cover_about_the_last_minute_and_older_windows_leave():
    h = HotActors(0.0)
    t = 0.0
    for second in range(30):                 # 30 s: "a" 10 turns/s of 1 ms, "b" 1 turn/s of 50 ms
        t = float(second)
        for i in range(10):
            h.turn("T", "a", 0.001, True, 0, t + i / 100)
        h.turn("T", "b", 0.05, second % 10 != 0, 3 if second == 5 else 0, t + 0.5)
    top = h.top(5, "turns", 30.0)
    assert [x["key"] for x in top] == ["a", "b"]
    assert top[0]["turns_per_s"] == pytest.approx(10, rel=0.05)
    assert top[0]["busy"] == pytest.approx(0.01, rel=0.05)
    by_busy = h.top(5, "busy", 30.0)
    assert by_busy[0]["key"] == "b" and by_busy[0]["busy"] == pytest.approx(0.05, rel=0.05)
    assert h.top(5, "errors", 30.0) == [dict(by_busy[0])]           # b failed 3 times, a never
    assert by_busy[0]["errors"] == 3 and by_busy[0]["mailbox"] == 3
    assert h.top(1, "mailbox", 30.0)[0]["key"] == "b"
    # two minutes later, nothing more ran: the view is empty again
    assert h.top(5, "turns", 150.0) == []


def test_a_window_keeps_only_its_leaders_and_the_current_one_stays_bounded(monkeypatch):
    monkeypatch.setattr(hot, "MAX_TRACKED", 100)
    monkeypatch.setattr(hot, "KEEP", 5)
    h = HotActors(0.0)
    for i in range(1000):                      # a spread-out load: 1000 actors, one turn each
        h.turn("T", f"k{i}", 0.001, True, 0, 1.0)
    for _ in range(50):
        h.turn("T", "hot", 0.001, True, 0, 2.0)
    assert len(h.current) <= 100
    assert h.top(1, "turns", 3.0)[0]["key"] == "hot"
    h.turn("T", "next", 0.001, True, 0, 11.0)   # the window rolls: at most KEEP per measure
    assert len(h.past[-1][2]) <= 4 * 5
    assert h.top(1, "turns", 11.0)[0]["key"] == "hot"
