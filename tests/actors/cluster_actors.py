"""Actors for tests/node/test_cluster_handoff.py: an actor with every kind of data a shard
handoff must carry (state, storage, an alarm, history versions, its listing entry), that
records where (which worker process) its alarm fired; and a bulky one, to make a move
take a measurable time."""
from __future__ import annotations

import os
from typing import Any

import actorsys


class Keeper(actorsys.Actor):
    """State, storage entries and an alarm; ``on_alarm`` records the pid it ran in."""

    def fill(self, n: int, alarm_in: float) -> float:
        self.state["n"] = n
        self.state["fired"] = []
        self.storage.put({"a": {"n": n}, "b": "x" * (n % 50)})
        return self.set_alarm(alarm_in, "ring", payload={"n": n})

    def bump(self) -> int:
        self.state["n"] += 1000
        self.storage.put("c", self.state["n"])
        return int(self.state["n"])

    def add(self, by: int = 1) -> int:
        self.state["n"] = self.state.get("n", 0) + by
        return int(self.state["n"])

    def info(self) -> dict[str, Any]:
        return {"state": dict(self.state), "storage": dict(self.storage.list()),
                "alarms": dict(self.alarms())}

    def where(self) -> int:
        """The pid of the worker serving this actor."""
        return os.getpid()

    def on_alarm(self, name: str, payload: Any) -> None:
        self.state.setdefault("fired", []).append({"name": name, "pid": os.getpid()})


class Bulk(actorsys.Actor):
    """Storage entries of a given size, to make a shard's data take time to copy."""

    def fill(self, entries: int, size: int) -> int:
        self.storage.put({f"e{i:04d}": os.urandom(size) for i in range(entries)})
        return int(self.storage.size())

    def size(self) -> int:
        return int(self.storage.size())
