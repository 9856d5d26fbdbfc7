"""The idle sweep (issue 19): ``Catalog.passivate_idle`` costs what it passivates, not
the resident count. It walks from the least recently used end, stops at the first actor
not idle past the cutoff, moves the actors in use it meets to the recent end (so later
sweeps skip them), examines at most a bounded number per call, and the queued-bytes
recount reads only mailboxes that were given bytes. Times are given, not read from a
clock; :attr:`Catalog.swept` counts the activations a sweep examined."""
from __future__ import annotations

from typing import Any, Iterator

import pytest
from runtime_fakes import Slot
from test_runtime_catalog import RELEASE, STOPS, item_slot

from actorsys.protocol import wire
from actorsys.runtime.activation import Activation, Waiting
from actorsys.runtime.catalog import SWEEP_STEP

@pytest.fixture
def slot(tmp_path: Any) -> Iterator[Slot]:
    yield from item_slot(str(tmp_path), 1_000_000)


def resident(slot: Slot) -> list[str]:
    return [k for (_t, k) in slot.catalog.acts]


def touched(slot: Slot, keys: str, at: float) -> None:
    """Activate ``keys`` in this order, their turns ending at ``at`` (a mock clock)."""
    for key in keys:
        slot.call("Item", key, "touch")
        slot.act("Item", key).last_used = at


def sweep(slot: Slot, cutoff: float, now: float, limit: int = SWEEP_STEP) -> tuple[bool, int]:
    """One call of the sweep: whether it stopped at ``limit``, and how many it examined."""
    before = slot.catalog.swept
    more = slot.catalog.passivate_idle(cutoff, now, limit)
    return more, slot.catalog.swept - before


def test_idle_actors_passivate_and_the_sweep_stops_at_the_first_that_is_not(slot: Slot) -> None:
    touched(slot, "ab", 10.0)
    touched(slot, "cd", 30.0)
    assert sweep(slot, cutoff=25.0, now=35.0) == (False, 3)     # a, b, then c stops it
    assert STOPS == ["a", "b"] and resident(slot) == ["c", "d"]
    assert slot.counters["passivations"] == 2
    assert sweep(slot, cutoff=25.0, now=36.0) == (False, 1)     # nothing idle: c alone


def test_an_actor_whose_turn_ended_late_holds_back_those_behind_it_until_the_next_sweep(
        slot: Slot) -> None:
    """The documented slack: b is idle past the cutoff but behind a, whose last message
    arrived first and whose turn ended later (a long turn); b goes when a does."""
    touched(slot, "ab", 10.0)
    slot.act("Item", "a").last_used = 30.0           # a's turn ended late
    assert sweep(slot, cutoff=25.0, now=35.0) == (False, 1)
    assert STOPS == [] and resident(slot) == ["a", "b"]
    assert sweep(slot, cutoff=31.0, now=41.0) == (False, 2)
    assert STOPS == ["a", "b"]


def test_actors_in_use_stay_move_to_the_recent_end_and_are_not_examined_again(slot: Slot) -> None:
    slot.ask("Item", "run", "hold")                   # an async turn in progress
    slot.rt.children.start((b"tree",), 1, "Item", "kid",
                           {"sup": "s", "child": "k", "args": [], "kwargs": {}, "inc": 1})
    slot.commit.flush()
    slot.ask("Item", "mail", "hold")                  # ... and a message waiting behind it
    slot.deliver(wire.TELL, "Item", "mail", "touch", queued_as_bytes=True)
    touched(slot, "ab", 30.0)
    for key in ("run", "kid", "mail"):
        slot.act("Item", key).last_used = 0.0        # in use, but long ago by their clocks
    STOPS.clear()
    assert resident(slot) == ["run", "kid", "mail", "a", "b"]
    assert sweep(slot, cutoff=25.0, now=50.0) == (False, 4)     # three in use, then a
    assert STOPS == [] and resident(slot) == ["a", "b", "run", "kid", "mail"]
    assert all(slot.act("Item", k).last_used == 50.0 for k in ("run", "kid", "mail"))
    for _ in range(3):                                # later sweeps: a stops them at once
        assert sweep(slot, cutoff=25.0, now=51.0) == (False, 1)
    # their idle timeout past the move, they are examined again (and still in use)
    assert sweep(slot, cutoff=60.0, now=90.0) == (False, 5)
    assert STOPS == ["a", "b"] and resident(slot) == ["run", "kid", "mail"]


