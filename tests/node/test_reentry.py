"""Call-chain reentrancy against a real node (two workers): an ask that comes back to
the turn waiting on it runs as a nested turn (answered at once, not at a timeout), what
nested and outer turns commit survives kill -9, a type with ``reentrant = False`` gets
``Deadlock`` naming the cycle at once, and ``ask`` from a synchronous handler fails at
the call. Actors: tests/actors/reentry.py. The tests share one node, each with actors
of its own."""
from __future__ import annotations

import time
from typing import Iterator

import pytest
from helpers import make_config, module_node

import actorsys
from actorsys.testing.nodes import kill_worker_of, key_on_slot, wait_until

REENTRY_ACTORS = {"Ping": "reentry:Ping", "Stubborn": "reentry:Stubborn",
                  "Starter": "reentry:Starter"}
#: well under the ask timeout below and any turn_timeout: a deadlock would take those
QUICK = 3.0
ASK = 15.0


@pytest.fixture(scope="module")
def rnode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[actorsys.Node]:
    """One node for the module; each test's actors are its own (the ``own`` fixture)."""
    cfg = make_config(str(tmp_path_factory.mktemp("reentry") / "data"))
    cfg["actors"].update(REENTRY_ACTORS)
    yield from module_node(cfg)


def pair(client, own, same_slot: bool, first: str = "Ping") -> tuple[str, str]:
    """Keys of two actors of the test's own: on the same worker slot, or one on each."""
    a = key_on_slot(client, first, 0, own("a"))
    b = key_on_slot(client, "Ping", 0 if same_slot else 1, own("b"))
    return a, b


def timed(fn, *args, **kwargs):
    t0 = time.monotonic()
    out = fn(*args, **kwargs)
    return out, time.monotonic() - t0


@pytest.mark.parametrize("same_slot", [False, True], ids=["two-slots", "one-slot"])
def test_a_asks_b_which_asks_a_back_is_answered_at_once(rnode, same_slot, own):
    c = rnode.client()
    a, b = pair(c, own, same_slot)
    out, took = timed(c.ref("Ping", a).ask, "ping_pong", "Ping", b, 1, timeout=ASK)
    assert took < QUICK, f"the cycle took {took:.1f} s: it waited for a timeout, not nested"
    # the nested pong saw the outer turn's uncommitted writes (state and storage)
    assert out["answer"] == ["bounced", {"outer_seen": 1, "before_seen": 1}]
    assert out["state"] == {"outer": 1, "pongs": 1, "after": out["answer"]}
    # and the actor serves the next turn normally
    again = c.ref("Ping", a).ask("ping_pong", "Ping", b, 1, timeout=ASK)
    assert again["answer"][1] == {"outer_seen": 2, "before_seen": 1}


@pytest.mark.parametrize("same_slot", [False, True], ids=["two-slots", "one-slot"])
def test_deeper_cycles_nest_again(rnode, same_slot, own):
    c = rnode.client()
    a, b = pair(c, own, same_slot)
    # A.ping_pong -> B.bounce -> A.ping_pong -> B.bounce -> A.ping_pong -> B.bounce -> A.pong
    out, took = timed(c.ref("Ping", a).ask, "ping_pong", "Ping", b, 3, timeout=ASK)
    assert took < QUICK
    inner = out["answer"]
    for _ in range(2):
        assert inner[0] == "bounced"
        inner = inner[1]["answer"]
    assert inner == ["bounced", {"outer_seen": 3, "before_seen": 1}]
    assert c.ref("Ping", a).ask("read")["state"]["outer"] == 3
    assert c.ref("Ping", b).ask("read")["state"]["bounces"] == 3


def test_nested_and_outer_writes_survive_kill_9(rnode, own):
    c = rnode.client()
    a, b = pair(c, own, same_slot=False)
    out = c.ref("Ping", a).ask("ping_pong", "Ping", b, 1, timeout=ASK)
    kill_worker_of(rnode, c, "Ping", a)
    kill_worker_of(rnode, c, "Ping", b)
    got = wait_until(lambda: c.ref("Ping", a).ask("read", timeout=ASK), "A to answer after kill -9")
    assert got["state"] == {"outer": 1, "pongs": 1, "after": out["answer"]}
    assert got["storage"] == {"before": 1, "pong": 1, "after": 1}
    assert c.ref("Ping", b).ask("read")["state"] == {"bounces": 1}


