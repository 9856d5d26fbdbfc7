"""Supervised children below a node: START, STOP (timed and brutal_kill), and what a
killed instance still tries to send."""
from __future__ import annotations

import asyncio
from typing import Any, Iterator

import pytest
from runtime_fakes import Slot

import actorsys
from actorsys.protocol import wire
from actorsys.runtime.activation import DEAD, RUNNING, STOPPED

OPTS = {"sup": "top", "child": "k", "args": [7], "kwargs": {"label": "x"}, "inc": 2}
GATE: dict[str, asyncio.Future[Any]] = {}


class Kid(actorsys.Actor):
    def on_start(self, n: int = 0, label: str = "") -> None:
        self.state["start"] = [n, label]

    def started_with(self) -> list[Any]:
        return list(self.state["start"])

    async def linger(self) -> None:
        try:
            await GATE["g"]
        except asyncio.CancelledError:
            # a killed turn that carries on: whatever it sends goes nowhere
            self.ref("Kid", "other").tell("started_with")
            self.broadcast("from a zombie")
            await asyncio.sleep(0)
            raise

    def quit(self, reason: str) -> str:
        self.stop(reason)
        return "bye"


@pytest.fixture
def slot(tmp_path: Any) -> Iterator[Slot]:
    s = Slot(str(tmp_path), {"Kid": Kid})
    yield s
    s.close()


def start(slot: Slot, key: str = "kid", rid: int = 900) -> Any:
    slot.rt.children.start((b"tree",), rid, "Kid", key, dict(OPTS))
    slot.commit.flush()
    return slot.out.reply_to(rid)


def test_a_start_runs_on_start_with_the_childs_arguments_and_replies_after_commit(slot: Slot) -> None:
    assert start(slot)[0] == wire.OK
    act = slot.act("Kid", "kid")
    assert act.status is RUNNING and act.sup is not None and act.sup.inc == 2
    assert slot.call("Kid", "kid", "started_with") == [7, "x"]
    assert start(slot, rid=901)[2] == "adopted"       # the same child, running: adopted


def test_brutal_kill_discards_an_awaiting_turn_and_what_it_still_sends(slot: Slot) -> None:
    start(slot)
    GATE["g"] = slot.loop.create_future()
    rid = slot.ask("Kid", "kid", "linger")
    slot.loop.run_until_complete(asyncio.sleep(0))     # the turn is awaiting GATE now
    slot.rt.children.stop((b"tree",), 902, "Kid", "kid", {"shutdown": "brutal_kill"})
    err = slot.wait_reply(rid)                # when the zombie turn ends: discarded
    assert err[0] == wire.ERR and err[2]["type"] == "ActorStopped"
    assert slot.out.reply_to(902)[2] == "killed"
    assert slot.out.tells == [] and slot.out.ws == [] and slot.out.exits == []
    act = slot.act("Kid", "kid")
    assert act.status is STOPPED and act.instance is None and act.gen == 2


def test_stop_reason_is_an_exit_after_on_stop(slot: Slot) -> None:
    start(slot)
    rid = slot.ask("Kid", "kid", "quit", "done")
    assert slot.act("Kid", "kid").status is DEAD
    slot.commit.flush()
    assert slot.out.reply_to(rid)[2] == "bye"
    assert [(e.child, e.reason, e.detail) for e in slot.out.exits] == [("k", "done", "")]


def test_a_timed_stop_runs_on_stop_and_answers_shutdown(slot: Slot) -> None:
    start(slot)
    slot.rt.children.stop((b"tree",), 903, "Kid", "kid", {"shutdown": 1000})
    slot.commit.flush()
    assert slot.out.reply_to(903)[2] == "shutdown"
    assert ("Kid", "kid") not in slot.catalog.acts      # on_stop ran; it left memory
    assert slot.catalog.resident("Kid", "kid").status is STOPPED   # (its record says so)
    slot.rt.children.stop((b"tree",), 904, "Kid", "kid", {"forget": True})
    slot.commit.flush()
    assert slot.out.reply_to(904)[2] == "forgotten"
    assert slot.call("Kid", "kid", "started_with") == [0, ""]   # a plain actor again
