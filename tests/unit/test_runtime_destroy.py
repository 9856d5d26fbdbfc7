"""``self.destroy()`` and the unlisting of empty actors below a node: the turn runner and
the group commit against a LevelDB store in tmp_path (see runtime_fakes.py and
``actorsys/runtime/destroy.py``)."""
from __future__ import annotations

import asyncio
from typing import Any, Iterator

import pytest
from runtime_fakes import FullDisk, Slot

import actorsys
from actorsys.protocol import wire
from actorsys.runtime import turns as turns_module
from actorsys.runtime.activation import ALARM, Call, Internal
from actorsys.storage.keys import REQUEST, actor_range, listing_key, supervision_key


class Sess(actorsys.Actor):
    def open(self) -> None:
        self.state["n"] = 1
        self.storage.put("k", "v")
        self.set_alarm(3600, "later")

    def get(self) -> dict[str, Any]:
        return {"state": dict(self.state), "storage": self.storage.list(),
                "alarms": sorted(self.alarms())}

    def end(self) -> str:
        ENDED.append(self.key)
        self.state["late"] = True
        self.destroy()
        return "bye"

    def delete(self, key: str) -> bool:
        return self.storage.delete(key)

    def stop_and_end(self, reason: str) -> None:
        self.stop(reason)
        self.destroy()

    async def end_when(self, name: str) -> None:
        await WAITS[name]
        self.destroy()

    def on_alarm(self, name: str, payload: Any) -> None:
        FIRED.append(name)


WAITS: dict[str, asyncio.Future[Any]] = {}
FIRED: list[str] = []
ENDED: list[str] = []


@pytest.fixture
def slot(tmp_path: Any) -> Iterator[Slot]:
    s = Slot(str(tmp_path), {"Sess": Sess})
    yield s
    s.close()


def own_keys(slot: Slot, key: str) -> list[bytes]:
    prefix = slot.catalog.resident("Sess", key).prefix
    return [k for k, _v in slot.store.range(*actor_range(prefix))]


def test_the_deletion_commits_with_the_reply_and_queued_mail_meets_a_fresh_actor(slot: Slot) -> None:
    slot.call("Sess", "a", "open")
    assert own_keys(slot, "a") and slot.store.get(listing_key("Sess", "a")) is not None
    answered = len(slot.out.replies)
    end = slot.ask("Sess", "a", "end")
    after = slot.ask("Sess", "a", "get")           # queued behind the destroying turn
    assert len(slot.out.replies) == answered, "the reply waits for the deletion's commit"
    slot.commit.flush()
    assert slot.out.reply_to(end)[2] == "bye"
    assert slot.out.reply_to(after)[2] == {"state": {}, "storage": {}, "alarms": []}
    assert own_keys(slot, "a") == [], "state, storage and alarm records deleted"
    assert slot.store.get(listing_key("Sess", "a")) is None
    assert not list(slot.store.range(b"t", b"u")), "and the alarms' due-index entries"


def test_a_destroyed_actor_leaves_memory_without_on_stop(slot: Slot) -> None:
    slot.call("Sess", "b", "open")
    slot.call("Sess", "b", "end")
    assert ("Sess", "b") not in slot.catalog.acts, "the activation is forgotten"


def test_a_failed_commit_destroys_nothing(slot: Slot, monkeypatch: pytest.MonkeyPatch) -> None:
    slot.call("Sess", "c", "open")
    rid = slot.ask("Sess", "c", "end")
    monkeypatch.setattr(slot.store, "db", FullDisk(slot.store.db))
    slot.commit.flush()
    assert slot.out.reply_to(rid)[2]["code"] == "storage", "the caller learns it failed"
    monkeypatch.undo()
    assert slot.store.try_recover()
    assert slot.call("Sess", "c", "get") == {"state": {"n": 1}, "storage": {"k": "v"},
                                              "alarms": ["later"]}


def test_the_emptiness_check_costs_nothing_while_the_state_is_not_empty(
        slot: Slot, monkeypatch: pytest.MonkeyPatch) -> None:
    slot.call("Sess", "d", "open")

    def no_scan(*args: Any) -> bool:
        raise AssertionError("holds_data ran for an actor with a non-empty state")
    monkeypatch.setattr(turns_module, "holds_data", no_scan)
    assert slot.call("Sess", "d", "delete", "k") is True
    assert slot.store.get(listing_key("Sess", "d")) is not None, "still listed (state n = 1)"


def test_queued_deliveries_of_its_alarms_go_with_a_destroyed_actor(slot: Slot) -> None:
    slot.call("Sess", "e", "open")
    WAITS["e"] = slot.loop.create_future()
    rid = slot.ask("Sess", "e", "end_when", "e")      # awaits: the alarm queues behind it
    act = slot.act("Sess", "e")
    assert act.instance is not None
    when = act.instance.alarms()["later"]["when"]
    act.mail().append(Internal(ALARM, name="later", due=int(when * 1_000_000)))
    activations = slot.counters["activations"]
    WAITS["e"].set_result(None)
    assert slot.wait_reply(rid)[0] == wire.OK
    slot.settle()
    assert FIRED == [] and slot.counters["activations"] == activations, \
        "the queued alarm neither ran nor started a fresh instance"
    assert ("Sess", "e") not in slot.catalog.acts


@pytest.mark.parametrize(("method", "args", "reason"), [("end", (), "normal"),
                                                      ("stop_and_end", ("abnormal",), "abnormal")])
def test_a_child_that_destroys_itself_exits_after_the_deletion_commits(
        slot: Slot, method: str, args: tuple[Any, ...], reason: str) -> None:
    slot.rt.children.start((b"tree",), 7, "Sess", "kid", {"sup": "top", "child": "k1", "args": [],
                                                        "kwargs": {}, "inc": 3})
    slot.commit.flush()
    slot.call("Sess", "kid", "open")
    rid = slot.ask("Sess", "kid", method, *args)
    assert slot.out.exits == [], "the exit waits for the commit"
    slot.settle()
    assert slot.out.reply_to(rid)[0] == wire.OK
    assert [(e.child, e.reason) for e in slot.out.exits] == [("k1", reason)], \
        "a normal exit, or the reason of the turn's own self.stop(reason)"
    assert own_keys(slot, "kid") == [supervision_key(slot.act("Sess", "kid").prefix)], \
        "only the supervision record stays"
    assert slot.store.get(listing_key("Sess", "kid")) is None


def test_a_retried_destroying_ask_is_answered_from_its_record_not_run_on_a_fresh_actor(
        slot: Slot) -> None:
    """Exactly-once across self.destroy(): the deletion takes the actor's request-id
    window, but the destroying ask's own record is written with it."""
    slot.call("Sess", "a", "open")
    ENDED.clear()
    act = slot.catalog.resident("Sess", "a")
    act.mail().append(Call(wire.ASK, (b"c",), 901, "end", [], {}, {"id": b"end-1"}))
    slot.turns.pump(act)
    assert slot.wait_reply(901)[2] == "bye"
    act = slot.catalog.resident("Sess", "a")
    act.mail().append(Call(wire.ASK, (b"c",), 902, "end", [], {}, {"id": b"end-1"}))
    slot.turns.pump(act)
    assert slot.wait_reply(902)[2] == "bye"
    assert ENDED == ["a"], "expected the retry answered from the record, not run on a fresh actor"
    assert slot.store.get(listing_key("Sess", "a")) is None
    prefix = act.prefix
    assert all(k[len(prefix):len(prefix) + 1] == REQUEST for k in own_keys(slot, "a")), \
        "only the destroying ask's record is left"
