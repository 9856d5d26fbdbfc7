"""The fuzzer's actor: a surface for hostile asks, on the embedded node it starts.

``FuzzBox`` is registered twice on that node: ``FuzzBox`` with history, ``FuzzPlain``
without (:data:`EMBEDDED_TYPES`); :data:`FUZZ_METHODS` are the handler names the
generators aim at.
"""
from __future__ import annotations

import asyncio
from typing import Any

import actorsys
from actorsys.testing.nodes import node_config


class FuzzBox(actorsys.Actor):
    """A counter with storage, alarms, an async turn and refs: surface for hostile asks.

    No handler blocks, sleeps or loops on its arguments, so no argument can stall a
    worker; bad arguments only fail the turn.
    """

    def on_start(self) -> None:
        self.state.setdefault("n", 0)

    def add(self, by: int = 1) -> Any:
        self.state["n"] += by
        return self.state["n"]

    def get(self) -> Any:
        return self.state["n"]

    def echo(self, *args: Any, **kwargs: Any) -> list[Any]:
        return [list(args), kwargs]

    def remember(self, value: Any) -> None:
        self.state["last"] = value

    def put(self, key: Any, value: Any) -> None:
        self.storage.put(key, value)

    def fetch(self, key: Any) -> Any:
        return self.storage.get(key)

    def remove(self, key: Any) -> Any:
        return self.storage.delete(key)

    def entries(self, prefix: Any = None, limit: Any = 10) -> dict[str, Any]:
        return self.storage.list(prefix=prefix, limit=limit)

    def alarm(self, when: Any, name: Any = "default", payload: Any = None) -> float:
        return self.set_alarm(when, name, payload)

    def unalarm(self, name: Any = "default") -> bool:
        return self.cancel_alarm(name)

    def on_alarm(self, name: str, payload: Any) -> None:
        self.state["alarms"] = self.state.get("alarms", 0) + 1

    def tell_other(self, type_name: Any, key: Any, method: Any, *args: Any) -> None:
        self.ref(type_name, key).tell(method, *args)

    async def later(self, value: Any = None) -> Any:
        await asyncio.sleep(0)
        return value

    def fail(self, message: Any = "fuzz") -> None:
        raise ValueError(str(message)[:100])

    def stop_me(self, reason: Any = "fuzz") -> None:
        self.stop(reason)


FUZZ_METHODS = ["add", "get", "echo", "remember", "put", "fetch", "remove", "entries", "alarm",
                "unalarm", "tell_other", "later", "fail", "stop_me"]
FUZZBOX = "actorsys.testing.fuzz.actors:FuzzBox"
EMBEDDED_TYPES = {"FuzzBox": {"class": FUZZBOX, "history_window": 3600}, "FuzzPlain": FUZZBOX}


def embedded_config(data_dir: str, workers: int, **node: Any) -> dict[str, Any]:
    """The embedded node's config: FuzzBox with history, FuzzPlain without."""
    return node_config(data_dir, EMBEDDED_TYPES, workers=workers,
                       **{"shutdown_timeout": 10.0, "start_timeout": 60.0, **node})
