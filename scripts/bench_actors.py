"""The actor that scripts/bench.py measures (registered as "Bench" on the benchmark's node)."""
from __future__ import annotations

import os

from counter import Counter   # examples/counter.py: the node's python_path includes examples/


class BenchCounter(Counter):
    """The example's durable counter (``add`` changes the state, so every turn commits to
    LevelDB), plus ``pid`` so the recovery benchmark knows which worker to kill."""

    def pid(self) -> int:
        return os.getpid()

    def crash(self) -> None:
        """Raise: for a supervised child, a crash its supervisor restarts."""
        raise RuntimeError("crash requested by the benchmark")

    def alarm_in(self, delay: float) -> float:
        """Set an alarm ``delay`` seconds ahead; returns its due time (epoch seconds)."""
        return self.set_alarm(delay, name=f"a{len(self.alarms())}", payload=None)

    def on_alarm(self, name: str, payload) -> None:
        import time
        due = self.state.setdefault("due", {})
        due[name] = time.time()

    def fired(self) -> dict:
        """name -> the epoch time its on_alarm ran."""
        return self.state.get("due", {})
