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

