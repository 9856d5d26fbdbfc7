"""The failure log's rate limit (actorsys/lograte.py), driven by a fake clock, and the
slow_turn key's checks (in-process, no node)."""
from __future__ import annotations

import logging

import pytest

from actorsys.config import load_config
from actorsys.errors import ConfigError
from actorsys.lograte import OVERFLOW_KEY, RateLimit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def records():
    got: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record.getMessage())

    logger = logging.getLogger("test.lograte")
    handler = Keep()
    logger.addHandler(handler)
    logger.propagate = False
    yield logger, got
    logger.removeHandler(handler)


def test_the_first_burst_of_a_window_passes_and_the_rest_are_counted(records):
    logger, got = records
    clock = FakeClock()
    limit = RateLimit(logger, "failed turns", burst=3, window=60, clock=clock)
    allowed = [limit.allow("Counter") for _ in range(10)]
    assert allowed == [True] * 3 + [False] * 7
    assert limit.allow("Other"), "each key has its own window"
    assert got == [], "no summary before the window rolls"
    clock.now += 59.9
    limit.sweep()
    assert got == [], "the window has not ended yet"
    clock.now += 0.1
    limit.sweep()
    assert got == ["suppressed 7 more failed turns of type 'Counter' in the last 60 s"]
    assert limit.allow("Counter"), "a new window lets records through again"


def test_a_window_rolling_at_the_next_record_writes_its_summary_first(records):
    logger, got = records
    clock = FakeClock()
    limit = RateLimit(logger, "dropped tells", burst=1, window=10, clock=clock)
    assert [limit.allow("T") for _ in range(3)] == [True, False, False]
    clock.now += 12
    assert limit.allow("T")
    assert got == ["suppressed 2 more dropped tells of type 'T' in the last 12 s"]
    assert not limit.allow("T")


def test_a_window_that_suppressed_nothing_rolls_silently(records):
    logger, got = records
    clock = FakeClock()
    limit = RateLimit(logger, "failed turns", burst=5, window=1, clock=clock)
    limit.allow("T")
    clock.now += 5
    limit.sweep()
    assert got == [] and limit.windows == {}, "an ended window is forgotten"


def test_flush_writes_every_pending_summary_ended_or_not(records):
    logger, got = records
    clock = FakeClock()
    limit = RateLimit(logger, "failed turns", burst=1, window=60, clock=clock)
    for key in ("A", "A", "B", "B", "B", "C"):
        limit.allow(key)
    clock.now += 2
    limit.flush()
    assert sorted(got) == ["suppressed 1 more failed turns of type 'A' in the last 2 s",
                           "suppressed 2 more failed turns of type 'B' in the last 2 s"]
    assert limit.windows == {}


def test_keys_past_max_keys_share_one_window(records):
    logger, got = records
    limit = RateLimit(logger, "dropped tells", burst=1, window=60, max_keys=2, clock=FakeClock())
    assert limit.allow("a") and limit.allow("b")
    assert limit.allow("c"), "the first new key past the bound opens the shared window"
    assert not limit.allow("d"), "and later new keys share it"
    assert set(limit.windows) == {"a", "b", OVERFLOW_KEY}
    limit.flush()
    assert got == [f"suppressed 1 more dropped tells of type '{OVERFLOW_KEY}' in the last 0 s"]


def test_bad_limits_are_refused(records):
    logger, _ = records
    with pytest.raises(ValueError):
        RateLimit(logger, "x", burst=0, window=1)
    with pytest.raises(ValueError):
        RateLimit(logger, "x", burst=1, window=0)


def test_slow_turn_defaults_to_half_a_second_and_zero_turns_it_off():
    assert load_config({}).slow_turn == 0.5
    assert load_config({"node": {"slow_turn": 0}}).slow_turn == 0


@pytest.mark.parametrize("value,words", [("-1", "must be 0 (no slow-turn warnings) or a positive"),
                                         ('"fast"', "must be a number")])
def test_a_bad_slow_turn_names_file_line_and_key(tmp_path, value, words):
    path = tmp_path / "node.toml"
    path.write_text(f'[node]\ndata_dir = "d"\nslow_turn = {value}\n')
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    msg = str(info.value)
    assert str(path) in msg and "line 3" in msg and "node.slow_turn" in msg and words in msg, msg
