"""Actor classes for the shard rebalancing tests (test_rebalance.py)."""
from __future__ import annotations

import os

import actorsys


class Keeper(actorsys.Actor):
    """State plus two storage entries, each derived from the actor's key, so misplaced or
    mixed-up data shows."""

    def fill(self, n: int) -> int:
        self.state["n"] = n
        self.storage.put("a", n * 2)
        self.storage.put("b", f"{self.key}:{n}")
        return n

    def read(self) -> dict:
        return {"n": self.state.get("n"), "a": self.storage.get("a"),
                "b": self.storage.get("b"), "pid": os.getpid()}


class Sleeper(actorsys.Actor):
    """Sets an alarm and records when it fired, to follow alarms across shard moves."""

    def sleep(self, when: float) -> float:
        """A 'wake' alarm at ``when`` and a 'later' one an hour ahead (never due in a test)."""
        self.set_alarm(3600, name="later")
        return self.set_alarm(when, name="wake", payload=self.key)

    def on_alarm(self, name: str, payload) -> None:
        self.state["woke"] = [name, payload]

    def woke(self):
        return self.state.get("woke")

    def pending(self) -> list:
        return sorted(self.alarms())
