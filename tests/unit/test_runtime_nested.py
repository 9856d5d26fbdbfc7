"""Nested turns below a node (actorsys/runtime/nested.py): the turn runner against a
LevelDB store in tmp_path, asks that come back along their call chain handed to
``Turns.reenter`` as the worker's dispatch does (see runtime_fakes.py)."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterator

import pytest
from runtime_fakes import Slot

import actorsys
from actorsys.protocol import wire
from actorsys.runtime.activation import Call

WAITS: dict[str, asyncio.Future[Any]] = {}
B_LINK = ["B", "1", b"B's turn"]   # R's turn asked B, B asks R back


class R(actorsys.Actor):
    async def wait(self, name: str) -> str:
        self.state["outer"] = 1
        await WAITS[name]
        self.state["after"] = self.state.get("after", 0) + 1
        return "outer done"

    async def wait_quiet(self, name: str) -> str:
        self.state["outer"] = self.state.get("outer", 0) + 1
        await WAITS[name]          # (changes nothing after its await)
        return f"quiet {self.state['outer']}"

    async def nested_wait(self, name: str) -> str:
        self.state.setdefault("nested", []).append(name)
        await WAITS[name]
        return f"nested {name}"

    def quick(self) -> dict[str, Any]:
        self.state["quick"] = self.state.get("quick", 0) + 1
        return dict(self.state)

    def sync_asks(self) -> Any:
        return self.ref("B", "1").ask("anything")

    def destroy_then_raise(self) -> None:
        self.destroy()
        raise ValueError("changed my mind")


class Stubborn(R):
    reentrant = False


@pytest.fixture
def slot(tmp_path: Any) -> Iterator[Slot]:
    WAITS.clear()
    s = Slot(str(tmp_path), {"R": R, "Stubborn": Stubborn}, turn_timeout=0.5)
    yield s
    s.close()


def outer(slot: Slot, name: str, chain: list[list[Any]] | None = None, type_name: str = "R",
          method: str = "wait", request_id: bytes | None = None) -> int:
    """Start R's async turn ``method(name)`` (called with ``chain``, and ``request_id``);
    it awaits WAITS[name]."""
    WAITS[name] = slot.loop.create_future()
    rid = 1000 + len(WAITS)
    act = slot.catalog.resident(type_name, "k")
    ctx = {k: v for k, v in (("chain", chain), ("id", request_id)) if v}
    act.mail().append(Call(wire.ASK, (b"outer",), rid, method, [name], {}, ctx or None))
    slot.turns.pump(act)
    assert act.running and act.task is not None
    slot.settle(until=lambda: act.task is not None and act.instance is not None
                and "outer" in act.instance.state)
    return rid


def own_chain(slot: Slot, type_name: str = "R", level: int = -1) -> list[list[Any]]:
    """The own chain (chains.py) of R's turn at ``level``: 0 the outer turn, 1.. its
    nested turns, -1 the innermost."""
    act = slot.act(type_name, "k")
    chains = [act.chain, *(f.chain for f in (act.nest.frames if act.nest else ()))]
    chain = chains[level]
    assert chain is not None
    return chain


def back(slot: Slot, rid: int, method: str, *args: Any, chain: list[list[Any]] | None = None,
         type_name: str = "R", level: int = -1) -> bool:
    """An ask arriving for R, as the worker's dispatch hands it over, with ``chain`` or
    else the chain of B asking back R's turn at ``level`` (see :func:`own_chain`)."""
    if chain is None:
        chain = [*own_chain(slot, type_name, level), B_LINK]
    return slot.turns.reenter(slot.act(type_name, "k"), Call(
        wire.ASK, (b"back-%d" % rid,), rid, method, list(args), {}, {"chain": chain}))


def test_an_ask_back_runs_nested_and_commits_before_its_reply(slot: Slot) -> None:
    o = outer(slot, "o")
    assert back(slot, 101, "quick")
    assert slot.out.replies == [], "the reply waits for the commit"
    assert slot.wait_reply(101)[2] == {"outer": 1, "quick": 1}    # it saw the outer's write
    assert slot.act("R", "k").running, "the outer turn still runs"
    WAITS["o"].set_result(None)
    assert slot.wait_reply(o)[2] == "outer done"
    assert slot.call("R", "k", "quick") == {"outer": 1, "quick": 2, "after": 1}


