"""The cluster demo's actor (``scripts/demo cluster``): a durable counter."""
from __future__ import annotations

import actorsys


class Counter(actorsys.Actor):
    """A durable counter; its state moves with its shard from node to node."""

    def on_start(self) -> None:
        self.state.setdefault("n", 0)

    def add(self, by: int = 1) -> int:
        self.state["n"] += by
        return int(self.state["n"])

    def get(self) -> int:
        return int(self.state["n"])
