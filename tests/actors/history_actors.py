"""Actors for tests/test_history.py (point-in-time history: history, rewind, destroy).

Registered per test as ``"history_actors:ClassName"`` (see ``HISTORY_ACTORS`` there),
under several type names with different ``history_window`` settings.
"""
from __future__ import annotations

import os
from typing import Any

import actorsys

#: activations per actor key in this worker process (in memory only: never committed)
ACTIVATIONS: dict[str, int] = {}
#: on_stop runs per actor key in this worker process (in memory only)
STOPS: dict[str, int] = {}


class Boom(Exception):
    """Raised on purpose by a turn."""


class Doc(actorsys.Actor):
    """State, storage and alarms, one call per handler. Nothing here writes unless asked:
    ``on_start`` keeps its bookkeeping in memory, so a read-only turn commits nothing."""

    def on_start(self) -> None:
        ACTIVATIONS[self.key] = ACTIVATIONS.get(self.key, 0) + 1
        self.turns = 0                      # in memory: reset by every activation

    def on_stop(self) -> None:
        STOPS[self.key] = STOPS.get(self.key, 0) + 1

    def _turn(self) -> None:
        self.turns += 1

    # -- writes -------------------------------------------------------------------
    def set(self, name: str, value: Any) -> None:
        self._turn()
        self.state[name] = value

    def set_then_fail(self, name: str, value: Any) -> None:
        """Writes state, storage and an alarm, then raises: the turn commits nothing."""
        self._turn()
        self.state[name] = value
        self.storage.put(name, value)
        self.set_alarm(3600, name)
        raise Boom(f"failing after writing {name!r}")

    def put(self, name: str, value: Any) -> None:
        self._turn()
        self.storage.put(name, value)

    def delete(self, name: str) -> bool:
        self._turn()
        return self.storage.delete(name)

    def set_alarm_in(self, delay: float, name: str) -> float:
        self._turn()
        return self.set_alarm(delay, name, payload=name)

    def cancel(self, name: str) -> bool:
        self._turn()
        return self.cancel_alarm(name)

    def on_alarm(self, name: str, payload: Any) -> None:
        fired = self.storage.get("fired", [])
        self.storage.put("fired", fired + [payload])

    # -- reads (commit nothing) --------------------------------------------------------
    def snapshot(self) -> dict:
        """Everything durable about this actor: state, storage entries, alarms."""
        self._turn()
        return {"state": dict(self.state), "storage": self.storage.list(),
                "alarms": {n: a["when"] for n, a in self.alarms().items()}}

    def fired(self) -> list:
        self._turn()
        return self.storage.get("fired", [])

    def memory(self) -> dict:
        """In-memory facts of the live instance: turns since activation, activations."""
        self._turn()
        return {"turns": self.turns, "activations": ACTIVATIONS.get(self.key, 0),
                "stops": STOPS.get(self.key, 0), "pid": os.getpid()}


class CountingDoc(Doc):
    """A Doc whose ``on_start`` counts its starts in its state (a write at activation)."""

    def on_start(self) -> None:
        super().on_start()
        self.state["starts"] = self.state.get("starts", 0) + 1
