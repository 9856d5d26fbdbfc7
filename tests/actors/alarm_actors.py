"""Actor classes for tests/node/test_alarms.py and test_alarms_recurring.py (registered per
test through the node config).

``on_alarm`` records every firing in ``self.state["fired"]``. A payload that is a dict
with a ``"file"`` key also appends one line per attempt to that file: a side channel that
survives the rollback of a failed turn and the death of the worker process.
"""
from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import actorsys


def _attempt_line(payload: Any) -> int:
    """Append ``<epoch time> <pid>`` to the payload's file; returns how many lines it has now."""
    path = payload["file"]
    with open(path, "a") as f:
        f.write(f"{time.time():.6f} {os.getpid()}\n")
        f.flush()
        os.fsync(f.fileno())
    with open(path) as f:
        return sum(1 for _ in f)


class Alarmist(actorsys.Actor):
    """Sets, lists and cancels alarms; records what fired."""

    def on_start(self) -> None:
        self.state.setdefault("fired", [])
        self.state["starts"] = self.state.get("starts", 0) + 1

    # -- asks --------------------------------------------------------------------------
    def set(self, when: Any, name: Any = "default", payload: Any = None) -> float:
        return self.set_alarm(when, name, payload)

    def set_in_utc(self, seconds: float, name: str, naive: bool = False) -> float:
        """An alarm given as a datetime (timezone-aware, or naive to see it refused)."""
        import datetime
        at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
        return self.set_alarm(at.replace(tzinfo=None) if naive else at, name)

    async def set_then_wait(self, when: float, name: str, wait: float) -> float:
        """Set an alarm, then keep the turn open for ``wait`` seconds."""
        import asyncio
        at = self.set_alarm(when, name)
        await asyncio.sleep(wait)
        return at

    async def hold(self, seconds: float) -> None:
        """Keep the actor busy (its alarms queue behind this turn)."""
        import asyncio
        await asyncio.sleep(seconds)

    def set_every(self, seconds: Any, name: str = "tick", payload: Any = None) -> float:
        """A recurring alarm every ``seconds``."""
        return self.set_alarm(name=name, payload=payload, every=seconds)

    def set_cron(self, expr: Any, name: str = "cron", payload: Any = None, tz: Any = None) -> float:
        """A recurring alarm on a cron expression."""
        return self.set_alarm(name=name, payload=payload, cron=expr, tz=tz)

    def set_how(self, how: dict, name: str = "x") -> float:
        """``set_alarm(name=name, **how)``: any mix of when/cron/every/tz (bad ones too)."""
        return self.set_alarm(name=name, **how)

    def set_many(self, specs: list) -> dict:
        """``specs``: [[when, name, payload], ...] -> {name: due}."""
        return {name: self.set_alarm(when, name, payload) for when, name, payload in specs}

    def set_then_raise(self, when: float, name: str) -> None:
        self.set_alarm(when, name, "never")
        self.state["poisoned"] = True
        raise RuntimeError("failing after setting an alarm")

    def cancel(self, name: Any) -> bool:
        return self.cancel_alarm(name)

    def pending(self) -> dict:
        return self.alarms()

    def fired(self) -> list:
        return self.state["fired"]

    def starts(self) -> int:
        return self.state["starts"]

    def pid(self) -> int:
        return os.getpid()

    def poisoned(self) -> bool:
        return self.state.get("poisoned", False)

    # -- the alarm handler -------------------------------------------------------------
    def _record(self, name: str, payload: Any) -> None:
        self.state["fired"].append({"name": name, "payload": payload, "at": time.time(),
                                    "pid": os.getpid(), "starts": self.state["starts"],
                                    # the alarm's next due time as on_alarm sees it
                                    "next": self.alarms().get(name, {}).get("when")})

    def _side_channel(self, payload: Any) -> None:
        if not isinstance(payload, dict) or "file" not in payload:
            return
        lines = _attempt_line(payload)
        if payload.get("kill_once") and lines == 1 or payload.get("kill_always"):
            os.kill(os.getpid(), signal.SIGKILL)       # dies mid-turn, before the commit
        if lines < payload.get("fail_until", 0):
            self.state["rolled_back"] = True            # must not survive the failed turn
            raise RuntimeError(f"alarm attempt {lines} fails on purpose")

    def on_alarm(self, name: str, payload: Any) -> None:
        self._side_channel(payload)
        self._record(name, payload)
        if isinstance(payload, dict) and payload.get("repeat", 0) > 1:    # a recurring alarm
            self.set_alarm(payload.get("every", 0.05), name, {**payload, "repeat": payload["repeat"] - 1})

    def rolled_back(self) -> bool:
        return self.state.get("rolled_back", False)


class AsyncAlarmist(Alarmist):
    """The same, with an ``async def on_alarm`` that awaits before recording."""

    async def on_alarm(self, name: str, payload: Any) -> None:
        await asyncio.sleep(0.01)
        self._side_channel(payload)
        self._record(name, payload)
        self.state["async_fired"] = self.state.get("async_fired", 0) + 1

    def async_fired(self) -> int:
        return self.state.get("async_fired", 0)


class NoHandler(actorsys.Actor):
    """Sets an alarm without defining on_alarm: refused at once."""

    def set(self, when: float) -> float:
        return self.set_alarm(when)