def test_an_ask_back_to_a_turn_below_the_innermost_waits_for_it(slot: Slot) -> None:
    o = outer(slot, "o")
    WAITS["n1"] = slot.loop.create_future()
    assert back(slot, 101, "nested_wait", "n1")          # nested, awaiting n1
    act = slot.act("R", "k")
    slot.settle(until=lambda: "nested" in act.instance.state)
    assert back(slot, 102, "quick", level=0), "held, not queued behind the outer turn"
    slot.loop.run_until_complete(asyncio.sleep(0.02))
    slot.commit.flush()
    assert all(r[1] != 102 for _to, r in slot.out.replies), "not before the nested turn ends"
    assert act.nest is not None and len(act.nest.pending) == 1 and not act.mailbox
    WAITS["n1"].set_result(None)
    assert slot.wait_reply(101)[2] == "nested n1"
    assert slot.wait_reply(102)[2]["quick"] == 1
    WAITS["o"].set_result(None)
    assert slot.wait_reply(o)[2] == "outer done"


def test_an_ask_whose_chain_names_another_turn_of_the_actor_queues(slot: Slot) -> None:
    outer(slot, "o", chain=[["C", "3", b"C's turn"]])       # R's turn was called by C
    mine = own_chain(slot)
    assert not back(slot, 101, "quick", chain=[mine[-1], B_LINK]), \
        "R's running turn is not the one waiting in [R, B]"
    assert not back(slot, 102, "quick", chain=[mine[0], [*mine[-1][:2], b"an ended turn"], B_LINK]), \
        "a stale or forged token is not R's running turn"
    assert back(slot, 103, "quick")
    assert slot.wait_reply(103)[0] == wire.OK


def test_a_type_that_refuses_reentry_raises_deadlock(slot: Slot) -> None:
    outer(slot, "o", type_name="Stubborn")
    with pytest.raises(actorsys.Deadlock, match=r"call cycle: Stubborn/k -> B/1 -> Stubborn/k"):
        back(slot, 101, "quick", type_name="Stubborn")


def test_a_nested_sync_handler_that_asks_fails_and_the_outer_goes_on(slot: Slot) -> None:
    o = outer(slot, "o")
    assert back(slot, 101, "sync_asks")
    err = slot.wait_reply(101)
    assert err[0] == wire.ERR and err[2]["type"] == "TypeError"
    assert err[2]["message"] == "ask needs an async handler; use tell, or make the handler async"
    WAITS["o"].set_result(None)
    assert slot.wait_reply(o)[2] == "outer done"


def test_a_nested_turn_outlived_by_its_outer_turn_is_dropped(slot: Slot) -> None:
    o = outer(slot, "o")
    WAITS["n1"] = slot.loop.create_future()
    assert back(slot, 101, "nested_wait", "n1")
    WAITS["o"].set_result(None)                 # the outer turn stops waiting first
    assert slot.wait_reply(o)[2] == "outer done"
    err = slot.wait_reply(101)
    assert err[0] == wire.ERR and "nested turn was dropped" in err[2]["message"]
    assert slot.call("R", "k", "quick")["quick"] == 1, "the actor goes on"


def test_a_kill_drops_nested_turns_and_queues_held_asks(slot: Slot) -> None:
    o = outer(slot, "o")
    WAITS["n1"] = slot.loop.create_future()
    assert back(slot, 101, "nested_wait", "n1")
    act = slot.act("R", "k")
    slot.settle(until=lambda: "nested" in act.instance.state)
    assert back(slot, 102, "quick", level=0)          # held until n1 ends
    slot.rt.children.kill(act)
    err = slot.wait_reply(101)
    assert err[0] == wire.ERR and "was killed or restarted" in err[2]["message"]
    assert slot.wait_reply(102)[2] == {"quick": 1}, "the held ask ran as a turn of its own"
    assert slot.wait_reply(o)[0] == wire.ERR, "the killed outer turn is discarded"


def test_a_nested_turn_that_raises_after_destroy_takes_the_destroy_back(slot: Slot) -> None:
    o = outer(slot, "o")
    assert back(slot, 101, "destroy_then_raise")
    assert slot.wait_reply(101)[2]["type"] == "ValueError"
    WAITS["o"].set_result(None)
    assert slot.wait_reply(o)[2] == "outer done"
    assert slot.call("R", "k", "quick") == {"outer": 1, "quick": 1, "after": 1}, \
        "expected the actor kept: the destroy() of a failed nested turn is undone with it"


