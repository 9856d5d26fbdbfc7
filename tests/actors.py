"""Actor classes used by the tests (registered per test through the node config)."""
from __future__ import annotations

import asyncio
import os
import time

import actorsys


class Counter(actorsys.Actor):
    """A durable counter with helpers the tests poke at."""

    def on_start(self) -> None:
        self.state.setdefault("n", 0)
        self.state["starts"] = self.state.get("starts", 0) + 1

    def add(self, by: int = 1) -> int:
        self.state["n"] += by
        return self.state["n"]

    def get(self) -> int:
        return self.state["n"]

    def starts(self) -> int:
        return self.state["starts"]

    def pid(self) -> int:
        return os.getpid()

    def whoami(self) -> list:
        return [self.type_name, self.key]

    def add_then_fail(self, by: int = 1) -> None:
        self.state["n"] += by
        self.storage.put("poison", True)
        raise ValueError(f"failing after adding {by}")

    def sleep(self, seconds: float) -> str:
        time.sleep(seconds)            # blocks the worker: for "in flight" tests
        return "slept"

    async def slow_add(self, by: int, seconds: float) -> int:
        before = self.state["n"]
        await asyncio.sleep(seconds)
        self.state["n"] = before + by  # a lost update if turns overlapped
        return self.state["n"]


class Log(actorsys.Actor):
    """Appends to a list in state and a storage entry per item: ordering and atomicity."""

    def on_start(self) -> None:
        self.state.setdefault("items", [])

    def append(self, item) -> int:
        self.state["items"].append(item)
        self.storage.put(f"item:{len(self.state['items']):08d}", item)
        return len(self.state["items"])

    def items(self) -> list:
        return self.state["items"]

    def stored(self) -> dict:
        return self.storage.list(prefix="item:")


class Recorder(actorsys.Actor):
    """Records activations and stops, for passivation tests."""

    def on_start(self) -> None:
        self.state["activations"] = self.state.get("activations", 0) + 1

    def on_stop(self) -> None:
        self.state["stops"] = self.state.get("stops", 0) + 1

    def info(self) -> dict:
        return dict(self.state)


class Relay(actorsys.Actor):
    """Talks to other actors from handlers."""

    async def forward_ask(self, type_name: str, key: str, method: str, *args):
        return await self.ref(type_name, key).ask(method, *args)

    def forward_tell(self, type_name: str, key: str, method: str, *args) -> None:
        self.ref(type_name, key).tell(method, *args)
