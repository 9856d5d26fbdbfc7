"""Actors for tests/test_supervised_worker_edges.py.

Slow steps wait on *gate files* (a path given by the test) instead of sleeping, so the
tests decide when a slow on_start, on_stop or cancellation cleanup ends; a *marker file*
tells the test that a step has begun.
"""
from __future__ import annotations

import asyncio
import os
import time

import actorsys

GATE_LIMIT = 30.0       # a gate nobody opens lets go after this long (a failing test)


async def wait_gate(path: str) -> None:
    deadline = time.monotonic() + GATE_LIMIT
    while not os.path.exists(path) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


def touch(path: str) -> None:
    with open(path, "w"):
        pass


class EdgeW(actorsys.Actor):
    """Counts its starts and stops and keeps the arguments of its last start."""

    def on_start(self, *args, **kwargs):
        self.state["starts"] = self.state.get("starts", 0) + 1
        self.state["args"] = list(args)
        self.state["kwargs"] = kwargs

    def on_stop(self):
        self.state["stops"] = self.state.get("stops", 0) + 1

    def info(self) -> dict:
        return {"starts": self.state.get("starts", 0), "stops": self.state.get("stops", 0),
                "args": self.state.get("args"), "kwargs": self.state.get("kwargs")}

    def note(self, line: str) -> None:
        self.state.setdefault("notes", []).append(line)

    def notes(self) -> list:
        return self.state.get("notes", [])

    def exit(self, reason: str = "normal") -> str:
        self.stop(reason)
        return reason

    async def crash_after(self, path: str) -> None:
        """Wait (as a plain actor) until ``path`` exists, then raise."""
        while not os.path.exists(path):
            await asyncio.sleep(0.01)
        raise RuntimeError("the plain turn failed")


class FailLateStart(actorsys.Actor):
    """on_start(marker, gate): touches ``marker``, waits for ``gate``, then raises."""

    async def on_start(self, marker: str = "", gate: str = ""):
        if marker:
            touch(marker)
            await wait_gate(gate)
            raise RuntimeError("on_start failed after its supervisor gave up")

    def info(self) -> str:
        return "running"


class GatedStop(actorsys.Actor):
    """exit(gate): self.stop(); its async on_stop waits for ``gate``."""

    async def on_stop(self):
        gate = self.state.get("gate")
        if gate:
            await wait_gate(gate)

    def info(self) -> str:
        return "running"

    def exit(self, gate: str) -> str:
        self.state["gate"] = gate
        self.stop("normal")
        return "exiting"


class CleanupOnCancel(actorsys.Actor):
    """hang(marker, gate, witness): touches ``marker`` and waits; cancelled, it keeps
    awaiting (a cleanup until ``gate`` opens), tries to reach EdgeW ``witness`` (tells
    through refs made before and after the cancel, then an ask) and returns normally."""

    def on_start(self, *args, **kwargs):
        self.state["starts"] = self.state.get("starts", 0) + 1

    async def hang(self, marker: str, gate: str, witness: str) -> str:
        self.state["hung"] = True
        early = self.ref("EdgeW", witness)
        touch(marker)
        try:
            await asyncio.sleep(GATE_LIMIT)
        except asyncio.CancelledError:
            await wait_gate(gate)        # cleanup that awaits
            early.tell("note", "tell from the cancelled turn")
            late = self.ref("EdgeW", witness)
            late.tell("note", "late tell from the cancelled turn")
            try:
                await late.ask("note", "ask from the cancelled turn")
            except actorsys.ActorError:
                pass
        return "cleaned up"

    async def reach(self, witness: str, line: str) -> None:
        """An ask to ``witness`` from this worker: it arrives after what this worker sent
        it before."""
        await self.ref("EdgeW", witness).ask("note", line)

    def info(self) -> dict:
        return {"starts": self.state.get("starts", 0), "hung": self.state.get("hung", False)}