def test_a_failed_nested_turn_is_logged_once(slot: Slot, caplog: Any) -> None:
    caplog.set_level(logging.INFO, "actorsys")
    o = outer(slot, "o")
    assert back(slot, 101, "destroy_then_raise")
    assert slot.wait_reply(101)[0] == wire.ERR
    WAITS["o"].set_result(None)
    assert slot.wait_reply(o)[2] == "outer done"
    logged = [r.getMessage() for r in caplog.records if r.name == "actorsys.turns"]
    assert logged == ["ask 'destroy_then_raise' of R/k failed: ValueError: changed my mind"], logged


def test_a_nested_ask_with_a_request_id_is_recorded_and_not_run_twice(slot: Slot) -> None:
    o = outer(slot, "o")
    rid_ctx = {"chain": [*own_chain(slot), B_LINK], "id": b"client-1:0001"}
    assert slot.turns.reenter(slot.act("R", "k"), Call(
        wire.ASK, (b"back",), 101, "quick", [], {}, rid_ctx))
    first = slot.wait_reply(101)
    assert first[2] == {"outer": 1, "quick": 1}
    WAITS["o"].set_result(None)
    assert slot.wait_reply(o)[2] == "outer done"
    act = slot.act("R", "k")
    act.mail().append(Call(wire.ASK, (b"retry",), 102, "quick", [], {}, {"id": b"client-1:0001"}))
    slot.turns.pump(act)
    assert slot.wait_reply(102)[2] == first[2], "expected the recorded reply of the nested turn"
    assert slot.call("R", "k", "quick")["quick"] == 2, "expected the repeat not to run quick again"


def retry(slot: Slot, rid: int, method: str, request_id: bytes) -> list[Any]:
    """The same ask sent again with its request id (a client's retry); its reply."""
    act = slot.catalog.resident("R", "k")
    act.mail().append(Call(wire.ASK, (b"retry",), rid, method, ["r"], {}, {"id": request_id}))
    if not act.running:
        slot.turns.pump(act)
    return slot.wait_reply(rid)


def test_an_outer_ask_whose_changes_a_nested_turn_committed_is_recorded(slot: Slot) -> None:
    o = outer(slot, "o", method="wait_quiet", request_id=b"outer-1")
    assert back(slot, 101, "quick")
    slot.wait_reply(101)                     # the nested commit took the outer's write
    WAITS["o"].set_result(None)
    assert slot.wait_reply(o)[2] == "quiet 1"
    assert retry(slot, 102, "wait_quiet", b"outer-1")[2] == "quiet 1", \
        "expected the recorded reply, not a second run (outer would be 2)"


def test_a_retry_of_an_outer_turn_lost_after_a_nested_commit_is_not_run_again(slot: Slot) -> None:
    outer(slot, "o", method="wait_quiet", request_id=b"outer-2")
    assert back(slot, 101, "quick")
    slot.wait_reply(101)
    slot.rt.children.kill(slot.act("R", "k"))      # the outer turn is lost before its end
    err = retry(slot, 102, "wait_quiet", b"outer-2")
    assert err[0] == wire.ERR and err[2]["code"] == "partly_run", err
    assert "nested turn" in err[2]["message"]
    assert slot.call("R", "k", "quick")["outer"] == 1, "its committed part applied once"


def test_a_repeated_nested_ask_is_answered_from_the_record(slot: Slot) -> None:
    o = outer(slot, "o")
    chain = [*own_chain(slot), B_LINK]
    ask = Call(wire.ASK, (b"back",), 101, "quick", [], {}, {"chain": chain, "id": b"nested-1"})
    assert slot.turns.reenter(slot.act("R", "k"), ask)
    first = slot.wait_reply(101)
    again = Call(wire.ASK, (b"back",), 102, "quick", [], {}, {"chain": chain, "id": b"nested-1"})
    assert slot.turns.reenter(slot.act("R", "k"), again)
    assert slot.wait_reply(102)[2] == first[2], "expected the recorded reply"
    WAITS["o"].set_result(None)
    slot.wait_reply(o)
    assert slot.call("R", "k", "quick")["quick"] == 2, "expected quick to have run once before"


def test_the_turn_of_a_websocket_batch_is_not_reentered(slot: Slot) -> None:
    """A batch's delivery mark is written at its end: a nested commit in the middle
    would let a batch redelivered after a crash apply its first events twice."""
    outer(slot, "o")
    slot.act("R", "k").ws_batch = ["gateway-1", 7]     # as ws_turns.py marks a batch's turn
    with pytest.raises(actorsys.Deadlock, match="a batch of WebSocket events is one turn"):
        back(slot, 101, "quick")
    slot.act("R", "k").ws_batch = None
    WAITS["o"].set_result(None)
