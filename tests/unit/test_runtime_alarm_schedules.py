"""Recurring alarms as turns, below a node: the worker's alarm turns (admit, run, failed)
and the real AlarmClock over a LevelDB store, with the clock driven by the test
(runtime_fakes.py, loops.FakeLoop): each firing moves the alarm to its next time in its
own commit, on_alarm sees it listed there, cancel and set-again from on_alarm, a failing
on_alarm retried then skipped to the next time, bad input failing the turn."""
from __future__ import annotations

import logging
import time
from typing import Any, Iterator

import pytest
from loops import FakeLoop
from runtime_fakes import Slot

import actorsys
from actorsys.protocol import wire
from actorsys.storage.alarms import AlarmClock
from actorsys.storage.keys import DUE_INDEX_RANGE, parse_alarm_index_key

#: what each test's on_alarm does, by actor key: "ok", "raise", "cancel", "replace"
MODE: dict[str, str] = {}


class Ticker(actorsys.Actor):
    def start(self, every: Any = None, cron: Any = None, when: Any = None, tz: Any = None) -> float:
        return self.set_alarm(when, "tick", {"k": self.key}, cron=cron, every=every, tz=tz)

    def pending(self) -> dict[str, Any]:
        return self.alarms()

    def seen(self) -> list[Any]:
        return list(self.state.get("seen", []))

    def on_alarm(self, name: str, payload: Any) -> None:
        mode = MODE.get(self.key, "ok")
        self.state.setdefault("seen", []).append(self.alarms()[name]["when"] if self.alarms() else None)
        if mode == "raise":
            raise RuntimeError("this firing fails")
        if mode == "cancel":
            self.cancel_alarm(name)
        elif mode == "replace":
            self.set_alarm(3600, name, "one-shot now")


class Driven:
    """A slot whose alarm clock and alarm turns run on the test's clock."""

    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.loop = FakeLoop(time.time())
        turns = slot.rt.alarms
        turns.now = self.loop.time
        turns.clock = AlarmClock(self.loop, slot.store, self.deliver, redeliver_after=30.0,
                                 now=self.loop.time)

    def deliver(self, batch: list[Any]) -> None:
        """As the worker's dispatch does: count the attempts, commit, run the turns."""
        queued = self.slot.rt.alarms.admit(batch)
        self.slot.commit.flush()
        for act in queued:
            if not act.running:
                self.slot.turns.pump(act)
        self.slot.settle()

    def advance(self, seconds: float) -> None:
        self.loop.advance(self.loop.now + seconds)
        self.slot.settle()


@pytest.fixture
def driven(tmp_path: Any) -> Iterator[Driven]:
    s = Slot(str(tmp_path), {"Ticker": Ticker},
             alarm_retry={"initial": 1.0, "max": 4.0, "attempts": 3})
    yield Driven(s)
    s.close()


def due_index(slot: Slot) -> list[str]:
    return [parse_alarm_index_key(k).name for k, _v in slot.store.range(*DUE_INDEX_RANGE)]


def test_each_firing_moves_the_alarm_to_its_next_time_in_its_own_commit(driven: Driven) -> None:
    slot = driven.slot
    first = slot.call("Ticker", "a", "start", every=10)
    driven.advance(first - driven.loop.now + 0.5)
    assert slot.call("Ticker", "a", "seen") == [first + 10], \
        "on_alarm sees its alarm listed at the next time"
    listed = slot.call("Ticker", "a", "pending")["tick"]
    assert listed == {"when": first + 10, "payload": {"k": "a"}, "attempt": 0, "every": 10.0}
    for _ in range(3):
        driven.advance(10)
    assert slot.call("Ticker", "a", "seen") == [first + 10 * k for k in range(1, 5)], \
        "on the schedule's grid, each firing once"
    assert due_index(slot) == ["tick"] and slot.counters["alarms_fired"] == 4
    driven.advance(95)                          # the times +40 to +120 pass (nothing ran)
    assert slot.call("Ticker", "a", "seen")[4:] == [first + 130], "fired once, then next on the grid"


