"""Driving an asyncio loop from a unit test (the test owns the loop and runs it itself)."""
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
