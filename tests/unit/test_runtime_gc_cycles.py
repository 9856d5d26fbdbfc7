"""A passivated actor leaves no reference cycle behind (issue 19).

Workers collect the older generations of garbage rarely (``runtime/worker.py``,
``GC_THRESHOLDS``), so whatever the runtime leaves in cycles when an actor leaves memory
would pile up between full collections: the storage view holds its instance weakly, and
reference counting alone frees an actor that sync, async and failing turns, storage,
transactions and alarms have used."""
from __future__ import annotations

import asyncio
import gc
from typing import Any, Iterator

import pytest
from runtime_fakes import Slot

import actorsys
from actorsys.protocol import wire
from actorsys.runtime.activation import Activation
from actorsys.runtime.host import Host
from actorsys.storage.view import Storage


class Used(actorsys.Actor):
    def add(self, n: int) -> int:
        self.state["n"] = self.state.get("n", 0) + n
        self.storage.put("x", n)
        with self.storage.transaction():
            self.storage.put("y", n)
        self.set_alarm(3600, name="later")
        return int(self.state["n"])

    def on_alarm(self, name: str, payload: Any) -> None:
        pass

    async def slow(self) -> int:
        await asyncio.sleep(0)
        return 1

    def boom(self) -> None:
        raise ValueError("this turn fails")


@pytest.fixture
def slot(tmp_path) -> Iterator[Slot]:
    s = Slot(str(tmp_path / "data"), {"Used": Used})
    yield s
    s.close()


def test_actors_that_leave_memory_leave_no_cycle_for_the_collector(slot, caplog):
    for i in range(20):                  # the runtime's own first-use allocations, made now
        slot.call("Used", f"warm-{i}", "add", 1)
    gc.collect()
    gc.disable()
    try:
        for i in range(200):
            key = f"k-{i}"
            assert slot.call("Used", key, "add", 1) == 1
            assert slot.call("Used", key, "slow") == 1
            assert slot.wait_reply(slot.ask("Used", key, "boom"))[0] == wire.ERR
        for act in list(slot.catalog.acts.values()):
            slot.turns.passivate(act)
        slot.settle()
        assert slot.catalog.acts == {} and slot.counters["passivations"] >= 220
        gc.set_debug(gc.DEBUG_SAVEALL)     # what the collector finds, kept in gc.garbage
        gc.collect()
        # (only the actors' objects: another test's thread may leave garbage meanwhile)
        kinds = (Used, Storage, Activation, Host)
        left = [o for o in gc.garbage if isinstance(o, kinds)]
        assert not left, f"passivated actors left in reference cycles: {left[:5]}"
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