def test_cancel_or_set_again_from_on_alarm_ends_or_replaces_the_recurrence(driven: Driven) -> None:
    slot = driven.slot
    MODE.update(c="cancel", r="replace")
    first = slot.call("Ticker", "c", "start", every=5)
    slot.call("Ticker", "r", "start", cron="* * * * *")
    driven.advance(max(first, slot.call("Ticker", "r", "pending")["tick"]["when"]) - driven.loop.now)
    assert slot.call("Ticker", "c", "pending") == {}, "cancelled: no next time"
    replaced = slot.call("Ticker", "r", "pending")["tick"]
    assert replaced["payload"] == "one-shot now" and "cron" not in replaced
    driven.advance(600)
    assert len(slot.call("Ticker", "c", "seen")) == 1 and len(slot.call("Ticker", "r", "seen")) == 1
    assert due_index(slot) == ["tick"], "only the replacing one-shot alarm is left"


def test_a_failing_on_alarm_is_retried_then_skipped_to_its_next_time(
        driven: Driven, caplog: pytest.LogCaptureFixture) -> None:
    slot = driven.slot
    MODE["f"] = "raise"
    first = slot.call("Ticker", "f", "start", every=60)
    with caplog.at_level(logging.WARNING, logger="actorsys"):
        driven.advance(first - driven.loop.now + 0.01)
        for _ in range(3):                                # retries after 1 s, then 2 s
            driven.advance(2.0)
    assert slot.counters["alarms_failed"] == 3 and slot.counters["alarms_dropped"] == 1
    assert "firing of recurring alarm 'tick' of Ticker/f dropped after 3 failed attempts" in caplog.text
    assert slot.call("Ticker", "f", "pending")["tick"] == {
        "when": first + 60, "payload": {"k": "f"}, "attempt": 0, "every": 60.0}, \
        "not dropped: waiting for its next time, with fresh attempts"
    MODE["f"] = "ok"
    driven.advance(60)
    assert slot.call("Ticker", "f", "pending")["tick"]["when"] == first + 120
    assert slot.counters["alarms_fired"] == 4


@pytest.mark.parametrize(("how", "remote_type"), [
    ({"cron": "*/5 * * * * *"}, "ValueError"),
    ({"cron": 300}, "TypeError"),
    ({"every": 0}, "ValueError"),
    ({"every": 0.2}, "ValueError"),
    ({"when": 5, "cron": "* * * * *"}, "TypeError"),
    ({"every": 5, "tz": "Europe/Berlin"}, "TypeError"),
    ({"cron": "* * * * *", "tz": "Nowhere/Land"}, "ValueError"),
])
def test_bad_schedules_fail_the_turn_and_set_nothing(driven: Driven, how: dict[str, Any],
                                                      remote_type: str) -> None:
    slot = driven.slot
    slot.call("Ticker", "b", "start", every=30)
    reply = slot.wait_reply(slot.ask("Ticker", "b", "start", **how))
    assert reply[0] == wire.ERR and reply[2]["type"] == remote_type, reply
    assert list(slot.call("Ticker", "b", "pending")["tick"]) == ["when", "payload", "attempt", "every"], \
        "the alarm it would have replaced stands"


def test_a_fired_alarm_is_in_flight_so_the_clock_does_not_hand_it_out_as_well(driven: Driven) -> None:
    """``$fire_alarm`` (a testing node) hands an alarm out as the clock does: while its
    turn waits behind the actor's mail, past its lease, the clock does not deliver it a
    second time (which would use an attempt and run on_alarm after the test's ask)."""
    slot = driven.slot
    first = slot.call("Ticker", "f", "start", every=600)
    delivered: list[Any] = []
    inner = driven.deliver
    driven.deliver = lambda batch: (delivered.extend(batch), inner(batch))   # type: ignore[method-assign]
    slot.rt.alarms.clock.deliver = driven.deliver
    act = slot.rt.catalog.resident("Ticker", "f")
    assert slot.rt.alarms.fire(act, "tick", None, 0), "the alarm is handed out now"
    slot.commit.flush()                           # its attempt counted; its turn not run yet
    driven.advance(5)                             # past the lease (1 s: alarm_retry.initial)
    assert delivered == [], "the clock left the fired alarm alone while its turn waits"
    slot.turns.pump(act)
    slot.settle()
    assert slot.call("Ticker", "f", "seen") == [first + 600], "it ran once, then listed at its next time"
    assert slot.call("Ticker", "f", "pending")["tick"]["attempt"] == 0
