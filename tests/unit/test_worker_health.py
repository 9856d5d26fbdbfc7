"""The node supervisor's checks of hung workers (supervisors/health.py), on a fake
clock: the signals it would send are recorded, not sent (the node tests kill real ones)."""
from __future__ import annotations

import signal
from typing import Any

import pytest

from actorsys.config import NodeConfig
from supervisors import health
from supervisors.health import WorkerHealth
from supervisors.processes import NodeChild, Role

PID = 4242
#: what a hung worker is sent: its stacks to the log first, then the kill
HUNG = [(PID, signal.SIGUSR1), (PID, signal.SIGKILL)]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    monkeypatch.setattr(health, "send_signal", lambda pid, sig: out.append((pid, sig)))
    return out


def watched(t: float) -> tuple[WorkerHealth, dict[int, NodeChild]]:
    h = WorkerHealth(NodeConfig(data_dir="d", workers=1, heartbeat_timeout=10.0,
                                turn_timeout=60.0, start_timeout=30.0), t)
    h.worker_forked(0, t)
    h.beats[0] = t + 1.0                       # its first beat
    return h, {PID: NodeChild(Role.WORKER, 0)}


def tick(h: WorkerHealth, children: Any, start: float, end: float, step: float = 0.1) -> None:
    t = start
    while t <= end:
        h.check(children, t)
        t += step


def test_a_worker_silent_past_heartbeat_timeout_is_killed(sent: list[tuple[int, int]]) -> None:
    h, children = watched(100.0)
    tick(h, children, 100.0, 110.9)
    assert sent == []
    tick(h, children, 111.0, 111.3)
    assert sent == HUNG


def test_time_the_supervisor_was_stopped_does_not_count_as_missed_heartbeats(
        sent: list[tuple[int, int]]) -> None:
    """A node frozen (SIGSTOP, Ctrl-Z) for 12 s, then resumed: its worker, busy with the
    backlog, has a whole heartbeat_timeout to beat again, not a moment."""
    h, children = watched(100.0)
    tick(h, children, 100.0, 102.0)
    tick(h, children, 114.0, 122.9)           # stopped from 102 to 114; silent since 101
    assert sent == [], "the 12 s stop is nobody's fault"
    tick(h, children, 123.1, 123.3)
    assert sent == HUNG, "10 s silent while the supervisor ran"


def test_a_turn_past_turn_timeout_is_killed_counting_only_time_the_supervisor_ran(
        sent: list[tuple[int, int]]) -> None:
    h, children = watched(100.0)
    h.beats[1] = 101.0                        # a synchronous turn since 101
    tick(h, children, 100.0, 150.0, 0.5)
    tick(h, children, 170.0, 180.5, 0.5)      # stopped for 20 s
    assert sent == []
    tick(h, children, 181.5, 181.5)
    assert sent == HUNG, "60 s run while the supervisor ran"
