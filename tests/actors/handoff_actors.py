"""Actor classes for tests/node/test_shard_grants.py: state, storage entries and an alarm
in one actor, so a shard's handoff can be checked whole."""
from __future__ import annotations

import asyncio
from typing import Any

import actorsys


class Mover(actorsys.Actor):
    """Counts in its state, keeps storage entries, records its alarms' firings."""

    def on_start(self) -> None:
        self.state.setdefault("n", 0)
        self.state.setdefault("fired", [])

    def add(self, by: int = 1) -> int:
        self.state["n"] += by
        return self.state["n"]

    async def slow_add(self, by: int, seconds: float) -> int:
        await asyncio.sleep(seconds)
        self.state["n"] += by
        return self.state["n"]

    def put(self, name: str, value: Any) -> None:
        self.storage.put(name, value)

    def put_many(self, prefix: str, count: int, size: int) -> None:
        for i in range(count):
            self.storage.put(f"{prefix}{i}", "x" * size)

    def alarm(self, when: float, name: str = "a") -> float:
        return self.set_alarm(when, name)

    def info(self) -> dict:
        return {"n": self.state["n"], "fired": self.state["fired"],
                "storage": dict(self.storage.list()), "alarms": sorted(self.alarms())}

    def on_alarm(self, name: str, payload: Any) -> None:
        self.state["fired"].append(name)