def test_an_outer_turn_that_raises_rolls_back_to_the_nested_commit(rnode, own):
    c = rnode.client()
    a, b = pair(c, own, same_slot=True)
    with pytest.raises(actorsys.RemoteError, match="outer boom"):
        c.ref("Ping", a).ask("ask_then_raise", b, timeout=ASK)
    kill_worker_of(rnode, c, "Ping", a)
    got = c.ref("Ping", a).ask("read", timeout=ASK)
    # what the nested turn committed (the outer's write before the ask, seen by a
    # caller, and the nested pong) stays; what the outer wrote after it is gone
    assert got["state"] == {"outer_uncommitted": "seen by the nested turn", "pongs": 1}
    assert got["storage"] == {"pong": 1}


def test_a_nested_turn_that_raises_undoes_only_its_own_changes(rnode, own):
    c = rnode.client()
    a, b = pair(c, own, same_slot=False)
    out, took = timed(c.ref("Ping", a).ask, "ask_fail", b, timeout=ASK)
    assert took < QUICK
    assert out["answer"] == "caught ValueError: nested boom"
    assert out["state"] == {"outer": 1, "after": out["answer"]}    # no "failed_write"
    kill_worker_of(rnode, c, "Ping", a)
    assert c.ref("Ping", a).ask("read", timeout=ASK)["state"] == out["state"]


def test_a_type_that_refuses_reentry_gets_deadlock_naming_the_cycle_at_once(rnode, own):
    c = rnode.client()
    s = key_on_slot(c, "Stubborn", 0, own("s"))
    b = key_on_slot(c, "Ping", 1, own("b"))
    out, took = timed(c.ref("Stubborn", s).ask, "ask_back", b, "pong", timeout=ASK)
    assert took < QUICK, f"Deadlock took {took:.1f} s"
    assert out.startswith(f"Deadlock: call cycle: Stubborn/{s} -> Ping/{b} -> Stubborn/{s} "
                          f"(Stubborn is not reentrant"), out
    # uncaught, it reaches the outer caller as a Deadlock too (the whole chain's), with
    # the cycle's text, not as a RemoteError around one
    with pytest.raises(actorsys.Deadlock, match=f"^call cycle: Stubborn/{s} -> Ping/{b}"):
        c.ref("Stubborn", s).ask("ping_pong", "Ping", b, 1, timeout=ASK)
    # the refused actor is not stuck (and its failed turn was rolled back): it answers at once
    assert c.ref("Stubborn", s).ask("read", timeout=QUICK) == {"state": {}, "storage": {}}


def test_ask_from_a_sync_handler_fails_at_the_call(rnode, own):
    c = rnode.client()
    a, b = pair(c, own, same_slot=False)
    with pytest.raises(actorsys.RemoteError) as info:
        c.ref("Ping", a).ask("sync_asks", b, timeout=ASK)
    assert info.value.remote_type == "TypeError"
    assert info.value.remote_message == "ask needs an async handler; use tell, or make the handler async"
    # tell from a sync handler, and ask from async handlers, alarms and on_start still work
    assert c.ref("Ping", a).ask("sync_tells", b) == "told"
    wait_until(lambda: c.ref("Ping", b).ask("read")["state"].get("note") == "told", "the tell")
    assert c.ref("Ping", a).ask("async_asks", b)["state"]["note"] == "told"
    c.ref("Ping", a).ask("arm", b)
    wait_until(lambda: c.ref("Ping", a).ask("read")["state"].get("alarm_read"), "the alarm's ask")
    assert c.ref("Starter", own("s")).ask("get") == {"state": {}, "storage": {}}


def test_a_runaway_cycle_stops_at_max_chain_with_a_clear_error(rnode, own):
    c = rnode.client()
    a, b = pair(c, own, same_slot=False)
    # every level adds A and B to the chain: 40 levels would need 80 > MAX_CHAIN (64)
    with pytest.raises(actorsys.Deadlock, match="call chain too deep: 64 actors") as info:
        timed(c.ref("Ping", a).ask, "ping_pong", "Ping", b, 40, timeout=ASK)
    assert "runaway recursion" in str(info.value)
    # every nested turn that raised undid only its own changes; the outermost turn failed
    # too, back to the commit of the deepest nested turn that succeeded: none did
    assert c.ref("Ping", a).ask("read", timeout=QUICK)["state"] == {}
