"""Actors for test_process_supervision.py and test_supervision_shutdown.py: a busy loop
and a long await (Busy), a memory hog (Hog), an on_stop that commits a write
(StopWriter), an on_stop that hangs and leaves marker files (HangStop), and a small
simple_one_for_one child that tells nothing (Job)."""
from __future__ import annotations

import asyncio
import os
import time

import psutil

import actorsys
from sup_actors import Worker, note

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


class Job(actorsys.Actor):
    """A small simple_one_for_one child (no Journal notes: the scaling test counts only
    the supervision work)."""

    def on_start(self, *args, **kwargs):
        self.state["starts"] = self.state.get("starts", 0) + 1

    def starts(self) -> int:
        return self.state.get("starts", 0)


class HangStop(Worker):
    """on_stop takes ``stop_delay`` seconds; it leaves files (outside any turn, so they
    survive the turn being killed) when it begins and when it ends: ``<dir>/<key>.stopping``
    and ``<dir>/<key>.stopped``."""

    def set_stop(self, seconds: float, marker_dir: str) -> None:
        self.state["stop_delay"], self.state["marker_dir"] = seconds, marker_dir

    def _mark(self, what: str) -> None:
        with open(os.path.join(self.state["marker_dir"], f"{self.key}.{what}"), "w"):
            pass

    async def on_stop(self):
        self._mark("stopping")
        note(self, "stopping")
        await asyncio.sleep(self.state.get("stop_delay", 60))
        self._mark("stopped")
        note(self, "stop")