def test_a_sweep_examines_a_bounded_number_and_the_rest_go_on_the_next_call(slot: Slot) -> None:
    keys = [f"k{i}" for i in range(10)]
    for key in keys:
        slot.call("Item", key, "touch")
        slot.act("Item", key).last_used = 10.0
    touched(slot, "z", 30.0)
    assert sweep(slot, cutoff=25.0, now=40.0, limit=4) == (True, 5)   # 4, and the 5th seen
    assert STOPS == keys[:4]
    assert sweep(slot, cutoff=25.0, now=40.0, limit=4) == (True, 5)
    assert STOPS == keys[:8]
    assert sweep(slot, cutoff=25.0, now=40.0, limit=4) == (False, 3)  # two, then z
    assert STOPS == keys and resident(slot) == ["z"]


def test_the_default_bound_is_one_step_of_sweep_step_actors(slot: Slot) -> None:
    catalog = slot.catalog
    for i in range(SWEEP_STEP + 10):
        catalog.resident("Item", f"r{i}").last_used = 10.0     # records, no instance yet
    steps = 0
    while catalog.passivate_idle(25.0, 40.0):
        steps += 1
        assert len(catalog.acts) == SWEEP_STEP + 10 - steps * SWEEP_STEP
    assert steps == 1 and catalog.acts == {}


def test_a_sweep_over_200k_resident_actors_that_are_not_idle_examines_one(slot: Slot) -> None:
    catalog = slot.catalog
    now = 1000.0
    for i in range(200_000):
        act = catalog.resident("Item", f"r{i}")
        act.last_used = now - 100.0 if i < 3 else now    # three idle at the LRU end
    assert sweep(slot, cutoff=now - 60.0, now=now) == (False, 4)
    assert len(catalog.acts) == 200_000 - 3
    for _ in range(5):
        assert sweep(slot, cutoff=now - 60.0, now=now + 1.0) == (False, 1)
        catalog.recount_queued()
    assert catalog.queued_bytes == 0 and not catalog.queued_in


def queued(slot: Slot) -> int:
    """The bytes waiting in every resident mailbox, counted the slow way."""
    return sum(len(m.raw) for a in slot.catalog.acts.values() for m in a.mailbox
               if isinstance(m, Waiting))


def test_queued_bytes_stay_right_and_the_recount_reads_only_mailboxes_given_bytes(
        slot: Slot) -> None:
    catalog = slot.catalog
    RELEASE["x"] = slot.loop.create_future()
    for key in ("x", "y"):
        slot.ask("Item", key, "hold")
        for _ in range(3):
            slot.deliver(wire.TELL, "Item", key, "touch", queued_as_bytes=True)
    touched(slot, "abc", 30.0)                 # resident, never given bytes
    total = queued(slot)
    assert total > 0 and catalog.queued_bytes == total
    assert catalog.queued_in == {slot.act("Item", "x"), slot.act("Item", "y")}

    reads: list[Activation] = []
    mailbox = Activation.mailbox

    class Counting:
        def __get__(self, act: Activation, owner: Any) -> Any:
            if act is not None:
                reads.append(act)
            return mailbox.__get__(act, owner)

        def __set__(self, act: Activation, value: Any) -> None:
            mailbox.__set__(act, value)

    Activation.mailbox = Counting()            # type: ignore[assignment,misc]
    try:
        catalog.recount_queued()
    finally:
        Activation.mailbox = mailbox           # type: ignore[misc]
    assert catalog.queued_bytes == total
    assert {a.key for a in reads} == {"x", "y"}

    # y's mailbox is dropped whole without its bytes taken off (as when a stopped
    # child's messages are answered): the count drifts until the next recount
    y = slot.act("Item", "y")
    y_bytes = sum(len(m.raw) for m in y.mailbox if isinstance(m, Waiting))
    y.mailbox = type(y.mailbox)()
    assert catalog.queued_bytes == total
    catalog.recount_queued()
    assert catalog.queued_bytes == total - y_bytes == queued(slot)
    assert catalog.queued_in == {slot.act("Item", "x")}

    # x's waiting messages run (decoded, taken off) once its turn ends
    x = slot.act("Item", "x")
    assert x.running
    RELEASE["x"].set_result(None)
    slot.settle(until=lambda: not x.running and not x.mailbox)
    assert catalog.queued_bytes == 0 == queued(slot)
    catalog.recount_queued()
    assert catalog.queued_bytes == 0 and not catalog.queued_in
