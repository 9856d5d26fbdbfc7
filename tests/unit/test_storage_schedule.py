"""Recurring alarms' schedules below a node (``actorsys/storage/schedule.py``), with a
driven clock: what cron= / every= / tz= accept and refuse, the first due time, and the
next one after a firing (from the schedule, no drift; missed times fire once)."""
from __future__ import annotations

import datetime
import math
from typing import Any

import pytest

from actorsys.storage import schedule
from actorsys.storage.schedule import MIN_EVERY, check, first, following, recurring

UTC = datetime.timezone.utc
T0 = datetime.datetime(2033, 5, 18, 3, 7, 12, 250000, tzinfo=UTC).timestamp()   # a Wednesday


def utc(*args: int) -> float:
    return datetime.datetime(*args, tzinfo=UTC).timestamp()


# -- what is taken, what is refused -----------------------------------------------------

@pytest.mark.parametrize(("cron", "tz", "fields"), [
    ("*/5 * * * *", None, {"cron": "*/5 * * * *"}),
    ("  */5   *  * * *\t", None, {"cron": "*/5 * * * *"}),          # whitespace normalised
    ("0 9 * * mon-fri", "Europe/Berlin", {"cron": "0 9 * * mon-fri", "tz": "Europe/Berlin"}),
    ("0 0 L * *", "UTC", {"cron": "0 0 L * *"}),                    # UTC is the default: not kept
    ("@hourly", None, {"cron": "@hourly"}),
    ("@Daily", None, {"cron": "@Daily"}),
    ("0 12 * * 5#3", None, {"cron": "0 12 * * 5#3"}),
])
def test_cron_expressions_and_zones_are_taken(cron: str, tz: str | None, fields: dict[str, Any]) -> None:
    assert check(cron, None, tz) == fields


@pytest.mark.parametrize(("every", "seconds"), [(30, 30.0), (1, 1.0), (2.5, 2.5),
                                                (datetime.timedelta(minutes=5), 300.0)])
def test_intervals_in_seconds_or_a_timedelta_are_taken(every: Any, seconds: float) -> None:
    assert check(None, every, None) == {"every": seconds}


@pytest.mark.parametrize(("cron", "tz", "error", "says"), [
    (5, None, TypeError, "is a string"),
    (b"* * * * *", None, TypeError, "is a string"),
    (["*", "*"], None, TypeError, "is a string"),
    ("* * * * * *", None, ValueError, "has 6 fields"),            # croniter's seconds field
    ("0 0 1 1 * 2040", None, ValueError, "has 6 fields"),
    ("* * * *", None, ValueError, "has 4 fields"),
    ("", None, ValueError, "has 0 fields"),
    ("@reboot", None, ValueError, "has 1 fields"),
    ("60 * * * *", None, ValueError, "bad cron expression"),
    ("*/5 * * * funday", None, ValueError, "bad cron expression"),
    ("H * * * *", None, ValueError, "bad cron expression"),         # Jenkins' hash: no
    ("0 " * 200 + "*", None, ValueError, "longer than"),
    ("* * * * *", 3, TypeError, "IANA zone name"),
    ("* * * * *", "Mars/Olympus_Mons", ValueError, "unknown time zone"),
    ("* * * * *", "", ValueError, "unknown time zone"),
    ("* * * * *", "../../etc/passwd", ValueError, "unknown time zone"),
])
def test_bad_cron_expressions_and_zones_are_refused(cron: Any, tz: Any, error: type[Exception],
                                                    says: str) -> None:
    with pytest.raises(error, match=says):
        check(cron, None, tz)


@pytest.mark.parametrize(("every", "error", "says"), [
    (0, ValueError, "at least 1 second"),
    (-30, ValueError, "at least 1 second"),
    (MIN_EVERY / 2, ValueError, "at least 1 second"),
    (0.001, ValueError, "at least 1 second"),
    (math.nan, ValueError, "finite"),
    (math.inf, ValueError, "finite"),
    (datetime.timedelta(milliseconds=10), ValueError, "at least 1 second"),
    (True, TypeError, "period in seconds"),
    ("30", TypeError, "period in seconds"),
])
def test_bad_intervals_are_refused(every: Any, error: type[Exception], says: str) -> None:
    with pytest.raises(error, match=says):
        check(None, every, None)


def test_a_zone_goes_with_cron_only() -> None:
    with pytest.raises(TypeError, match="tz= goes with cron="):
        check(None, 60, "Europe/Berlin")


