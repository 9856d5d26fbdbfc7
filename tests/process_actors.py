"""Actors for the process-supervision and shutdown tests (busy loops, long awaits, memory
hogs, an on_stop that writes state)."""
from __future__ import annotations

import asyncio
import os
import time

import psutil

from sup_actors import Worker, note

import actorsys

# what a Hog allocated: kept at module level so it stays in the worker process
_HOARD: list[bytes] = []


class Busy(actorsys.Actor):
    """A counter whose ``spin`` blocks its worker's event loop (a synchronous busy loop)."""

    def add(self, by: int = 1) -> int:
        self.state["n"] = self.state.get("n", 0) + by
        return self.state["n"]

    def get(self) -> int:
        return self.state.get("n", 0)

    def pid(self) -> int:
        return os.getpid()

    def spin(self, seconds: float) -> str:
        self.state["n"] = -1                 # never committed: the worker dies mid-turn
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
        return "spun"

    async def nap(self, seconds: float) -> str:
        self.state["n"] = -1                 # discarded with the cancelled turn
        await asyncio.sleep(seconds)
        return "napped"


class Hog(actorsys.Actor):
    """Keeps ``mb`` megabytes alive in its worker process (a module-level list)."""

    def hog(self, mb: int) -> int:
        _HOARD.append(b"\x01" * (mb << 20))  # written, so every page is resident
        return psutil.Process().memory_info().rss

    def rss(self) -> int:
        return psutil.Process().memory_info().rss

    def pid(self) -> int:
        return os.getpid()


class StopWriter(Worker):
    """A supervised child whose on_stop commits a state write (and notes it in the Journal)."""

    def on_stop(self):
        self.state["stops"] = self.state.get("stops", 0) + 1
        note(self, "stop")

    def stops(self) -> int:
        return self.state.get("stops", 0)
