"""Turns below a node: the turn runner against a LevelDB store in tmp_path, no process,
no socket (see runtime_fakes.py)."""
from __future__ import annotations

import asyncio
from typing import Any, Iterator

import pytest
from runtime_fakes import Slot

import actorsys
from actorsys.protocol import wire
from actorsys.runtime.activation import NO_MAIL, Waiting


class Counter(actorsys.Actor):
    def on_start(self) -> None:
        self.state.setdefault("n", 0)
        self.state["starts"] = self.state.get("starts", 0) + 1

    def add(self, by: int = 1) -> int:
        self.state["n"] += by
        return int(self.state["n"])

    def get(self) -> dict[str, Any]:
        return {"n": self.state["n"], "note": self.storage.get("note")}

    def boom(self) -> None:
        self.state["n"] = 1000
        self.storage.put("note", "never")
        raise ValueError("boom")

    def notify(self, other: str) -> None:
        self.ref("Counter", other).tell("add", 10)
        self.state["n"] += 1

    def leave(self) -> str:
        self.stop()
        return "leaving"

    def on_stop(self) -> None:
        self.storage.put("stopped", True)

    async def slow(self, fut_name: str) -> str:
        await WAITS[fut_name]
        self.state["n"] += 100
        return "slow done"


WAITS: dict[str, asyncio.Future[Any]] = {}


@pytest.fixture
def slot(tmp_path: Any) -> Iterator[Slot]:
    s = Slot(str(tmp_path), {"Counter": Counter}, turn_timeout=0.05)
    yield s
    s.close()


def test_the_reply_waits_for_the_commit_of_its_turn(slot: Slot) -> None:
    rid = slot.ask("Counter", "a", "add", 2)
    assert slot.out.replies == []                 # the output gate: nothing left yet
    assert slot.store.pending and slot.store.commits == 0
    slot.commit.flush()
    assert slot.store.commits == 1 and not slot.store.pending
    assert slot.out.reply_to(rid) == [wire.OK, rid, 2]


def test_a_turn_that_raises_stages_nothing_and_the_actor_reloads_its_last_commit(slot: Slot) -> None:
    assert slot.call("Counter", "a", "add", 5) == 5
    commits = slot.store.commits
    rid = slot.ask("Counter", "a", "boom")
    assert not slot.store.pending                 # neither state nor storage of the turn
    assert slot.act("Counter", "a").instance is None
    slot.commit.flush()
    assert slot.store.commits == commits
    err = slot.out.reply_to(rid)
    assert err[0] == wire.ERR and err[2]["code"] == "remote" and err[2]["type"] == "ValueError"
    assert "boom" in err[2]["traceback"]
    assert slot.call("Counter", "a", "get") == {"n": 5, "note": None}
    assert slot.counters["activations"] == 2 and slot.counters["failures"] == 1


def test_arguments_that_do_not_fit_are_the_callers_error(slot: Slot) -> None:
    rid = slot.ask("Counter", "a", "add", 1, 2, 3)
    slot.commit.flush()
    err = slot.out.reply_to(rid)
    assert err[2]["code"] == "bad_request" and err[2]["type"] == "BadArguments"


def test_tells_leave_with_the_commit_of_the_turn_that_made_them(slot: Slot) -> None:
    slot.ask("Counter", "a", "notify", "b")
    assert slot.out.tells == [] and slot.transport.sent == []
    slot.commit.flush()
    assert [(t.type_name, t.key, t.method, t.args) for t in slot.out.tells] == [("Counter", "b", "add", [10])]


def test_a_failed_turn_sends_none_of_its_tells(slot: Slot) -> None:
    slot.ask("Counter", "a", "notify", 123)       # ref(type, key) with a non-string key
    slot.commit.flush()
    assert slot.out.tells == []


def test_stop_runs_on_stop_after_the_turn_and_the_actor_leaves_memory(slot: Slot) -> None:
    rid = slot.ask("Counter", "a", "leave")
    assert ("Counter", "a") not in slot.catalog.acts    # the EXITING turn ran on_stop next
    slot.commit.flush()
    assert slot.out.reply_to(rid)[2] == "leaving"
    assert slot.counters["passivations"] == 1
    assert slot.call("Counter", "a", "get")["n"] == 0    # activated again, from storage


def test_an_async_turn_holds_the_mailbox_and_waiting_messages_stay_bytes(slot: Slot) -> None:
    WAITS["x"] = slot.loop.create_future()
    first = slot.ask("Counter", "a", "slow", "x")
    act = slot.act("Counter", "a")
    assert act.running and act.task is not None
    second = slot.deliver(wire.ASK, "Counter", "a", "add", 1, queued_as_bytes=True)
    assert len(act.mailbox) == 1 and isinstance(act.mailbox[0], Waiting)
    assert slot.catalog.queued_bytes > 0
    WAITS["x"].set_result(None)
    slot.settle()
    assert slot.out.reply_to(first)[2] == "slow done"
    assert slot.out.reply_to(second)[2] == 101      # ran after the async turn, decoded then
    assert slot.catalog.queued_bytes == 0 and act.mailbox is NO_MAIL


def test_an_async_turn_past_turn_timeout_is_the_actors_crash(slot: Slot) -> None:
    WAITS["never"] = slot.loop.create_future()
    rid = slot.ask("Counter", "a", "slow", "never")
    slot.settle()
    err = slot.out.reply_to(rid)
    assert err[2]["type"] == "TimeoutError" and "turn_timeout" in err[2]["message"]
    assert slot.counters["turn_timeouts"] == 1
    assert slot.act("Counter", "a").instance is None


def test_a_state_too_large_to_store_fails_the_turn(tmp_path: Any) -> None:
    class Big(actorsys.Actor):
        def grow(self) -> None:
            self.state["x"] = "y" * 5000

    s = Slot(str(tmp_path), {"Big": Big}, max_value_bytes=4096)
    try:
        rid = s.ask("Big", "a", "grow")
        s.commit.flush()
        err = s.out.reply_to(rid)
        assert err[2]["type"] == "LimitExceeded" and not s.store.pending
    finally:
        s.close()


def test_an_actor_that_only_starts_leaves_nothing_on_disk(slot: Slot) -> None:
    class Empty(actorsys.Actor):
        def ping(self) -> str:
            return "pong"

    s = Slot(slot.cfg.data_dir + "/other", {"Empty": Empty})
    try:
        assert s.call("Empty", "a", "ping") == "pong"
        assert s.store.commits == 0
    finally:
        s.close()


class Dbish(actorsys.Actor):
    """An actor using attribute names a user might pick (``_host``, ``_worker``, ``_act``):
    the runtime's handle on the instance must not be one of them."""

    def on_start(self) -> None:
        self._host, self._worker, self._act = "db.local", "w", "a"
        self.state.setdefault("n", 0)

    def notify(self, other: str) -> str:
        self.ref("Dbish", other).tell("bump")
        return self._host

    def bump(self) -> None:
        self.state["n"] += 1


def test_an_actor_may_use_any_private_name_of_its_own(tmp_path: Any) -> None:
    s = Slot(str(tmp_path), {"Dbish": Dbish})
    try:
        assert s.call("Dbish", "a", "notify", "b") == "db.local"
        assert [(t.key, t.method) for t in s.out.tells] == [("b", "bump")]
    finally:
        s.close()
