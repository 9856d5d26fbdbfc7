"""Driving an asyncio loop from a unit test (the test owns the loop and runs it itself),
and a fake loop whose clock the test drives (:class:`FakeLoop`)."""
from __future__ import annotations

import asyncio
from typing import Callable


def run_until(loop: asyncio.AbstractEventLoop, done: Callable[[], object],
              timeout: float) -> None:
    """Run ``loop`` until ``done()`` is truthy (checked every millisecond); TimeoutError
    after ``timeout`` seconds."""
    async def wait() -> None:
        while not done():
            await asyncio.sleep(0.001)
    loop.run_until_complete(asyncio.wait_for(wait(), timeout))


class FakeTimer:
    def __init__(self, loop: "FakeLoop", at: float, callback: Callable[[], None]) -> None:
        self.loop, self.at, self.callback, self.cancelled = loop, at, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """call_later against a fake clock starting at ``now``; ``advance`` runs what came due."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.timers: list[FakeTimer] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        t = FakeTimer(self, self.now + delay, callback)
        self.timers.append(t)
        return t

    def pending(self) -> list[float]:
        return sorted(t.at for t in self.timers if not t.cancelled)

    def advance(self, to: float) -> None:
        self.now = to
        while due := [t for t in self.timers if not t.cancelled and t.at <= self.now]:
            t = min(due, key=lambda t: t.at)
            self.timers.remove(t)
            t.callback()
