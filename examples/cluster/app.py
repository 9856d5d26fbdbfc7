"""The cluster demo's actor: a durable counter (``scripts/demo cluster``)."""
from __future__ import annotations

import actorsys


class Counter(actorsys.Actor):
    """A durable counter."""

    def on_start(self) -> None:
        self.state.setdefault("n", 0)

    def add(self, by: int = 1) -> int:
        self.state["n"] += by
        return self.state["n"]

    def get(self) -> int:
        return self.state["n"]
