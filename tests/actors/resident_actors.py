"""Actors for the resident-bound tests: they count their activations and passivations."""
import os

import actorsys


class Visitor(actorsys.Actor):
    def on_start(self) -> None:
        self.state["starts"] = self.state.get("starts", 0) + 1
        self.warm = True            # in memory only: gone after a passivation

    def on_stop(self) -> None:
        self.state["stops"] = self.state.get("stops", 0) + 1

    def visit(self) -> dict:
        self.state["visits"] = self.state.get("visits", 0) + 1
        return {"pid": os.getpid(), **self.state}



class Slow(actorsys.Actor):
    """An async read-modify-write across an await: two overlapping activations lose a bump."""

    def on_start(self) -> None:
        self.instance_id = id(self)

    async def bump(self, delay: float) -> dict:
        import asyncio
        n = self.state.get("n", 0)
        await asyncio.sleep(delay)
        self.state["n"] = n + 1
        return {"n": n + 1, "instance": self.instance_id}

    def get(self) -> int:
        return self.state.get("n", 0)
