"""Actors for the supervision tests: each records its life in its own state and in a Journal."""
from __future__ import annotations

import asyncio
import time

import actorsys


class Journal(actorsys.Actor):
    """Collects (monotonic_ns, event) lines from other actors; read with lines()."""

    def add(self, at: int, line: str) -> None:
        self.state.setdefault("lines", []).append([at, line])

    def lines(self) -> list[str]:
        return [line for _at, line in sorted(self.state.get("lines", []))]

    def clear(self) -> None:
        self.state["lines"] = []


def note(actor: actorsys.Actor, what: str) -> None:
    actor.ref("Journal", "main").tell("add", time.monotonic_ns(), f"{what} {actor.key}")


class Worker(actorsys.Actor):
    """A supervised child: counts its starts, can crash, exit, or stop slowly."""

    def on_start(self, *args, **kwargs):
        if kwargs.get("fail_start") or self.state.get("fail_next_start"):
            raise RuntimeError(f"{self.key} refuses to start")
        self.state["starts"] = self.state.get("starts", 0) + 1
        self.state["args"] = list(args)
        self.state["kwargs"] = kwargs
        note(self, "start")

    def on_stop(self):
        note(self, "stop")

    def info(self) -> dict:
        return {"starts": self.state.get("starts", 0), "args": self.state.get("args"),
                "n": self.state.get("n", 0), "kwargs": self.state.get("kwargs")}

    def add(self, by: int = 1) -> int:
        self.state["n"] = self.state.get("n", 0) + by
        return self.state["n"]

    def crash(self, message: str = "boom") -> None:
        self.state["n"] = -1000          # rolled back with the turn
        raise RuntimeError(message)

    def exit(self, reason: str = "normal") -> str:
        self.stop(reason)
        return reason

    def fail_next_start(self, on: bool = True) -> None:
        self.state["fail_next_start"] = on


class SlowStop(Worker):
    """on_stop takes `delay` seconds (async), recording whether it finished."""

    async def on_stop(self):
        note(self, "stopping")
        await asyncio.sleep(self.state.get("stop_delay", 60))
        note(self, "stop")

    def set_stop_delay(self, seconds: float) -> None:
        self.state["stop_delay"] = seconds
