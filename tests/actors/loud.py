"""Actors for the loud-failure tests (tests/node/test_loud.py): handlers that raise, and
handlers that block their worker's event loop until the test lets them go."""
from __future__ import annotations

import asyncio
import os
import time

from actorsys import Actor

#: the longest a blocking handler waits for its marker file (seconds)
MAX_BLOCK = 10.0


def _block_until(marker: str) -> float:
    """Block the thread (and so the worker's event loop) until ``marker`` exists."""
    start = time.monotonic()
    while not os.path.exists(marker) and time.monotonic() - start < MAX_BLOCK:
        time.sleep(0.02)
    return time.monotonic() - start


class Flaky(Actor):
    """Raises when told to; counts what it did."""

    def boom(self, n: int = 0) -> None:
        raise ValueError(f"boom {n}")

    async def aboom(self) -> None:
        await asyncio.sleep(0)
        raise KeyError("async boom")

    def ok(self) -> str:
        return "ok"


class Blocker(Actor):
    """Handlers that block the event loop: one sync, one async (between awaits)."""

    def sync_block(self, marker: str) -> float:
        return _block_until(marker)

    async def async_block(self, marker: str) -> float:
        await asyncio.sleep(0)
        return _block_until(marker)

    async def async_sleep(self, seconds: float) -> float:
        await asyncio.sleep(0)
        time.sleep(seconds)
        return seconds

    async def polite(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds
