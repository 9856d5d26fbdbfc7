"""The catalog below a node: which actors stay resident, which are evicted or passivated
when idle (times are given, not read from a clock), and which addresses are refused."""
from __future__ import annotations

import asyncio
from typing import Any, Iterator

import pytest
from runtime_fakes import Slot

import actorsys
from actorsys.errors import BadRequest, UnknownActorType, WrongShard
from actorsys.protocol.shardmap import shard_of
from actorsys.runtime.activation import DEAD, RUNNING, STOPPED

STOPS: list[str] = []
#: what an actor's ``hold`` turn waits for, by key (by default: longer than any test)
RELEASE: dict[str, asyncio.Future[None]] = {}


class Item(actorsys.Actor):
    """Also the idle sweep's test actor (test_runtime_idle_sweep.py)."""

    def touch(self) -> str:
        self.state["t"] = self.state.get("t", 0) + 1
        return self.key

    async def hold(self) -> None:
        if self.key in RELEASE:
            await RELEASE[self.key]
        else:
            await asyncio.sleep(10)

    def on_stop(self) -> None:
        STOPS.append(self.key)


def item_slot(path: str, max_resident: int) -> Iterator[Slot]:
    """A slot of :class:`Item` actors (``yield from`` it in a fixture)."""
    STOPS.clear()
    RELEASE.clear()
    s = Slot(path, {"Item": Item}, max_resident=max_resident)
    yield s
    s.close()


@pytest.fixture
def slot(tmp_path: Any) -> Iterator[Slot]:
    yield from item_slot(str(tmp_path), 5)


def resident(slot: Slot) -> list[str]:
    return [k for (_t, k) in slot.catalog.acts]


def test_eviction_passivates_the_least_recently_used_idle_actors(slot: Slot) -> None:
    for key in "abcde":
        slot.call("Item", key, "touch")
    slot.call("Item", "a", "touch")               # a is now the most recently used
    assert resident(slot) == ["b", "c", "d", "e", "a"]
    slot.call("Item", "f", "touch")               # over max_resident: 1% of it (at least 1) more
    assert STOPS == ["b", "c"]                     # on_stop ran: they were passivated
    assert resident(slot) == ["d", "e", "a", "f"]
    assert slot.counters["evictions"] == 2 and slot.counters["passivations"] == 2


def test_actors_in_use_are_never_evicted(slot: Slot) -> None:
    for key in "abcde":
        slot.call("Item", key, "touch")
    slot.ask("Item", "a", "hold")                  # a: an async turn in progress
    slot.rt.children.start((b"tree",), 1, "Item", "b",
                           {"sup": "s", "child": "c", "args": [], "kwargs": {}, "inc": 1})
    slot.commit.flush()
    assert slot.act("Item", "b").status is RUNNING and slot.act("Item", "b").sup is not None
    STOPS.clear()                                  # (b's plain activation left for its start)
    for key in "cde":
        slot.call("Item", key, "touch")
    assert resident(slot) == ["a", "b", "c", "d", "e"]    # the two in use are the oldest
    slot.call("Item", "f", "touch")
    assert STOPS == ["c", "d"]                     # a and b were skipped, not victims
    assert resident(slot) == ["e", "a", "b", "f"]  # ... and moved to the recent end


def test_idle_actors_passivate_and_supervised_children_stay(slot: Slot) -> None:
    for key in "abc":
        slot.call("Item", key, "touch")
    slot.rt.children.start((b"tree",), 1, "Item", "kid",
                           {"sup": "s", "child": "k", "args": [], "kwargs": {}, "inc": 1})
    slot.commit.flush()
    for key, used in (("a", 10.0), ("b", 20.0), ("c", 30.0), ("kid", 0.0)):
        slot.act("Item", key).last_used = used     # a mock clock: the times the turns ended
    slot.catalog.passivate_idle(cutoff=25.0, now=100.0)
    assert STOPS == ["a", "b"]
    assert resident(slot) == ["c", "kid"]


def test_a_record_without_an_instance_just_leaves(slot: Slot) -> None:
    slot.call("Item", "a", "touch")
    act = slot.act("Item", "a")
    act.drop_instance()
    act.last_used = 0.0
    slot.catalog.passivate_idle(cutoff=1.0, now=100.0)
    assert STOPS == [] and resident(slot) == [] and slot.counters["passivations"] == 0


def test_the_catalog_refuses_unknown_types_bad_keys_and_other_slots_shards(slot: Slot) -> None:
    with pytest.raises(UnknownActorType, match="registered: Item"):
        slot.catalog.resident("Nope", "a")
    with pytest.raises(BadRequest):
        slot.catalog.resident("Item", "a\x00b")
    assert slot.counters["bad_frames"] == 2
    slot.map.owner[shard_of("Item", "elsewhere", slot.map.shards)] = 1
    with pytest.raises(WrongShard):
        slot.catalog.resident("Item", "elsewhere")
    assert slot.counters["bad_frames"] == 2 and resident(slot) == []


def test_a_childs_record_read_by_a_new_worker_holds_it_until_the_tree_decides(slot: Slot) -> None:
    opts = {"sup": "s", "child": "k", "args": [], "kwargs": {}, "inc": 1}
    slot.rt.children.start((b"tree",), 1, "Item", "kid", opts)
    slot.rt.children.start((b"tree",), 2, "Item", "gone", opts)
    slot.rt.children.stop((b"tree",), 3, "Item", "gone", {})
    slot.commit.flush()
    slot.catalog.acts.clear()                       # as a worker that starts again sees them
    assert slot.catalog.resident("Item", "kid").status is DEAD
    assert slot.catalog.resident("Item", "gone").status is STOPPED
