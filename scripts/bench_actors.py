"""The actors that the benchmarks measure: "Bench" (scripts/bench.py and the others) and
"Recurring" (scripts/bench_recurring.py)."""
from __future__ import annotations

import os

import actorsys

from counter import Counter   # examples/counter.py: the node's python_path includes examples/


class BenchCounter(Counter):
    """The example's durable counter (``add`` changes the state, so every turn commits to
    LevelDB), plus ``pid`` so the recovery benchmark knows which worker to kill."""

    def pid(self) -> int:
        return os.getpid()

    def put(self, size: int) -> int:
        """Store ``size`` random bytes in the state (one commit of about that size); returns ``size``."""
        self.state["blob"] = os.urandom(size)
        return size

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


class Recurring(actorsys.Actor):
    """Interval alarms for scripts/bench_recurring.py: ``schedule(n, every)`` sets ``n``
    named ones; each firing counts, and keeps how late it ran (at most LATE_KEPT)."""

    LATE_KEPT = 2000

    def schedule(self, n: int, every: float) -> None:
        first = {}
        for i in range(n):
            name = f"r{i}"
            first[name] = self.set_alarm(every=every, name=name)
        self.state.update(first=first, every=every, fired={}, late=[])

    def on_alarm(self, name: str, payload) -> None:
        import time
        now, st = time.time(), self.state
        first, every = st["first"][name], st["every"]
        due = first + max(0, round((now - first) / every)) * every
        st["fired"][name] = st["fired"].get(name, 0) + 1
        if len(st["late"]) < self.LATE_KEPT:
            st["late"].append(now - due)

    def report(self) -> dict:
        """first due time and firings per alarm, and the lateness kept (seconds)."""
        st = self.state
        return {"first": st.get("first", {}), "fired": st.get("fired", {}), "late": st.get("late", [])}

    def cancel_all(self) -> int:
        names = list(self.alarms())
        for name in names:
            self.cancel_alarm(name)
        return len(names)
