"""Actors for the storage-fault tests: reads that write nothing, writes of a chosen size."""
from __future__ import annotations

import actorsys


class Ledger(actorsys.Actor):
    """A balance in state and one storage entry per deposit (so a deposit writes bytes)."""

    def deposit(self, amount: int, note: str = "") -> int:
        self.state["balance"] = self.state.get("balance", 0) + amount
        n = self.state["deposits"] = self.state.get("deposits", 0) + 1
        self.storage.put(f"d{n:08d}", {"amount": amount, "note": note})
        return self.state["balance"]

    def balance(self) -> int:
        return self.state.get("balance", 0)

    def deposits(self) -> int:
        return len(self.storage.list(prefix="d"))
