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
