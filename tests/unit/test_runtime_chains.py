"""The pure part of call-chain reentrancy (actorsys/runtime/chains.py)."""
from __future__ import annotations

import pytest

import actorsys
from actorsys.protocol.wire import MAX_CHAIN
from actorsys.runtime.chains import chain_of, comes_back, cycle, extend, reentry_point, refused


def test_an_ask_extends_its_turns_chain_with_the_asking_actor() -> None:
    assert extend(None, "A", "1") == [["A", "1"]]
    chain = [["A", "1"]]
    assert extend(chain, "B", "2") == [["A", "1"], ["B", "2"]]
    assert chain == [["A", "1"]], "the turn's own chain is not changed"


def test_a_chain_past_max_chain_is_a_clear_error() -> None:
    full = [["A", str(i)] for i in range(MAX_CHAIN)]
    assert len(extend(full[:-1], "B", "x")) == MAX_CHAIN
    with pytest.raises(actorsys.Deadlock, match=f"call chain too deep: {MAX_CHAIN} actors"):
        extend(full, "B", "x")


def test_chain_of_a_context() -> None:
    assert chain_of(None) == [] and chain_of({"id": b"x"}) == []
    assert chain_of({"chain": [["A", "1"]]}) == [["A", "1"]]


def test_an_ask_comes_back_only_to_the_turn_waiting_in_its_chain() -> None:
    # A (called by a client) asks B, B asks A: A's turn has chain [], the ask [A, B]
    assert reentry_point([["A", "1"], ["B", "2"]], "A", "1") == 0
    assert comes_back([["A", "1"], ["B", "2"]], "A", "1", [])
    # A's running turn was called by C: it is the one waiting only if the prefix is [C]
    assert comes_back([["C", "3"], ["A", "1"], ["B", "2"]], "A", "1", [["C", "3"]])
    assert not comes_back([["C", "3"], ["A", "1"], ["B", "2"]], "A", "1", [])
    # a key or type that only looks alike is another actor
    assert not comes_back([["A", "10"], ["B", "2"]], "A", "1", [])
    assert not comes_back([["B", "1"], ["B", "2"]], "A", "1", [])
    # nested again: A -> B -> A -> B -> A; A's innermost turn has chain [A, B]
    deep = [["A", "1"], ["B", "2"], ["A", "1"], ["B", "2"]]
    assert reentry_point(deep, "A", "1") == 2
    assert comes_back(deep, "A", "1", [["A", "1"], ["B", "2"]])
    assert not comes_back(deep, "A", "1", [])


def test_the_deadlock_error_names_the_cycle() -> None:
    chain = [["C", "3"], ["A", "1"], ["B", "2"]]
    assert cycle(chain, "A", "1") == "A/1 -> B/2 -> A/1"
    err = refused(chain, "A", "1")
    assert isinstance(err, actorsys.Deadlock) and isinstance(err, actorsys.ActorError)
    assert str(err).startswith("call cycle: A/1 -> B/2 -> A/1 (A is not reentrant")
    back = actorsys.errors.error_from_wire(err.to_wire())
    assert type(back) is actorsys.Deadlock and str(back) == str(err)
