"""``$fire_alarm``'s worker side in-process (``AlarmTurns.fire``, real LevelDB, no
socket): a fired alarm's turn answers its caller after its commit, counts its attempt,
is dropped after the last one, and is answered False when a destroy takes it."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from runtime_fakes import Slot

from actorsys import Actor
from actorsys.protocol import wire


class Timer(Actor):
    def set(self, delay: float, name: str = "t", fail: bool = False) -> float:
        return self.set_alarm(delay, name, {"fail": fail})

    def pending(self) -> dict[str, Any]:
        return self.alarms()

    def fired(self) -> list[str]:
        return self.state.get("fired", [])

    async def destroy_soon(self) -> str:
        await asyncio.sleep(0.05)
        self.destroy()
        return "gone"

    def on_alarm(self, name: str, payload: Any) -> None:
        self.state.setdefault("fired", []).append(name)
        if payload["fail"]:
            raise RuntimeError("on_alarm fails on purpose")


@pytest.fixture
def slot(tmp_path):
    s = Slot(str(tmp_path), {"Timer": Timer}, testing=True,
             alarm_retry={"initial": 60.0, "max": 60.0, "attempts": 2})
    yield s
    s.close()


def fire(slot: Slot, key: str, name: str) -> list[Any]:
    """What the dispatch does with ``$fire_alarm`` ``name``; returns the reply."""
    act = slot.catalog.resident("Timer", key)
    reply_to, rid = (b"test",), 10_000 + len(slot.out.replies)
    if not slot.rt.alarms.fire(act, name, reply_to, rid):
        return [wire.OK, rid, False]
    slot.commit.flush()
    if not act.running:
        slot.turns.pump(act)
    return slot.wait_reply(rid)


def test_a_fired_alarm_runs_now_and_answers_after_its_commit(slot):
    slot.call("Timer", "a", "set", 3600, "t")
    reply = fire(slot, "a", "t")
    assert reply[0] == wire.OK and reply[2] is True
    assert slot.call("Timer", "a", "fired") == ["t"] and slot.call("Timer", "a", "pending") == {}
    assert slot.counters["alarms_fired"] == 1
    assert fire(slot, "a", "t")[2] is False and fire(slot, "a", "nothing")[2] is False, \
        "no such alarm (any more): False, and nothing runs"


def test_a_failing_fired_alarm_counts_its_attempt_and_is_dropped_after_the_last(slot):
    slot.call("Timer", "f", "set", 3600, "t", fail=True)
    reply = fire(slot, "f", "t")
    assert reply[0] == wire.ERR and "fails on purpose" in reply[2]["message"]
    assert slot.call("Timer", "f", "pending")["t"]["attempt"] == 1, "counted, kept for its retry"
    assert fire(slot, "f", "t")[0] == wire.ERR
    assert fire(slot, "f", "t")[2] is False and slot.counters["alarms_dropped"] == 1, \
        "its attempts used up: dropped, as the clock would, and nothing ran"
    assert slot.call("Timer", "f", "pending") == {} and slot.call("Timer", "f", "fired") == []


def test_a_fired_alarm_taken_by_a_destroy_is_answered_false(slot):
    slot.call("Timer", "d", "set", 3600, "t")
    destroying = slot.ask("Timer", "d", "destroy_soon")
    act = slot.act("Timer", "d")
    assert act.running and slot.rt.alarms.fire(act, "t", (b"test",), 777), \
        "queued behind the running async turn"
    slot.commit.flush()
    assert slot.wait_reply(destroying)[2] == "gone"
    assert slot.wait_reply(777)[2] is False, "the destroy took the queued alarm: it did not run"
