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
