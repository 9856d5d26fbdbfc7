"""The chaos run's fault injector: SIGKILL parts of a node and time their recovery.

A fault is one of :data:`KINDS`: a random worker (most often), the router, or all the
node supervisor's children at once; the first three faults are one of each kind, in
random order. Recovery is measured from the kill until the killed part answers again
from a new process: a worker when a ``Probe`` actor on its slot answers with a new pid;
the router when it answers a ping and the status names a new router pid; "all" when
both hold for every part. A part that does not recover within ``recovery_timeout`` is a
problem (:attr:`Injector.problems`), reported by the audit.
"""
from __future__ import annotations

import random
import time
from typing import Any

import psutil
import zmq

from actorsys.client import Client, connect
from actorsys.errors import ActorError
from actorsys.net.sockets import dealer
from actorsys.node import Node
from actorsys.protocol import wire
from actorsys.protocol.messages import Control
from actorsys.testing.nodes import key_on_slot
from actorsys.testing.processes import gone, kill

from .audit import PROBE

KINDS = ("worker", "router", "all")
WEIGHTS = {"worker": 0.6, "router": 0.25, "all": 0.15}


class Injector:
    """Kills parts of the node and measures how long until they answer again."""

    def __init__(self, node: Node, rng: random.Random, recovery_timeout: float) -> None:
        self.node, self.rng = node, rng
        self.recovery_timeout = recovery_timeout
        self.probe: Client = connect(node.endpoint, timeout=5.0)    # its own client
        self.ctx = zmq.Context()
        self.router_sock = dealer(self.ctx, node.endpoint)
        self.ping_ids = iter(range(1, 1 << 62))
        self.slots = node.config.workers
        self.probe_keys = [key_on_slot(self.probe, PROBE, s, prefix="probe", tries=100_000)
                           for s in range(self.slots)]
        self.worker_pids: dict[int, int] = {}
        self.router_pid = 0
        self.events: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.deck = list(KINDS)
        rng.shuffle(self.deck)         # the first faults: one of each kind

    def close(self) -> None:
        self.router_sock.close(0)
        self.ctx.term()
        self.probe.close()

    # -- who is who ---------------------------------------------------------------
    def learn_pids(self, timeout: float = 10.0) -> None:
        """The pid of every worker (from its probe) and of the router (from the status)."""
        deadline = time.monotonic() + timeout
        for slot in range(self.slots):
            pid = self._probe_slot(slot, None, deadline)
            if pid is None:
                raise RuntimeError(f"worker slot {slot} did not answer its probe within {timeout:g} s")
            self.worker_pids[slot] = pid
        self.router_pid = self._router_pid_from_status(deadline) or 0
        if not self.router_pid:
            raise RuntimeError("the router did not report its pid")

    def _router_pid_from_status(self, deadline: float) -> int | None:
        while time.monotonic() < deadline:
            try:
                st = self.probe.status(timeout=max(min(deadline - time.monotonic(), 3.0), 0.1))
                pid: int = next(p["pid"] for p in st["processes"] if p["role"] == "router")
                return pid
            except ActorError:
                time.sleep(0.05)
        return None

    # -- probes ---------------------------------------------------------------------
    def _probe_slot(self, slot: int, old: int | None, deadline: float) -> int | None:
        """The pid serving ``slot`` once it answers from a process other than ``old``."""
        while time.monotonic() < deadline:
            try:
                pid: int = self.probe.ask(PROBE, self.probe_keys[slot], "pid",
                                     timeout=min(0.3, max(deadline - time.monotonic(), 0.01)))
            except ActorError:
                continue
            if pid != old:
                return pid
            time.sleep(0.01)           # should not happen after a kill -9: the old pid answered
        return None

    def _router_answers(self, deadline: float) -> bool:
        """Ping the router (fresh ids only, resent: a ping can be lost with the old one)."""
        sent: set[int] = set()
        sock = self.router_sock
        while time.monotonic() < deadline:
            rid = next(self.ping_ids)
            sent.add(rid)
            sock.send(Control(wire.PING, rid).encode(), zmq.NOBLOCK)
            until = min(deadline, time.monotonic() + 0.1)
            while (remaining := until - time.monotonic()) > 0 and sock.poll(int(remaining * 1000)):
                try:
                    msg = wire.unpack(sock.recv(zmq.NOBLOCK))
                except (ActorError, zmq.Again):
                    continue
                if isinstance(msg, list) and len(msg) >= 2 and msg[1] in sent and msg[0] == wire.OK:
                    return True
        return False

    def _wait_gone(self, pids: list[int], deadline: float) -> None:
        while time.monotonic() < deadline and not all(gone(p) for p in pids):
            time.sleep(0.002)

    # -- faults ---------------------------------------------------------------------
    def next_kind(self) -> str:
        """The kind of the next fault: the shuffled deck first, then by :data:`WEIGHTS`."""
        if self.deck:
            return self.deck.pop()
        x, acc = self.rng.random(), 0.0
        for kind in KINDS:
            acc += WEIGHTS[kind]
            if x < acc:
                return kind
        return KINDS[0]

    def inject(self, kind: str, at: float) -> dict[str, Any]:
        """One fault of ``kind`` (``at`` seconds into the load), awaited until recovered or
        past the recovery timeout; returns (and records) its event."""
        ev: dict[str, Any] = {"kind": kind, "at_s": round(at, 3)}
        if kind == "worker":
            self._kill_worker(ev)
        elif kind == "router":
            self._kill_router(ev)
        elif not self._kill_all(ev):
            return ev
        self.events.append(ev)
        return ev

    def _deadline(self) -> float:
        return time.monotonic() + self.recovery_timeout

    def _kill_worker(self, ev: dict[str, Any]) -> None:
        slot = self.rng.randrange(self.slots)
        old = self.worker_pids[slot]
        ev.update(slot=slot, killed=[old])
        t0 = time.monotonic()
        kill(old)
        deadline = self._deadline()
        self._wait_gone([old], deadline)
        new = self._probe_slot(slot, old, deadline)
        t1 = time.monotonic()
        if new is None:
            self.problems.append(f"worker slot {slot} (killed pid {old}) did not answer from a "
                                 f"new process within {self.recovery_timeout:g} s")
        else:
            self.worker_pids[slot] = new
            ev.update(recovery_ms=(t1 - t0) * 1000, new=[new])

    def _kill_router(self, ev: dict[str, Any]) -> None:
        old = self.router_pid
        ev.update(killed=[old])
        t0 = time.monotonic()
        kill(old)
        deadline = self._deadline()
        self._wait_gone([old], deadline)
        ok = self._router_answers(deadline)
        t1 = time.monotonic()
        new = self._router_pid_from_status(deadline) if ok else None
        if not ok or new is None:
            self.problems.append(f"the router (killed pid {old}) did not answer within "
                                 f"{self.recovery_timeout:g} s")
        elif new == old:
            self.problems.append(f"the router answered after kill -9 of pid {old} but the "
                                 f"status still names pid {old}")
        else:
            self.router_pid = new
            ev.update(recovery_ms=(t1 - t0) * 1000, new=[new])

    def _kill_all(self, ev: dict[str, Any]) -> bool:
        """Kill every child of the node supervisor; False if they could not be listed."""
        try:
            victims = [p.pid for p in psutil.Process(self.node.pid).children()]
        except psutil.Error as exc:
            self.problems.append(f"cannot list the node supervisor's children: {exc}")
            return False
        ev.update(killed=victims)
        t0 = time.monotonic()
        for pid in victims:
            kill(pid)
        deadline = self._deadline()
        self._wait_gone(victims, deadline)
        parts: dict[str, float] = {}
        if self._router_answers(deadline):
            parts["router"] = time.monotonic()
        for slot in range(self.slots):
            new = self._probe_slot(slot, self.worker_pids[slot], deadline)
            if new is not None:
                parts[f"worker {slot}"] = time.monotonic()
                self.worker_pids[slot] = new
        t1 = max(parts.values(), default=time.monotonic())
        missing = [p for p in ["router", *(f"worker {s}" for s in range(self.slots))] if p not in parts]
        new_router = self._router_pid_from_status(deadline) if "router" in parts else None
        if missing:
            self.problems.append(f"after kill -9 of all the supervisor's children {victims}, "
                                 f"{', '.join(missing)} did not answer within "
                                 f"{self.recovery_timeout:g} s")
        elif new_router is None or new_router in victims:
            self.problems.append(f"after kill -9 of all the supervisor's children {victims}, the "
                                 f"status names router pid {new_router}")
        else:
            self.router_pid = new_router
            ev.update(recovery_ms=(t1 - t0) * 1000,
                      new=[new_router, *self.worker_pids.values()])
        return True
