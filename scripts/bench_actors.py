"""The actor that scripts/bench.py measures (registered as "Bench" on the benchmark's node)."""
from __future__ import annotations

import os

import actorsys


class BenchCounter(actorsys.Actor):
    """A durable counter: ``add`` changes the state, so every turn commits to LevelDB."""

    def on_start(self) -> None:
        self.state.setdefault("n", 0)

    def add(self, by: int = 1) -> int:
        self.state["n"] += by
        return self.state["n"]

    def get(self) -> int:
        return self.state["n"]

    def pid(self) -> int:
        return os.getpid()
