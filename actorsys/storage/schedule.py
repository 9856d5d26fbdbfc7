"""Recurring alarms' schedules: a cron expression or an interval, checked when the alarm
is set and advanced after each firing (issue 18).

What a user can rely on (``self.set_alarm(cron=..., name=...)`` or ``every=``):

* ``cron`` is a standard five-field expression, ``minute hour day-of-month month
  day-of-week`` (ranges, lists, steps, names, ``L``, ``W`` and ``#`` as croniter reads
  them), or one of ``@hourly``, ``@daily``/``@midnight``, ``@weekly``, ``@monthly``,
  ``@yearly``/``@annually``. Its times are UTC unless ``tz`` names an IANA zone
  (``"Europe/Berlin"``); in a zone with daylight saving a time that does not exist on
  the spring change fires at the change, and one that happens twice in the autumn
  fires twice (as croniter computes it). An expression croniter refuses, one with
  another number of fields (croniter's seconds and years fields, Jenkins' ``H``) and one
  that never comes due (``0 0 30 2 *``) are refused at the call with ``ValueError``.
* ``every`` is a period in seconds (a number or a ``timedelta``), at least
  :data:`MIN_EVERY`; the first firing is one period after the call.
* **The next due time comes from the schedule, never from when a firing ran or ended**,
  so a schedule does not drift: a cron alarm's next time is the expression's first time
  after the firing started; an interval alarm set at ``t0`` is due at ``t0 + k * every``
  and its next time is the first of those after the firing started.
* **Missed firings fire once, not in a burst**: after downtime (or a firing that ran or
  was retried past later times), the alarm fires once, and then at the first time of its
  schedule after that firing, skipping the times it missed.

Kept in the alarm's record (``alarms.py``), beside ``when``/``payload``/``attempt``:
``"cron"`` (and ``"tz"`` when not UTC) or ``"every"``, and ``"scheduled"``: the
schedule's time the alarm stands for now (``when`` moves with leases and retries;
``scheduled`` does not). A record without ``"cron"`` or ``"every"`` is a one-shot alarm.

Pure: no storage and no clock (every function takes ``now``). Parsed expressions are
cached (:func:`_cron`), so a firing costs one croniter step, not a parse.
"""
from __future__ import annotations

import datetime
import functools
import math
import zoneinfo
from typing import Any

from croniter import CroniterError, croniter

#: the shortest period of ``every=`` (seconds): a shorter one is a loop, not a schedule
MIN_EVERY = 1.0

#: the longest cron expression taken (characters)
MAX_CRON_CHARS = 256

#: croniter's names for common expressions, taken as they are
CRON_ALIASES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
                          "@hourly"})

#: the record fields that make an alarm recurring
RECURRING_FIELDS = ("cron", "every")

UTC = datetime.timezone.utc


def check(cron: Any, every: Any, tz: Any) -> dict[str, Any]:
    """The schedule fields of an alarm record for ``cron=`` (with ``tz=``) or ``every=``
    (exactly one of them is not None), checked: ``TypeError`` for a wrong type,
    ``ValueError`` for a wrong value (the message says which)."""
    if cron is not None:
        if not isinstance(cron, str):
            raise TypeError(f"an alarm's cron= is a string like \"*/5 * * * *\", got "
                            f"{type(cron).__name__}")
        expr = " ".join(cron.split())
        if len(expr) > MAX_CRON_CHARS:
            raise ValueError(f"cron expression is longer than {MAX_CRON_CHARS} characters")
        fields: dict[str, Any] = {"cron": expr}
        if tz is not None:
            if not isinstance(tz, str):
                raise TypeError(f"an alarm's tz= is an IANA zone name like \"Europe/Berlin\", got "
                                f"{type(tz).__name__}")
            zone(tz)                                  # (raises for an unknown zone)
            if tz != "UTC":
                fields["tz"] = tz
        if expr.lower() not in CRON_ALIASES and len(expr.split()) != 5:
            raise ValueError(f"cron expression {cron!r:.100} has {len(expr.split())} fields; one has "
                             f"5 (minute hour day-of-month month day-of-week) or is an alias "
                             f"like @hourly (for seconds, use every=)")
        try:
            _cron(expr)
        except (CroniterError, ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"bad cron expression {cron!r:.100}: {exc}") from None
        return fields
    if tz is not None:
        raise TypeError("an alarm's tz= goes with cron= (every= and when= are not wall-clock times)")
    if isinstance(every, datetime.timedelta):
        every = every.total_seconds()
    if isinstance(every, bool) or not isinstance(every, (int, float)):
        raise TypeError(f"an alarm's every= is a period in seconds or a timedelta, got "
                        f"{type(every).__name__}")
    if not math.isfinite(every) or every < MIN_EVERY:
        raise ValueError(f"an alarm's every= is at least {MIN_EVERY:g} second and finite, got "
                         f"{every!r} (a shorter period is a loop: an async handler that sleeps)")
    return {"every": float(every)}


def recurring(record: dict[str, Any]) -> bool:
    """Whether an alarm record is a recurring one (else: one-shot, as every record
    written before issue 18 is)."""
    return "cron" in record or "every" in record


def first(fields: dict[str, Any], now: float) -> float:
    """The first due time of a schedule set at ``now`` (``ValueError`` if it has none:
    a cron expression naming a date that never comes)."""
    if "every" in fields:
        return now + float(fields["every"])
    at = _cron_next(fields, now)
    if at is None:
        raise ValueError(f"cron expression {fields['cron']!r:.100} never comes due")
    return at


def following(record: dict[str, Any], now: float) -> float | None:
    """The next due time of a recurring alarm whose firing starts (or is given up) at
    ``now``: its schedule's first time after both ``now`` and the record's
    ``scheduled`` time (missed times are skipped). None: the schedule has no more."""
    scheduled = float(record["scheduled"] if "scheduled" in record else record["when"])
    if "every" in record:
        every = float(record["every"])
        k = math.floor((max(now, scheduled) - scheduled) / every) + 1
        return scheduled + k * every
    return _cron_next(record, max(now, scheduled))


def zone(tz: str) -> datetime.tzinfo:
    """The zone named ``tz`` (``ValueError`` for one this machine does not know)."""
    if tz == "UTC":
        return UTC
    try:
        return zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r:.100} for an alarm's tz=: {exc}") from None


@functools.lru_cache(maxsize=1024)
def _cron(expr: str) -> Any:
    """The parsed expression (croniter's iterator; its position is set by every use)."""
    return croniter(expr, 0.0)


def _cron_next(fields: dict[str, Any], after: float) -> float | None:
    """The expression's first time strictly after ``after``, in its zone; None if none.
    croniter can answer a time not after its start around a zone's daylight-saving change:
    it is asked again from a second, then a minute, later before the schedule is taken to
    have no more times."""
    tz = zone(fields.get("tz", "UTC"))
    for bump in (0.0, 1.0, 60.0):
        start = datetime.datetime.fromtimestamp(after + bump, tz)
        try:
            at = float(_cron(fields["cron"]).get_next(float, start_time=start))
        except (CroniterError, ValueError, OverflowError):
            return None
        if at > after:
            return at
    return None