def test_a_record_without_a_schedule_is_one_shot() -> None:
    assert not recurring({"when": T0, "payload": None, "attempt": 0}), "records before issue 18"
    assert recurring({"when": T0, "cron": "* * * * *"}) and recurring({"when": T0, "every": 5.0})


# -- the first time ------------------------------------------------------------------------

def test_the_first_time_is_the_schedules_first_after_the_call() -> None:
    assert first({"every": 30.0}, T0) == T0 + 30
    assert first({"cron": "*/5 * * * *"}, T0) == utc(2033, 5, 18, 3, 10)
    assert first({"cron": "*/5 * * * *"}, utc(2033, 5, 18, 3, 10)) == utc(2033, 5, 18, 3, 15), \
        "strictly after: a call on the minute waits for the next time"
    assert first({"cron": "0 0 * * mon"}, T0) == utc(2033, 5, 23), "the next Monday"
    assert first({"cron": "@hourly"}, T0) == utc(2033, 5, 18, 4)


def test_a_cron_time_is_wall_clock_time_in_its_zone() -> None:
    summer = first({"cron": "0 9 * * *", "tz": "Europe/Berlin"}, T0)
    assert summer == utc(2033, 5, 18, 7), "09:00 CEST is 07:00 UTC"
    winter = first({"cron": "0 9 * * *", "tz": "Europe/Berlin"}, utc(2033, 12, 1))
    assert winter == utc(2033, 12, 1, 8), "09:00 CET is 08:00 UTC"
    assert first({"cron": "0 9 * * *", "tz": "America/New_York"}, T0) == utc(2033, 5, 18, 13)


def test_an_expression_that_never_comes_due_is_refused() -> None:
    for cron in ("0 0 30 2 *", "0 0 31 4 *"):
        with pytest.raises(ValueError, match="never comes due"):
            first(check(cron, None, None), T0)


# -- the next time, after a firing -----------------------------------------------------------

def test_an_interval_stays_on_its_grid_however_late_its_firings_run() -> None:
    """every=: due at set time + k * every. A firing that starts late (by 3 ms, by most
    of a period) does not push the next one back: no drift."""
    rec: dict[str, Any] = {"every": 30.0, "scheduled": T0 + 30, "when": T0 + 30}
    dues = []
    for i in range(1000):
        late = 0.003 if i % 2 else 29.9
        nxt = following(rec, rec["scheduled"] + late)
        assert nxt is not None
        dues.append(nxt)
        rec["scheduled"] = rec["when"] = nxt
    assert dues == [T0 + 30 * (k + 2) for k in range(1000)]


def test_an_interval_that_missed_times_fires_once_then_at_its_next_time() -> None:
    rec = {"every": 10.0, "scheduled": T0, "when": T0}
    assert following(rec, T0 + 35.5) == T0 + 40, "three missed times, one firing; then on the grid"
    assert following(rec, T0 + 40) == T0 + 50, "strictly after the firing's start"


def test_cron_after_a_late_firing_or_downtime_is_its_next_time_after_now() -> None:
    rec = {"cron": "*/5 * * * *", "scheduled": utc(2033, 5, 18, 3, 10), "when": 0.0}
    assert following(rec, utc(2033, 5, 18, 3, 10) + 0.004) == utc(2033, 5, 18, 3, 15)
    assert following(rec, utc(2033, 5, 18, 3, 14, 59)) == utc(2033, 5, 18, 3, 15), \
        "a firing that ran (or was retried) almost to the next time: that one still fires"
    assert following(rec, utc(2033, 5, 19, 8, 2)) == utc(2033, 5, 19, 8, 5), \
        "a day down: the missed times are skipped"


def test_cron_in_a_zone_follows_its_daylight_saving_changes() -> None:
    rec = {"cron": "0 9 * * *", "tz": "Europe/Berlin", "scheduled": utc(2033, 3, 26, 8)}
    assert following(rec, utc(2033, 3, 26, 8, 0, 1)) == utc(2033, 3, 27, 7), \
        "09:00 CET, then 09:00 CEST the day the clocks go forward"


def test_a_firing_costs_a_step_of_a_parsed_expression_not_a_parse() -> None:
    rec: dict[str, Any] = {"cron": "17 */2 * * *", "scheduled": T0}
    first(check("17 */2 * * *", None, None), T0)
    parsed = schedule._cron.cache_info().misses
    for _ in range(500):
        rec["scheduled"] = following(rec, rec["scheduled"])
    assert schedule._cron.cache_info().misses == parsed, "one parse per expression, kept"
    assert rec["scheduled"] == first({"cron": "17 */2 * * *"}, T0) + 2 * 3600 * 499
