"""The pure part of call-chain reentrancy (actorsys/runtime/chains.py)."""
from __future__ import annotations

import pytest

import actorsys
from actorsys.protocol.wire import MAX_CHAIN
from actorsys.runtime.chains import (TOKEN_BYTES, chain_of, comes_back, cycle, outgoing, own_chain,
                                     reentry_point, refused)

T1, T2, T3 = b"\x01" * 8, b"\x02" * 8, b"\x03" * 8


def test_a_turns_own_chain_is_its_call_chain_and_its_link_with_a_fresh_token() -> None:
    mine = own_chain(None, "A", "1")
    assert [link[:2] for link in mine] == [["A", "1"]] and len(mine[0][2]) == TOKEN_BYTES
    called = [["C", "3", T3]]
    nested = own_chain(called, "A", "1")
    assert nested[:1] == called and nested[1][:2] == ["A", "1"]
    assert called == [["C", "3", T3]], "the incoming chain is not changed"
    assert own_chain(None, "A", "1")[0][2] != mine[0][2], "every turn draws its own token"


def test_an_ask_carries_its_turns_own_chain_and_a_runaway_is_a_clear_error() -> None:
    chain = [["A", "1", T1]]
    assert outgoing(chain, "A", "1") is chain
    assert [link[:2] for link in outgoing(None, "A", "1")] == [["A", "1"]]
    full = [["A", str(i), T1] for i in range(MAX_CHAIN)]
    assert outgoing(full, "B", "x") is full
    with pytest.raises(actorsys.Deadlock, match=f"call chain too deep: {MAX_CHAIN} actors"):
        outgoing([*full, ["B", "x", T2]], "B", "x")


def test_chain_of_a_context() -> None:
    assert chain_of(None) == [] and chain_of({"id": b"x"}) == []
    assert chain_of({"chain": [["A", "1", T1]]}) == [["A", "1", T1]]


def test_an_ask_comes_back_only_to_the_turn_waiting_in_its_chain() -> None:
    a = [["A", "1", T1]]                        # A's turn, called by a client
    assert reentry_point([*a, ["B", "2", T2]], "A", "1") == 0
    assert comes_back([*a, ["B", "2", T2]], "A", "1", a)
    # A's running turn was called by C: it is the one waiting only if the chain agrees
    ca = [["C", "3", T3], ["A", "1", T1]]
    assert comes_back([*ca, ["B", "2", T2]], "A", "1", ca)
    assert not comes_back([*ca, ["B", "2", T2]], "A", "1", a)
    # a key or type that only looks alike is another actor
    assert not comes_back([["A", "10", T1], ["B", "2", T2]], "A", "1", a)
    assert not comes_back([["B", "1", T1], ["B", "2", T2]], "A", "1", a)
    # nested again: A -> B -> A -> B -> A; A's innermost turn's own chain is [A, B, A']
    inner = [*a, ["B", "2", T2], ["A", "1", T3]]
    deep = [*inner, ["B", "2", T2]]
    assert reentry_point(deep, "A", "1") == 2
    assert comes_back(deep, "A", "1", inner)
    assert not comes_back(deep, "A", "1", a)
    # no turn waiting: nothing comes back
    assert not comes_back([*a, ["B", "2", T2]], "A", "1", None)


def test_a_stale_or_forged_chain_does_not_come_back() -> None:
    """The token is the turn's: an ask sent for an earlier turn of A (ended, A now in
    another one), or a peer naming A without the token, is an ordinary message."""
    now = [["A", "1", T3]]
    assert not comes_back([["A", "1", T1], ["B", "2", T2]], "A", "1", now), "stale"
    assert not comes_back([["A", "1", b"guess!!!"], ["B", "2", T2]], "A", "1", now), "forged"


def test_the_deadlock_error_names_the_cycle() -> None:
    chain = [["C", "3", T3], ["A", "1", T1], ["B", "2", T2]]
    assert cycle(chain, "A", "1") == "A/1 -> B/2 -> A/1"
    err = refused(chain, "A", "1")
    assert isinstance(err, actorsys.Deadlock) and isinstance(err, actorsys.ActorError)
    assert str(err).startswith("call cycle: A/1 -> B/2 -> A/1 (A is not reentrant")
    back = actorsys.errors.error_from_wire(err.to_wire())
    assert type(back) is actorsys.Deadlock and str(back) == str(err)
