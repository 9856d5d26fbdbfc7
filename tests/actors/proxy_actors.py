"""Actors for tests/node/test_proxies.py: typed proxies from inside handlers
(``self.proxy``), and a handler whose own keywords are named like an ask's options.

Self-contained (it imports only ``actorsys``), so the test process loads it by path and
proxies :class:`Account` and :class:`Teller` from the very classes the node runs.
"""
from __future__ import annotations

import asyncio
import time

import actorsys


class Account(actorsys.Actor):
    """A balance, and what a caller's proxy calls."""

    def on_start(self) -> None:
        self.state.setdefault("balance", 0)

    def deposit(self, amount: int) -> int:
        self.state["balance"] += amount
        return self.state["balance"]

    def balance(self) -> int:
        return self.state["balance"]

    async def slow_deposit(self, amount: int, seconds: float) -> int:
        await asyncio.sleep(seconds)
        return self.deposit(amount)

    def sleep(self, seconds: float) -> str:
        time.sleep(seconds)
        return "slept"

    def options(self, timeout: float, retry: bool = False) -> list[float | bool]:
        """A handler's own ``timeout`` and ``retry``: a proxy passes them to it."""
        return [timeout, retry]

    def whoami(self) -> list[str]:
        return [self.type_name, self.key]


class Teller(actorsys.Actor):
    """Calls accounts through ``self.proxy``."""

    async def deposit_to(self, key: str, amount: int) -> list[int]:
        account = self.proxy(Account, key)
        first = await account.deposit(amount)
        both = await asyncio.gather(account.deposit(amount), account.balance())
        return [first, *both]

    async def deposit_as(self, type_name: str, key: str, amount: int) -> int:
        return await self.proxy(Account, key, type_name=type_name).deposit(amount)

    async def slow_at(self, key: str, seconds: float, timeout: float) -> int:
        """(``slow_deposit`` awaits: a blocking sleep would block this worker's loop too,
        and with it this turn's deadline, if both actors live on one worker.)"""
        return await self.proxy(Account, key).with_options(timeout=timeout).slow_deposit(1, seconds)

    def tell_to(self, key: str, amount: int, fail: bool = False) -> str:
        """Tells leave when the turn commits: none if it raises."""
        self.proxy(Account, key).tell.deposit(amount)
        if fail:
            raise RuntimeError("the turn fails after its tell")
        return "told"

    def ask_in_sync(self, key: str) -> None:
        self.proxy(Account, key).deposit(1)       # an ask in a synchronous handler: TypeError

    def touch(self, key: str, name: str) -> None:
        getattr(self.proxy(Account, key), name)   # a name that is not a handler: AttributeError
