"""Group commit and the output gate below a node: turns that finish together commit in
one LevelDB batch, their output leaves only after it, and a failed commit fails them."""
from __future__ import annotations

from typing import Any, Iterator

import pytest
from runtime_fakes import FullDisk, Slot

import actorsys
from actorsys.protocol import wire
from actorsys.runtime.activation import DEAD


class Counter(actorsys.Actor):
    def add(self, by: int = 1) -> int:
        self.state["n"] = self.state.get("n", 0) + by
        return int(self.state["n"])

    def get(self) -> int:
        return int(self.state.get("n", 0))

    def add_and_tell(self, other: str) -> None:
        self.state["n"] = self.state.get("n", 0) + 1
        self.ref("Counter", other).tell("add")

    def crash(self) -> None:
        raise RuntimeError("child crash")

    def greet_sockets(self) -> None:
        self.broadcast("hello")


@pytest.fixture
def slot(tmp_path: Any) -> Iterator[Slot]:
    s = Slot(str(tmp_path), {"Counter": Counter})
    yield s
    s.close()


def test_turns_that_finish_together_commit_in_one_batch_then_reply(slot: Slot) -> None:
    rids = [slot.ask("Counter", key, "add", 1) for key in ("a", "b", "c")]
    slot.tell("Counter", "d", "add_and_tell", "a")
    assert slot.out.replies == [] and slot.out.tells == []
    assert len(slot.commit.staged) == 4 and slot.store.commits == 0
    slot.commit.flush()
    assert slot.store.commits == 1                       # one batch for the four turns
    assert [slot.out.reply_to(r)[2] for r in rids] == [1, 1, 1]
    assert len(slot.out.tells) == 1 and slot.out.kicks == 1
    assert not slot.commit.outbox and not slot.commit.staged


def test_a_flush_with_nothing_to_do_writes_nothing(slot: Slot) -> None:
    slot.commit.flush()
    assert slot.store.commits == 0 and slot.out.kicks == 0


def test_a_failed_commit_fails_its_turns_and_the_actors_reload(slot: Slot,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert slot.call("Counter", "a", "add", 5) == 5
    rid = slot.ask("Counter", "a", "add", 1)
    slot.tell("Counter", "b", "add_and_tell", "a")
    monkeypatch.setattr(slot.store, "db", FullDisk(slot.store.db))
    slot.commit.flush()
    err = slot.out.reply_to(rid)
    assert err[0] == wire.ERR and err[2]["code"] == "storage"
    assert slot.out.tells == []                          # a tell of the failed group is dropped
    assert slot.store.broken is not None and slot.rt.recovery.active
    assert slot.act("Counter", "a").instance is None     # reloads from its last commit
    assert slot.counters["storage_errors"] == 1
    monkeypatch.undo()
    # read-only until recovered: a turn that writes is refused, reads go on
    refused = slot.ask("Counter", "a", "add", 1)
    read = slot.ask("Counter", "a", "get")
    slot.commit.flush()
    assert slot.out.reply_to(refused)[2]["code"] == "storage"
    assert slot.out.reply_to(read)[2] == 5
    assert slot.store.try_recover()
    assert slot.call("Counter", "a", "add", 1) == 6


def test_a_childs_exit_leaves_after_the_commit_of_its_last_turn(slot: Slot) -> None:
    reply_to = (b"tree",)
    slot.rt.children.start(reply_to, 7, "Counter", "kid", {"sup": "top", "child": "k1", "args": [],
                                                         "kwargs": {}, "inc": 3})
    slot.commit.flush()
    assert slot.out.reply_to(7)[2] is None               # START's reply: on_start's result
    rid = slot.ask("Counter", "kid", "crash")
    assert slot.out.exits == []
    assert slot.act("Counter", "kid").status is DEAD
    slot.loop.run_until_complete(_yield())               # the scheduled flush
    assert [(e.sup, e.child, e.inc, e.reason) for e in slot.out.exits] == [("top", "k1", 3, "crash")]
    assert "child crash" in slot.out.exits[0].detail
    assert slot.out.reply_to(rid)[2]["type"] == "RuntimeError"
    held = slot.ask("Counter", "kid", "get")             # a dead child's messages wait
    slot.commit.flush()
    assert [r for _to, r in slot.out.replies if r[1] == held] == []


def test_websocket_effects_leave_with_the_commit(slot: Slot) -> None:
    slot.ask("Counter", "a", "greet_sockets")
    assert slot.out.ws == []
    slot.commit.flush()
    assert [(e.type_name, e.key, e.effects) for e in slot.out.ws] == [
        ("Counter", "a", [["b", None, None, "hello", None]])]


async def _yield() -> None:
    pass
