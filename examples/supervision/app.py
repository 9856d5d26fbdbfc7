"""The actors of the supervision example: a store, a cache in front of it, and jobs.

* ``Store`` keeps named values durably. ``crash()`` raises, to show a restart.
* ``Cache`` is started after the store and warms itself from it in ``on_start``; under
  ``rest_for_one`` a store restart restarts the cache too, so it never serves values
  from a store incarnation that no longer exists.
* ``Job`` children are started at run time (``simple_one_for_one``); a job that calls
  ``self.stop()`` when done is a normal exit, and a temporary child is never restarted.
"""
from __future__ import annotations

import time

import actorsys


class Store(actorsys.Actor):
    def on_start(self, *args: object) -> None:
        self.state.setdefault("values", {})
        self.state["starts"] = self.state.get("starts", 0) + 1
        print(f"  [Store/{self.key}] started (start #{self.state['starts']}, "
              f"{len(self.state['values'])} values on disk)", flush=True)

    def put(self, name: str, value: object) -> None:
        self.state["values"][name] = value

    def get(self, name: str) -> object:
        return self.state["values"].get(name)

    def dump(self) -> dict[str, object]:
        return dict(self.state["values"])

    def starts(self) -> int:
        starts: int = self.state["starts"]
        return starts

    def crash(self) -> None:
        self.state["values"]["half-written"] = True    # rolled back with the failed turn
        raise RuntimeError("the store hit a bug")


class Cache(actorsys.Actor):
    async def on_start(self) -> None:
        self.state["entries"] = await self.proxy(Store, "main").dump()   # typed: a dict
        self.state["warmed_at"] = time.time()
        print(f"  [Cache/{self.key}] started, warmed with {len(self.state['entries'])} values",
              flush=True)

    def get(self, name: str) -> object:
        return self.state["entries"].get(name)

    def size(self) -> int:
        return len(self.state["entries"])


class Job(actorsys.Actor):
    def on_start(self, total: int = 3) -> None:
        self.state.setdefault("done", 0)
        self.state["total"] = total

    def step(self) -> int:
        done: int = self.state["done"] + 1
        self.state["done"] = done
        if done >= self.state["total"]:
            self.stop()          # a normal exit: its supervisor does not restart it
        return done
