"""Worker health: the node supervisor's checks on workers that are alive but not well.

* **Shared memory** (:class:`~actorsys.protocol.board.SlotBoard`). Two doubles per worker
  slot, written by the worker and read here: its last heartbeat and the start of the
  synchronous turn in progress (0 when none), both ``time.monotonic()``. A new worker's
  slot is reset when it is forked. The supervisor writes each slot's pid there too (0
  once the process is reaped), for the router's ``status`` (``actorsys/node/slots.py``).
* **A turn past its deadline**: a turn that has run longer than ``turn_timeout`` ->
  SIGKILL (a loop blocked in user code cannot stop itself).
* **Missed heartbeats**: no heartbeat for ``heartbeat_timeout`` outside a turn -> SIGKILL;
  a worker still starting has ``start_timeout`` for its first beat.
* Before either kill, the worker is sent :data:`~actorsys.runtime.worker.DUMP_SIGNAL`,
  on which it writes every thread's stack to the log (``faulthandler``, which needs no
  interpreter): a worker killed as hung says where it was.
* **Memory**: resident memory (psutil, every 0.5 s) above ``max_worker_memory`` ->
  SIGTERM, so it passivates its actors, then SIGKILL after ``shutdown_timeout``.
* **Stopped clocks**: when the supervisor itself did not run for over a second (Ctrl-Z
  stops the whole process group, a node frozen with SIGSTOP, or the machine is starved),
  every beat and turn is stale by that gap, which was not the workers' doing: the gaps
  are left out of how long a worker was silent or a turn ran (a worker resumed with a
  backlog has what was left of its ``heartbeat_timeout``, not a 2 s grace; killing it
  would also drop what it was answering, its router's grants among them).

The supervisor reaps what these signals kill and restarts it like any dead child.
"""
from __future__ import annotations

import logging
import signal
import time
from typing import Mapping

import psutil

from actorsys.config import NodeConfig
from actorsys.protocol.board import SlotBoard
from actorsys.runtime.worker import DUMP_SIGNAL

from .processes import NodeChild, Role, send_signal

log = logging.getLogger("supervisors.node")

MEMORY_CHECK_EVERY = 0.5   # seconds between two psutil reads of the workers' memory
STALL = 1.0                # a gap this long between two checks: we were stopped or starved
DUMP_WAIT = 0.05           # seconds a hung worker gets to write its stacks before SIGKILL
NEVER = float("inf")


class WorkerHealth:
    """The health checks of one node's workers (see the module docstring)."""

    def __init__(self, cfg: NodeConfig, now: float) -> None:
        self.cfg = cfg
        #: shared with the router and the workers (forked after it is made)
        self.board = SlotBoard(cfg.workers)
        # [heartbeat, start of the sync turn in progress or 0] per slot, shared with workers
        self.beats = self.board.beats
        self.spawned_at: dict[int, float] = {}    # slot -> when its current worker was forked
        self.terminating: dict[int, float] = {}   # pid -> when to SIGKILL it (NEVER: killed)
        self.next_memory_check = 0.0
        self.last_check = now
        #: the stalls (start, end) of the last ``max timeout`` seconds: not counted in
        #: how long a worker was silent or a turn ran (nobody's fault)
        self.stalls: list[tuple[float, float]] = []
        self.keep_stalls = max(cfg.heartbeat_timeout, cfg.turn_timeout, cfg.start_timeout)

    def worker_forked(self, slot: int, now: float) -> None:
        """A new worker is about to run in ``slot``: its clocks start now."""
        self.spawned_at[slot] = now
        self.beats[2 * slot] = now
        self.beats[2 * slot + 1] = 0.0

    def worker_running(self, slot: int, pid: int, now: float) -> None:
        """The new worker of ``slot`` runs as ``pid`` (forked at ``now``)."""
        self.board.forked(slot, pid, now)

    def worker_gone(self, slot: int) -> None:
        """The worker of ``slot`` exited and was reaped."""
        self.board.gone(slot)

    def _kill(self, pid: int) -> None:
        send_signal(pid, signal.SIGKILL)
        self.terminating[pid] = NEVER

    def _kill_hung(self, pid: int) -> None:
        """Kill a hung worker, after its stacks are in the log."""
        send_signal(pid, DUMP_SIGNAL)
        time.sleep(DUMP_WAIT)
        self._kill(pid)

    def _ran(self, since: float, now: float) -> float:
        """Seconds from ``since`` to ``now`` that the supervisor ran (stalls left out)."""
        out = now - since
        for start, end in self.stalls:
            if end > since:
                out -= end - max(start, since)
        return out

    def check(self, children: Mapping[int, NodeChild], now: float) -> None:
        """Kill workers that are hung; stop workers above their memory limit."""
        if now - self.last_check > STALL:
            self.stalls.append((self.last_check, now))
            log.info("the node supervisor did not run for %.1f s (stopped, or the machine "
                     "starved): not counted against the workers' heartbeats and turns",
                     now - self.last_check)
        if self.stalls and self.stalls[0][1] < now - self.keep_stalls:
            self.stalls = [st for st in self.stalls if st[1] >= now - self.keep_stalls]
        self.last_check = now
        for pid, deadline in list(self.terminating.items()):
            if pid not in children:
                del self.terminating[pid]
            elif now >= deadline:
                log.warning("pid %d did not stop within shutdown_timeout; killing it", pid)
                self._kill(pid)
        cfg = self.cfg
        check_memory = cfg.max_worker_memory > 0 and now >= self.next_memory_check
        if check_memory:
            self.next_memory_check = now + MEMORY_CHECK_EVERY
        for pid, child in list(children.items()):
            slot = child.slot
            if child.role is not Role.WORKER or slot is None or pid in self.terminating:
                continue
            beat, turn = self.beats[2 * slot], self.beats[2 * slot + 1]
            spawned = self.spawned_at.get(slot, 0)
            if turn and self._ran(turn, now) > cfg.turn_timeout:
                log.warning("worker slot %d (pid %d): a turn has run for %.1f s, past turn_timeout = "
                            "%g s; killing it", slot, pid, self._ran(turn, now), cfg.turn_timeout)
                self._kill_hung(pid)
            elif not turn and self._ran(beat, now) > cfg.heartbeat_timeout and (
                    beat > spawned or self._ran(spawned, now) > cfg.start_timeout):
                log.warning("worker slot %d (pid %d) missed its heartbeats for %.1f s "
                            "(heartbeat_timeout = %g s); killing it",
                            slot, pid, self._ran(beat, now), cfg.heartbeat_timeout)
                self._kill_hung(pid)
            elif check_memory:
                try:
                    rss = psutil.Process(pid).memory_info().rss
                except psutil.Error:
                    continue
                if rss > cfg.max_worker_memory:
                    log.warning("worker slot %d (pid %d) uses %d MiB, above max_worker_memory "
                                "(%d MiB); restarting it", slot, pid, rss >> 20, cfg.max_worker_memory >> 20)
                    send_signal(pid, signal.SIGTERM)
                    self.terminating[pid] = now + cfg.shutdown_timeout
