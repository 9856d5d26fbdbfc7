"""Actors for tests/test_supervision_restarts.py.

``Worker`` extends :class:`sup_actors.Worker` so that what happened to a child can be read
back from its committed state even after its node has stopped:

* ``stops`` / ``stopped_at``: every graceful stop (``on_stop``) is counted and timestamped
  (``time.monotonic_ns()``, one clock for every process of the machine), committed with
  the stop's turn, before the supervisor hears that the stop is done;
* ``fail_once_file`` (a start kwarg): if that file exists, the start removes it and fails,
  so the child fails exactly one start (the file lives outside the actor's state, which a
  failed start rolls back).

``Journal`` adds ``entries()``: the journal lines with their timestamps.
"""
from __future__ import annotations

import os
import time

import sup_actors


class Journal(sup_actors.Journal):
    def entries(self) -> list[list]:
        """``[[monotonic_ns, line], ...]`` in time order."""
        return sorted(self.state.get("lines", []))


class Worker(sup_actors.Worker):
    def on_start(self, *args, **kwargs):
        flag = kwargs.get("fail_once_file")
        if flag and os.path.exists(flag):
            os.unlink(flag)
            raise RuntimeError(f"{self.key} fails this one start ({flag} was present)")
        super().on_start(*args, **kwargs)

    def on_stop(self):
        super().on_stop()
        self.state["stops"] = self.state.get("stops", 0) + 1
        self.state.setdefault("stopped_at", []).append(time.monotonic_ns())

    def info(self) -> dict:
        d = super().info()
        d["stops"] = self.state.get("stops", 0)
        return d
