"""Actors for test_supervision_config.py / test_supervision_admin.py.

``Life`` records every start and stop in its *own* state (committed with the turn that
ran ``on_start`` / ``on_stop``, before the supervisor hears the reply), so a test can read
a child's history after the node that ran it is gone, by starting a new node on the same
data directory. Times are ``time.monotonic_ns()``: one system-wide clock on Linux, so
entries of different actors (in different worker processes) can be ordered.
"""
from __future__ import annotations

import time

import actorsys


class Life(actorsys.Actor):
    def on_start(self, *args, **kwargs):
        if kwargs.get("fail_start"):
            raise RuntimeError(f"{self.key} refuses to start")
        self.state.setdefault("life", []).append(["start", time.monotonic_ns(), list(args), kwargs])

    def on_stop(self):
        self.state.setdefault("life", []).append(["stop", time.monotonic_ns(), [], {}])

    def life(self) -> list:
        return self.state.get("life", [])

    def add(self, by: int = 1) -> int:
        self.state["n"] = self.state.get("n", 0) + by
        return self.state["n"]

    def n(self) -> int:
        return self.state.get("n", 0)
