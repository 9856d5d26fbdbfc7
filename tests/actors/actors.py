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

    def gc_settings(self) -> list[int]:
        """The worker process's collector thresholds and how many objects it froze."""
        import gc
        return [*gc.get_threshold(), gc.get_freeze_count()]

    def pid(self) -> int:
        return os.getpid()

    def whoami(self) -> list:
        return [self.type_name, self.key]

    def add_then_fail(self, by: int = 1) -> None:
        self.state["n"] += by
        self.storage.put("poison", True)
        raise ValueError(f"failing after adding {by}")

    def weigh(self, blob: bytes) -> int:
        """Takes a payload and keeps nothing of it (floods of large tells)."""
        return len(blob)

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


# --- actors for tests/test_turns.py, test_durability.py, test_clients.py -------------

_GATES: dict = {}


def _gate(name: str) -> asyncio.Event:
    """A named event shared by every actor of one worker process."""
    ev = _GATES.get(name)
    if ev is None:
        ev = _GATES[name] = asyncio.Event()
    return ev


class Gate(actorsys.Actor):
    """Deterministic interleaving: ``wait`` awaits until another actor runs ``open``."""

    async def wait(self, name: str, timeout: float = 20.0) -> str:
        await asyncio.wait_for(_gate(name).wait(), timeout)
        return f"{self.key} passed {name}"

    def open(self, name: str) -> str:
        _gate(name).set()
        return f"{self.key} opened {name}"

    async def open_async(self, name: str) -> str:
        await asyncio.sleep(0)
        _gate(name).set()
        await asyncio.sleep(0)
        return f"{self.key} opened {name}"

    def pid(self) -> int:
        return os.getpid()


class StoreCounter(Counter):
    """A Counter whose storage the tests can read back."""

    def put(self, name: str, value) -> None:
        self.storage.put(name, value)

    def peek(self, name: str):
        return self.storage.get(name)

    def entries(self) -> dict:
        return self.storage.list()

    async def slow_add_then_fail(self, by: int, seconds: float) -> None:
        self.state["n"] += by
        self.storage.put("poison", True)
        await asyncio.sleep(seconds)
        raise KeyError(f"async failure after adding {by}")


class RelayPlus(Relay):
    """A Relay with turns that tell and then fail, or tell and then ask."""

    def tell_then_fail(self, type_name: str, key: str, method: str, *args) -> None:
        self.ref(type_name, key).tell(method, *args)
        raise RuntimeError("failing after a tell")

    async def tell_then_ask(self, type_name: str, key: str, tell_method: str, tell_arg,
                            ask_method: str):
        self.ref(type_name, key).tell(tell_method, tell_arg)
        return await self.ref(type_name, key).ask(ask_method)

    def tell_many(self, type_name: str, key: str, method: str, items: list) -> int:
        for item in items:
            self.ref(type_name, key).tell(method, item)
        return len(items)

    async def add_then_hold(self, key: str, marker: str, hold: str) -> int:
        """Ask Counter/key to add 1, then wait while the file ``hold`` exists (so a test
        can kill this worker after the add committed); changes nothing of its own."""
        n = await self.ref("Counter", key).ask("add", 1)
        open(marker, "w").close()
        for _ in range(600):
            if not os.path.exists(hold):
                break
            await asyncio.sleep(0.05)
        return n


class Napper(actorsys.Actor):
    """Blocks its worker in a handler, saying so first (for "in flight on a dying worker" tests)."""

    def nap(self, marker: str, seconds: float) -> str:
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(seconds)
        return "woke"


class AsyncLog(Log):
    """A Log whose appends await before writing, so messages queue in the mailbox."""

    async def append_slowly(self, item) -> int:
        await asyncio.sleep(0.001)
        return self.append(item)


class Shelf(actorsys.Actor):
    """Exposes self.storage to the tests: get/put/delete/list, within one turn or across turns."""

    def put(self, key: str, value) -> None:
        self.storage.put(key, value)

    def put_many(self, items: dict) -> None:
        for k, v in items.items():
            self.storage.put(k, v)

    def get(self, key: str, default=None):
        return self.storage.get(key, default)

    def delete(self, key: str) -> bool:
        return self.storage.delete(key)

    def list(self, **kwargs) -> list:
        return list(self.storage.list(**kwargs).items())

    def write_then_list(self, puts: dict, deletes: list, **kwargs) -> list:
        """Reads inside a turn see that turn's own writes and deletes."""
        for k, v in puts.items():
            self.storage.put(k, v)
        for k in deletes:
            self.storage.delete(k)
        return list(self.storage.list(**kwargs).items())

    def put_bad_key(self) -> None:
        self.storage.put(123, "x")  # type: ignore[arg-type]

    def put_unencodable(self) -> None:
        self.storage.put("k", object())


class Greeter:
    """A plain mixin: its public methods are handlers of the actors that use it."""

    def greet(self, name: str) -> str:
        return f"hello {name} from {self.key}"


class Misbehaving(Greeter, actorsys.Actor):
    """Handlers that raise what ordinary code should not, and oversized messages."""

    def on_start(self) -> None:
        self.state.setdefault("n", 0)

    def add(self) -> int:
        self.state["n"] += 1
        return self.state["n"]

    def exit_process(self) -> None:
        self.state["n"] = -1
        raise SystemExit(3)

    def raise_cancelled(self) -> None:
        raise asyncio.CancelledError()

    async def await_cancelled_task(self) -> None:
        task = asyncio.get_running_loop().create_task(asyncio.sleep(10))
        task.cancel()
        await task

    def big_reply(self, size: int) -> str:
        self.state["n"] = -2
        return "x" * size

    def big_tell(self, size: int) -> None:
        self.ref("Log", "big").tell("append", "x" * size)

    def pid(self) -> int:
        return os.getpid()


class Sink(actorsys.Actor):
    """Takes large messages; ``hold`` keeps it busy (awaiting) so they queue."""

    async def hold(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "held"

    def take(self, blob: str) -> int:
        self.state["taken"] = self.state.get("taken", 0) + 1
        return self.state["taken"]
